// Per-block quantization: FP32/BF16 matrix -> INT8 codes + one FP32 scale per B x B block, optionally
// writing the transposed BlockTensor (codes and scale grid of X^T) in the same pass, so that a backward GEMM
// that needs X^T costs no second read of X.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct QuantizeParams {
  const void* x;  // rows x cols, row-major, element type of the spec
  i8* codes;      // rows x cols
  float* scales;  // (rows / B) x (cols / B)
  i8* codes_t;    // cols x rows; written only by the transposing variant
  float* scales_t;
  i64 rows, cols;
  u64 seed;  // stochastic rounding: element (r, c) draws uniform01(seed, r * cols + c)
};

}  // namespace jetforge

#if JF_DEVICE_CODE
#include "jetforge/warp_tile.cuh"

namespace jetforge {

template <class In, int B, int Round, bool WithTranspose, int Warps>
__global__ void __launch_bounds__(Warps * 32) quantize_kernel(const QuantizeParams p) {
  typedef WarpTile<In, B> InTile;
  typedef WarpTile<i8, B, InTile::kElemsPerChunk> CodeTile;  // same chunking, one byte per element
  __shared__ CodeTileSmem<B> smem[WithTranspose ? Warps : 1];

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const i64 blocks_per_row = p.cols / B, blocks_per_col = p.rows / B;
  const i64 block = i64(blockIdx.x) * Warps + warp;
  if (block >= blocks_per_col * blocks_per_row) return;
  const i64 br = block / blocks_per_row, bc = block % blocks_per_row;

  typename InTile::Chunk x[InTile::kChunksPerLane];
  InTile::load(x, static_cast<const In*>(p.x) + br * B * p.cols + bc * B, p.cols, lane);

  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < InTile::kChunksPerLane; ++i)
#pragma unroll
    for (int k = 0; k < InTile::kElemsPerChunk; ++k) amax = fmaxf(amax, fabsf(to_float(x[i].elem[k])));
  const float scale = block_scale(warp_max(amax));

  typename CodeTile::Chunk q[CodeTile::kChunksPerLane];
#pragma unroll
  for (int i = 0; i < InTile::kChunksPerLane; ++i)
#pragma unroll
    for (int k = 0; k < InTile::kElemsPerChunk; ++k) {
      const float v = to_float(x[i].elem[k]);
      if (Round == kRoundNearest) {
        q[i].elem[k] = quantize_nearest(v, scale);
      } else {
        const i64 r = br * B + InTile::row(i, lane), c = bc * B + InTile::col(i, lane) + k;
        q[i].elem[k] = quantize_stochastic(v, scale, uniform01(p.seed, u64(r * p.cols + c)));
      }
    }
  CodeTile::store(q, p.codes + br * B * p.cols + bc * B, p.cols, lane);
  if (lane == 0) p.scales[br * blocks_per_row + bc] = scale;

  if constexpr (WithTranspose) {
    store_codes_transposed<B, InTile::kElemsPerChunk>(q, smem[warp], p.codes_t + bc * B * p.rows + br * B, p.rows, lane);
    if (lane == 0) p.scales_t[bc * blocks_per_col + br] = scale;
  }
}

}  // namespace jetforge
#endif
