// A CTA owns a tile of TileBR x TileBC blocks (each B x B) of a row-major matrix and moves it as "chunks":
// ChunkBytes-wide vectors, chunk c covering row c / kChunksPerRow, columns (c % kChunksPerRow) * E + [0, E).
// Thread t handles chunks t, t + Threads, ...: a warp touches whole consecutive row segments, and with tiles at
// least 128 bytes wide every row segment is a full cache line (half-line accesses cost a quarter of the
// bandwidth on H100, measured).
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

// Minimum resident CTAs asked of the compiler: enough for `resident` threads per SM (at most 32 CTAs), i.e. at most
// 64 registers per thread for the default 1024. Streaming kernels need the loads of many threads in flight more than
// they need registers.
__host__ __device__ constexpr int streaming_min_ctas(int threads, int resident = 1024) {
  return threads >= resident ? 1 : (resident / threads < 32 ? resident / threads : 32);
}

// 16-byte asynchronous global -> shared copies (sm_80+): data in flight holds no registers.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(u32(__cvta_generic_to_shared(smem))), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most Pending of this thread's committed groups are still in flight.
template <int Pending> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(Pending) : "memory"); }

template <class T, int Rows, int Cols, int Threads, int ChunkBytes = 16> struct CtaTile {
  static constexpr int kElemsPerChunk = ChunkBytes / int(sizeof(T));
  static constexpr int kChunksPerRow = Cols / kElemsPerChunk;
  static constexpr int kRowStep = Threads / kChunksPerRow;  // rows between a thread's consecutive chunks
  static constexpr int kChunksPerThread = Rows / kRowStep;
  // A thread's chunks lie kRowStep rows apart: how many consecutive ones fall in one block row of B rows (1 where
  // kRowStep does not divide B).
  template <int B> static constexpr int kChunksPerBlockRow = kRowStep < B && B % kRowStep == 0 ? B / kRowStep : 1;
  // Whether every warp holds chunks of every B x B block of the tile, in each of its block rows.
  template <int B> static constexpr bool kWarpsShareBlocks = kChunksPerRow <= 32 && kRowStep <= B;
  static_assert(Cols % kElemsPerChunk == 0, "a tile row must hold whole chunks");
  static_assert(Threads % kChunksPerRow == 0 && Rows % kRowStep == 0, "every thread must own whole chunks in one column");

  typedef typename VecOfBytes<ChunkBytes>::type Vec;
  union Chunk {
    Vec vec;
    T elem[kElemsPerChunk];
  };

  // A thread's chunks all sit in one column, kRowStep rows apart.
  static __device__ int row(int i) { return int(threadIdx.x / unsigned(kChunksPerRow)) + i * kRowStep; }
  static __device__ int col() { return int(threadIdx.x % unsigned(kChunksPerRow)) * kElemsPerChunk; }

  // Issues every load before any use, so kChunksPerThread requests are in flight per thread.
  static __device__ void load(Chunk (&c)[kChunksPerThread], const T* tile, i64 ld) {
    const T* p = tile + i64(row(0)) * ld + col();
#pragma unroll
    for (int i = 0; i < kChunksPerThread; ++i) c[i].vec = __ldg(reinterpret_cast<const Vec*>(p + i * kRowStep * ld));
  }
  // Starts copying this thread's chunks of a tile into `stage` (Rows x Cols, row-major in shared memory); the
  // same thread reads them back with read_stage once cp_async_wait says they landed.
  static __device__ void load_async(T* stage, const T* tile, i64 ld) {
    const T* g = tile + i64(row(0)) * ld + col();
#pragma unroll
    for (int i = 0; i < kChunksPerThread; ++i) cp_async_16(stage + row(i) * Cols + col(), g + i * kRowStep * ld);
  }
  static __device__ void read_stage(Chunk (&c)[kChunksPerThread], const T* stage) {
#pragma unroll
    for (int i = 0; i < kChunksPerThread; ++i) c[i].vec = *reinterpret_cast<const Vec*>(stage + row(i) * Cols + col());
  }
  static __device__ void store(const Chunk& c, int i, T* tile, i64 ld) {
    *reinterpret_cast<Vec*>(tile + i64(row(i)) * ld + col()) = c.vec;
  }
};

// The tile loop of the persistent streaming kernels: CTA c takes tiles c, c + gridDim, ... and keeps a ring of
// Stages slots in shared memory filled by cp.async Stages - 1 tiles ahead, so the loads in flight hold no
// registers and stay in flight through the body's reductions and barriers. load(tile, slot) starts the copies
// of this thread's chunks; body(tile, slot) runs once they have landed. A thread reads back only the chunks it
// copied itself, so refilling a slot needs no barrier.
template <int Stages, class Load, class Body> __device__ void pipelined_tiles(i64 tiles, const Load& load, const Body& body) {
  for (int s = 0; s < Stages - 1; ++s) {
    const i64 t = i64(blockIdx.x) + i64(s) * gridDim.x;
    if (t < tiles) load(t, s);
    cp_async_commit();  // possibly empty: one group per tile keeps the wait count right
  }
  int it = 0;
  for (i64 tile = blockIdx.x; tile < tiles; tile += gridDim.x, ++it) {
    const i64 ahead = tile + i64(Stages - 1) * gridDim.x;
    if (ahead < tiles) load(ahead, (it + Stages - 1) % Stages);
    cp_async_commit();
    cp_async_wait<Stages - 1>();
    body(tile, it % Stages);
  }
}

// Per-block absolute maxima of a CTA tile, reduced first across the adjacent lanes that share a block row, then either
// across rows with shared-memory atomics (non-negative floats order like their bit patterns) and turned into scales
// once per block, or (ByWarps, for tiles whose warps share every block) per warp by shuffles into `partial`, whose
// largest entry every thread then turns into its block's scale itself (store_requantized_chunks).
template <int NumBlocks, int Threads, bool ByWarps = false> struct BlockAmax {
  static constexpr int kAtomicBlocks = ByWarps ? 1 : NumBlocks;  // (each path's arrays take no room in the other's)
  u32 bits[kAtomicBlocks];
  float scale[kAtomicBlocks];
  float inv_scale[kAtomicBlocks];
  float partial[ByWarps ? 2 : 1][ByWarps ? Threads / 32 : 1][ByWarps ? NumBlocks : 1];  // call parity, warp, block (ByWarps)

  // Calls f(b) for every block b, spread over the threads (a plain branch when there are fewer blocks than threads).
  template <class F> static __device__ void for_each_block(const F& f) {
    if constexpr (NumBlocks <= Threads) {
      if (threadIdx.x < NumBlocks) f(int(threadIdx.x));
    } else {
      for (int b = int(threadIdx.x); b < NumBlocks; b += Threads) f(b);
    }
  }
  // The atomics path (clear, add, finish): with ByWarps its arrays hold one entry, so it must not be called.
  __device__ void clear() {
    static_assert(!ByWarps, "the atomics path of a BlockAmax laid out for warp partials");
    for_each_block([&](int b) { bits[b] = 0u; });
  }
  // All lanes call this together; LanesPerBlockRow adjacent lanes cover one block row.
  template <int LanesPerBlockRow> __device__ void add(int block, float amax) {
    static_assert(!ByWarps, "the atomics path of a BlockAmax laid out for warp partials");
#pragma unroll
    for (int o = 1; o < LanesPerBlockRow; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    if (threadIdx.x % LanesPerBlockRow == 0) atomicMax(&bits[block], __float_as_uint(amax));
  }
  // The scale and inverse scale of a block whose largest magnitude is m. HalfInverse: the inverse is 127 / m rounded to
  // FP16 (at most its largest value, 65504) for codes computed in FP16, and the scale is its exact reciprocal, within
  // 2^-11 of m / 127: the block's largest value still gets code +-127 and the codes and scale agree.
  template <bool HalfInverse> static __device__ void scale_of(float m, float& scale, float& inv) {
    if constexpr (HalfInverse) {
      inv = round_to_half(fminf(kCodeMax / m, 65504.0f));
      scale = 1.0f / inv;
    } else {
      scale = block_scale(m);
      inv = inverse_scale(scale);
    }
  }
  // After a barrier: turns the maxima into scales (one division per block).
  template <bool HalfInverse = false> __device__ void finish() {
    static_assert(!ByWarps, "the atomics path of a BlockAmax laid out for warp partials");
    for_each_block([&](int b) { scale_of<HalfInverse>(__uint_as_float(bits[b]), scale[b], inv_scale[b]); });
  }
};

// Codes of E consecutive values of one block (E a multiple of 4) whose first element has index `first` (a multiple of
// E): nearest, or stochastic with the draws draw16(key, index). value(k) gives the k-th FP32 value.
// The values are the block's own, whose largest magnitude gave `inv`: neither rounding needs a clamp then
// (|value| * inv <= 127 (1 + 2^-23) rounds to at most 127; see quantize_stochastic).
template <int Round, int E, class Value>
__device__ __forceinline__ void quantize_run(const Value& value, float inv, u64 first, u32 key, i8 (&codes)[E]) {
  // A run of E elements from a multiple of E (E a power of two), as DrawRun needs.
  const DrawRun draws(key, first);
#pragma unroll
  for (int k = 0; k < E; k += 4) {
    if constexpr (Round == kRoundNearest) {
#pragma unroll
      for (int f = 0; f < 4; ++f) codes[k + f] = magic_code(__fmaf_rn(value(k + f), inv, kMagic));
    } else {
      u32 d0, d1;
      draws.quad(u32(k / 4), d0, d1);
      *reinterpret_cast<u32*>(&codes[k]) =
          codes4_from_carries(stochastic_carry(value(k), inv, draw_half(d0, 0)), stochastic_carry(value(k + 1), inv, draw_half(d0, 1)),
                              stochastic_carry(value(k + 2), inv, draw_half(d1, 0)), stochastic_carry(value(k + 3), inv, draw_half(d1, 1)));
    }
  }
}

// The end of every block-wise operator: this thread's chunks of a TileBR x TileBC-block tile (chunked as Tile) get
// per-block scales, are rounded, and are stored as codes (chunked alike, one byte per element) plus the tile's block
// scales. The values stay wherever the caller holds them: chunk_max(i) gives the largest magnitude in chunk i, and
// chunk_codes(i, inv, first, codes) fills its kElemsPerChunk codes given its block's inverse scale and the element index
// of its first value. With `out_factor` (shared memory, one per tile block, written before the call), block b's values
// are out_factor[b] times the chunks' values: its codes are theirs and its stored scale out_factor[b] times theirs (at
// least kMinScale): the caller saves a multiply per element. A persistent CTA that calls it once per tile passes the
// call's number as `call` (the maxima alternate between two buffers, so one barrier per call keeps them consistent).
//
// The maxima take three barriers with shared-memory atomics, or one with BlockAmax's ByWarps: each warp reduces its
// lanes' maxima per block by shuffles and writes one partial per block, and after the barrier every thread takes its
// block's largest partial and computes the scale itself (a division per warp instruction in every warp instead of one
// warp's). Which is faster depends on the kernel (bench/NOTES.md, sessions 16-17: GELU forward, the resident LayerNorm
// and LayerNorm-apply gain 3-4%, GELU backward loses 1-3%).
template <class Tile, int B, int TileBR, int TileBC, int Threads, bool HalfInverse = false, bool ByWarps, class ChunkMax, class ChunkCodes>
__device__ void store_requantized_chunks(const ChunkMax& chunk_max, const ChunkCodes& chunk_codes, BlockAmax<TileBR * TileBC, Threads, ByWarps>& amax,
                                         i8* codes, float* scales, i64 cols, i64 tile_r, i64 tile_c, const float* out_factor, int call = 0) {
  constexpr int kN = Tile::kChunksPerThread, kE = Tile::kElemsPerChunk, kLanesPerBlockRow = B / kE;
  typedef CtaTile<i8, TileBR * B, TileBC * B, Threads, kE> CodeTile;
  const i64 r0 = tile_r * TileBR * B, c0 = tile_c * TileBC * B, blocks_per_row = cols / B;
  const int block_col = Tile::col() / B;
  auto block_of_chunk = [&](int i) { return Tile::row(i) / B * TileBC + block_col; };
  auto store_scale = [&](int blk, float scale) {
    scales[(tile_r * TileBR + blk / TileBC) * blocks_per_row + tile_c * TileBC + blk % TileBC] =
        out_factor ? fmaxf(scale * out_factor[blk], kMinScale) : scale;
  };
  auto store_codes = [&](int i, float inv) {  // chunk i, its block's inverse scale
    const u64 first = u64((r0 + Tile::row(i)) * cols + c0 + Tile::col());  // element index of the chunk
    typename CodeTile::Chunk q;
    chunk_codes(i, inv, first, q.elem);
    CodeTile::store(q, i, codes + r0 * cols + c0, cols);
  };
  // A thread's chunks in one block row are maxed in registers first: group i0 / kChunksPerBlockRow.
  constexpr int kChunksPerBlockRow = Tile::template kChunksPerBlockRow<B>;
  auto group_max = [&](int i0) {
    float m = 0.0f;
#pragma unroll
    for (int i = i0; i < i0 + kChunksPerBlockRow; ++i) m = fmaxf(m, chunk_max(i));
    return m;
  };
  if constexpr (ByWarps) {
    static_assert(Tile::template kWarpsShareBlocks<B>, "warp partials need every warp to hold every block");
    constexpr int kGroups = kN / kChunksPerBlockRow;
    const int lane = int(threadIdx.x % 32u), warp = int(threadIdx.x / 32u);
    const bool writer = lane < Tile::kChunksPerRow && lane % kLanesPerBlockRow == 0;  // one lane per block in a warp
    float(&partial)[Threads / 32][TileBR * TileBC] = amax.partial[call & 1];
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      float m = group_max(g * kChunksPerBlockRow);
      // A block's lanes in a warp: kLanesPerBlockRow adjacent ones per row, its rows kChunksPerRow lanes apart.
#pragma unroll
      for (int o = 1; o < 32; o <<= 1)
        if (o < kLanesPerBlockRow || o >= Tile::kChunksPerRow) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
      if (writer) partial[warp][block_of_chunk(g * kChunksPerBlockRow)] = m;
    }
    __syncthreads();
    float inv[kGroups];
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const int blk = block_of_chunk(g * kChunksPerBlockRow);
      float m = partial[0][blk], scale;
#pragma unroll
      for (int w = 1; w < Threads / 32; ++w) m = fmaxf(m, partial[w][blk]);
      amax.template scale_of<HalfInverse>(m, scale, inv[g]);
      if (warp == 0 && writer) store_scale(blk, scale);
    }
#pragma unroll
    for (int i = 0; i < kN; ++i) store_codes(i, inv[i / kChunksPerBlockRow]);
  } else {
    // Its barriers keep amax consistent when a persistent CTA calls it once per tile.
    amax.clear();
    __syncthreads();
#pragma unroll
    for (int i0 = 0; i0 < kN; i0 += kChunksPerBlockRow) amax.template add<kLanesPerBlockRow>(block_of_chunk(i0), group_max(i0));
    __syncthreads();
    amax.template finish<HalfInverse>();
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kN; ++i) store_codes(i, amax.inv_scale[block_of_chunk(i)]);
    amax.for_each_block([&](int blk) { store_scale(blk, amax.scale[blk]); });
  }
}

// The largest magnitude of a chunk of FP32 values.
template <int E> __device__ __forceinline__ float max_abs(const float (&v)[E]) {
  float m = 0.0f;
#pragma unroll
  for (int k = 0; k < E; ++k) m = fmaxf(m, fabsf(v[k]));
  return m;
}

// The same for FP32 values y held in registers: rounded nearest, or stochastically with the noise of their element index.
template <class Tile, int B, int TileBR, int TileBC, int Threads, int Round, bool ByWarps>
__device__ void store_requantized(float (&y)[Tile::kChunksPerThread][Tile::kElemsPerChunk], BlockAmax<TileBR * TileBC, Threads, ByWarps>& amax, i8* codes,
                                  float* scales, i64 cols, i64 tile_r, i64 tile_c, u32 key, const float* out_factor = nullptr, int call = 0) {
  constexpr int kE = Tile::kElemsPerChunk;
  store_requantized_chunks<Tile, B, TileBR, TileBC, Threads>(
      [&](int i) { return max_abs(y[i]); },
      [&](int i, float inv, u64 first, i8 (&q)[kE]) { quantize_run<Round>([&](int k) { return y[i][k]; }, inv, first, key, q); }, amax, codes, scales, cols,
      tile_r, tile_c, out_factor, call);
}

// A Rows x Cols tile of int8 codes in shared memory, written in 4-byte row words and read back as 4x4 byte
// sub-blocks that a thread transposes in registers. Word w of row r is stored at w ^ ((r / 4) mod words-per-row):
// the 32 lanes of a transposed read (32 consecutive 4-row groups, one word column) hit 32 distinct banks.
template <int Rows, int Cols> struct CodeTileSmem {
  static constexpr int kWords = Cols / 4;
  static_assert(Cols % 4 == 0 && (kWords & (kWords - 1)) == 0, "rows must hold a power-of-two number of words");
  static_assert(Rows % 4 == 0, "transposed reads take 4 rows at a time");
  u32 w[Rows * kWords];

  static __device__ int index(int r, int word) { return r * kWords + (word ^ ((r >> 2) & (kWords - 1))); }
  __device__ void put4(int r, int c, u32 bytes) { w[index(r, c / 4)] = bytes; }

  // Stages one chunk of codes held in registers (Bytes a multiple of 4) at row r, columns c .. c + Bytes - 1.
  template <int Bytes> __device__ void put(int r, int c, const i8 (&codes)[Bytes]) {
#pragma unroll
    for (int k = 0; k < Bytes; k += 4) put4(r, c + k, *reinterpret_cast<const u32*>(&codes[k]));
  }
};

// 4x4 byte transpose: rows a, b, c, d (4 bytes each) -> out[m] = (a_m, b_m, c_m, d_m).
__device__ __forceinline__ void transpose4x4(u32 a, u32 b, u32 c, u32 d, u32 (&out)[4]) {
  const u32 ab01 = __byte_perm(a, b, 0x5140), cd01 = __byte_perm(c, d, 0x5140);
  const u32 ab23 = __byte_perm(a, b, 0x7362), cd23 = __byte_perm(c, d, 0x7362);
  out[0] = __byte_perm(ab01, cd01, 0x5410);
  out[1] = __byte_perm(ab01, cd01, 0x7632);
  out[2] = __byte_perm(ab23, cd23, 0x5410);
  out[3] = __byte_perm(ab23, cd23, 0x7632);
}

// Writes the Rows x Cols code tile in smem, transposed, to dst (Cols x Rows, leading dimension ld). A unit is a
// UnitRows-row x 4-column sub-block: UnitRows word loads, UnitRows / 4 byte transposes of 4 x 4, and one
// UnitRows-byte store into each of four transposed rows. Neighbouring lanes take neighbouring row groups, so a
// store instruction writes whole 128-byte segments of transposed rows; wider units need fewer store instructions
// per byte (4: 128 x 128 tiles keep 1024 threads busy; 16: a quarter of them, four times fewer stores).
template <int Rows, int Cols, int Threads, int UnitRows>
__device__ void store_transposed(const CodeTileSmem<Rows, Cols>& smem, i8* dst, i64 ld) {
  static_assert(UnitRows == 4 || UnitRows == 8 || UnitRows == 16, "units of 4, 8 or 16 rows");
  static_assert(Rows % UnitRows == 0, "whole units per tile column");
  typedef typename VecOfBytes<UnitRows>::type Vec;
  constexpr int kGroups = Rows / UnitRows, kUnits = kGroups * (Cols / 4);
#pragma unroll
  for (int i = 0; i < (kUnits + Threads - 1) / Threads; ++i) {
    const int u = i * Threads + int(threadIdx.x);
    if (kUnits % Threads != 0 && u >= kUnits) break;
    const int r0 = u % kGroups * UnitRows, word = u / kGroups;
    union {
      Vec vec;
      u32 w[UnitRows / 4];
    } out[4];
#pragma unroll
    for (int q = 0; q < UnitRows / 4; ++q) {
      const int r = r0 + 4 * q;
      u32 t[4];
      transpose4x4(smem.w[smem.index(r, word)], smem.w[smem.index(r + 1, word)], smem.w[smem.index(r + 2, word)], smem.w[smem.index(r + 3, word)], t);
#pragma unroll
      for (int m = 0; m < 4; ++m) out[m].w[q] = t[m];
    }
#pragma unroll
    for (int m = 0; m < 4; ++m) *reinterpret_cast<Vec*>(dst + i64(4 * word + m) * ld + r0) = out[m].vec;
  }
}

}  // namespace jetforge
