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
#include "jetforge/cta_tile.cuh"

namespace jetforge {

// One CTA per tile of TileBR x TileBC blocks, as in quantize_kernel.
template <class Out, int B, int TileBR, int TileBC, int Threads>
__global__ void __launch_bounds__(Threads, streaming_min_ctas(Threads)) dequantize_kernel(const DequantizeParams p) {
  constexpr int kRows = TileBR * B, kCols = TileBC * B;
  typedef CtaTile<Out, kRows, kCols, Threads> OutTile;
  typedef CtaTile<i8, kRows, kCols, Threads, OutTile::kElemsPerChunk> CodeTile;

  const i64 tiles_per_row = p.cols / kCols;
  const i64 r0 = blockIdx.x / tiles_per_row * kRows, c0 = blockIdx.x % tiles_per_row * kCols;
  typename CodeTile::Chunk q[CodeTile::kChunksPerThread];
  CodeTile::load(q, p.codes + r0 * p.cols + c0, p.cols);

  Out* out = static_cast<Out*>(p.y) + r0 * p.cols + c0;
  const float* scales = p.scales + (c0 + OutTile::col()) / B;
#pragma unroll
  for (int i = 0; i < OutTile::kChunksPerThread; ++i) {
    const float scale = __ldg(scales + (r0 + OutTile::row(i)) / B * (p.cols / B));
    typename OutTile::Chunk y;
#pragma unroll
    for (int k = 0; k < OutTile::kElemsPerChunk; ++k) y.elem[k] = from_float<Out>(code_to_float(q[i].elem[k]) * scale);
    OutTile::store(y, i, out, p.cols);
  }
}

}  // namespace jetforge
#endif
