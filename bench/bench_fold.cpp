// What bounds the per-block GEMM at K-group 32: the fold. Per K-group every output element needs an INT32 -> FP32
// conversion and an FMA; the INT8 tensor cores finish one K-group of 128 elements per clock per SM (4096 multiply-
// adds), so the fold rate in elements per clock per SM over 128 is the fraction of the INT8 peak the GEMM can reach
// at K-group 32. Measured here with the probe kernel (templates/fold_probe.cuh): one CTA of 1024 threads per SM,
// clock64 cycles per CTA, each mix checked against its CPU replay on thread 0.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "bench/timing.hpp"
#include "generator/families.hpp"
#include "runtime/kernels.hpp"
#include "templates/fold_probe.cuh"

using namespace jetforge;

namespace {

template <int Mix> i32 cpu_thread0(int iters, float scale, float addend) {
  i32 sum = 0;
  for (int i = 0; i < kFoldProbeChains; ++i) {
    i32 r = i;
    for (int it = 0; it < iters; ++it) r = fold_probe_step<Mix>(r, scale, addend);
    sum += r;
  }
  return sum;
}

i32 cpu_thread0(gen::FoldProbeMix mix, int iters, float scale, float addend) {
  switch (mix) {
    case gen::FoldProbeMix::convert: return cpu_thread0<kProbeConvert>(iters, scale, addend);
    case gen::FoldProbeMix::ffma: return cpu_thread0<kProbeFfma>(iters, scale, addend);
    case gen::FoldProbeMix::convert_ffma: return cpu_thread0<kProbeConvertFfma>(iters, scale, addend);
    case gen::FoldProbeMix::magic_ffma: return cpu_thread0<kProbeMagicFfma>(iters, scale, addend);
  }
  return 0;
}

}  // namespace

int main() {
  return bench::guarded_main("jetforge_bench_fold", [] {
    Context ctx(0);
    const int sms = ctx.device().info().sm_count, threads = 1024, iters = 4096;
    const float scale = 0.0f, addend = 0.5f;
    DeviceBuffer out(std::size_t(sms) * threads * 4), cycles(std::size_t(sms) * 8);
    std::printf("device: %s, %d SMs; %d threads x %d chains x %d steps per SM\n", ctx.device().info().name.c_str(), sms, threads, kFoldProbeChains, iters);
    std::printf("%-14s %-34s %16s %10s\n", "mix", "instructions per element", "elements/clk/SM", "CPU check");
    const char* what[] = {"I2FP", "FFMA", "I2FP + FFMA (the fold)", "IADD + FADD + FFMA (magic fold)"};
    for (const auto& [mix, name] : gen::EnumNames<gen::FoldProbeMix>::table) {
      const gen::FoldProbeSpec spec{mix, threads};
      const Kernel& kernel = ctx.kernel(spec);
      out.fill_bytes(0xff), cycles.fill_bytes(0xff);
      for (const int n : {16, iters}) {  // the first launch warms up
        const FoldProbeParams p{reinterpret_cast<i32*>(out.get()), reinterpret_cast<long long*>(cycles.get()), n, scale, addend};
        kernel.launch(unsigned(sms), p, nullptr);
      }
      check(driver().cuCtxSynchronize(), "cuCtxSynchronize");
      std::vector<long long> c(static_cast<std::size_t>(sms));
      cycles.download(c.data(), c.size() * 8);
      i32 first = 0;
      out.download(&first, 4);
      std::sort(c.begin(), c.end());
      const double per_clock = double(threads) * kFoldProbeChains * iters / double(c[c.size() / 2]);
      const bool ok = first == cpu_thread0(mix, iters, scale, addend);
      std::printf("%-14s %-34s %16.1f %10s\n", std::string(name).c_str(), what[int(mix)], per_clock, ok ? "ok" : "MISMATCH");
      if (mix == gen::FoldProbeMix::convert_ffma)
        std::printf("  -> fold bound at K-group 32: %.1f / 128 elements per clock = %.0f%% of the INT8 tensor-core peak\n", per_clock,
                    100.0 * per_clock / 128.0);
    }
    return 0;
  });
}
