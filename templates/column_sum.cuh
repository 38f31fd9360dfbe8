// Column sums of an INT8 BlockTensor (32 x 32 blocks) or a BF16 matrix, e.g. a linear layer's bias gradient
// sum_rows(dY), in a fixed order so that every run gives the same bits: per-32-row partial sums, then their ordered
// sum, added to or written over the FP32 output. The reduce kernel also serves other per-block-row partials.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct ColumnSumParams {
  const void* x;         // rows x cols: INT8 codes, or BF16 values
  const float* scales;   // INT8: the block scales
  float* partials;   // scratch, at most (rows / 32) x cols: a row per block row (per block_rows_per_partial for INT8)
  float* out;        // cols
  i64 rows, cols;    // of x; for the reduce, of each partials matrix
  int accumulate;    // out += sums (1) or out = sums (0)
  float* out_second;  // the reduce on a grid of two rows: the sums of a second partials matrix, right after the first
  int block_rows_per_partial;  // INT8: block rows summed into each row of partials (1 .. kColumnSumMaxBlockRows)
};

// The INT8 kernel sums up to this many block rows into each row of partials (ColumnSumParams::block_rows_per_partial):
// 4 bytes of partials per 32 x block_rows_per_partial codes, and as few rows for the reduce to read.
constexpr int kColumnSumMaxBlockRows = 4;
JF_HD constexpr i64 column_sum_partial_rows(i64 rows, int block_rows_per_partial) { return (rows / 32 + block_rows_per_partial - 1) / block_rows_per_partial; }

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge {

// BF16. Grid: (rows / 32, ceil(cols / Threads)); a thread sums its column over one block row.
template <int Threads>
__global__ void __launch_bounds__(Threads) column_sum_partials_kernel(const ColumnSumParams p) {
  const i64 col = i64(blockIdx.y) * Threads + threadIdx.x, block_row = blockIdx.x;
  if (col >= p.cols) return;
  const bf16* x = static_cast<const bf16*>(p.x);
  float sum = 0.0f;
  for (int r = 0; r < 32; ++r) sum += to_float(x[(block_row * 32 + r) * p.cols + col]);
  p.partials[block_row * p.cols + col] = sum;
}

// INT8. Grid: ceil(partial rows * cols / 16 * 4 / Threads), a row of partials summing block_rows_per_partial block
// rows (the last row the rest). Four adjacent lanes own 16 columns of a row of partials, 8 rows of each of its block
// rows (one 16-byte load per row, all in flight), and sum a block row's codes exactly in integers, two 16-bit lanes per
// word (codes + 128: at most 32 * 255 per lane); shuffles add the four, and lane q scales columns 4q .. 4q + 3 by the
// block's scale and adds them to its FP32 sums, block row after block row: the same bits every run.
template <int Threads>
__global__ void __launch_bounds__(Threads) column_sum_codes_kernel(const ColumnSumParams p) {
  constexpr int kSplit = 4, kRows = 32 / kSplit;
  const i64 chunks_per_row = p.cols / 16, unit = (i64(blockIdx.x) * Threads + threadIdx.x) / kSplit, block_rows = p.rows / 32;
  const int quarter = int(threadIdx.x) % kSplit;
  if (unit >= column_sum_partial_rows(p.rows, p.block_rows_per_partial) * chunks_per_row) return;  // whole groups of kSplit lanes leave together
  const i64 partial_row = unit / chunks_per_row, col = unit % chunks_per_row * 16;
  const i64 first_block_row = partial_row * p.block_rows_per_partial, end_block_row = min(first_block_row + p.block_rows_per_partial, block_rows);
  const unsigned group = ((1u << kSplit) - 1) << (threadIdx.x % 32 / kSplit * kSplit);  // this lane's kSplit lanes
  float4 total{0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int k = 0; k < kColumnSumMaxBlockRows; ++k) {
    const i64 block_row = first_block_row + k;
    if (block_row >= end_block_row) break;  // the same for the whole group
    const i8* x = static_cast<const i8*>(p.x) + (block_row * 32 + quarter * kRows) * p.cols + col;
    uint4 v[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) v[r] = __ldg(reinterpret_cast<const uint4*>(x + r * p.cols));
    u32 even[4] = {}, odd[4] = {};  // word j's bytes 0 and 2 (even) and 1 and 3 (odd), biased, summed per 16-bit lane
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const u32 w[4] = {v[r].x, v[r].y, v[r].z, v[r].w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const u32 b = biased_codes(w[j]);
        even[j] += b & 0x00ff00ffu, odd[j] += (b >> 8) & 0x00ff00ffu;
      }
    }
#pragma unroll
    for (int o = 1; o < kSplit; o <<= 1)
#pragma unroll
      for (int j = 0; j < 4; ++j) even[j] += __shfl_xor_sync(group, even[j], o), odd[j] += __shfl_xor_sync(group, odd[j], o);
    const float scale = __ldg(p.scales + block_row * (p.cols / 32) + col / 32);
    const auto sum = [&](u32 lanes, int half) { return float(int(half ? lanes >> 16 : lanes & 0xffffu) - 32 * 128) * scale; };
    u32 e = even[0], o = odd[0];  // word `quarter`, chosen by selects (an indexed register array would go to local memory)
#pragma unroll
    for (int j = 1; j < 4; ++j) e = quarter == j ? even[j] : e, o = quarter == j ? odd[j] : o;
    total.x += sum(e, 0), total.y += sum(o, 0), total.z += sum(e, 1), total.w += sum(o, 1);
  }
  reinterpret_cast<float4*>(p.partials + partial_row * p.cols + col)[quarter] = total;
}

// Grid: ceil(cols / 32) x (1 or 2 matrices: out, out_second); a CTA owns 32 columns, its Threads / 32 warps split the
// partials' rows (warp w takes rows w, w + Threads / 32, ...: enough loads in flight for tall matrices), then the warps'
// sums are added in order.
template <int Threads>
__global__ void __launch_bounds__(Threads) column_sum_reduce_kernel(const ColumnSumParams p) {
  constexpr int kWarps = Threads / 32;
  __shared__ float warp_sum[kWarps][32];
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  const i64 col = i64(blockIdx.x) * 32 + lane;
  const float* partials = p.partials + blockIdx.y * p.rows * p.cols;  // here rows counts the partials' rows
  float* out = blockIdx.y ? p.out_second : p.out;
  float sum = 0.0f;
  if (col < p.cols)
    for (i64 b = warp; b < p.rows; b += kWarps) sum += partials[b * p.cols + col];
  warp_sum[warp][lane] = sum;
  __syncthreads();
  if (warp != 0 || col >= p.cols) return;
  float total = 0.0f;
  for (int w = 0; w < kWarps; ++w) total += warp_sum[w][lane];
  out[col] = p.accumulate ? out[col] + total : total;
}

}  // namespace jetforge
#endif
