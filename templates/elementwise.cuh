// INT8 -> INT8 elementwise operators (DESIGN.md §1): GELU (tanh or erf form) forward and backward, dropout forward
// and backward. GELU is computed from the codes with each block's scale folded into its constants (FP16 pairs for the
// tanh forward; FP32 otherwise, once per code into a per-block table) and every 32 x 32 block of the output gets a
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

// Two FP16 values in a 32-bit register (PTX f16x2), for the tanh GELU forward's polynomial and tanh: two elements per
// instruction, codes exact, 2^-11 relative rounding (at most 0.06 of a quantization step at a block's largest value).
__device__ __forceinline__ u32 h2_fma(u32 a, u32 b, u32 c) {
  u32 d;
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
__device__ __forceinline__ u32 h2_mul(u32 a, u32 b) {
  u32 d;
  asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
__device__ __forceinline__ u32 h2_sub(u32 a, u32 b) {
  u32 d;
  asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
__device__ __forceinline__ u32 h2_tanh(u32 a) {
  u32 d;
  asm("tanh.approx.f16x2 %0, %1;" : "=r"(d) : "r"(a));
  return d;
}
__device__ __forceinline__ u32 h2_max_abs(u32 m, u32 a) {  // max(m, |a|), halfwise
  u32 d;
  asm("{\n.reg .b32 t;\nabs.f16x2 t, %2;\nmax.f16x2 %0, %1, t;\n}" : "=r"(d) : "r"(m), "r"(a));
  return d;
}
__device__ __forceinline__ u32 h2_splat(float x) {  // x (rounded to FP16) in both halves
  u32 d;
  asm("cvt.rn.f16x2.f32 %0, %1, %1;" : "=r"(d) : "f"(x));
  return d;
}
__device__ __forceinline__ void h2_to_floats(u32 h, float& lo, float& hi) {
  asm("{\n.reg .f16 l, h;\nmov.b32 {l, h}, %2;\ncvt.f32.f16 %0, l;\ncvt.f32.f16 %1, h;\n}" : "=f"(lo), "=f"(hi) : "r"(h));
}
// Nearest codes of the FP16 pairs z01 and z23 times inv (an FP16 pair): z inv + 1536 lands where FP16 values are 1
// apart, so it is 1536 + round(z inv), whose low byte is the code in two's complement (kMagic's FP16 counterpart); one
// byte permute packs the four.
__device__ __forceinline__ u32 h2_codes4(u32 z01, u32 z23, u32 inv) {
  constexpr u32 kMagicPair = 0x66006600u;  // 1536 = 1.5 * 2^10 in both halves
  return __byte_perm(h2_fma(z01, inv, kMagicPair), h2_fma(z23, inv, kMagicPair), 0x6420u);
}
// Codes k and k + 1 of a biased word (biased_codes) as FP16 u = code / 128: the byte dropped into the mantissa of
// 8 (where FP16 values are 1/128 apart) is 8 + (code + 128) / 128, less 9.
__device__ __forceinline__ u32 h2_codes_over_128(u32 biased, int k) {
  return h2_sub(__byte_perm(biased, 0x48484848u, u32(k) | 0x4000u | u32(k + 1) << 8 | 0x40u), 0x48804880u);
}

// Whether op is a GELU backward form (the derivative times dy, stochastic rounding).
__host__ __device__ constexpr bool gelu_backward(int op) { return op == kGeluTanhGrad || op == kGeluErfGrad; }

// GELU (forward) or its derivative (backward: the factor dy is multiplied by) on the codes q of one block whose scale
// is sx (x = q sx), as z(q) with the block's value factor * z: sx is folded into per-block constants so that an element
// costs the fewest FP32 operations. Tanh form: GELU = 0.5 x (1 + t), t = tanh(k x (1 + c x^2)), so z = q (1 + t) with
// the tanh's argument q (c0 + c1 q^2), factor 0.5 sx; derivative 0.5 (1 + t) + x (1 - t^2) 0.5 k (1 + 3 c x^2), i.e.
// (1 - t^2) q (c2 + c3 q^2) with c2, c3 the same per block, factor 1. Erf form likewise with erf(x / sqrt(2)).
// (sx^3 is capped at FLT_MAX, so its constants stay finite and a zero code stays 0 however large the scale.)
// The tanh form's forward runs in FP16 pairs on u = q / 128 instead (forward_pair): z / 128 = u (1 + tanh(u (C0 + C1
// u^2))) with C0 = 128 c0, C1 = 128^3 c1 capped at FP16's largest value (where a cap acts, |u| >= 1/128 makes the
// tanh's argument at least 0.76 and the capped term changes tanh by at most a few hundredths, u times that in z / 128),
// and the factor 64 sx.
template <int Op> struct GeluOnBlock {
  static constexpr bool kBackward = gelu_backward(Op);
  static constexpr float kSqrt2OverPi = 0.7978845608f, kCubic = 0.044715f, kRsqrt2 = 0.7071067812f, kRsqrt2Pi = 0.3989422804f;
  float c0, c1, c2, c3, factor;
  u32 h_c0, h_c1;  // tanh forward: C0, C1 as FP16 pairs
  __device__ explicit GeluOnBlock(float sx) {
    const float sx3 = fminf(sx * sx * sx, 3.402823466e38f);
    if constexpr (Op == kGeluTanh || Op == kGeluTanhGrad) {
      c0 = kSqrt2OverPi * sx, c1 = kSqrt2OverPi * kCubic * sx3;
      c2 = 0.5f * kSqrt2OverPi * sx, c3 = 1.5f * kSqrt2OverPi * kCubic * sx3;
    } else {
      c0 = kRsqrt2 * sx, c1 = kRsqrt2Pi * sx, c2 = -0.5f * sx * sx, c3 = 0.0f;
    }
    factor = kBackward ? 1.0f : 0.5f * sx;
    if constexpr (Op == kGeluTanh) {
      constexpr float kHalfMax = 65504.0f;
      h_c0 = h2_splat(fminf(128.0f * c0, kHalfMax)), h_c1 = h2_splat(fminf(2097152.0f * c1, kHalfMax));
    }
  }
  // Tanh form, forward: z / 128 of codes k and k + 1 of a biased word as an FP16 pair (the block's value: 128 factor
  // times it).
  __device__ u32 forward_pair(u32 biased, int k) const {
    const u32 u = h2_codes_over_128(biased, k);
    const u32 t = h2_tanh(h2_mul(u, h2_fma(h_c1, h2_mul(u, u), h_c0)));
    return h2_fma(u, t, u);
  }
  // The value at -q from the value v at q: GELU(-x) = GELU(x) - x and GELU'(-x) = 1 - GELU'(x) in both forms, so a
  // table needs only the codes 0..127 evaluated (and the negative codes' small values come out no less accurate than
  // evaluated: their tanh or erf would cancel against 1 just the same).
  __device__ float mirrored(float q, float v) const {
    if constexpr (kBackward) return 1.0f - v;
    else return fmaf(-2.0f, q, v);
  }
  // The other forms: the value (erf forward) or derivative at code q.
  __device__ float operator()(float q) const {
    static_assert(Op != kGeluTanh, "the tanh forward runs in FP16 pairs: forward_pair");
    const float q2 = q * q;
    if constexpr (Op == kGeluErf) {
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

// Threads per SM asked of the compiler: the GELU backward fits 48 registers without spills, and 1280 resident
// threads (instead of 1024 at 64 registers) made it 1-3% faster, 1536 (40 registers, spilling) 1-4% slower (session
// 16, run 201).
__host__ __device__ constexpr int elementwise_resident_threads(int op) { return gelu_backward(op) ? 1280 : 1024; }

// One CTA per tile of TileBR x TileBC blocks (B = 32), 16 codes per chunk, on a 2-D grid (blockIdx.y the tile row).
template <int Op, int Round, int TileBR, int TileBC, int Threads>
__global__ void __launch_bounds__(Threads, streaming_min_ctas(Threads, elementwise_resident_threads(Op))) elementwise_kernel(const ElementwiseParams p) {
  constexpr int B = 32, kRows = TileBR * B, kCols = TileBC * B, kBlocks = TileBR * TileBC;
  constexpr bool kBackward = gelu_backward(Op);
  typedef CtaTile<i8, kRows, kCols, Threads> Tile;
  constexpr int kN = Tile::kChunksPerThread, kE = Tile::kElemsPerChunk, kWords = kE / 4;

  const i64 blocks_per_row = p.cols / B, tile_r = blockIdx.y, tile_c = blockIdx.x;
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
      const DrawRun draws(p.mask_key, first);  // the chunk's quads, one per word of codes
#pragma unroll
      for (int j = 0; j < kWords; ++j) {
        u32 d0, d1;
        draws.quad(u32(j), d0, d1);
        reinterpret_cast<u32*>(a[i].elem)[j] &= dropout_keep_bytes(d0, d1, threshold);
      }
      Tile::store(a[i], i, p.out_codes + origin, p.cols);
    }
    for (int b = int(threadIdx.x); b < kBlocks; b += Threads) p.out_scales[block_of(b)] = dropout_scale(__ldg(p.a_scales + block_of(b)), p.p);
  } else {
    // The tanh forward's maxima by warp partials (one barrier) where its tile allows: 4% faster, while the backward
    // measured 1-2% slower so (store_requantized_chunks).
    __shared__ BlockAmax<kBlocks, Threads, Op == kGeluTanh && Tile::template kWarpsShareBlocks<B>> amax;
    __shared__ float out_factor[kBlocks];  // each block's output is out_factor * the z below
    // z depends on nothing but the x code and its block's scale, so every form but the tanh forward (FP16 pairs from
    // the codes to the codes, cheaper still) evaluates each block's codes 0..127 once into a table of all 255 (the
    // negative ones mirrored) and looks the elements up: an eighth of the evaluations of one per element.
    constexpr bool kLookup = Op != kGeluTanh;
    __shared__ float lookup[kLookup ? kBlocks : 1][256];  // z of block b's biased code c + 128 (entry 0 unused)
    typename Tile::Chunk x[kN];
    if constexpr (kBackward) Tile::load(x, p.b_codes + origin, p.cols);
    const float* x_scales = kBackward ? p.b_scales : p.a_scales;
    if constexpr (kLookup) {
      constexpr int kPerBlock = Threads >= kBlocks ? Threads / kBlocks : 1;  // threads per block's table: one set of constants each
      const int first = int(threadIdx.x % unsigned(kPerBlock));
      auto build = [&](int b) {
        const GeluOnBlock<Op> gelu(__ldg(x_scales + block_of(b)));
#pragma unroll 4
        for (int j = 0; j < (128 + kPerBlock - 1) / kPerBlock; ++j) {  // codes 0..127, and their negatives mirrored
          const int c = first + j * kPerBlock;
          if (128 % kPerBlock == 0 || c < 128) {
            const float q = float(c), v = gelu(q);
            lookup[b][128 - c] = gelu.mirrored(q, v);
            lookup[b][128 + c] = v;  // after the mirror: code 0 keeps its own value
          }
        }
      };
      // Where every thread has one share of one table, no loop and no branch: ptxas then issues the code loads above
      // before the tables (around a branch it sank them below, so the CTA waited for them after the tables).
      if constexpr (Threads % kBlocks == 0) build(int(threadIdx.x / unsigned(kPerBlock)));
      else
        for (int b = int(threadIdx.x / unsigned(kPerBlock)); b < kBlocks; b += Threads / kPerBlock) build(b);
      __syncthreads();
    }
    float z[kN][kE];       // the lookup's values
    u32 z_pairs[kN][kE / 2];  // or the FP16 pairs' z / 128
    // Chunks in one block row share the block's constants.
    constexpr int kChunksPerBlockRow = Tile::template kChunksPerBlockRow<B>;
#pragma unroll
    for (int i0 = 0; i0 < kN; i0 += kChunksPerBlockRow) {
      const int b = Tile::row(i0) / B * TileBC + Tile::col() / B;
      const GeluOnBlock<Op> gelu(__ldg(x_scales + block_of(b)));  // (with the lookup only its factor is used)
      // backward: dx = sdy * (dy code * gelu'); FP16 pairs hold z / 128
      const float factor = kBackward ? __ldg(p.a_scales + block_of(b)) : kLookup ? gelu.factor : 128.0f * gelu.factor;
      if (Tile::row(i0) % B == 0 && Tile::col() % B == 0) out_factor[b] = factor;  // the block's first chunk (a group's first)
#pragma unroll
      for (int i = i0; i < i0 + kChunksPerBlockRow; ++i)
#pragma unroll
        for (int j = 0; j < kWords; ++j) {
          const u32 wx = biased_codes(reinterpret_cast<const u32*>((kBackward ? x[i] : a[i]).elem)[j]);
          const u32 wdy = kBackward ? biased_codes(reinterpret_cast<const u32*>(a[i].elem)[j]) : 0u;
          if constexpr (!kLookup) {
#pragma unroll
            for (int k = 0; k < 4; k += 2) z_pairs[i][2 * j + k / 2] = gelu.forward_pair(wx, k);
          } else {
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              const float g = lookup[b][__byte_perm(wx, 0u, 0x4440u | u32(k))];  // byte k, zero-extended
              z[i][4 * j + k] = kBackward ? biased_code(wdy, k) * g : g;
            }
          }
        }
    }
    if constexpr (kLookup) {
      store_requantized<Tile, B, TileBR, TileBC, Threads, Round>(z, amax, p.out_codes, p.out_scales, p.cols, tile_r, tile_c, p.round_key, out_factor);
    } else {
      static_assert(Round == kRoundNearest, "the FP16 pairs round to nearest");
      store_requantized_chunks<Tile, B, TileBR, TileBC, Threads, true>(
          [&](int i) {
            u32 m = 0u;
#pragma unroll
            for (int h = 0; h < kE / 2; ++h) m = h2_max_abs(m, z_pairs[i][h]);
            float lo, hi;
            h2_to_floats(m, lo, hi);
            return fmaxf(lo, hi);
          },
          [&](int i, float inv, u64, i8 (&q)[kE]) {
            const u32 inv_pair = h2_splat(inv);  // exact: finish<true> rounded it to FP16
#pragma unroll
            for (int w = 0; w < kWords; ++w) reinterpret_cast<u32*>(q)[w] = h2_codes4(z_pairs[i][2 * w], z_pairs[i][2 * w + 1], inv_pair);
          },
          amax, p.out_codes, p.out_scales, p.cols, tile_r, tile_c, out_factor);
    }
  }
}

}  // namespace jetforge
#endif
