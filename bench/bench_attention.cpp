// Attention core: forward and backward (delta + dK/dV + dQ) TFLOP/s of our BF16 kernels on the rows, by the
// default path (the Hopper kernels where the GPU has them) and by the portable one
// (B = 8, heads 12 and 16, T 1024 / 2048 / 4096, head_dim 64 and 128, causal), median of 20 event-timed runs.
// bench/sdpa.py prints PyTorch's scaled_dot_product_attention on the same rows for the side-by-side ratio; run both
// in one device call. FLOPs: forward 4 B H T^2 d (half of it when causal), backward 2.5x the forward.
//
// --variants instead times every kernel of the tuner's space on the GPU (tuner::attention_candidates) on the same rows:
// each forward kernel, and the backward with both its kernels (dK/dV and dQ) set to each stage count or tile.
// --dump DIR instead writes, for eight smaller causal problems (head_dim 64 and 128, four draws), the random inputs and our
// outputs and gradients (raw BF16, [batch, heads, T, d]) with an index DIR/cases.txt; `bench/sdpa.py --errors DIR`
// compares them and PyTorch's SDPA on the same inputs with an FP64 reference (--portable: the portable kernels' outputs).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bench/timing.hpp"
#include "generator/families.hpp"
#include "runtime/attention.hpp"
#include "runtime/tensor.hpp"
#include "tuner/tune.hpp"

using namespace jetforge;

namespace {

// One causal problem in the [batch, heads, T, d] layout: random Q, K, V, dO and room for the outputs.
struct Problem {
  AttentionLayout layout;
  std::int64_t rows;
  DenseTensor q, k, v, d_o, o, dq, dk, dv;
  DeviceBuffer lse, delta;
  Problem(int batch, int heads, int tokens, int head_dim, std::uint64_t seed = 1)
      : layout(AttentionLayout::separate(batch, heads, tokens, head_dim)),
        rows(std::int64_t(batch) * heads * tokens),
        q(rows, head_dim, DType::bf16), k(rows, head_dim, DType::bf16), v(rows, head_dim, DType::bf16), d_o(rows, head_dim, DType::bf16),
        o(rows, head_dim, DType::bf16), dq(rows, head_dim, DType::bf16), dk(rows, head_dim, DType::bf16), dv(rows, head_dim, DType::bf16),
        lse(std::size_t(rows) * 4), delta(std::size_t(rows) * 4) {
    fill_random(q, seed), fill_random(k, seed + 1), fill_random(v, seed + 2), fill_random(d_o, seed + 3);
  }
  void forward(Context& ctx, CUstream stream, AttentionPath path) {
    attention_forward(ctx, layout, true, q.ref().data, k.ref().data, v.ref().data, o.ref().data, lse.get(), stream, path);
  }
  void backward(Context& ctx, CUstream stream, AttentionPath path) {
    attention_backward(ctx, layout, true, q.ref().data, k.ref().data, v.ref().data, o.ref().data, lse.get(), d_o.ref().data, delta.get(),
                       dq.ref().data, dk.ref().data, dv.ref().data, stream, path);
  }
};

void write_raw(const std::string& path, DenseTensor& t) {
  std::vector<char> host(std::size_t(t.ref().rows * t.ref().cols * 2));
  t.buffer().download(host.data(), host.size());
  std::ofstream out(path, std::ios::binary);
  out.write(host.data(), std::streamsize(host.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

int dump(const std::string& dir, AttentionPath path) {
  Context ctx(0);
  Stream stream;
  std::ofstream index(dir + "/cases.txt");
  if (!index) throw std::runtime_error("cannot write " + dir + "/cases.txt (does the directory exist?)");
  // Four draws of inputs per head dimension: a max error is one sample, and it moves from draw to draw.
  for (const std::uint64_t seed : {1, 11, 21, 31})
    for (int head_dim : {64, 128}) {
      const int batch = 1, heads = 4, tokens = 1024;
      Problem pr(batch, heads, tokens, head_dim, seed);
      pr.forward(ctx, stream.get(), path);
      pr.backward(ctx, stream.get(), path);
      stream.synchronize();
      const std::string name = "d" + std::to_string(head_dim) + "s" + std::to_string(seed);
      const std::pair<const char*, DenseTensor*> tensors[] = {{"q", &pr.q},   {"k", &pr.k},   {"v", &pr.v},   {"do", &pr.d_o},
                                                              {"o", &pr.o},   {"dq", &pr.dq}, {"dk", &pr.dk}, {"dv", &pr.dv}};
      for (const auto& [tensor, t] : tensors) write_raw(dir + "/" + name + "_" + tensor + ".bf16", *t);
      index << name << ' ' << batch << ' ' << heads << ' ' << tokens << ' ' << head_dim << " 1\n";
      std::printf("wrote %s/%s_*.bf16 (batch %d, heads %d, T %d, head_dim %d, causal, seed %d)\n", dir.c_str(), name.c_str(), batch, heads, tokens,
                  head_dim, int(seed));
    }
  return 0;
}

int benchmark() {
  Context ctx(0);
  Stream stream;
  std::printf("%-6s %-6s %-6s %-9s %-7s | %10s %10s %10s | %10s %10s %10s\n", "batch", "heads", "T", "head_dim", "causal", "fwd us", "fwd TF/s",
              "portable", "bwd us", "bwd TF/s", "portable");
  const int batch = 8;
  for (int head_dim : {64, 128})
    for (int heads : {12, 16})
      for (int tokens : {1024, 2048, 4096}) {
        Problem pr(batch, heads, tokens, head_dim);
        const auto time_ms = [&](auto pass, AttentionPath path) { return bench::median_ms(stream.get(), [&](int) { pass(path); }, 3, 20); };
        const auto forward = [&](AttentionPath path) { pr.forward(ctx, stream.get(), path); };
        const auto backward = [&](AttentionPath path) { pr.backward(ctx, stream.get(), path); };
        const double fwd_portable_ms = time_ms(forward, AttentionPath::portable), fwd_ms = time_ms(forward, AttentionPath::automatic);
        const double bwd_portable_ms = time_ms(backward, AttentionPath::portable), bwd_ms = time_ms(backward, AttentionPath::automatic);
        const double fwd_flops = 4.0 * double(pr.rows) * tokens * head_dim * 0.5, bwd_flops = 2.5 * fwd_flops;  // causal: half
        const auto tflops = [](double flops, double ms) { return flops / (ms * 1e-3) / 1e12; };
        std::printf("%-6d %-6d %-6d %-9d %-7s | %10.1f %10.1f %10.1f | %10.1f %10.1f %10.1f\n", batch, heads, tokens, head_dim, "yes", fwd_ms * 1e3,
                    tflops(fwd_flops, fwd_ms), tflops(fwd_flops, fwd_portable_ms), bwd_ms * 1e3, tflops(bwd_flops, bwd_ms), tflops(bwd_flops, bwd_portable_ms));
        std::fflush(stdout);
      }
  return 0;
}

int variants() {
  Context ctx(0);
  Stream stream;
  // The same columns for both head dimensions: the tuner's candidates (its default first) in one order; the two
  // backward kernels' lists vary the same parameter, so their i-th keys go together.
  const auto candidates = [&](gen::AttentionKernel kernel, int head_dim) {
    auto keys = tuner::attention_candidates(kernel, head_dim, true, ctx.limits());
    std::sort(keys.begin(), keys.end());
    return keys;
  };
  const auto column = [](const std::string& key, bool forward) {
    char cell[32];
    const auto choice = attention_choice(key);
    if (const auto* s = std::get_if<gen::AttentionSm90Spec>(&choice))
      forward ? std::snprintf(cell, sizeof cell, " %3d/%d/%-8s", s->keys, s->stages, std::string(gen::enum_name(s->schedule)).c_str())
              : std::snprintf(cell, sizeof cell, " %7s %-6d", "stages", s->stages);
    else std::snprintf(cell, sizeof cell, " %9s %-4d", "tile", std::get<gen::AttentionSpec>(choice).tile);
    return std::string(cell);
  };
  std::printf("TF/s, B = 8, causal: forward by keys/stages/schedule (Hopper) or tile (portable); backward by stages or tile\n%-6s %-6s %-9s |", "heads", "T",
              "head_dim");
  for (const auto& key : candidates(gen::AttentionKernel::forward, 64)) std::printf("%s", column(key, true).c_str());
  std::printf(" |");
  for (const auto& key : candidates(gen::AttentionKernel::backward_kv, 64)) std::printf("%s", column(key, false).c_str());
  std::printf("\n");
  const auto path_of = [](const AttentionChoice& c) { return std::holds_alternative<gen::AttentionSpec>(c) ? AttentionPath::portable : AttentionPath::automatic; };
  for (int head_dim : {64, 128})
    for (int heads : {12, 16})
      for (int tokens : {1024, 2048, 4096}) {
        Problem pr(8, heads, tokens, head_dim);
        const double flops = 4.0 * double(pr.rows) * tokens * head_dim * 0.5;
        std::printf("%-6d %-6d %-9d |", heads, tokens, head_dim);
        for (const auto& key : candidates(gen::AttentionKernel::forward, head_dim)) {
          const auto choice = attention_choice(key);
          ctx.pin(attention_problem_signature(gen::AttentionKernel::forward, pr.layout, true), choice);
          const double ms = bench::median_ms(stream.get(), [&](int) { pr.forward(ctx, stream.get(), path_of(choice)); }, 3, 20);
          std::printf(" %14.1f", flops / (ms * 1e-3) / 1e12);
        }
        std::printf(" |");
        const auto kv = candidates(gen::AttentionKernel::backward_kv, head_dim), dq = candidates(gen::AttentionKernel::backward_q, head_dim);
        for (std::size_t i = 0; i < kv.size() && i < dq.size(); ++i) {
          const auto choice = attention_choice(kv[i]);
          ctx.pin(attention_problem_signature(gen::AttentionKernel::backward_kv, pr.layout, true), choice);
          ctx.pin(attention_problem_signature(gen::AttentionKernel::backward_q, pr.layout, true), attention_choice(dq[i]));
          const double ms = bench::median_ms(stream.get(), [&](int) { pr.backward(ctx, stream.get(), path_of(choice)); }, 3, 20);
          std::printf(" %14.1f", 2.5 * flops / (ms * 1e-3) / 1e12);
        }
        std::printf("\n");
        std::fflush(stdout);
      }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return bench::guarded_main("jetforge_bench_attention", [&] {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[0] == "--dump") return dump(args[1], AttentionPath::automatic);
    if (args.size() == 3 && args[0] == "--dump" && args[2] == "--portable") return dump(args[1], AttentionPath::portable);
    if (args.size() == 1 && args[0] == "--variants") return variants();
    if (!args.empty()) {
      std::fprintf(stderr, "usage: jetforge_bench_attention [--variants | --dump DIR [--portable]]\n");
      return 2;
    }
    return benchmark();
  });
}
