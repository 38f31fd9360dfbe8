// The residual stream (DESIGN.md §1): kept in FP32 or BF16, it takes an INT8 branch output, r += dequantize(x), and
// in the same pass emits the INT8 copy of the new stream (fresh 32 x 32 block scales) that the next GEMM or
// LayerNorm reads and, with Stats, each row's sum and sum of squares over every 32-column block. Forward rounds the
// copy to nearest, backward (gradient stream) stochastically. residual_stats_kernel then turns a row's block sums
// into the next LayerNorm's mean and rstd (FP64 sums; the stream is not read again). dense_row_stats_kernel takes
// the same statistics from a dense matrix by itself (the BF16 mode's LayerNorm).
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

// A row's sum and sum of squares over one 32-column block.
struct alignas(8) RowSums {
  float sum, sum_sq;
};

struct ResidualParams {
  void* stream;          // rows x cols, FP32 or BF16 (the spec's type), updated in place
  const i8* x_codes;     // the branch output
  const float* x_scales;
  i8* out_codes;         // INT8 copy of the updated stream
  float* out_scales;
  i64 rows, cols;
  u32 round_key;         // stochastic rounding of the copy: seed_key(seed)
  RowSums* row_sums;     // Stats: rows x (cols / 32), of the updated stream over each 32-column block
};

struct ResidualStatsParams {
  const RowSums* row_sums;  // residual_kernel's, cols / 32 per row
  float* mean;
  float* rstd;
  i64 rows, cols;
  float eps;
};

struct DenseRowStatsParams {
  const void* x;  // rows x cols, FP32 or BF16
  float* mean;
  float* rstd;
  i64 rows, cols;
  float eps;
};

}  // namespace jetforge

#if JF_DEVICE_CODE
#include "jetforge/cta_tile.cuh"

namespace jetforge {

// Each row's sums over each 32-column block: a thread's chunk sums, added over the lanes of the block (a butterfly
// within aligned lanes), so the bits do not depend on the tile shape.
template <class Tile, int N, int E> __device__ __forceinline__ void store_block_row_sums(const float (&y)[N][E], RowSums* row_sums, i64 r0, i64 c0, i64 cols) {
  constexpr int kLanesPerBlock = 32 / E;  // a block's chunks, on consecutive lanes
#pragma unroll
  for (int i = 0; i < N; ++i) {
    float s = 0.0f, q = 0.0f;
#pragma unroll
    for (int k = 0; k < E; ++k) s += y[i][k], q = fmaf(y[i][k], y[i][k], q);
#pragma unroll
    for (int o = 1; o < kLanesPerBlock; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o), q += __shfl_xor_sync(0xffffffffu, q, o);
    if (threadIdx.x % kLanesPerBlock == 0) row_sums[(r0 + Tile::row(i)) * (cols / 32) + (c0 + Tile::col()) / 32] = RowSums{s, q};
  }
}

template <class T, int Round, int Stats, int TileBR, int TileBC, int Threads>
__global__ void __launch_bounds__(Threads, streaming_min_ctas(Threads)) residual_kernel(const ResidualParams p) {
  constexpr int B = 32, kRows = TileBR * B, kCols = TileBC * B;
  typedef CtaTile<T, kRows, kCols, Threads> StreamTile;
  typedef CtaTile<i8, kRows, kCols, Threads, StreamTile::kElemsPerChunk> CodeTile;  // same chunking, one byte each
  constexpr int kN = StreamTile::kChunksPerThread, kE = StreamTile::kElemsPerChunk;
  __shared__ BlockAmax<TileBR * TileBC, Threads> amax;

  const i64 tiles_per_row = p.cols / kCols, blocks_per_row = p.cols / B;
  const i64 tile_r = blockIdx.x / tiles_per_row, tile_c = blockIdx.x % tiles_per_row;
  const i64 r0 = tile_r * kRows, c0 = tile_c * kCols, origin = r0 * p.cols + c0;
  T* stream = static_cast<T*>(p.stream) + origin;

  typename StreamTile::Chunk r[kN];
  typename CodeTile::Chunk x[kN];
  StreamTile::load(r, stream, p.cols);
  CodeTile::load(x, p.x_codes + origin, p.cols);
  float y[kN][kE];
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const float s = __ldg(p.x_scales + (r0 + StreamTile::row(i)) / B * blocks_per_row + (c0 + StreamTile::col()) / B);
#pragma unroll
    for (int k = 0; k < kE; ++k) {
      r[i].elem[k] = from_float<T>(to_float(r[i].elem[k]) + code_to_float(x[i].elem[k]) * s);
      y[i][k] = to_float(r[i].elem[k]);  // the copy is of the stream as stored
    }
    StreamTile::store(r[i], i, stream, p.cols);
  }
  if constexpr (Stats) store_block_row_sums<StreamTile>(y, p.row_sums, r0, c0, p.cols);
  store_requantized<StreamTile, B, TileBR, TileBC, Threads, Round>(y, amax, p.out_codes, p.out_scales, p.cols, tile_r, tile_c, p.round_key);
}

// One warp per row: mean and 1 / sqrt(var + eps) from the row's block sums in FP64, lane l adding blocks l, l + 32, ...
// (coalesced reads), then a butterfly over the lanes: a fixed order whatever the CTA's size.
template <int Threads> __global__ void __launch_bounds__(Threads) residual_stats_kernel(const ResidualStatsParams p) {
  const int lane = int(threadIdx.x) % 32;
  const i64 row = i64(blockIdx.x) * (Threads / 32) + threadIdx.x / 32;
  if (row >= p.rows) return;  // whole warps
  const i64 blocks = p.cols / 32;
  const RowSums* sums = p.row_sums + row * blocks;
  double s = 0.0, q = 0.0;
  for (i64 b = lane; b < blocks; b += 32) {
    const RowSums v = sums[b];
    s += v.sum, q += v.sum_sq;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o), q += __shfl_xor_sync(0xffffffffu, q, o);
  if (lane != 0) return;
  const LayerNormRowStats stats = layernorm_row_stats(s, q, double(p.cols), p.eps);
  p.mean[row] = stats.mean, p.rstd[row] = stats.rstd;
}

// One warp per row of a dense FP32/BF16 matrix: mean and 1 / sqrt(var + eps), per-chunk moments combined as in
// Chan et al.
template <class T, int Warps>
__global__ void __launch_bounds__(Warps * 32) dense_row_stats_kernel(const DenseRowStatsParams p) {
  const int lane = int(threadIdx.x) % 32;
  const i64 row = i64(blockIdx.x) * Warps + int(threadIdx.x) / 32;
  if (row >= p.rows) return;
  constexpr int kE = 16 / int(sizeof(T));
  const T* x = static_cast<const T*>(p.x) + row * p.cols;
  float n = 0.0f, mean = 0.0f, m2 = 0.0f;
  for (i64 c = lane * kE; c < p.cols; c += 32 * kE) {
    union {
      uint4 vec;
      T elem[kE];
    } v;
    v.vec = __ldg(reinterpret_cast<const uint4*>(x + c));
    float sum = 0.0f, vals[kE];
#pragma unroll
    for (int k = 0; k < kE; ++k) vals[k] = to_float(v.elem[k]), sum += vals[k];
    const float cm = sum / float(kE);
    float cm2 = 0.0f;
#pragma unroll
    for (int k = 0; k < kE; ++k) cm2 += (vals[k] - cm) * (vals[k] - cm);
    const float nn = n + float(kE), delta = cm - mean;
    mean += delta * float(kE) / nn;
    m2 += cm2 + delta * delta * n * float(kE) / nn;
    n = nn;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float bn = __shfl_xor_sync(0xffffffffu, n, o), bmean = __shfl_xor_sync(0xffffffffu, mean, o), bm2 = __shfl_xor_sync(0xffffffffu, m2, o);
    const float nn = n + bn;
    if (nn > 0.0f) {
      const float delta = bmean - mean;
      mean += delta * bn / nn;
      m2 += bm2 + delta * delta * n * bn / nn;
      n = nn;
    }
  }
  if (lane == 0) {
    p.mean[row] = mean;
    p.rstd[row] = 1.0f / sqrtf(m2 / float(p.cols) + p.eps);
  }
}

}  // namespace jetforge
#endif
