// Transpose of an already quantized BlockTensor: codes of X^T and the transposed scale grid. Exact: the
// square-block format is transpose-invariant, so no re-quantization happens.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct TransposeParams {
  const i8* codes;      // rows x cols
  const float* scales;  // (rows / B) x (cols / B)
  i8* codes_t;          // cols x rows
  float* scales_t;      // (cols / B) x (rows / B)
  i64 rows, cols;
};

}  // namespace jetforge

#if JF_DEVICE_CODE
#include "jetforge/cta_tile.cuh"

namespace jetforge {

// One CTA per tile of TileBR x TileBC blocks: codes staged in shared memory, written back transposed.
template <int B, int TileBR, int TileBC, int Threads>
__global__ void __launch_bounds__(Threads, streaming_min_ctas(Threads)) transpose_kernel(const TransposeParams p) {
  constexpr int kRows = TileBR * B, kCols = TileBC * B;
  typedef CtaTile<i8, kRows, kCols, Threads> CodeTile;
  __shared__ CodeTileSmem<kRows, kCols> staged;

  const i64 tiles_per_row = p.cols / kCols;
  const i64 tile_r = blockIdx.x / tiles_per_row, tile_c = blockIdx.x % tiles_per_row;
  const i64 r0 = tile_r * kRows, c0 = tile_c * kCols;
  typename CodeTile::Chunk q[CodeTile::kChunksPerThread];
  CodeTile::load(q, p.codes + r0 * p.cols + c0, p.cols);
#pragma unroll
  for (int i = 0; i < CodeTile::kChunksPerThread; ++i) staged.put(CodeTile::row(i), CodeTile::col(), q[i].elem);
  __syncthreads();
  store_transposed<kRows, kCols, Threads, 4>(staged, p.codes_t + c0 * p.rows + r0, p.rows);

  const i64 blocks_per_row = p.cols / B, blocks_per_col = p.rows / B;
  for (int b = int(threadIdx.x); b < TileBR * TileBC; b += Threads) {
    const i64 br = tile_r * TileBR + b / TileBC, bc = tile_c * TileBC + b % TileBC;
    p.scales_t[bc * blocks_per_col + br] = __ldg(p.scales + br * blocks_per_row + bc);
  }
}

}  // namespace jetforge
#endif
