// Attention core: forward and backward (delta + dK/dV + dQ) TFLOP/s of our BF16 kernels on the rows, by the
// default path (the Hopper kernels where the GPU has them) and by the portable one
// (B = 8, heads 12 and 16, T 1024 / 2048 / 4096, head_dim 64 and 128, causal), median of 20 event-timed runs.
// bench/sdpa.py prints PyTorch's scaled_dot_product_attention on the same rows for the side-by-side ratio; run both
// in one device call. FLOPs: forward 4 B H T^2 d (half of it when causal), backward 2.5x the forward.
#include <cstdio>

#include "bench/timing.hpp"
#include "runtime/attention.hpp"
#include "runtime/tensor.hpp"

using namespace jetforge;

int main() {
  return bench::guarded_main("jetforge_bench_attention", [] {
    Context ctx(0);
    Stream stream;
    std::printf("%-6s %-6s %-6s %-9s %-7s | %10s %10s %10s | %10s %10s %10s\n", "batch", "heads", "T", "head_dim", "causal", "fwd us", "fwd TF/s",
                "portable", "bwd us", "bwd TF/s", "portable");
    const int batch = 8;
    for (int head_dim : {64, 128})
      for (int heads : {12, 16})
        for (int tokens : {1024, 2048, 4096}) {
          const bool causal = true;
          const auto layout = AttentionLayout::separate(batch, heads, tokens, head_dim);
          const std::int64_t rows = std::int64_t(batch) * heads * tokens;
          DenseTensor q(rows, head_dim, DType::bf16), k(rows, head_dim, DType::bf16), v(rows, head_dim, DType::bf16), d_o(rows, head_dim, DType::bf16);
          DenseTensor o(rows, head_dim, DType::bf16), dq(rows, head_dim, DType::bf16), dk(rows, head_dim, DType::bf16), dv(rows, head_dim, DType::bf16);
          fill_random(q, 1), fill_random(k, 2), fill_random(v, 3), fill_random(d_o, 4);
          DeviceBuffer lse(std::size_t(rows) * 4), delta(std::size_t(rows) * 4);
          const auto ptr = [](const DenseTensor& t) { return t.ref().data; };
          const auto forward_ms = [&](AttentionPath path) {
            return bench::median_ms(stream.get(), [&](int) {
              attention_forward(ctx, layout, causal, ptr(q), ptr(k), ptr(v), ptr(o), lse.get(), stream.get(), path);
            }, 3, 20);
          };
          const auto backward_ms = [&](AttentionPath path) {
            return bench::median_ms(stream.get(), [&](int) {
              attention_backward(ctx, layout, causal, ptr(q), ptr(k), ptr(v), ptr(o), lse.get(), ptr(d_o), delta.get(), ptr(dq), ptr(dk), ptr(dv),
                                 stream.get(), path);
            }, 3, 20);
          };
          const double fwd_portable_ms = forward_ms(AttentionPath::portable), fwd_ms = forward_ms(AttentionPath::automatic);
          const double bwd_portable_ms = backward_ms(AttentionPath::portable), bwd_ms = backward_ms(AttentionPath::automatic);
          const double fwd_flops = 4.0 * double(rows) * tokens * head_dim * (causal ? 0.5 : 1.0), bwd_flops = 2.5 * fwd_flops;
          const auto tflops = [](double flops, double ms) { return flops / (ms * 1e-3) / 1e12; };
          std::printf("%-6d %-6d %-6d %-9d %-7s | %10.1f %10.1f %10.1f | %10.1f %10.1f %10.1f\n", batch, heads, tokens, head_dim, causal ? "yes" : "no",
                      fwd_ms * 1e3, tflops(fwd_flops, fwd_ms), tflops(fwd_flops, fwd_portable_ms), bwd_ms * 1e3, tflops(bwd_flops, bwd_ms),
                      tflops(bwd_flops, bwd_portable_ms));
          std::fflush(stdout);
        }
    return 0;
  });
}
