// Training on the GPU, both precisions: a tiny model overfits a fixed batch, and `jetforge train` resumed from a
// checkpoint continues with exactly the losses of an uninterrupted run (skipped without a GPU).
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "runtime/corpus.hpp"
#include "runtime/gpt2_model.hpp"
#include "runtime/loss_curves.hpp"
#include "runtime/optim.hpp"
#include "testing.hpp"

using namespace jetforge;

namespace {

int run_cli(const std::string& args, std::string* out) {
  FILE* p = popen((std::string(JETFORGE_CLI) + " " + args + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) out->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("a tiny GPT-2 overfits one batch in both precisions (the loss falls below half its start)") {
    Context& ctx = testing::gpu();
    const Gpt2Shape shape{2, 128, 2, 64, 200, 4};
    const int batch = 2;
    std::vector<int> inputs(static_cast<std::size_t>(batch * shape.sequence)), targets(inputs.size());
    std::mt19937 rng(3);
    std::uniform_int_distribution<int> token(0, shape.vocab - 1);
    for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = token(rng), targets[i] = token(rng);
    for (const char* precision : {"int8", "bf16"}) {
      CAPTURE(precision);
      const auto model = make_gpt2(ctx, shape, batch, precision);
      OptimizerState opt(gpt2_initial_parameters(model->layout(), shape.layers, 4));
      Stream stream;
      double first = 0, last = 0;
      for (int step = 1; step <= 40; ++step) {
        last = model->step(opt.params.get(), opt.grads.get(), inputs, targets, std::uint64_t(step), stream.get());
        if (step == 1) first = last;
        opt.clip(ctx, 1.0f, stream.get());
        opt.adamw_step(ctx, 0, opt.n, step, 2e-3f, AdamWConfig{0.9f, 0.95f, 1e-8f, 0.0f}, stream.get());
      }
      stream.synchronize();
      MESSAGE(precision << ": loss " << first << " -> " << last);
      CHECK(std::isfinite(last));
      CHECK(last < 0.5 * first);
    }
  }

  TEST_CASE("jetforge train resumed from a checkpoint repeats the uninterrupted run's losses bit for bit") {
    testing::gpu();
    const auto dir = std::filesystem::temp_directory_path() / ("jetforge_train_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "tiny.yaml") << "name: tiny\nlayers: 2\nhidden: 128\nheads: 2\nsequence: 64\nmicro_batch: 2\nvocab: 200\n";
    data::TokenSplit split;
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> token(0, 199);
    for (int i = 0; i < 20000; ++i) split.train.push_back(std::uint16_t(token(rng)));
    for (int i = 0; i < 2000; ++i) split.validation.push_back(std::uint16_t(token(rng)));
    split.vocab_size = 200;
    data::write_token_file(dir / "tiny.tok", split);
    for (const char* precision : {"int8", "bf16"}) {
      CAPTURE(precision);
      const std::string common = " --model " + (dir / "tiny.yaml").string() + " --data " + (dir / "tiny.tok").string() + " --precision " + precision +
                                 " --val-every 3 --no-tune --cache " + (dir / "k.db").string();
      std::string log;
      REQUIRE(run_cli("train" + common + " --steps 6 --out " + (dir / "whole").string(), &log) == 0);
      REQUIRE(run_cli("train" + common + " --steps 3 --out " + (dir / "split").string(), &log) == 0);
      const auto checkpoint = dir / "split" / (std::string("checkpoint-") + precision + ".bin");
      REQUIRE(run_cli("train" + common + " --steps 6 --resume " + checkpoint.string() + " --out " + (dir / "split").string(), &log) == 0);
      auto curve = [&](const char* out) {
        for (const auto& c : read_loss_csv(dir / out / "loss.csv"))
          if (c.run == precision) return c;
        FAIL("no curve for the precision");
        return LossCurve{};
      };
      const auto whole = curve("whole"), resumed = curve("split");
      CHECK(whole.train.size() == 6);
      CHECK(whole.train == resumed.train);
      CHECK(whole.validation == resumed.validation);
      if (whole.train != resumed.train) MESSAGE(log);
    }
    std::filesystem::remove_all(dir);
  }
}
