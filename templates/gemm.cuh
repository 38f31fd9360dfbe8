// Per-block INT8 GEMM, the contract shared by its code paths: C = A * B^T with A (M x K) and B (N x K) both
// K-major INT8 codes, A's scales per 32 rows x G columns, B's per 32 rows x G columns (G = the K-group,
// 32 for the method's square blocks). For every K-group the INT32 dot products of the group are folded into FP32
// accumulators with the product of the two scales: acc += sa * sb * int32dot. The three GEMMs of a linear layer
// are all of this form once the operands that need it are stored transposed (see runtime/linear.cpp).
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

enum GemmOutput { kGemmOutF32 = 0, kGemmOutBF16 = 1, kGemmOutI8 = 2 };

// Scalar parameters common to every GEMM code path.
struct GemmProblem {
  void* out;            // M x N row-major: FP32 / BF16 values, or INT8 codes
  float* out_scales;    // INT8 output: (M / 32) x (N / 32) block scales
  const float* bias;    // optional (FP32/BF16 output): N values added to every row
  i64 m, n, k;
  u64 seed;             // INT8 output with stochastic rounding
  int accumulate;       // FP32 output: out += A * B^T instead of out = A * B^T
};

}  // namespace jetforge
