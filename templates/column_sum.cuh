// Column sums of an INT8 BlockTensor (32 x 32 blocks) or a BF16 matrix, e.g. a linear layer's bias gradient
// sum_rows(dY), in a fixed order so that every run gives the same bits, added to or written over the FP32 output.
// INT8: one launch on GPUs with clusters (a cluster of CTAs splits each slice of columns by rows), else partial sums
// per part of the rows, then their ordered sum; BF16: per-32-row partial sums, then their ordered sum. The reduce
// kernel also serves other per-block-row partials (LayerNorm's dgamma and dbeta).
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct ColumnSumParams {
  const void* x;         // rows x cols: INT8 codes, or BF16 values
  const float* scales;   // INT8: the block scales
  float* partials;       // scratch: a row of cols per part of the rows (INT8 without clusters) or per block row (BF16)
  float* out;            // cols
  i64 rows, cols;        // of x; for the reduce, of each partials matrix
  int accumulate;        // out += sums (1) or out = sums (0)
  float* out_second;     // the reduce on a grid of two rows: the sums of a second partials matrix, right after the first
  int slice_cols;        // INT8: columns per CTA, 16 x a power of two, at most 4 x threads
  int parts;             // INT8: CTAs that split the rows of a slice (with clusters: the cluster size)
};

// The INT8 kernel's CTAs per slice of columns: a portable cluster.
constexpr int kColumnSumParts = 8;

}  // namespace jetforge

#if JF_DEVICE_CODE
#include "jetforge/sm90.cuh"

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

// INT8. Grid: p.parts x ceil(cols / p.slice_cols) CTAs, 1-D, a slice's parts consecutive (one cluster of them when
// Cluster > 1). CTA (part, slice) sums block rows [part, part + 1) x block_rows / parts of its slice's columns. A lane
// owns 16 columns (one 16-byte load per row) and 8 rows of a block row: four lanes cover the block row's 32, the CTA's
// lanes take Threads / (slice_cols / 4) block rows at a time. A lane sums its 8 codes per column exactly in integers,
// two 16-bit lanes per word (codes + 128: at most 8 x 255), scales the sums by the block's scale and adds them to its
// FP32 sums. Then the CTA adds its lanes' sums in a fixed order, and either rank 0 adds its cluster's CTA sums in rank
// order and writes the output (one launch), or each CTA writes a row of partials for column_sum_reduce_kernel (GPUs
// without clusters). Either way, the same bits on every run.
template <int Threads, int Cluster>
__global__ void __launch_bounds__(Threads) column_sum_codes_kernel(const ColumnSumParams p) {
  constexpr int kRows = 8, kLanesPerColumn = 32 / kRows;
  __shared__ __align__(16) float lane_sums[Threads * 16];  // [a lane's rows: quarter + 4 x group][slice column]
  __shared__ float cta_sums[Threads * 16 / kLanesPerColumn];  // slice column: at most 16 x Threads / 4 of them
  const int col_lanes = p.slice_cols / 16, block_row_lanes = kLanesPerColumn * col_lanes, groups = Threads / block_row_lanes;
  const int t = int(threadIdx.x), col_lane = t % col_lanes, quarter = t / col_lanes % kLanesPerColumn, group = t / block_row_lanes;
  const i64 part = blockIdx.x % p.parts, c0 = i64(blockIdx.x / p.parts) * p.slice_cols, col = c0 + col_lane * 16;
  const i64 block_rows = p.rows / 32, end = (part + 1) * block_rows / p.parts;
  float sums[16] = {};  // column col + 4 j + k at 4 j + k
  if (col < p.cols && group < groups)  // threads past the last whole group idle
    for (i64 block_row = part * block_rows / p.parts + group; block_row < end; block_row += groups) {
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
      const float scale = __ldg(p.scales + block_row * (p.cols / 32) + col / 32);
      const auto code_sum = [](u32 lanes, int half) { return float(int(half ? lanes >> 16 : lanes & 0xffffu) - kRows * 128); };
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        sums[4 * j + 0] = fmaf(code_sum(even[j], 0), scale, sums[4 * j + 0]), sums[4 * j + 1] = fmaf(code_sum(odd[j], 0), scale, sums[4 * j + 1]);
        sums[4 * j + 2] = fmaf(code_sum(even[j], 1), scale, sums[4 * j + 2]), sums[4 * j + 3] = fmaf(code_sum(odd[j], 1), scale, sums[4 * j + 3]);
      }
    }
  float4* mine = reinterpret_cast<float4*>(lane_sums + (quarter + kLanesPerColumn * group) * p.slice_cols + col_lane * 16);
#pragma unroll
  for (int j = 0; j < 4; ++j) mine[j] = make_float4(sums[4 * j], sums[4 * j + 1], sums[4 * j + 2], sums[4 * j + 3]);
  __syncthreads();
  for (int c = t; c < p.slice_cols; c += Threads) {
    float total = 0.0f;
    for (int i = 0; i < kLanesPerColumn * groups; ++i) total += lane_sums[i * p.slice_cols + c];
    cta_sums[c] = total;
  }
  if constexpr (Cluster > 1) {
    sm90::cluster_sync();  // every CTA's sums are written
    if (part == 0)         // rank 0: the cluster spans a slice's parts
      for (int c = t; c < p.slice_cols && c0 + c < p.cols; c += Threads) {
        float total = 0.0f;
        for (int q = 0; q < Cluster; ++q) total += *sm90::cluster_peer(&cta_sums[c], u32(q));
        p.out[c0 + c] = p.accumulate ? p.out[c0 + c] + total : total;
      }
    sm90::cluster_sync();  // no CTA leaves while rank 0 may still read its sums
  } else {
    __syncthreads();
    for (int c = t; c < p.slice_cols && c0 + c < p.cols; c += Threads) p.partials[part * p.cols + c0 + c] = cta_sums[c];
  }
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
