// Per-block dequantization: INT8 codes + FP32 block scales -> FP32 or BF16 (round-to-nearest-even).
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct DequantizeParams {
  const i8* codes;      // rows x cols
  const float* scales;  // (rows / B) x (cols / B)
  void* y;              // rows x cols, element type of the spec
  i64 rows, cols;
};

}  // namespace jetforge

#if JF_DEVICE_CODE
#include "jetforge/warp_tile.cuh"

namespace jetforge {

template <class Out, int B, int Warps>
__global__ void __launch_bounds__(Warps * 32) dequantize_kernel(const DequantizeParams p) {
  typedef WarpTile<Out, B> OutTile;
  typedef WarpTile<i8, B, OutTile::kElemsPerChunk> CodeTile;

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const i64 blocks_per_row = p.cols / B;
  const i64 block = i64(blockIdx.x) * Warps + warp;
  if (block >= (p.rows / B) * blocks_per_row) return;
  const i64 br = block / blocks_per_row, bc = block % blocks_per_row;

  typename CodeTile::Chunk q[CodeTile::kChunksPerLane];
  CodeTile::load(q, p.codes + br * B * p.cols + bc * B, p.cols, lane);
  const float scale = __ldg(p.scales + br * blocks_per_row + bc);

  typename OutTile::Chunk y[OutTile::kChunksPerLane];
#pragma unroll
  for (int i = 0; i < OutTile::kChunksPerLane; ++i)
#pragma unroll
    for (int k = 0; k < OutTile::kElemsPerChunk; ++k) y[i].elem[k] = from_float<Out>(float(q[i].elem[k]) * scale);
  OutTile::store(y, static_cast<Out*>(p.y) + br * B * p.cols + bc * B, p.cols, lane);
}

}  // namespace jetforge
#endif
