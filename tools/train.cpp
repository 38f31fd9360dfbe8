// jetforge train: GPT-2 on a token file with the INT8 data flow or in BF16 (runtime/gpt2_model.hpp), AdamW on FP32
// master weights, cosine learning rate with warm-up, global-norm clipping, validation loss, checkpoints that resume
// bit for bit, and the loss curves of both precisions as one CSV and one PNG.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "runtime/checkpoint.hpp"
#include "runtime/corpus.hpp"
#include "runtime/device.hpp"
#include "runtime/gpt2_model.hpp"
#include "runtime/loss_curves.hpp"
#include "runtime/optim.hpp"
#include "tools/cli.hpp"
#include "tuner/model_config.hpp"
#include "tuner/tune.hpp"

namespace jetforge::cli {

const char* const kTrainHelp = R"(usage: jetforge train --model FILE --data FILE [options] [--cache FILE]

Trains GPT-2 (the shapes of --model, configs/*.yaml) on a token file (jetforge data prepare) with the INT8 data
flow (FP32 master weights quantized once per step, per-block INT8 activations, BF16 attention core) or, for
comparison, the same model in BF16 (cuBLASLt GEMMs); AdamW on the FP32 master weights either way.
Before the first step, if the kernel cache holds no tuning winners for this model on this GPU, it tunes the
kernels of a training step (as `jetforge tune`, up to 120 s) unless --no-tune.

  --precision P        int8 (default) or bf16; the loss curves of both go to the same CSV and PNG
  --steps N            optimizer steps to run in all, counting those of a resumed checkpoint (default 100)
  --batch N            sequences per step (default: the config's micro_batch)
  --sequence N         tokens per sequence, a multiple of 64 (default: the config's sequence)
  --lr X               peak learning rate (default 6e-4), cosine decay to a tenth of it
  --warmup N           linear warm-up steps (default 10)
  --val-every N        validation loss every N steps and at the end (default 50)
  --val-batches N      batches of the validation split per evaluation (default 4)
  --checkpoint-every N save a checkpoint every N steps and at the end (default 0: only at the end)
  --out DIR            where loss.csv, loss.png and checkpoint-PRECISION.bin go (default train-out)
  --resume FILE        continue from a checkpoint (bit-identical to an uninterrupted run)
  --seed N             initialization and stochastic rounding (default 1)
  --no-tune            never tune; use the cache's winners or the default kernels
  --cache-only         never compile: fail if a kernel is missing from the cache (nodes given a prebuilt cache;
                       implies --no-tune)
Prints one line per step: step, loss, learning rate, tokens/s, ms/step, device memory.
)";

namespace {

double mean_validation_loss(Gpt2Model& model, const std::vector<std::uint16_t>& stream, CUdeviceptr params, int batch, int sequence, int batches,
                            CUstream s) {
  double sum = 0;
  std::int64_t position = 0;
  for (int i = 0; i < batches; ++i) {
    const auto b = data::next_batch(stream, position, batch, sequence);
    sum += model.step(params, 0, b.inputs, b.targets, 0, s);
    position = b.next_position;
  }
  return sum / batches;
}

// The flag's value as a number, or a usage error that names the flag.
template <class T> T number(const Args& args, size_t& i) {
  const std::string& flag = args[i];
  const std::string& text = flag_value(args, i);
  std::istringstream in(text);
  T value{};
  if (!(in >> value) || !in.eof()) throw UsageError(flag + " needs a number, got '" + text + "'");
  return value;
}

}  // namespace

int cmd_train(const Args& all) {
  Args args = all;
  const auto cache_path = take_cache_option(args);
  std::string model_file, data_file, precision = "int8", out_dir = "train-out", resume;
  std::int64_t steps = 100, warmup = 10, val_every = 50, checkpoint_every = 0, batch = 0, sequence = 0;
  int val_batches = 4;
  double lr = 6e-4;
  std::uint64_t seed = 1;
  bool tune = true, cache_only = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--model") model_file = flag_value(args, i);
    else if (a == "--data") data_file = flag_value(args, i);
    else if (a == "--precision") precision = flag_value(args, i);
    else if (a == "--steps") steps = number<std::int64_t>(args, i);
    else if (a == "--batch") batch = number<std::int64_t>(args, i);
    else if (a == "--sequence") sequence = number<std::int64_t>(args, i);
    else if (a == "--lr") lr = number<double>(args, i);
    else if (a == "--warmup") warmup = number<std::int64_t>(args, i);
    else if (a == "--val-every") val_every = number<std::int64_t>(args, i);
    else if (a == "--val-batches") val_batches = number<int>(args, i);
    else if (a == "--checkpoint-every") checkpoint_every = number<std::int64_t>(args, i);
    else if (a == "--out") out_dir = flag_value(args, i);
    else if (a == "--resume") resume = flag_value(args, i);
    else if (a == "--seed") seed = number<std::uint64_t>(args, i);
    else if (a == "--no-tune") tune = false;
    else if (a == "--cache-only") cache_only = true, tune = false;
    else throw UsageError("unknown argument to train: " + a);
  }
  if (model_file.empty() || data_file.empty()) throw UsageError("train needs --model FILE and --data FILE");
  if (precision != "int8" && precision != "bf16") throw UsageError("--precision " + precision + ": int8 or bf16");
  if (steps <= 0 || warmup < 0 || val_every <= 0 || val_batches <= 0 || checkpoint_every < 0 || lr <= 0)
    throw UsageError("--steps, --val-every, --val-batches and --lr must be positive, --warmup and --checkpoint-every not negative");

  auto config = tuner::load_model_config(model_file);
  if (batch > 0) config.micro_batch = int(batch);
  if (sequence > 0) config.sequence = int(sequence);
  const Gpt2Shape shape{config.layers, config.hidden, config.heads, config.sequence, config.vocab, config.mlp_ratio};
  const auto split = data::read_token_file(data_file);
  if (split.vocab_size > shape.vocab)
    throw std::runtime_error(data_file + " has token ids up to " + std::to_string(split.vocab_size) + ", more than the model's vocabulary of " +
                             std::to_string(shape.vocab));

  std::string why;
  if (!driver_available(&why) || Device::count() == 0)
    throw std::runtime_error("training needs a CUDA GPU and there is none here (" + (why.empty() ? std::string("no CUDA device") : why) + ")");
  auto cache = std::make_shared<cache::KernelCache>(cache_path);
  Context ctx(0, cache, cache_only ? OnCacheMiss::fail : OnCacheMiss::compile);
  if (tune && !ctx.tuned(tuner::gemm_shapes(config).front().key())) {
    std::cout << "tuning the kernels of " << config.name << " on " << ctx.device().info().name << " (first run; --no-tune skips it)\n";
    tuner::TuneOptions options;
    options.jobs = int(std::max(1u, std::thread::hardware_concurrency()));
    options.progress = [](const std::string& line) { std::cout << "  tune: " << line << "\n" << std::flush; };
    tuner::tune(ctx, config, options);
  }

  Stream stream;
  const auto model_ptr = make_gpt2(ctx, shape, config.micro_batch, precision);
  Gpt2Model& model = *model_ptr;
  const auto& layout = model.layout();
  const std::size_t bytes = std::size_t(layout.floats) * 4;
  Checkpoint state{config.name, 0, seed, 0, {}, {}, {}};
  if (!resume.empty()) {
    state = load_checkpoint(resume);
    if (state.model != config.name || state.params.size() != std::size_t(layout.floats))
      throw std::runtime_error(resume + " is a checkpoint of " + state.model + " with " + std::to_string(state.params.size()) + " parameters, not of " +
                               config.name + " with " + std::to_string(layout.floats));
    seed = state.seed;
    std::cout << "resumed " << resume << " at step " << state.step << "\n";
  } else {
    state.params = gpt2_initial_parameters(layout, shape.layers, seed);
    state.m.assign(state.params.size(), 0.0f), state.v.assign(state.params.size(), 0.0f);
  }
  OptimizerState opt(state.params, state.m, state.v);

  std::filesystem::create_directories(out_dir);
  const auto csv = std::filesystem::path(out_dir) / "loss.csv", png = std::filesystem::path(out_dir) / "loss.png";
  const auto checkpoint = std::filesystem::path(out_dir) / ("checkpoint-" + precision + ".bin");
  std::vector<LossCurve> curves = std::filesystem::exists(csv) ? read_loss_csv(csv) : std::vector<LossCurve>{};
  auto curve = std::find_if(curves.begin(), curves.end(), [&](const LossCurve& c) { return c.run == precision; });
  if (curve == curves.end()) curve = curves.insert(curves.end(), LossCurve{precision, {}, {}});
  std::erase_if(curve->train, [&](const auto& p) { return p.first > state.step; });  // a resumed run redraws what follows its step
  std::erase_if(curve->validation, [&](const auto& p) { return p.first > state.step; });
  const std::int64_t tokens_per_step = std::int64_t(config.micro_batch) * config.sequence;
  std::cout << config.name << ": " << layout.count << " parameters, " << tokens_per_step << " tokens per step, activation arena "
            << model.arena_bytes() / (1 << 20) << " MiB, weights + gradients + AdamW " << 4 * bytes / (1 << 20) << " MiB\n";

  auto save = [&] {
    for (auto [buffer, host] : {std::pair{&opt.params, &state.params}, {&opt.m, &state.m}, {&opt.v, &state.v}}) buffer->download(host->data(), bytes);
    save_checkpoint(checkpoint, state);
  };
  const AdamWConfig adamw;
  for (; state.step < steps;) {
    const auto start = std::chrono::steady_clock::now();
    const auto b = data::next_batch(split.train, state.data_position, config.micro_batch, config.sequence);
    const double loss = model.step(opt.params.get(), opt.grads.get(), b.inputs, b.targets, state.seed ^ (std::uint64_t(state.step) << 20), stream.get());
    opt.clip(ctx, 1.0f, stream.get());
    const float rate = float(cosine_lr(state.step, warmup, steps, lr, lr / 10));
    for (const auto& t : layout.tensors) {
      AdamWConfig c = adamw;
      if (!t.decayed) c.weight_decay = 0.0f;
      opt.adamw_step(ctx, t.offset, t.size(), state.step + 1, rate, c, stream.get());
    }
    stream.synchronize();
    state.data_position = b.next_position;
    ++state.step;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    curve->train.emplace_back(state.step, loss);
    std::cout << "step " << state.step << "/" << steps << " | loss " << loss << " | lr " << rate << " | " << std::int64_t(double(tokens_per_step) / ms * 1e3)
              << " tokens/s | " << ms << " ms/step | " << (model.arena_bytes() + 4 * bytes) / (1 << 20) << " MiB\n"
              << std::flush;
    if (state.step % val_every == 0 || state.step == steps) {
      const double val = mean_validation_loss(model, split.validation, opt.params.get(), config.micro_batch, config.sequence, val_batches, stream.get());
      curve->validation.emplace_back(state.step, val);
      std::cout << "validation loss " << val << " at step " << state.step << "\n";
      write_loss_csv(csv, curves);
      write_loss_png(png, curves);
    }
    if ((checkpoint_every > 0 && state.step % checkpoint_every == 0) || state.step == steps) save();
  }
  std::cout << "loss curves: " << csv.string() << ", " << png.string() << "; checkpoint: " << checkpoint.string() << "\n";
  return 0;
}

}  // namespace jetforge::cli
