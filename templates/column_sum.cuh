// Column sums of an INT8 BlockTensor (32 x 32 blocks) or a BF16 matrix, e.g. a linear layer's bias gradient
// sum_rows(dY), in a fixed order so that every run gives the same bits: per-32-row partial sums, then their ordered
// sum, added to or written over the FP32 output. The reduce kernel also serves other per-block-row partials.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct ColumnSumParams {
  const void* x;         // rows x cols: INT8 codes, or BF16 values
  const float* scales;   // INT8: the block scales
  float* partials;   // (rows / 32) x cols scratch
  float* out;        // cols
  i64 rows, cols;
  int accumulate;    // out += sums (1) or out = sums (0)
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge {

// Grid: (rows / 32, ceil(cols / Threads)); a thread sums its column over one block row.
template <class In, int Threads>
__global__ void __launch_bounds__(Threads) column_sum_partials_kernel(const ColumnSumParams p) {
  const i64 col = i64(blockIdx.y) * Threads + threadIdx.x, block_row = blockIdx.x;
  if (col >= p.cols) return;
  const In* x = static_cast<const In*>(p.x);
  float sum = 0.0f;
  if constexpr (sizeof(In) == 1) {
    for (int r = 0; r < 32; ++r) sum += code_to_float(x[(block_row * 32 + r) * p.cols + col]);
    sum *= __ldg(p.scales + block_row * (p.cols / 32) + col / 32);
  } else {
    for (int r = 0; r < 32; ++r) sum += to_float(x[(block_row * 32 + r) * p.cols + col]);
  }
  p.partials[block_row * p.cols + col] = sum;
}

// Grid: ceil(cols / 32); a CTA owns 32 columns, its Threads / 32 warps split the block rows (warp w takes rows
// w, w + Threads / 32, ...: enough loads in flight for tall matrices), then the warps' sums are added in order.
template <int Threads>
__global__ void __launch_bounds__(Threads) column_sum_reduce_kernel(const ColumnSumParams p) {
  constexpr int kWarps = Threads / 32;
  __shared__ float warp_sum[kWarps][32];
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  const i64 col = i64(blockIdx.x) * 32 + lane;
  float sum = 0.0f;
  if (col < p.cols)
    for (i64 b = warp; b < p.rows / 32; b += kWarps) sum += p.partials[b * p.cols + col];
  warp_sum[warp][lane] = sum;
  __syncthreads();
  if (warp != 0 || col >= p.cols) return;
  float total = 0.0f;
  for (int w = 0; w < kWarps; ++w) total += warp_sum[w][lane];
  p.out[col] = p.accumulate ? p.out[col] + total : total;
}

}  // namespace jetforge
#endif
