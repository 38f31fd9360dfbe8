// GPT-2 124M training throughput: tokens/s and device memory of a full step (forward, backward, clipping, one AdamW
// launch over all parameters), INT8 data flow next to our BF16 mode, at batch 8 x 1024 tokens; median of 10 steps
// after 3 of warm-up.
// bench/gpt2.py runs PyTorch's BF16 GPT-2 (autocast, torch.compile, fused AdamW) on the same shapes; run both in one
// device call.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "bench/timing.hpp"
#include "runtime/gpt2_model.hpp"
#include "runtime/optim.hpp"

using namespace jetforge;

int main() {
  return bench::guarded_main("jetforge_bench_gpt2", [] {
    Context ctx(0);
    const Gpt2Shape shape{12, 768, 12, 1024, 50257, 4};
    const int batch = 8;
    std::printf("%-10s %-12s | %12s %12s | %12s %12s\n", "precision", "tokens/step", "ms/step", "tokens/s", "arena MiB", "state MiB");
    for (const char* precision : {"int8", "bf16"}) {
      const auto model = make_gpt2(ctx, shape, batch, precision);
      OptimizerState opt(gpt2_initial_parameters(model->layout(), shape.layers, 1));
      std::vector<int> inputs(static_cast<std::size_t>(batch) * shape.sequence), targets(inputs.size());
      for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = int(i * 7919 % 50257), targets[i] = int((i + 1) * 7919 % 50257);
      Stream stream;
      std::vector<double> ms;
      for (int step = 0; step < 13; ++step) {
        const auto start = std::chrono::steady_clock::now();
        model->step(opt.params.get(), opt.grads.get(), inputs, targets, std::uint64_t(step), stream.get());
        opt.clip(ctx, 1.0f, stream.get());
        opt.adamw_step(ctx, 0, opt.n, step + 1, 3e-4f, AdamWConfig{}, stream.get());
        stream.synchronize();
        if (step >= 3) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      }
      std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
      const double t = ms[ms.size() / 2], tokens = double(inputs.size());
      std::printf("%-10s %-12.0f | %12.1f %12.0f | %12.1f %12.1f\n", precision, tokens, t, tokens / t * 1e3, double(model->arena_bytes()) / (1 << 20),
                  4.0 * double(opt.params.bytes()) / (1 << 20));
      std::fflush(stdout);
    }
    return 0;
  });
}
