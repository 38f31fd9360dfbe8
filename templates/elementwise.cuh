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

// GELU (forward) or its derivative (backward: the factor dy is multiplied by) at x. The tanh form as
// x * (k + k c x^2) inside the tanh, 0.5 x (1 + t) outside, and its derivative 0.5 (1 + t) + x (1 - t^2) 0.5 k (1 + 3 c x^2):
// the fewest FP32 operations for the same functions.
template <int Op> __device__ __forceinline__ float gelu_or_grad(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608f, kCubic = 0.044715f, kRsqrt2 = 0.7071067812f, kRsqrt2Pi = 0.3989422804f;
  if constexpr (Op == kGeluTanh) {
    const float hx = 0.5f * x;
    return fmaf(hx, fast_tanh(x * fmaf(kSqrt2OverPi * kCubic, x * x, kSqrt2OverPi)), hx);
  } else if constexpr (Op == kGeluErf) {
    return 0.5f * x * (1.0f + erff(x * kRsqrt2));
  } else if constexpr (Op == kGeluTanhGrad) {
    const float x2 = x * x, t = fast_tanh(x * fmaf(kSqrt2OverPi * kCubic, x2, kSqrt2OverPi));
    return fmaf(x * fmaf(1.5f * kSqrt2OverPi * kCubic, x2, 0.5f * kSqrt2OverPi), fmaf(-t, t, 1.0f), fmaf(0.5f, t, 0.5f));
  } else {
    return 0.5f * (1.0f + erff(x * kRsqrt2)) + x * kRsqrt2Pi * __expf(-0.5f * x * x);
  }
}

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
    typename Tile::Chunk x[kN];
    if constexpr (kBackward) Tile::load(x, p.b_codes + origin, p.cols);
    float y[kN][kE];
#pragma unroll
    for (int i = 0; i < kN; ++i) {
      const i64 block = block_of(Tile::row(i) / B * TileBC + Tile::col() / B);
      const float sx = __ldg((kBackward ? p.b_scales : p.a_scales) + block), sdy = kBackward ? __ldg(p.a_scales + block) : 0.0f;
#pragma unroll
      for (int j = 0; j < kWords; ++j) {
        const u32 wx = biased_codes(reinterpret_cast<const u32*>((kBackward ? x[i] : a[i]).elem)[j]);
        const u32 wdy = kBackward ? biased_codes(reinterpret_cast<const u32*>(a[i].elem)[j]) : 0u;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const float f = gelu_or_grad<Op>(biased_code(wx, k) * sx);
          y[i][4 * j + k] = kBackward ? biased_code(wdy, k) * sdy * f : f;
        }
      }
    }
    store_requantized<Tile, B, TileBR, TileBC, Threads, Round>(y, amax, p.out_codes, p.out_scales, p.cols, tile_r, tile_c, p.round_key);
  }
}

}  // namespace jetforge
#endif
