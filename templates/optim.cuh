// Optimizer kernels over FP32 master weights: gradient clipping by global norm (deterministic: per-CTA partial
// sums of squares, then one ordered sum that also turns the norm into the clip factor) and a fused AdamW step
// that reads the clip factor on the device, so a training step needs no host round trip.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct SumSquaresParams {
  const float* x;
  i64 n;
  float* partials;  // one per CTA, at offset `partial_offset` (several tensors share one partials array)
  i64 partial_offset;
};

struct ClipFactorParams {
  const float* partials;
  i64 count;
  float max_norm;
  float* norm;    // the global norm (for logging)
  float* factor;  // min(1, max_norm / norm)
};

struct AdamWParams {
  float* w;
  const float* g;
  float* m;
  float* v;
  i64 n;
  const float* clip_factor;  // device scalar multiplying the gradient, or null for 1
  float lr, beta1, beta2, eps, weight_decay;
  float bias_correction1, bias_correction2;  // 1 - beta^t, computed on the host per step
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge {

template <int Threads>
__global__ void __launch_bounds__(Threads) sum_squares_kernel(const SumSquaresParams p) {
  __shared__ float warp_sums[Threads / 32];
  float s = 0.0f;
  for (i64 i = i64(blockIdx.x) * Threads + threadIdx.x; i < p.n; i += i64(gridDim.x) * Threads) s += p.x[i] * p.x[i];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < Threads / 32; ++w) total += warp_sums[w];  // fixed order: the same bits every run
    p.partials[p.partial_offset + blockIdx.x] = total;
  }
}

template <int Threads>  // one thread does the ordered sum; Threads only sizes the launch
__global__ void __launch_bounds__(Threads) clip_factor_kernel(const ClipFactorParams p) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double total = 0.0;
  for (i64 i = 0; i < p.count; ++i) total += p.partials[i];
  const float norm = float(sqrt(total));
  *p.norm = norm;
  *p.factor = norm > p.max_norm ? p.max_norm / norm : 1.0f;
}

template <int Threads>
__global__ void __launch_bounds__(Threads) adamw_kernel(const AdamWParams p) {
  const float scale = p.clip_factor ? *p.clip_factor : 1.0f;
  for (i64 i = i64(blockIdx.x) * Threads + threadIdx.x; i < p.n; i += i64(gridDim.x) * Threads) {
    const float g = p.g[i] * scale;
    const float m = p.beta1 * p.m[i] + (1.0f - p.beta1) * g;
    const float v = p.beta2 * p.v[i] + (1.0f - p.beta2) * g * g;
    p.m[i] = m;
    p.v[i] = v;
    const float update = (m / p.bias_correction1) / (sqrtf(v / p.bias_correction2) + p.eps);
    p.w[i] -= p.lr * (update + p.weight_decay * p.w[i]);
  }
}

}  // namespace jetforge
#endif
