// Straightforward BF16 versions of the nonlinear operators: what BF16 training pays for the same work. They are
// the baselines of bench_ops (each INT8 operator is compared with its BF16 twin on the same shape), written the
// way a plain BF16 kernel would be: 16-byte vectors, one pass, FP32 arithmetic, no requantization.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

enum Bf16Op { kBf16Gelu = 0, kBf16GeluGrad = 1, kBf16Dropout = 2, kBf16LayerNormApply = 3, kBf16Residual = 4, kBf16FromF32 = 5 };

struct Bf16OpParams {
  const bf16* a;  // x, dy (GELU backward), or the branch output (residual)
  const bf16* b;  // x (GELU backward)
  bf16* out;      // y, dx, or the BF16 copy of the residual stream
  float* stream;  // residual: the FP32 stream, updated in place; from_f32: the FP32 input
  const float* row_mean;
  const float* row_rstd;
  const float* gamma;
  const float* beta;
  i64 rows, cols;
  float p;
  u32 mask_key;  // dropout: seed_key(seed)
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge {

__device__ __forceinline__ float bf16_tanh(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Thread t handles 8 consecutive elements (one 16-byte vector of BF16) at 8 * (blockIdx.x * Threads + t).
template <int Op, int Threads>
__global__ void __launch_bounds__(Threads) bf16_op_kernel(const Bf16OpParams p) {
  const i64 first = (i64(blockIdx.x) * Threads + threadIdx.x) * 8;
  if (first >= p.rows * p.cols) return;
  union Vec {
    uint4 v;
    bf16 e[8];
  } a, b, out;
  if (Op != kBf16FromF32) a.v = __ldg(reinterpret_cast<const uint4*>(p.a + first));
  if (Op == kBf16GeluGrad) b.v = __ldg(reinterpret_cast<const uint4*>(p.b + first));
  constexpr float kSqrt2OverPi = 0.7978845608f, kCubic = 0.044715f;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const float x = bf16_to_float(a.e[k]);
    float y;
    if constexpr (Op == kBf16Gelu) {
      y = 0.5f * x * (1.0f + bf16_tanh(kSqrt2OverPi * (x + kCubic * x * x * x)));
    } else if constexpr (Op == kBf16GeluGrad) {
      const float v = bf16_to_float(b.e[k]), t = bf16_tanh(kSqrt2OverPi * (v + kCubic * v * v * v));
      y = x * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kCubic * v * v));
    } else if constexpr (Op == kBf16Dropout) {
      y = dropout_keep(p.mask_key, u64(first + k), p.p) ? x / (1.0f - p.p) : 0.0f;
    } else if constexpr (Op == kBf16LayerNormApply) {
      const i64 row = (first + k) / p.cols, col = (first + k) % p.cols;
      y = (x - __ldg(p.row_mean + row)) * __ldg(p.row_rstd + row) * __ldg(p.gamma + col) + __ldg(p.beta + col);
    } else if constexpr (Op == kBf16FromF32) {
      y = p.stream[first + k];
    } else {  // residual: the FP32 stream takes x, the BF16 copy of the sum goes to the next operator
      y = p.stream[first + k] + x;
      p.stream[first + k] = y;
    }
    out.e[k] = float_to_bf16(y);
  }
  *reinterpret_cast<uint4*>(p.out + first) = out.v;
}

}  // namespace jetforge
#endif
