// Shared vocabulary of every jetforge kernel: fixed-width types, BF16 bit conversions, the per-block
// scale rule and the counter-based RNG used for stochastic rounding.
//
// Self-contained on purpose: it compiles under NVRTC with no CUDA toolkit include path, and under a plain
// host C++ compiler, where the CPU references and the operator API include it so that host and device
// agree bit for bit on rounding and random numbers.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define JF_HD __host__ __device__ __forceinline__
#define JF_DEVICE_CODE 1
#else
#define JF_HD inline
#define JF_DEVICE_CODE 0
#endif

namespace jetforge {

typedef signed char i8;
typedef unsigned char u8;
typedef unsigned short u16;
typedef int i32;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;

// BF16 travels as its raw bits; arithmetic is always done in FP32.
struct bf16 {
  u16 bits;
};

JF_HD u32 float_bits(float x) {
#if JF_DEVICE_CODE
  return __float_as_uint(x);
#else
  return __builtin_bit_cast(u32, x);
#endif
}

JF_HD float bits_float(u32 b) {
#if JF_DEVICE_CODE
  return __uint_as_float(b);
#else
  return __builtin_bit_cast(float, b);
#endif
}

JF_HD float bf16_to_float(bf16 h) { return bits_float(u32(h.bits) << 16); }

// Round-to-nearest-even FP32 -> BF16; NaN becomes the canonical NaN 0x7fff (as the hardware converter does).
JF_HD bf16 float_to_bf16(float x) {
#if JF_DEVICE_CODE
  u16 h;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(x));
  return bf16{h};
#else
  u32 b = float_bits(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return bf16{0x7fffu};
  b += 0x7fffu + ((b >> 16) & 1u);
  return bf16{u16(b >> 16)};
#endif
}

template <class T> JF_HD float to_float(T x);
template <> JF_HD float to_float<float>(float x) { return x; }
template <> JF_HD float to_float<bf16>(bf16 x) { return bf16_to_float(x); }

template <class T> JF_HD T from_float(float x);
template <> JF_HD float from_float<float>(float x) { return x; }
template <> JF_HD bf16 from_float<bf16>(float x) { return float_to_bf16(x); }

// How codes are rounded: nearest-even in the forward pass, stochastic (unbiased) for gradients.
enum RoundingMode { kRoundNearest = 0, kRoundStochastic = 1 };

// Largest code magnitude; codes live in [-kCodeMax, kCodeMax] so the format is symmetric.
constexpr float kCodeMax = 127.0f;
// Scale of an all-zero block: tiny but positive and normal, so x / s is finite and every code is 0.
constexpr float kMinScale = 1.17549435e-38f;  // FLT_MIN

// Per-block scale from the block's largest magnitude: s = amax / 127, guarded against zero.
JF_HD float block_scale(float amax) {
  float s = amax / kCodeMax;
  return s > kMinScale ? s : kMinScale;
}

// Random draws (stochastic-rounding noise, dropout masks): element i of a tensor under a seed draws 16 bits, half
// i % 2 of draw_pair(seed_key(seed), i / 2). Counter-based, no state to carry: a run is reproducible and any
// element's draw can be regenerated from its index. Built from 32-bit operations because the GPU has no 64-bit
// integer unit. The four elements of a quad (i / 4) share one input, the quad index XOR the key: lowbias32's
// first round once per quad, then each of the quad's two pairs finishes it with a second round of its own, 32 bits
// (two draws) each. 2.5 instructions per element in a run (DrawRun) instead of 4.5 for a whole mix per pair.

// splitmix64 finalizer: turns a 64-bit seed into the 32-bit key of its stream (on the host, once per launch).
JF_HD u64 hash64(u64 seed, u64 counter) {
  u64 z = seed + (counter + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
JF_HD u32 seed_key(u64 seed) { return u32(hash64(seed, 0)); }

// Wellons' "lowbias32" (xorshift-multiply twice, xorshift; full avalanche) split into its rounds: the first, then the
// second with lowbias32's own multiplier for a quad's first pair and another of the hash prospector's best two-round
// constants for its second (so the two pairs' bits are a fixed bijection of each other, not a repeat). The first round
// after its opening xorshift is its own function: DrawRun takes that xorshift once per run.
JF_HD u32 mix_first_round_rest(u32 shifted) {
  const u32 h = shifted * 0x7feb352du;
  return h ^ (h >> 15);
}
JF_HD u32 mix_first_round(u32 x) { return mix_first_round_rest(x ^ (x >> 16)); }
JF_HD u32 mix_second_round(u32 h, int pair_in_quad) {
  h *= pair_in_quad ? 0xd35a2d97u : 0x846ca68bu;
  return h ^ (h >> 16);
}
// A quad's input: the low 32 bits of its index XOR the key, with the index's high bits folded in, so a tensor of more
// than 2^34 elements does not repeat its first 2^32 quads' draws.
JF_HD u32 draw_offset(u32 key, u64 quad) { return key ^ u32(quad >> 32) * 0x9E3779B9u; }
// The 32 random bits of element pair `pair` (elements 2 pair and 2 pair + 1).
JF_HD u32 draw_pair(u32 key, u64 pair) {
  const u64 quad = pair >> 1;
  return mix_second_round(mix_first_round(u32(quad) ^ draw_offset(key, quad)), int(pair & 1));
}
JF_HD u32 draw_half(u32 pair_bits, int half) { return half ? pair_bits >> 16 : pair_bits & 0xffffu; }
// The draws of a run of at most 2^18 elements from index `first`, a multiple of the run's length (itself a multiple of
// 4 and a power of two): the run's quads q0 + j are q0 ^ j, so their inputs are (q0 ^ offset) ^ j, and the first
// xorshift of all of them is that of q0 ^ offset, XOR j (j < 2^16), taken once for the run.
struct DrawRun {
  u32 shifted;  // x ^ (x >> 16) for x = the run's first input
  JF_HD DrawRun(u32 key, u64 first) {
    const u64 quad0 = first >> 2;
    const u32 x = u32(quad0) ^ draw_offset(key, quad0);
    shifted = x ^ (x >> 16);
  }
  // The bits of quad j of the run: pair 2 j in d0 (= draw_pair(key, first / 2 + 2 j)), pair 2 j + 1 in d1.
  JF_HD void quad(u32 j, u32& d0, u32& d1) const {
    const u32 h = mix_first_round_rest(shifted ^ j);
    d0 = mix_second_round(h, 0), d1 = mix_second_round(h, 1);
  }
};
JF_HD u32 draw16(u32 key, u64 i) { return draw_half(draw_pair(key, i >> 1), int(i & 1)); }

// Rounding through the FP32 adder instead of the (quarter-rate) float->int converters: for |t| < 2^22,
// t + 1.5 * 2^23 is an FP32 whose low mantissa bits hold round(t) in two's complement, so the code is the low
// byte of its bit pattern. The same constant turns an int back into a float: bits(kMagic) + q, minus kMagic.
constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23 = bits 0x4B400000

// A code's float value lives in [kMagic - 127, kMagic + 127]; clamping there keeps the code in range.
JF_HD float clamp_magic(float y) {
  const float lo = kMagic - kCodeMax, hi = kMagic + kCodeMax;
#if JF_DEVICE_CODE
  return fminf(fmaxf(y, lo), hi);
#else
  return y < lo ? lo : (y > hi ? hi : y);
#endif
}
JF_HD i8 magic_code(float y) { return i8(u8(float_bits(y) & 0xffu)); }

#if JF_DEVICE_CODE
// A LayerNorm row's statistics from its sum and sum of squares over n values, in FP64: the mean and 1 / sqrt(var +
// eps), var the biased variance (at least 0 against rounding). Every kernel that takes the statistics ends with it.
struct LayerNormRowStats {
  float mean, rstd;
};
__device__ __forceinline__ LayerNormRowStats layernorm_row_stats(double sum, double sum_sq, double n, float eps) {
  const double mean = sum / n, var = sum_sq / n - mean * mean;
  return {float(mean), float(1.0 / sqrt((var > 0.0 ? var : 0.0) + double(eps)))};
}
#endif

// Codes are computed as x * (1 / s), with one division per block; the product is rounded once (a fused
// multiply-add into the magic constant), so it is the exactly rounded value of x * (1 / s).
JF_HD float inverse_scale(float scale) { return 1.0f / scale; }

// Nearest-even rounding (the forward pass).
JF_HD i8 quantize_nearest(float x, float inv_scale) {
#if JF_DEVICE_CODE
  return magic_code(clamp_magic(__fmaf_rn(x, inv_scale, kMagic)));
#else
  return magic_code(clamp_magic(__builtin_fmaf(x, inv_scale, kMagic)));
#endif
}

// Unbiased stochastic rounding floor(x / s + u), u ~ U[0,1) (the backward pass), in integers: x * (1 / s) + 1.5 * 2^8
// (one fused multiply-add) lands in [256, 512), where FP32 values are 2^-15 apart, so its bits hold x / s + 128 as a
// fixed-point number with 15 fractional bits (rounded to nearest: a bias below 2^-16 of a step, and a value within
// 2^-16 of an integer code rounds onto it, so the result is always floor(x / s) or ceil(x / s)). Those bits shifted
// left by one, plus the element's 16-bit draw, carry into bit 16 with probability (fraction of x / s), exactly; byte 2
// is then floor(x / s + u) + 128, and less 128 the code. No clamp: the values must be the block's own (|x| <= amax,
// s = block_scale(amax), inv_scale = inverse_scale(s)), so |x / s| <= 127 (1 + 2^-23) < 127 + 2^-16 rounds to at
// most 127 and the code stays in range.
constexpr float kStochasticMagic = 384.0f;  // 1.5 * 2^8
// The rounded value with its carry in byte 2 (codes4_from_carries packs four of them on the GPU).
JF_HD u32 stochastic_carry(float x, float inv_scale, u32 draw) {
#if JF_DEVICE_CODE
  const float f = __fmaf_rn(x, inv_scale, kStochasticMagic);
#else
  const float f = __builtin_fmaf(x, inv_scale, kStochasticMagic);
#endif
  return (float_bits(f) << 1) + draw;
}
JF_HD i8 quantize_stochastic(float x, float inv_scale, u32 draw) { return i8(u8((stochastic_carry(x, inv_scale, draw) >> 16) ^ 0x80u)); }

// A positive per-row factor r folded into a block's quantization (LayerNorm backward quantizes r y with y in registers):
// the block maximum takes r max|y| rounded up, each row its factor (1 / s) r rounded down, so |y| factor <= amax / s
// <= 127 (1 + 2^-23) still holds and stochastic rounding needs no clamp. Rounded to nearest, the two products can push
// the block's largest value past 127 + 2^-16 and its code to +128 (tests/test_reference.cpp).
JF_HD float mul_round_up(float a, float b) {
#if JF_DEVICE_CODE
  return __fmul_ru(a, b);
#else
  const float p = a * b;  // products of floats are exact in double
  return double(p) < double(a) * double(b) ? __builtin_nextafterf(p, __builtin_inff()) : p;
#endif
}
JF_HD float mul_round_down(float a, float b) {
#if JF_DEVICE_CODE
  return __fmul_rd(a, b);
#else
  const float p = a * b;
  return double(p) > double(a) * double(b) ? __builtin_nextafterf(p, -__builtin_inff()) : p;
#endif
}
#if JF_DEVICE_CODE
// The vector type of a Bytes-wide load or store.
template <int Bytes> struct VecOfBytes;
template <> struct VecOfBytes<16> { typedef uint4 type; };
template <> struct VecOfBytes<8> { typedef uint2 type; };
template <> struct VecOfBytes<4> { typedef unsigned int type; };

constexpr float kLog2e = 1.4426950408889634f;
__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
// 2^x in one MUFU instruction (exp2f adds range handling); 2^-inf = 0 as masking needs.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// Two BF16 in one register, `lo` in the low half (the lower column of a fragment pair, the lower address).
__device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) {
  u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// x rounded to the nearest FP16 value, as an FP32 (no cuda_fp16.h under NVRTC without the toolkit's include path).
__device__ __forceinline__ float round_to_half(float x) {
  u16 h;
  float y;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
  asm("cvt.f32.f16 %0, %1;" : "=f"(y) : "h"(h));
  return y;
}

// Two stochastic codes + 128 (byte 2 of each carry) packed little-endian in the low half: one byte permute.
__device__ __forceinline__ u32 biased_codes2_from_carries(u32 c0, u32 c1) { return __byte_perm(c0, c1, 0x0062u); }
// Four stochastic codes packed little-endian from their carries: three byte permutes and one XOR.
__device__ __forceinline__ u32 codes4_from_carries(u32 c0, u32 c1, u32 c2, u32 c3) {
  return __byte_perm(biased_codes2_from_carries(c0, c1), biased_codes2_from_carries(c2, c3), 0x5410u) ^ 0x80808080u;
}
#endif

// Dropout keeps element i with probability 1 - p, regenerated in the backward pass from (seed, i) instead of
// storing a mask: kept where its 16-bit draw / 2^16 >= p, i.e. p is resolved to 2^-16. `key` = seed_key(seed).
JF_HD bool dropout_keep(u32 key, u64 i, float p) { return float(draw16(key, i)) * (1.0f / 65536.0f) >= p; }
// The scale of a block after dropout: kept codes stay as they are, so the result is exact (no rounding at all).
JF_HD float dropout_scale(float scale, float p) { return scale / (1.0f - p); }

// Dequantization of one code without the int->float converter.
JF_HD float code_to_float(i8 q) { return bits_float(float_bits(kMagic) + u32(i32(q))) - kMagic; }

// Four codes at a time: bias a word of codes by 128 once (biased_codes), then code k is its byte dropped into the
// mantissa of 2^23 (one byte permute) minus 2^23 + 128 (one add), exact: two instructions per code instead of an
// extract, a sign extension and the magic add of code_to_float.
JF_HD u32 biased_codes(u32 word) { return word ^ 0x80808080u; }
#if JF_DEVICE_CODE
// (The constant is the permute's first operand: ptxas then keeps it in a register and takes the selector as the
// immediate, instead of moving a selector into a register for every code; 7% fewer instructions in LayerNorm backward.)
__device__ __forceinline__ float biased_code(u32 biased, int k) { return __uint_as_float(__byte_perm(0x4B000000u, biased, 0x3214u + u32(k))) - 8388736.0f; }
// A code that is only scaled and offset, q f + c, skips that add: its byte dropped into bits 8-15 of 1.0 is
// v = 1 + (q + 128) 2^-15 (one byte permute, exact), and q f + c = v (2^15 f) + (c - 32896 f), one FMA with constants
// made once (CodeAffine). Exact but for the rounding of c - 32896 f: within 2^-24 (|c| + 32896 |f|), about 2^-16 of
// the range q f spans, where a quantization step is 2^-8 of it.
__device__ __forceinline__ float code_unit(u32 biased, int k) { return __uint_as_float(__byte_perm(0x3F800000u, biased, 0x3240u + 16u * u32(k))); }
struct CodeAffine {
  float f, c;
  __device__ CodeAffine(float factor, float offset) : f(32768.0f * factor), c(fmaf(-32896.0f, factor, offset)) {}
  __device__ float operator()(u32 biased, int k) const { return fmaf(code_unit(biased, k), f, c); }  // q factor + offset
};
#endif

}  // namespace jetforge
