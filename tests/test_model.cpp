// GPT-2's parameter layout against the published parameter counts, the FP64 reference of a whole training step
// against finite differences of its loss, and training checkpoints: a bit-identical
// round trip, and clear errors (never a crash, never a silently wrong load) for damaged or foreign files.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "runtime/checkpoint.hpp"
#include "runtime/gpt2.hpp"
#include "runtime/reference_gpt2.hpp"
#include "testing.hpp"

using namespace jetforge;

TEST_SUITE("reference") {
  TEST_CASE("GPT-2 parameter layout: published counts, aligned tensors, the vocabulary padded for the LM head") {
    const Gpt2Shape small{12, 768, 12, 1024, 50257, 4}, medium{24, 1024, 16, 1024, 50257, 4};
    const auto l = gpt2_parameters(small);
    CHECK(l.count == 124439808);  // GPT-2 124M with tied embeddings
    CHECK(gpt2_parameters(medium).count == 354823168);  // GPT-2 350M
    CHECK(small.padded_vocab() == 50304);
    CHECK(l.at("wte").rows == 50304);
    CHECK(l.at("h11.fc_proj.weight").rows == 768);
    CHECK(l.at("h11.fc_proj.weight").cols == 3072);
    std::int64_t end = 0;
    for (const auto& t : l.tensors) {
      CHECK(t.offset % 4 == 0);
      CHECK(t.offset >= end);  // no overlap
      end = t.offset + t.size();
    }
    CHECK(end <= l.floats);
    CHECK_THROWS_WITH_AS(l.at("h12.fc.weight"), doctest::Contains("no parameter tensor named 'h12.fc.weight'"), std::out_of_range);
    CHECK_THROWS_AS(gpt2_parameters(Gpt2Shape{2, 100, 3, 64, 10, 4}), std::invalid_argument);  // hidden not a multiple of heads
  }

  TEST_CASE("checkpoints round-trip bit for bit; truncated, damaged or foreign files are refused with the reason") {
    const auto dir = std::filesystem::temp_directory_path() / ("jetforge_ckpt_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto file = dir / "run.ckpt";
    Checkpoint c{"gpt2-124m", 1234, 42, 987654321, testing::random_vector(1001, 1), testing::random_vector(1001, 2), testing::random_vector(1001, 3)};
    save_checkpoint(file, c);
    const Checkpoint back = load_checkpoint(file);
    CHECK(back.model == c.model);
    CHECK(back.step == c.step);
    CHECK(back.seed == c.seed);
    CHECK(back.data_position == c.data_position);
    CHECK(back.params == c.params);
    CHECK(back.m == c.m);
    CHECK(back.v == c.v);
    CHECK_FALSE(std::filesystem::exists(dir / "run.ckpt.tmp"));

    const auto size = std::filesystem::file_size(file);
    auto rewrite = [&](const std::function<void(std::string&)>& edit) {
      std::ifstream in(file, std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      edit(bytes);
      const auto damaged = dir / "damaged.ckpt";
      std::ofstream(damaged, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
      return damaged;
    };
    CHECK_THROWS_WITH_AS(load_checkpoint(rewrite([&](std::string& b) { b.resize(size - 100); })), doctest::Contains("truncated"), CheckpointError);
    CHECK_THROWS_WITH_AS(load_checkpoint(rewrite([&](std::string& b) { b[size / 2] ^= 0x10; })), doctest::Contains("CRC-32"), CheckpointError);
    CHECK_THROWS_WITH_AS(load_checkpoint(rewrite([&](std::string& b) { b = "garbage"; })), doctest::Contains("not a jetforge checkpoint"), CheckpointError);
    CHECK_THROWS_WITH_AS(load_checkpoint(rewrite([&](std::string& b) { b[7] = 9; })), doctest::Contains("format version 9"), CheckpointError);
    CHECK_THROWS_WITH_AS(load_checkpoint(dir / "missing.ckpt"), doctest::Contains("cannot open"), CheckpointError);
    c.m.pop_back();
    CHECK_THROWS_WITH_AS(save_checkpoint(file, c), doctest::Contains("as many values as the parameters"), CheckpointError);
    CHECK(load_checkpoint(file).params == back.params);  // the refused save left the previous checkpoint alone
    std::filesystem::remove_all(dir);
  }
}

TEST_SUITE("reference") {
  TEST_CASE("GPT-2 FP64 reference: the gradient of every parameter tensor matches finite differences of the loss") {
    const Gpt2Shape s{2, 8, 2, 4, 11, 4};
    const int batch = 2;
    const auto layout = gpt2_parameters(s);
    const auto init = testing::random_vector(std::size_t(layout.floats), 5, 0.3f);
    std::vector<double> params(init.begin(), init.end());
    for (const char* gain : {"h0.ln1.weight", "h0.ln2.weight", "h1.ln1.weight", "h1.ln2.weight", "ln_f.weight"})
      for (std::int64_t i = 0; i < layout.at(gain).size(); ++i) params[std::size_t(layout.at(gain).offset + i)] += 1.0;  // gains near 1
    std::vector<int> inputs(static_cast<std::size_t>(batch * s.sequence)), targets(inputs.size());
    for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = int(i * 5 % 11), targets[i] = int((i * 3 + 1) % 11);
    const auto step = ref::gpt2_step(s, params, inputs, targets, batch);
    CHECK(std::isfinite(step.loss));
    CHECK(step.loss == doctest::Approx(ref::gpt2_loss(s, params, inputs, targets, batch)));
    for (const auto& t : layout.tensors) {
      CAPTURE(t.name);
      double worst = 0, largest = 0;
      const std::int64_t stride = std::max<std::int64_t>(1, t.size() / 7);  // a spread of entries of each tensor
      for (std::int64_t i = 0; i < t.size(); i += stride) {
        const std::size_t at = std::size_t(t.offset + i);
        if (t.name == "wte" && i / t.cols >= s.vocab) continue;  // padding rows: no gradient
        const double h = 1e-5, x = params[at];
        params[at] = x + h;
        const double plus = ref::gpt2_loss(s, params, inputs, targets, batch);
        params[at] = x - h;
        const double minus = ref::gpt2_loss(s, params, inputs, targets, batch);
        params[at] = x;
        worst = std::max(worst, std::fabs((plus - minus) / (2 * h) - step.grads[at]));
        largest = std::max(largest, std::fabs(step.grads[at]));
      }
      CHECK(worst <= 1e-7 + 1e-6 * largest);
      CHECK(largest > 0);  // the sampled entries of every tensor do receive gradient
    }
  }
}
