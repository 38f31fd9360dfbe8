// LayerNorm backward on BF16 tensors (the BF16 training mode): dx = rstd (dy gamma - c1 - xhat c2) with the row
// means c1 = mean(dy gamma), c2 = mean(dy gamma xhat), one warp per row reading it twice; dgamma and dbeta as
// per-32-row partials of dy xhat and dy, which column_sum_reduce_kernel sums in order. Deterministic throughout.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct Bf16LayerNormGradParams {
  const bf16* dy;  // rows x cols
  const bf16* x;
  const float* mean;  // rows, from the forward pass
  const float* rstd;
  const float* gamma;  // cols
  bf16* dx;
  float* dgamma_partial;  // (rows / 32) x cols
  float* dbeta_partial;
  i64 rows, cols;
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge {

template <int Warps>
__global__ void __launch_bounds__(Warps * 32) bf16_layernorm_grad_rows_kernel(const Bf16LayerNormGradParams p) {
  const int lane = int(threadIdx.x) % 32;
  const i64 row = i64(blockIdx.x) * Warps + int(threadIdx.x) / 32;
  if (row >= p.rows) return;
  const bf16* dy = p.dy + row * p.cols;
  const bf16* x = p.x + row * p.cols;
  const float mean = p.mean[row], rstd = p.rstd[row];
  float c1 = 0.0f, c2 = 0.0f;
  for (i64 c = lane; c < p.cols; c += 32) {
    const float g = bf16_to_float(dy[c]) * __ldg(p.gamma + c), xhat = (bf16_to_float(x[c]) - mean) * rstd;
    c1 += g, c2 += g * xhat;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) c1 += __shfl_xor_sync(0xffffffffu, c1, o), c2 += __shfl_xor_sync(0xffffffffu, c2, o);
  c1 /= float(p.cols), c2 /= float(p.cols);
  for (i64 c = lane; c < p.cols; c += 32) {
    const float g = bf16_to_float(dy[c]) * __ldg(p.gamma + c), xhat = (bf16_to_float(x[c]) - mean) * rstd;
    p.dx[row * p.cols + c] = float_to_bf16(rstd * (g - c1 - xhat * c2));
  }
}

// Grid: (rows / 32, ceil(cols / Threads)).
template <int Threads>
__global__ void __launch_bounds__(Threads) bf16_layernorm_grad_columns_kernel(const Bf16LayerNormGradParams p) {
  const i64 col = i64(blockIdx.y) * Threads + threadIdx.x, block_row = blockIdx.x;
  if (col >= p.cols) return;
  float dg = 0.0f, db = 0.0f;
  for (int r = 0; r < 32; ++r) {
    const i64 row = block_row * 32 + r;
    const float g = bf16_to_float(p.dy[row * p.cols + col]);
    dg += g * (bf16_to_float(p.x[row * p.cols + col]) - __ldg(p.mean + row)) * __ldg(p.rstd + row);
    db += g;
  }
  p.dgamma_partial[block_row * p.cols + col] = dg;
  p.dbeta_partial[block_row * p.cols + col] = db;
}

}  // namespace jetforge
#endif
