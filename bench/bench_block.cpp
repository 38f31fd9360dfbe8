// One GPT-2 transformer block, forward + backward, INT8 data flow next to our BF16 mode: B = 8 sequences of T = 1024
// tokens, d in {768, 1024, 2048, 4096} (64-wide heads), timed as the difference of a 1-layer and a 0-layer model step
// with a 128-token vocabulary (embedding and LM head subtracted). Median of 10 steps; activation memory is the
// difference of the models' arenas. bench/block.py times PyTorch's BF16 block (autocast, torch.compile) on the same
// shapes; run both in one device call.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "bench/timing.hpp"
#include "runtime/gpt2_model.hpp"

using namespace jetforge;

namespace {

double median_step_ms(Context& ctx, const Gpt2Shape& shape, int batch, const char* precision, std::size_t* arena) {
  const auto model_ptr = make_gpt2(ctx, shape, batch, precision);
  Gpt2Model& model = *model_ptr;
  *arena = model.arena_bytes();
  const auto& layout = model.layout();
  const auto params = gpt2_initial_parameters(layout, shape.layers, 1);
  DeviceBuffer d_params(params.size() * 4), d_grads(params.size() * 4);
  d_params.upload(params.data(), params.size() * 4);
  std::vector<int> inputs(static_cast<std::size_t>(batch) * shape.sequence), targets(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = int(i % 97), targets[i] = int((i * 7) % 97);
  Stream stream;
  std::vector<double> ms;
  for (int i = 0; i < 13; ++i) {
    const auto start = std::chrono::steady_clock::now();
    model.step(d_params.get(), d_grads.get(), inputs, targets, std::uint64_t(i), stream.get());  // ends with a synchronize
    if (i >= 3) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main() {
  return bench::guarded_main("jetforge_bench_block", [] {
    Context ctx(0);
    const int batch = 8, tokens = 1024;
    std::printf("%-6s %-6s %-6s | %10s %10s %8s | %10s %10s\n", "batch", "T", "d", "INT8 ms", "BF16 ms", "speedup", "INT8 MiB", "BF16 MiB");
    for (int d : {768, 1024, 2048, 4096}) {
      double ms[2], mib[2];
      for (int i = 0; i < 2; ++i) {
        const char* precision = i == 0 ? "int8" : "bf16";
        std::size_t arena0 = 0, arena1 = 0;
        const double with_block = median_step_ms(ctx, Gpt2Shape{1, d, d / 64, tokens, 128, 4}, batch, precision, &arena1);
        const double without = median_step_ms(ctx, Gpt2Shape{0, d, d / 64, tokens, 128, 4}, batch, precision, &arena0);
        ms[i] = with_block - without, mib[i] = double(arena1 - arena0) / (1 << 20);
      }
      std::printf("%-6d %-6d %-6d | %10.2f %10.2f %7.2fx | %10.1f %10.1f\n", batch, tokens, d, ms[0], ms[1], ms[1] / ms[0], mib[0], mib[1]);
      std::fflush(stdout);
    }
    return 0;
  });
}
