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
  u32 round_key;  // stochastic rounding: element (r, c) draws draw16(round_key, r * cols + c); round_key = seed_key(seed)
};

}  // namespace jetforge

#if JF_DEVICE_CODE
#include "jetforge/cta_tile.cuh"

namespace jetforge {

// Tiles of TileBR x TileBC blocks in row-major order, streamed through a persistent grid (pipelined_tiles). The
// transposed codes leave in units of TransposeUnitRows rows (store_transposed).
//
// The block maxima and the staged transposed codes are double-buffered by tile parity, so a tile needs only the
// barriers between its own phases (maxima -> scales -> codes [-> transposed store]): the next tile's maxima go to
// the other buffer, which was cleared while this tile turned its maxima into scales, after the last readers of
// that buffer (two tiles back) had passed this tile's first barrier. Shapes must be multiples of the tile (the
// operator picks a tile that divides them).
template <class In, int B, int TileBR, int TileBC, int Round, bool WithTranspose, int Threads, int Stages, int TransposeUnitRows>
__global__ void __launch_bounds__(Threads, streaming_min_ctas(Threads)) quantize_kernel(const QuantizeParams p) {
  constexpr int kRows = TileBR * B, kCols = TileBC * B;
  typedef CtaTile<In, kRows, kCols, Threads> InTile;
  typedef CtaTile<i8, kRows, kCols, Threads, InTile::kElemsPerChunk> CodeTile;  // same chunking, 1 byte/element
  constexpr int kLanesPerBlockRow = B / InTile::kElemsPerChunk;
  __shared__ BlockAmax<TileBR * TileBC, Threads> amax[2];
  __shared__ CodeTileSmem<WithTranspose ? kRows : 16, WithTranspose ? kCols : 8> staged[WithTranspose ? 2 : 1];

  const i64 tiles_per_row = p.cols / kCols, tiles = p.rows / kRows * tiles_per_row;
  const int block_col = InTile::col() / B;
  const In* x_base = static_cast<const In*>(p.x);
  auto origin = [&](i64 tile) { return (tile / tiles_per_row * kRows) * p.cols + tile % tiles_per_row * kCols; };

  extern __shared__ __align__(128) u8 ring_bytes[];
  In* ring = reinterpret_cast<In*>(ring_bytes);
  constexpr int kTileElems = kRows * kCols;
  auto load = [&](i64 tile, int slot) { InTile::load_async(ring + slot * kTileElems, x_base + origin(tile), p.cols); };
  amax[0].clear();
  __syncthreads();
  int parity = 0;
  pipelined_tiles<Stages>(tiles, load, [&](i64 tile, int slot) {
    BlockAmax<TileBR * TileBC, Threads>& m = amax[parity];
    typename InTile::Chunk x[InTile::kChunksPerThread];
    InTile::read_stage(x, ring + slot * kTileElems);
    const i64 tile_r = tile / tiles_per_row, tile_c = tile % tiles_per_row;
    const i64 r0 = tile_r * kRows, c0 = tile_c * kCols;
#pragma unroll
    for (int i = 0; i < InTile::kChunksPerThread; ++i) {
      float mx = 0.0f;
#pragma unroll
      for (int k = 0; k < InTile::kElemsPerChunk; ++k) mx = fmaxf(mx, fabsf(to_float(x[i].elem[k])));
      m.template add<kLanesPerBlockRow>(InTile::row(i) / B * TileBC + block_col, mx);
    }
    __syncthreads();
    m.finish();
    amax[parity ^ 1].clear();  // for the next tile; its last readers (two tiles back) are past the barrier above
    __syncthreads();

    // Each chunk is quantized and written at once (and staged for the transpose), so no code array stays live.
    i8* codes = p.codes + r0 * p.cols + c0;
#pragma unroll
    for (int i = 0; i < InTile::kChunksPerThread; ++i) {
      const float inv = m.inv_scale[InTile::row(i) / B * TileBC + block_col];
      const u64 first = u64((r0 + InTile::row(i)) * p.cols + c0 + InTile::col());  // element index of the chunk
      typename CodeTile::Chunk q;
      quantize_run<Round>([&](int k) { return to_float(x[i].elem[k]); }, inv, first, p.round_key, q.elem);
      CodeTile::store(q, i, codes, p.cols);
      if constexpr (WithTranspose) staged[parity].put(InTile::row(i), InTile::col(), q.elem);
    }

    const i64 blocks_per_row = p.cols / B, blocks_per_col = p.rows / B;
    m.for_each_block([&](int b) {
      const i64 br = tile_r * TileBR + b / TileBC, bc = tile_c * TileBC + b % TileBC;
      p.scales[br * blocks_per_row + bc] = m.scale[b];
      if (WithTranspose) p.scales_t[bc * blocks_per_col + br] = m.scale[b];
    });

    if constexpr (WithTranspose) {
      __syncthreads();
      store_transposed<kRows, kCols, Threads, TransposeUnitRows>(staged[parity], p.codes_t + c0 * p.rows + r0, p.rows);
    }
    parity ^= 1;
  });
}

}  // namespace jetforge
#endif
