// Per-block INT8 GEMM, the contract shared by its code paths: C = A * B^T with A (M x K) and B (N x K) both
// K-major INT8 codes, A's scales per 32 rows x G columns, B's per 32 rows x G columns (G = the K-group,
// 32 for the method's square blocks). For every K-group the INT32 dot products of the group are folded into FP32
// accumulators with the product of the two scales: acc += sa * sb * int32dot. The three GEMMs of a linear layer
// are all of this form once the operands that need it are stored transposed (see runtime/gemm.hpp).
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

enum GemmOutput { kGemmOutF32 = 0, kGemmOutBF16 = 1, kGemmOutI8 = 2 };

// How a K-group's INT32 dot products become FP32 before the scaled accumulation: the int->float converter, or
// the FP32 adder (bits of 1.5 * 2^23 plus the integer, minus 1.5 * 2^23; exact since |dot| < 128 * 127^2 < 2^22),
// which moves the work from the conversion unit to the integer and FP32 pipes.
enum GemmFold { kFoldConvert = 0, kFoldMagic = 1 };

// Scalar parameters common to every GEMM code path.
struct GemmProblem {
  void* out;            // M x N row-major: FP32 / BF16 values, or INT8 codes
  float* out_scales;    // INT8 output: (M / 32) x (N / 32) block scales
  const float* bias;    // optional: N values added to every row (before the block scales, for INT8 output)
  i64 m, n, k;
  u32 round_key;        // INT8 output with stochastic rounding: seed_key(seed)
  int accumulate;       // FP32 output: out += A * B^T instead of out = A * B^T
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge::gemm {

template <int Fold> __device__ __forceinline__ float dot_to_float(i32 dot) {
  if (Fold == kFoldConvert) return __int2float_rn(dot);
  return __int_as_float(0x4B400000 + dot) - kMagic;
}

// Output tiles in groups of 8 along M, so that CTAs running together share B tiles in L2.
__device__ __forceinline__ void tile_of_block(int block, int tiles_m, int tiles_n, int& tile_m, int& tile_n) {
  const int per_group = 8 * tiles_n, group = block / per_group;
  const int first_m = group * 8, group_rows = min(tiles_m - first_m, 8);
  tile_m = first_m + (block % per_group) % group_rows;
  tile_n = (block % per_group) / group_rows;
}

// INT8 output: the bias joins an accumulator quad (row, col), (row, col + 1), (row + 8, col), (row + 8, col + 1) before
// its block's scale is chosen (both code paths hold their accumulators in such quads).
__device__ __forceinline__ void add_bias_quad(const GemmProblem& p, i64 col, float* quad) {
  if (!p.bias || col >= p.n) return;
  const float b0 = p.bias[col], b1 = p.bias[col + 1];
  quad[0] += b0, quad[1] += b1, quad[2] += b0, quad[3] += b1;
}

// Dense output of N consecutive values (row, col .. col + N - 1), N = 2 or 4: bias added, FP32 accumulated if asked,
// or BF16; one vector store.
template <int Output, int N> __device__ __forceinline__ void store_dense(const GemmProblem& p, i64 row, i64 col, float (&v)[N]) {
  if (p.bias)
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] += p.bias[col + k];
  if constexpr (Output == kGemmOutF32) {
    union {
      typename VecOfBytes<4 * N>::type vec;
      float f[N];
    } d;
    auto* dst = reinterpret_cast<decltype(d.vec)*>(static_cast<float*>(p.out) + row * p.n + col);
    if (p.accumulate) {
      d.vec = *dst;
#pragma unroll
      for (int k = 0; k < N; ++k) v[k] += d.f[k];
    }
#pragma unroll
    for (int k = 0; k < N; ++k) d.f[k] = v[k];
    *dst = d.vec;
  } else {
    union {
      typename VecOfBytes<2 * N>::type vec;
      u16 h[N];
    } d;
#pragma unroll
    for (int k = 0; k < N; ++k) d.h[k] = float_to_bf16(v[k]).bits;
    *reinterpret_cast<decltype(d.vec)*>(static_cast<bf16*>(p.out) + row * p.n + col) = d.vec;
  }
}

// The two codes of the value pair at element index `first` (= row * N + col, col even, so the pair's draw holds
// both stochastic-rounding draws), packed little-endian.
template <int Round> __device__ __forceinline__ u16 quantize_pair(const GemmProblem& p, u64 first, float v0, float v1, float inv) {
  if (Round == kRoundNearest) return u16(u8(quantize_nearest(v0, inv))) | u16(u8(quantize_nearest(v1, inv))) << 8;
  const u32 draws = draw_pair(p.round_key, first >> 1);
  return u16(biased_codes2_from_carries(stochastic_carry(v0, inv, draw_half(draws, 0)), stochastic_carry(v1, inv, draw_half(draws, 1))) ^ 0x8080u);
}

}  // namespace jetforge::gemm
#endif
