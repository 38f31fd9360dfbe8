// A CTA owns a tile of TileBR x TileBC blocks (each B x B) of a row-major matrix and moves it as "chunks":
// ChunkBytes-wide vectors, chunk c covering row c / kChunksPerRow, columns (c % kChunksPerRow) * E + [0, E).
// Thread t handles chunks t, t + Threads, ...: a warp touches whole consecutive row segments, and with tiles at
// least 128 bytes wide every row segment is a full cache line (half-line accesses cost a quarter of the
// bandwidth on H100, measured).
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

template <int Bytes> struct VecOfBytes;
template <> struct VecOfBytes<16> { typedef uint4 type; };
template <> struct VecOfBytes<8> { typedef uint2 type; };
template <> struct VecOfBytes<4> { typedef unsigned int type; };

template <class T, int Rows, int Cols, int Threads, int ChunkBytes = 16> struct CtaTile {
  static constexpr int kElemsPerChunk = ChunkBytes / int(sizeof(T));
  static constexpr int kChunksPerRow = Cols / kElemsPerChunk;
  static constexpr int kChunksPerThread = Rows * kChunksPerRow / Threads;
  static_assert(Cols % kElemsPerChunk == 0, "a tile row must hold whole chunks");
  static_assert(Rows * kChunksPerRow % Threads == 0, "every thread must own the same number of chunks");

  typedef typename VecOfBytes<ChunkBytes>::type Vec;
  union Chunk {
    Vec vec;
    T elem[kElemsPerChunk];
  };

  static __device__ int row(int i) { return (i * Threads + int(threadIdx.x)) / kChunksPerRow; }
  static __device__ int col(int i) { return (i * Threads + int(threadIdx.x)) % kChunksPerRow * kElemsPerChunk; }

  // Issues every load before any use, so kChunksPerThread requests are in flight per thread.
  static __device__ void load(Chunk (&c)[kChunksPerThread], const T* tile, i64 ld) {
#pragma unroll
    for (int i = 0; i < kChunksPerThread; ++i) c[i].vec = __ldg(reinterpret_cast<const Vec*>(tile + i64(row(i)) * ld + col(i)));
  }
  static __device__ void store(const Chunk (&c)[kChunksPerThread], T* tile, i64 ld) {
#pragma unroll
    for (int i = 0; i < kChunksPerThread; ++i) *reinterpret_cast<Vec*>(tile + i64(row(i)) * ld + col(i)) = c[i].vec;
  }
};

// Per-block absolute maxima of a CTA tile, reduced first across the adjacent lanes that share a block row,
// then across rows with shared-memory atomics (non-negative floats order like their bit patterns).
template <int NumBlocks, int Threads> struct BlockAmax {
  u32 bits[NumBlocks];
  float scale[NumBlocks];
  float inv_scale[NumBlocks];

  __device__ void clear() {
    for (int b = int(threadIdx.x); b < NumBlocks; b += Threads) bits[b] = 0u;
  }
  // All lanes call this together; LanesPerBlockRow adjacent lanes cover one block row.
  template <int LanesPerBlockRow> __device__ void add(int block, float amax) {
#pragma unroll
    for (int o = 1; o < LanesPerBlockRow; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    if (threadIdx.x % LanesPerBlockRow == 0) atomicMax(&bits[block], __float_as_uint(amax));
  }
  // After a barrier: turns the maxima into scales (one division per block).
  __device__ void finish() {
    for (int b = int(threadIdx.x); b < NumBlocks; b += Threads) {
      scale[b] = block_scale(__uint_as_float(bits[b]));
      inv_scale[b] = inverse_scale(scale[b]);
    }
  }
};

// A Rows x Cols tile of int8 codes in shared memory, written in 4-byte row pieces and read back transposed in
// 16-byte column chunks. The 8-byte chunk index is XOR-swizzled with (row / 16) so that the 16 rows one column
// read walks fall on distinct banks for neighbouring lanes.
template <int Rows, int Cols> struct CodeTileSmem {
  static constexpr int kChunks8PerRow = Cols / 8;
  static_assert(Cols % 8 == 0 && (kChunks8PerRow & (kChunks8PerRow - 1)) == 0, "rows must hold a power-of-two number of 8-byte chunks");
  static_assert(Rows % 16 == 0, "transposed reads take 16 rows at a time");
  u8 v[Rows * Cols];

  static __device__ int offset(int r, int c) { return r * Cols + (((c >> 3) ^ ((r >> 4) & (kChunks8PerRow - 1))) << 3) + (c & 7); }

  __device__ void put4(int r, int c, u32 bytes) { *reinterpret_cast<u32*>(&v[offset(r, c)]) = bytes; }

  // Stages one chunk of codes held in registers (Bytes a multiple of 4) at row r, columns c .. c + Bytes - 1.
  template <int Bytes> __device__ void put(int r, int c, const i8 (&codes)[Bytes]) {
#pragma unroll
    for (int k = 0; k < Bytes; k += 4) put4(r, c + k, *reinterpret_cast<const u32*>(&codes[k]));
  }

  // Bytes (r0 .. r0+15, c): one 16-byte chunk of the transposed tile.
  __device__ uint4 column16(int r0, int c) const {
    u32 w[4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
      w[j] = u32(v[offset(r0 + 4 * j, c)]) | u32(v[offset(r0 + 4 * j + 1, c)]) << 8 | u32(v[offset(r0 + 4 * j + 2, c)]) << 16 |
             u32(v[offset(r0 + 4 * j + 3, c)]) << 24;
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
};

// Writes the Rows x Cols code tile in smem, transposed, to dst (Cols x Rows, leading dimension ld), as
// 16-byte chunks: each transposed row segment is Rows bytes long.
template <int Rows, int Cols, int Threads>
__device__ void store_transposed(const CodeTileSmem<Rows, Cols>& smem, i8* dst, i64 ld) {
  constexpr int kChunksPerRow = Rows / 16;  // of the transposed tile
  constexpr int kChunks = Cols * kChunksPerRow;
  static_assert(kChunks % Threads == 0, "every thread must own the same number of transposed chunks");
#pragma unroll
  for (int i = 0; i < kChunks / Threads; ++i) {
    const int c = i * Threads + int(threadIdx.x);
    const int tr = c / kChunksPerRow, tc = c % kChunksPerRow * 16;
    *reinterpret_cast<uint4*>(dst + i64(tr) * ld + tc) = smem.column16(tc, tr);
  }
}

}  // namespace jetforge
