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
#include "jetforge/warp_tile.cuh"

namespace jetforge {

template <int B, int Warps>
__global__ void __launch_bounds__(Warps * 32) transpose_kernel(const TransposeParams p) {
  constexpr int kChunkBytes = B >= 32 ? 8 : 4;  // keeps kChunks a multiple of the warp size
  typedef WarpTile<i8, B, kChunkBytes> CodeTile;
  __shared__ CodeTileSmem<B> smem[Warps];

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const i64 blocks_per_row = p.cols / B, blocks_per_col = p.rows / B;
  const i64 block = i64(blockIdx.x) * Warps + warp;
  if (block >= blocks_per_col * blocks_per_row) return;
  const i64 br = block / blocks_per_row, bc = block % blocks_per_row;

  typename CodeTile::Chunk q[CodeTile::kChunksPerLane];
  CodeTile::load(q, p.codes + br * B * p.cols + bc * B, p.cols, lane);
  store_codes_transposed<B, kChunkBytes>(q, smem[warp], p.codes_t + bc * B * p.rows + br * B, p.rows, lane);
  if (lane == 0) p.scales_t[bc * blocks_per_col + br] = __ldg(p.scales + br * blocks_per_row + bc);
}

}  // namespace jetforge
#endif
