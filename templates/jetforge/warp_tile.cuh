// One warp owns one B x B block of a row-major matrix. The block is moved as "chunks": 16-byte vectors of
// the element type, chunk c covering row c / ChunksPerRow, columns (c % ChunksPerRow) * ElemsPerChunk + [0, E).
// Lane l handles chunks l, l + 32, l + 64, ...: consecutive lanes touch consecutive addresses.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

template <int Bytes> struct VecOfBytes;
template <> struct VecOfBytes<16> { typedef uint4 type; };
template <> struct VecOfBytes<8> { typedef uint2 type; };
template <> struct VecOfBytes<4> { typedef unsigned int type; };
template <> struct VecOfBytes<2> { typedef unsigned short type; };

template <class T, int B, int ChunkBytes = 16> struct WarpTile {
  static constexpr int kElemsPerChunk = ChunkBytes / int(sizeof(T));
  static constexpr int kChunksPerRow = B / kElemsPerChunk;
  static constexpr int kChunks = B * kChunksPerRow;
  static constexpr int kChunksPerLane = kChunks / 32;
  static_assert(B % kElemsPerChunk == 0, "a block row must hold whole chunks");
  static_assert(kChunks % 32 == 0, "every lane must own the same number of chunks");

  typedef typename VecOfBytes<ChunkBytes>::type Vec;
  union Chunk {
    Vec vec;
    T elem[kElemsPerChunk];
  };

  __device__ static int row(int i, int lane) { return (i * 32 + lane) / kChunksPerRow; }
  __device__ static int col(int i, int lane) { return ((i * 32 + lane) % kChunksPerRow) * kElemsPerChunk; }

  // Issues every load before any use so that kChunksPerLane requests are in flight per lane.
  __device__ static void load(Chunk (&c)[kChunksPerLane], const T* block, i64 ld, int lane) {
#pragma unroll
    for (int i = 0; i < kChunksPerLane; ++i)
      c[i].vec = __ldg(reinterpret_cast<const Vec*>(block + i64(row(i, lane)) * ld + col(i, lane)));
  }

  __device__ static void store(const Chunk (&c)[kChunksPerLane], T* block, i64 ld, int lane) {
#pragma unroll
    for (int i = 0; i < kChunksPerLane; ++i)
      *reinterpret_cast<Vec*>(block + i64(row(i, lane)) * ld + col(i, lane)) = c[i].vec;
  }
};

// Shared-memory staging of one B x B tile of int8 codes for a warp-level transpose. Rows are padded by one
// word so that a column walk spreads over banks.
template <int B> struct CodeTileSmem {
  static constexpr int kPitch = B + 4;
  i8 v[B * kPitch];
};

// Writes the codes held in registers (row-major chunking) transposed into dst (row-major, leading dim ld):
// dst[c][r] = codes[r][c].
template <int B, int ChunkBytes>
__device__ void store_codes_transposed(const typename WarpTile<i8, B, ChunkBytes>::Chunk (&c)[WarpTile<i8, B, ChunkBytes>::kChunksPerLane],
                                       CodeTileSmem<B>& smem, i8* dst, i64 ld, int lane) {
  typedef WarpTile<i8, B, ChunkBytes> Tile;
#pragma unroll
  for (int i = 0; i < Tile::kChunksPerLane; ++i)
#pragma unroll
    for (int k = 0; k < Tile::kElemsPerChunk; ++k) smem.v[Tile::row(i, lane) * CodeTileSmem<B>::kPitch + Tile::col(i, lane) + k] = c[i].elem[k];
  __syncwarp();
  typename Tile::Chunk t[Tile::kChunksPerLane];
#pragma unroll
  for (int i = 0; i < Tile::kChunksPerLane; ++i)
#pragma unroll
    for (int k = 0; k < Tile::kElemsPerChunk; ++k)
      t[i].elem[k] = smem.v[(Tile::col(i, lane) + k) * CodeTileSmem<B>::kPitch + Tile::row(i, lane)];
  __syncwarp();
  Tile::store(t, dst, ld, lane);
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace jetforge
