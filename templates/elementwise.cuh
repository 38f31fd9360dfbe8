// INT8 -> INT8 elementwise operators (DESIGN.md §1): GELU (tanh or erf form) forward and backward, dropout forward
// and backward. GELU is computed in FP32 from the dequantized inputs and every 32 x 32 block of the output gets a
// fresh scale, nearest rounding forward, stochastic backward. Dropout needs no rounding: kept codes stay, dropped
// ones become 0 and the block scale is divided by 1 - p, which is the exact result.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

enum ElementwiseOp { kGeluTanh = 0, kGeluErf = 1, kGeluTanhGrad = 2, kGeluErfGrad = 3, kDropout = 4 };

struct ElementwiseParams {
  const i8* a_codes;  // x (forward) or dy (backward), rows x cols
  const float* a_scales;
  const i8* b_codes;  // x, for the GELU backward
  const float* b_scales;
  i8* out_codes;
  float* out_scales;
  i64 rows, cols;
  float p;          // dropout probability
  u32 mask_key;     // dropout keeps element i where dropout_keep(mask_key, i, p); mask_key = seed_key(mask seed)
  u32 round_key;    // stochastic rounding of the GELU gradient: element i draws draw16(round_key, i)
};

}  // namespace jetforge

#if JF_DEVICE_CODE
#include "jetforge/cta_tile.cuh"

namespace jetforge {

__device__ __forceinline__ float fast_tanh(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));  // relative error ~2^-11, far below a quantization step
  return y;
}

// GELU (forward) or its derivative (backward: the factor dy is multiplied by) on the codes q of one block whose scale
// is sx (x = q sx), as z(q) with the block's value factor * z: sx is folded into per-block constants so that an element
// costs the fewest FP32 operations. Tanh form: GELU = 0.5 x (1 + t), t = tanh(k x (1 + c x^2)), so z = q (1 + t) with
// the tanh's argument q (c0 + c1 q^2), factor 0.5 sx; derivative 0.5 (1 + t) + x (1 - t^2) 0.5 k (1 + 3 c x^2), i.e.
// (1 - t^2) q (c2 + c3 q^2) with c2, c3 the same per block, factor 1. Erf form likewise with erf(x / sqrt(2)).
// (sx^3 is capped at FLT_MAX, so its constants stay finite and a zero code stays 0 however large the scale.)
template <int Op> struct GeluOnBlock {
  static constexpr float kSqrt2OverPi = 0.7978845608f, kCubic = 0.044715f, kRsqrt2 = 0.7071067812f, kRsqrt2Pi = 0.3989422804f;
  float c0, c1, c2, c3, factor;
  __device__ explicit GeluOnBlock(float sx) {
    const float sx3 = fminf(sx * sx * sx, 3.402823466e38f);
    if constexpr (Op == kGeluTanh || Op == kGeluTanhGrad) {
      c0 = kSqrt2OverPi * sx, c1 = kSqrt2OverPi * kCubic * sx3;
      c2 = 0.5f * kSqrt2OverPi * sx, c3 = 1.5f * kSqrt2OverPi * kCubic * sx3;
    } else {
      c0 = kRsqrt2 * sx, c1 = kRsqrt2Pi * sx, c2 = -0.5f * sx * sx, c3 = 0.0f;
    }
    factor = Op == kGeluTanh || Op == kGeluErf ? 0.5f * sx : 1.0f;
  }
  __device__ float operator()(float q) const {
    const float q2 = q * q;
    if constexpr (Op == kGeluTanh) {
      return fmaf(q, fast_tanh(q * fmaf(c1, q2, c0)), q);
    } else if constexpr (Op == kGeluErf) {
      return fmaf(q, erff(q * c0), q);
    } else if constexpr (Op == kGeluTanhGrad) {
      const float t = fast_tanh(q * fmaf(c1, q2, c0));
      return fmaf(q * fmaf(c3, q2, c2), fmaf(-t, t, 1.0f), fmaf(0.5f, t, 0.5f));
    } else {
      return fmaf(0.5f, erff(q * c0), 0.5f) + q * c1 * __expf(q2 * c2);
    }
  }
};

// The byte mask (0xff: kept) of four consecutive elements from the draws of their two pairs: element f is kept where
// its 16-bit draw / 2^16 >= p, i.e. draw >= threshold = ceil(p * 2^16) (dropout_keep, in integers).
__device__ __forceinline__ u32 dropout_keep_bytes(u32 pair0, u32 pair1, u32 threshold) {
  u32 mask = 0;
#pragma unroll
  for (int f = 0; f < 4; ++f)
    if (draw_half(f < 2 ? pair0 : pair1, f & 1) >= threshold) mask |= 0xffu << (8 * f);
  return mask;
}

// One CTA per tile of TileBR x TileBC blocks (B = 32), 16 codes per chunk.
template <int Op, int Round, int TileBR, int TileBC, int Threads>
__global__ void __launch_bounds__(Threads, streaming_min_ctas(Threads)) elementwise_kernel(const ElementwiseParams p) {
  constexpr int B = 32, kRows = TileBR * B, kCols = TileBC * B, kBlocks = TileBR * TileBC;
  constexpr bool kBackward = Op == kGeluTanhGrad || Op == kGeluErfGrad;
  typedef CtaTile<i8, kRows, kCols, Threads> Tile;
  constexpr int kN = Tile::kChunksPerThread, kE = Tile::kElemsPerChunk, kWords = kE / 4;

  const i64 tiles_per_row = p.cols / kCols, blocks_per_row = p.cols / B;
  const i64 tile_r = blockIdx.x / tiles_per_row, tile_c = blockIdx.x % tiles_per_row;
  const i64 r0 = tile_r * kRows, c0 = tile_c * kCols;
  const i64 origin = r0 * p.cols + c0;
  auto block_of = [&](int b) { return (tile_r * TileBR + b / TileBC) * blocks_per_row + tile_c * TileBC + b % TileBC; };  // tile block b's index

  typename Tile::Chunk a[kN];  // x (forward, dropout) or dy (GELU backward)
  Tile::load(a, p.a_codes + origin, p.cols);

  if constexpr (Op == kDropout) {
    const u32 threshold = u32(ceilf(p.p * 65536.0f));
#pragma unroll
    for (int i = 0; i < kN; ++i) {
      const u64 first = u64((r0 + Tile::row(i)) * p.cols + c0 + Tile::col());  // a multiple of 16
      const u32 pair0 = u32(first / 2), offset = draw_offset(p.mask_key, first / 2);  // as in quantize_run: one offset per chunk
#pragma unroll
      for (int j = 0; j < kWords; ++j)
        reinterpret_cast<u32*>(a[i].elem)[j] &= dropout_keep_bytes(mix32(pair0 + u32(2 * j) + offset), mix32(pair0 + u32(2 * j + 1) + offset), threshold);
      Tile::store(a[i], i, p.out_codes + origin, p.cols);
    }
    for (int b = int(threadIdx.x); b < kBlocks; b += Threads) p.out_scales[block_of(b)] = dropout_scale(__ldg(p.a_scales + block_of(b)), p.p);
  } else {
    __shared__ BlockAmax<kBlocks, Threads> amax;
    __shared__ float out_factor[kBlocks];  // each block's output is out_factor * the z below
    typename Tile::Chunk x[kN];
    if constexpr (kBackward) Tile::load(x, p.b_codes + origin, p.cols);
    float z[kN][kE];
    // Chunks in one block row share the block's constants.
    constexpr int kChunksPerBlockRow = Tile::template kChunksPerBlockRow<B>;
#pragma unroll
    for (int i0 = 0; i0 < kN; i0 += kChunksPerBlockRow) {
      const int b = Tile::row(i0) / B * TileBC + Tile::col() / B;
      const GeluOnBlock<Op> gelu(__ldg((kBackward ? p.b_scales : p.a_scales) + block_of(b)));
      const float factor = kBackward ? __ldg(p.a_scales + block_of(b)) : gelu.factor;  // backward: dx = sdy * (dy code * gelu')
      if (Tile::row(i0) % B == 0 && Tile::col() % B == 0) out_factor[b] = factor;  // the block's first chunk (a group's first)
#pragma unroll
      for (int i = i0; i < i0 + kChunksPerBlockRow; ++i)
#pragma unroll
        for (int j = 0; j < kWords; ++j) {
          const u32 wx = biased_codes(reinterpret_cast<const u32*>((kBackward ? x[i] : a[i]).elem)[j]);
          const u32 wdy = kBackward ? biased_codes(reinterpret_cast<const u32*>(a[i].elem)[j]) : 0u;
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            const float g = gelu(biased_code(wx, k));
            z[i][4 * j + k] = kBackward ? biased_code(wdy, k) * g : g;
          }
        }
    }
    store_requantized<Tile, B, TileBR, TileBC, Threads, Round>(z, amax, p.out_codes, p.out_scales, p.cols, tile_r, tile_c, p.round_key, out_factor);
  }
}

}  // namespace jetforge
#endif
