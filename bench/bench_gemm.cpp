// Per-block INT8 GEMM against cuBLAS in one process and one run: for each shape, the forward GEMM (INT8 out) at
// K-group 32 and 128, the full layer step at K-group 32 (fwd + dX + dW with the transposes they need), cuBLASLt
// BF16 (FP32 accumulate) for the same GEMMs, and cuBLASLt INT8 with one per-tensor scale. L2 is flushed before
// every timed run; times are medians. "p32" is the portable (mma.sync) path at K-group 32 on the same GPU.
// --sweep adds kernel variants on 8192^3 (--sweep-only: without the main table, e.g. under a profiler).
// --persistent times the Hopper kernel with and without its persistent tile loop on every shape (INT8 out, K-groups 32
// and 128) instead of the main table; --epilogue likewise its tiles stored by the consumers and staged to the epilogue
// warps. --tile-cost times 8192 x 2304 at K = 768 .. 6144 with INT8 and FP32 output,
// whose slope and intercept split a call's time into its K loop and the rest, after the clean L2 flush every timing
// here uses and after a dirty one (bench::L2Flush). --profile runs each kernel of 8192^3 (ours at K-groups 32 and 128,
// at 128 also with multicast pairs, cuBLASLt INT8 and BF16) twice, untimed, for a profiler to look at (ncu
// --launch-skip ... or a kernel-name filter).
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/timing.hpp"
#include "runtime/cublaslt.hpp"
#include "runtime/gemm.hpp"
#include "runtime/ops.hpp"

using namespace jetforge;

namespace {

BlockTensor random_block_tensor(std::int64_t rows, std::int64_t cols, int group, std::uint64_t seed) {
  BlockTensor t(rows, cols, 32, group);
  fill_random(t, seed);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  return bench::guarded_main("jetforge_bench_gemm", [&] {
    const std::string mode = argc > 1 ? argv[1] : "";
    const bool sweep = mode == "--sweep" || mode == "--sweep-only";
    if (!mode.empty() && !sweep && mode != "--persistent" && mode != "--epilogue" && mode != "--tile-cost" && mode != "--profile")
      throw std::runtime_error("usage: jetforge_bench_gemm [--sweep | --sweep-only | --persistent | --epilogue | --tile-cost | --profile]");
    Context ctx(0);
    const auto& dev = ctx.device().info();
    std::printf("device: %s, %d SMs\n", dev.name.c_str(), dev.sm_count);
    Stream stream;
    const bench::L2Flush flush_l2(ctx, stream.get());
    auto time = [&](const std::function<void(int)>& run) { return bench::median_ms(stream.get(), run, 3, 20, std::cref(flush_l2)); };
  
    struct Shape {
      std::int64_t m, n, k;
    };
    const Shape shapes[] = {{8192, 2304, 768},  {8192, 768, 768},   {8192, 3072, 768},  {8192, 768, 3072}, {8192, 4096, 1024}, {8192, 1024, 4096},
                            {8192, 8192, 2048}, {8192, 2048, 8192}, {4096, 4096, 4096}, {8192, 8192, 8192}};
    if (mode == "--tile-cost") {
      const std::int64_t M = 8192, N = 2304;
      const bench::L2Flush dirty(ctx, stream.get(), bench::L2Flush::Kind::dirty);
      std::printf("\nforward %lld x %lld, us per call (%lld tiles of 128 x 128); L2 flushed clean | dirty\n%-6s %9s %9s %9s %9s | %9s %9s %9s\n",
                  (long long)M, (long long)N, (long long)(M / 128 * N / 128), "K", "g32 i8", "g32 f32", "g128 i8", "g128 f32", "g32 i8", "g128 i8",
                  "bf16");
      for (std::int64_t K : {768, 1536, 3072, 6144}) {
        std::printf("%-6lld", (long long)K);
        std::vector<double> dirty_us;
        // Whether the part of a call that does not grow with K is paid per call or once after a flush: two calls in
        // one timed region, and calls back to back with no flush at all (L2 warm); at K-group 128 and for cuBLAS.
        double two_calls = 0, no_flush = 0;
        for (int group : {32, 128}) {
          BlockTensor x = random_block_tensor(M, K, group, 10), w = random_block_tensor(N, K, group, 12), y(M, N);
          DenseTensor yf(M, N, DType::f32);
          const auto int8_out = [&](int) { gemm(ctx, x.ref(), w.ref(), y.ref(), {}, stream.get()); };
          std::printf(" %9.1f", 1e3 * time(int8_out));
          std::printf(" %9.1f", 1e3 * time([&](int) { gemm(ctx, x.ref(), w.ref(), yf.ref(), {}, stream.get()); }));
          dirty_us.push_back(1e3 * bench::median_ms(stream.get(), int8_out, 3, 20, std::cref(dirty)));
          if (group == 128) {
            two_calls = 1e3 * time([&](int i) { int8_out(i), int8_out(i); });
            no_flush = 1e3 * bench::median_ms(stream.get(), int8_out, 3, 20);
          }
        }
        // cuBLAS BF16 on the same shape (its own plan per K), after the dirty flush
        LtMatmul bf16(M, N, K, false, true, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F);
        DenseTensor xb(M, K, DType::bf16), wb(N, K, DType::bf16);
        fill_random(xb, 1), fill_random(wb, 2);
        DeviceBuffer yb(std::size_t(M * N * 2));
        const float one = 1.0f, zero = 0.0f;
        const auto cublas = [&](int) { bf16.run(xb.ref().data, wb.ref().data, yb.get(), &one, &zero, stream.get()); };
        std::printf(" | %9.1f %9.1f %9.1f   (clean bf16 %.1f)\n", dirty_us[0], dirty_us[1], 1e3 * bench::median_ms(stream.get(), cublas, 3, 20, std::cref(dirty)),
                    1e3 * time(cublas));
        std::printf("       g128 i8: two calls %.1f, no flush %.1f; bf16: two calls %.1f, no flush %.1f\n", two_calls, no_flush,
                    1e3 * time([&](int i) { cublas(i), cublas(i); }), 1e3 * bench::median_ms(stream.get(), cublas, 3, 20));
      }
      return 0;
    }
    if (mode == "--profile") {
      const std::int64_t M = 8192, N = 8192, K = 8192;
      BlockTensor x32 = random_block_tensor(M, K, 32, 30), w32 = random_block_tensor(N, K, 32, 31);
      BlockTensor x128 = random_block_tensor(M, K, 128, 32), w128 = random_block_tensor(N, K, 128, 33), y(M, N);
      DenseTensor xb(M, K, DType::bf16), wb(N, K, DType::bf16);
      fill_random(xb, 1), fill_random(wb, 2);
      DeviceBuffer yb(std::size_t(M * N * 2));
      LtMatmul bf16(M, N, K, false, true, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F);
      LtMatmul i8(M, N, K, false, true, CUDA_R_8I, CUDA_R_8I, CUBLAS_COMPUTE_32I, CUDA_R_32F);
      const float one = 1.0f, zero = 0.0f, alpha_i8 = 1.0f / 4096;
      GemmOptions pairs;
      pairs.kernel.cluster = 2;
      for (int i = 0; i < 2; ++i) {
        gemm(ctx, x32.ref(), w32.ref(), y.ref(), {}, stream.get());
        gemm(ctx, x128.ref(), w128.ref(), y.ref(), {}, stream.get());
        gemm(ctx, x128.ref(), w128.ref(), y.ref(), pairs, stream.get());
        i8.run(x32.codes().get(), w32.codes().get(), y.codes().get(), &alpha_i8, &zero, stream.get());
        bf16.run(xb.ref().data, wb.ref().data, yb.get(), &one, &zero, stream.get());
      }
      stream.synchronize();
      std::printf("profile: 2 x (ours K-group 32, ours K-group 128 without and with multicast pairs, cuBLASLt INT8, cuBLASLt BF16) on %lldx%lldx%lld\n",
                  (long long)M, (long long)N, (long long)K);
      return 0;
    }
    if (mode == "--persistent" || mode == "--epilogue") {
      // Two kernel choices side by side: the default's value of one dimension (a) and the other one (b).
      const bool persistent = mode == "--persistent";
      const auto with = [&](bool b) {
        GemmKernelChoice c;
        if (persistent) c.persistent = b ? 0 : 1;
        else c.epilogue = b ? gen::GemmEpilogue::staged : gen::GemmEpilogue::consumers;
        return c;
      };
      std::printf("\nforward, INT8 out, TOP/s, same run: %s\n%-17s %8s %8s %6s | %8s %8s %6s\n",
                  persistent ? "persistent tile loop (a) vs a CTA per tile (b)" : "tiles stored by the consumers (a) vs staged to the epilogue warps (b)",
                  "M x N x K", "g32 a", "g32 b", "b/a", "g128 a", "g128 b", "b/a");
      for (const Shape s : shapes) {
        BlockTensor x32 = random_block_tensor(s.m, s.k, 32, 10), w32 = random_block_tensor(s.n, s.k, 32, 12);
        BlockTensor x128 = random_block_tensor(s.m, s.k, 128, 14), w128 = random_block_tensor(s.n, s.k, 128, 16), y(s.m, s.n);
        const double ops = 2.0 * double(s.m) * double(s.n) * double(s.k);
        auto tops = [&](const BlockTensor& x, const BlockTensor& w, bool b) {
          GemmOptions o;
          o.kernel = with(b);
          return ops / (time([&](int) { gemm(ctx, x.ref(), w.ref(), y.ref(), o, stream.get()); }) * 1e-3) / 1e12;
        };
        const double a32 = tops(x32, w32, false), b32 = tops(x32, w32, true), a128 = tops(x128, w128, false), b128 = tops(x128, w128, true);
        std::printf("%lldx%lldx%-7lld %8.0f %8.0f %6.2f | %8.0f %8.0f %6.2f\n", (long long)s.m, (long long)s.n, (long long)s.k, a32, b32, b32 / a32, a128,
                    b128, b128 / a128);
        std::fflush(stdout);
      }
      return 0;
    }
    if (mode != "--sweep-only") {
      std::printf("\nforward Y = X W^T (M x N, depth K); times in us; TOP/s = 2MNK/t; ratios are cuBLAS BF16 time / ours\n");
      std::printf("%-17s %8s %8s %8s %8s | %7s %7s %7s %7s %7s | %6s %6s %6s | %9s %9s %6s\n", "M x N x K", "bf16", "i8 lt", "ours32", "ours128",
                  "TF bf16", "TO i8lt", "TO o32", "TO o128", "TO p32", "x32", "x128", "128/lt", "step bf16", "step o32", "xstep");
    }
    const float one = 1.0f, zero = 0.0f;
    for (const Shape s : shapes) {
      if (mode == "--sweep-only") break;
      const std::int64_t M = s.m, N = s.n, K = s.k;
      // BF16 operands and outputs for cuBLAS.
      DenseTensor xbt(M, K, DType::bf16), wbt(N, K, DType::bf16), dybt(M, N, DType::bf16);
      fill_random(xbt, 1), fill_random(wbt, 2), fill_random(dybt, 3);
      const CUdeviceptr xb = xbt.ref().data, wb = wbt.ref().data, dyb = dybt.ref().data;
      DeviceBuffer yb(M * N * 2), dxb(M * K * 2), dwf(N * K * 4);
      LtMatmul bf16_fwd(M, N, K, false, true, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F);
      LtMatmul bf16_dx(M, K, N, false, false, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F);
      LtMatmul bf16_dw(N, K, M, true, false, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F);
      LtMatmul i8_fwd(M, N, K, false, true, CUDA_R_8I, CUDA_R_8I, CUBLAS_COMPUTE_32I, CUDA_R_32F);
      const float alpha_i8 = 1.0f / 4096;
  
      // INT8 operands of ours: X, W at K-groups 32 and 128; the backward's dY, transposes and FP32 master weights.
      BlockTensor x32 = random_block_tensor(M, K, 32, 10), w32 = random_block_tensor(N, K, 32, 12);
      BlockTensor x128 = random_block_tensor(M, K, 128, 14), w128 = random_block_tensor(N, K, 128, 16);
      BlockTensor y(M, N), dy = random_block_tensor(M, N, 32, 18), dx(M, K);
      BlockTensor xt(K, M), dyt(N, M), wq(N, K), wt(K, N);
      DenseTensor w_master(N, K, DType::f32), dw(N, K, DType::f32);
      fill_random(w_master, 20);
  
      const double t_bf16 = time([&](int) { bf16_fwd.run(xb, wb, yb.get(), &one, &zero, stream.get()); });
      const double t_i8 = time([&](int) { i8_fwd.run(x32.codes().get(), w32.codes().get(), y.codes().get(), &alpha_i8, &zero, stream.get()); });
      const double t_32 = time([&](int) { gemm(ctx, x32.ref(), w32.ref(), y.ref(), {}, stream.get()); });
      const double t_128 = time([&](int) { gemm(ctx, x128.ref(), w128.ref(), y.ref(), {}, stream.get()); });
      GemmOptions portable;
      portable.kernel.portable = true;
      const double t_port = time([&](int) { gemm(ctx, x32.ref(), w32.ref(), y.ref(), portable, stream.get()); });
      const double step_bf16 = time([&](int) {
        bf16_fwd.run(xb, wb, yb.get(), &one, &zero, stream.get());
        bf16_dx.run(dyb, wb, dxb.get(), &one, &zero, stream.get());
        bf16_dw.run(dyb, xb, dwf.get(), &one, &zero, stream.get());
      });
      const double step_32 = time([&](int i) {
        quantize_transpose(ctx, w_master.ref(), wq.ref(), wt.ref(), {}, stream.get());  // weights: once per step
        linear_forward(ctx, x32.ref(), wq.ref(), y.ref(), {}, stream.get());
        transpose(ctx, x32.ref(), xt.ref(), stream.get());  // unfused here: the upstream operator could write X^T itself
        transpose(ctx, dy.ref(), dyt.ref(), stream.get());
        linear_backward_data(ctx, dy.ref(), wt.ref(), dx.ref(), std::uint64_t(i), stream.get());
        linear_backward_weight(ctx, dyt.ref(), xt.ref(), dw.ref(), false, stream.get());
      });
      const double ops = 2.0 * double(M) * double(N) * double(K);
      auto tops = [&](double ms) { return ops / (ms * 1e-3) / 1e12; };
      char name[32];
      std::snprintf(name, sizeof name, "%lldx%lldx%lld", (long long)M, (long long)N, (long long)K);
      std::printf("%-17s %8.1f %8.1f %8.1f %8.1f | %7.0f %7.0f %7.0f %7.0f %7.0f | %6.2f %6.2f %6.2f | %9.1f %9.1f %6.2f\n", name, t_bf16 * 1e3,
                  t_i8 * 1e3, t_32 * 1e3, t_128 * 1e3, tops(t_bf16), tops(t_i8), tops(t_32), tops(t_128), tops(t_port), t_bf16 / t_32, t_bf16 / t_128,
                  t_i8 / t_128, step_bf16 * 1e3, step_32 * 1e3, step_bf16 / step_32);
      std::fflush(stdout);
    }
    // Kernel-shape sweep on the largest shape (--sweep): what a tuner would choose among.
    if (sweep) {
      const std::int64_t M = 8192, N = 8192, K = 8192;
      std::printf("\nsweep, %lldx%lldx%lld forward, INT8 out: TOP/s\n%-9s %-8s %-7s %-8s %-8s %-8s %-8s %8s %8s\n", (long long)M, (long long)N, (long long)K,
                  "path", "bn", "stages", "fold", "cluster", "overlap", "persist", "group32", "group128");
      BlockTensor x32 = random_block_tensor(M, K, 32, 30), w32 = random_block_tensor(N, K, 32, 31);
      BlockTensor x128 = random_block_tensor(M, K, 128, 32), w128 = random_block_tensor(N, K, 128, 33), y(M, N);
      // Around the default (bn 128, 4 stages, convert, no cluster, overlap): one dimension changed at a time.
      std::vector<GemmKernelChoice> choices;
      for (int overlap : {1, 0, 2}) {
        choices.push_back(GemmKernelChoice{false, 128, 4, gen::GemmFold::convert, 1, overlap});
        choices.push_back(GemmKernelChoice{false, 128, 4, gen::GemmFold::magic, 1, overlap});
        choices.push_back(GemmKernelChoice{false, 64, 4, gen::GemmFold::convert, 1, overlap});
        choices.push_back(GemmKernelChoice{false, 128, 4, gen::GemmFold::convert, 2, overlap});
      }
      for (int stages : {3, 6})
        for (int overlap : {1, 2}) choices.push_back(GemmKernelChoice{false, 128, stages, gen::GemmFold::convert, 1, overlap});
      for (int cluster : {1, 2}) choices.push_back(GemmKernelChoice{false, 128, 4, gen::GemmFold::convert, cluster, 0, 0});  // a CTA per tile
      choices.push_back(GemmKernelChoice{true, 128, 3, gen::GemmFold::convert, 1, 0});
      for (const auto& choice : choices) {
        GemmOptions o;
        o.kernel = choice;
        // TOP/s, or "-" where the choice does not exist for the K-group (overlap=2 at 128).
        auto tops = [&](const BlockTensor& x, const BlockTensor& w) {
          char cell[16];
          try {
            const double t = time([&](int) { gemm(ctx, x.ref(), w.ref(), y.ref(), o, stream.get()); });
            std::snprintf(cell, sizeof cell, "%8.0f", 2.0 * double(M) * double(N) * double(K) / (t * 1e-3) / 1e12);
          } catch (const gen::SpecError&) {
            std::snprintf(cell, sizeof cell, "%8s", "-");
          }
          return std::string(cell);
        };
        const std::string t32 = tops(x32, w32), t128 = tops(x128, w128);
        std::printf("%-9s %-8d %-7d %-8s %-8d %-8d %-8d %s %s\n", choice.portable ? "portable" : "hopper", choice.bn, choice.stages,
                    std::string(gen::enum_name(choice.fold)).c_str(), choice.cluster, choice.overlap, choice.persistent, t32.c_str(), t128.c_str());
      }
    }
    return 0;
  });
}
