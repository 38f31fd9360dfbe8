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

// One CTA per tile of TileBR x TileBC blocks on a 2-D grid (blockIdx.y the tile row: no division). A thread loads 16
// codes at a time (fewer where the tile has fewer per thread; always within one block) and stores their values as
// 16-byte vectors: 91% / 95% of a copy against 85% / 89% with 8-code loads on a 1-D grid (bench/NOTES.md, session 18).
template <class Out, int B, int TileBR, int TileBC, int Threads>
__global__ void __launch_bounds__(Threads, streaming_min_ctas(Threads)) dequantize_kernel(const DequantizeParams p) {
  constexpr int kRows = TileBR * B, kCols = TileBC * B, kCodesPerThread = kRows * kCols / Threads;
  constexpr int kCodesPerChunk = kCodesPerThread < 16 ? kCodesPerThread : 16, kPerVec = 16 / int(sizeof(Out)), kVecs = kCodesPerChunk / kPerVec;
  static_assert(kVecs >= 1 && B % kCodesPerChunk == 0, "a chunk's values fill whole 16-byte vectors within one block (DequantizeSpec::validate)");
  typedef CtaTile<i8, kRows, kCols, Threads, kCodesPerChunk> CodeTile;
  const i64 r0 = i64(blockIdx.y) * kRows, c0 = i64(blockIdx.x) * kCols;
  typename CodeTile::Chunk q[CodeTile::kChunksPerThread];
  CodeTile::load(q, p.codes + r0 * p.cols + c0, p.cols);
  const float* scales = p.scales + (c0 + CodeTile::col()) / B;
#pragma unroll
  for (int i = 0; i < CodeTile::kChunksPerThread; ++i) {
    const i64 row = r0 + CodeTile::row(i);
    const float scale = __ldg(scales + row / B * (p.cols / B));
    Out* out = static_cast<Out*>(p.y) + row * p.cols + c0 + CodeTile::col();
#pragma unroll
    for (int v = 0; v < kVecs; ++v) {
      union {
        uint4 vec;
        Out elem[kPerVec];
      } y;
#pragma unroll
      for (int k = 0; k < kPerVec; ++k) y.elem[k] = from_float<Out>(code_to_float(q[i].elem[v * kPerVec + k]) * scale);
      reinterpret_cast<uint4*>(out)[v] = y.vec;
    }
  }
}

}  // namespace jetforge
#endif
