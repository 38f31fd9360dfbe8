// Instruction-throughput probe of the per-block GEMM's fold (templates/gemm_sm90.cuh): how many INT32 -> FP32
// conversions, FMAs, and both together (the fold of one element for one K-group) an SM retires per clock. Every
// thread runs 16 independent chains of the mix for `iters` steps; with 32 warps per SM the chains hide latency, so
// cycles per SM measure throughput. The step is JF_HD: the CPU reference (bench_fold) replays thread 0's chains.
#pragma once
#include "jetforge/common.cuh"
#if !JF_DEVICE_CODE
#include <math.h>  // fmaf for the CPU replay
#endif

namespace jetforge {

enum FoldProbeMix { kProbeConvert = 0, kProbeFfma = 1, kProbeConvertFfma = 2, kProbeMagicFfma = 3 };
constexpr int kFoldProbeChains = 16;

struct FoldProbeParams {
  i32* out;            // per thread: the sum of its chains' final values (keeps the work observable)
  long long* cycles;   // per CTA: clock64 cycles of the loop
  int iters;
  float scale, addend;  // the FMA's operands (scale 0 keeps every chain's values finite; the FMA runs all the same)
};

// One step of a chain: r's bits as the next value, so that each instruction's output feeds the next step.
template <int Mix> JF_HD i32 fold_probe_step(i32 r, float scale, float addend) {
  if constexpr (Mix == kProbeConvert) return i32(float_bits(float(r)));
  if constexpr (Mix == kProbeFfma) return i32(float_bits(fmaf(bits_float(u32(r)), scale, addend)));
  if constexpr (Mix == kProbeConvertFfma) return i32(float_bits(fmaf(float(r), scale, addend)));
  // The FP32-adder conversion (kFoldMagic): integer add, FP32 subtract, then the FMA.
  return i32(float_bits(fmaf(bits_float(0x4B400000u + u32(r)) - 12582912.0f, scale, addend)));
}

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge {

template <int Mix, int Threads>
__global__ void __launch_bounds__(Threads) fold_probe_kernel(const FoldProbeParams p) {
  i32 r[kFoldProbeChains];
#pragma unroll
  for (int i = 0; i < kFoldProbeChains; ++i) r[i] = i32(threadIdx.x) * kFoldProbeChains + i;
  __syncthreads();
  const long long start = clock64();
  for (int it = 0; it < p.iters; ++it)
#pragma unroll
    for (int i = 0; i < kFoldProbeChains; ++i) r[i] = fold_probe_step<Mix>(r[i], p.scale, p.addend);
  __syncthreads();
  const long long stop = clock64();
  i32 sum = 0;
#pragma unroll
  for (int i = 0; i < kFoldProbeChains; ++i) sum += r[i];
  p.out[blockIdx.x * Threads + threadIdx.x] = sum;
  if (threadIdx.x == 0) p.cycles[blockIdx.x] = stop - start;
}

}  // namespace jetforge
#endif
