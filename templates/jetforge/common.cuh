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

// splitmix64 finalizer over (seed, counter): one independent 64-bit draw per element, no state to carry,
// so a run is reproducible and the mask/noise of any element can be regenerated from its index.
JF_HD u64 hash64(u64 seed, u64 counter) {
  u64 z = seed + (counter + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Stochastic-rounding noise: element i of a tensor takes the 16-bit field (i % 4) of hash64(seed, i / 4), so
// one hash serves four neighbouring elements. u = field / 2^16 in [0, 1): a 16-bit grid leaves a rounding bias
// below 2^-16 of a quantization step.
// (The 16-bit integer is made a float by OR-ing it into the mantissa of 2^23: exact, and no converter.)
JF_HD float sr_noise_field(u64 hash, int field) {
  return (bits_float(0x4B000000u | (u32(hash >> (16 * field)) & 0xffffu)) - 8388608.0f) * (1.0f / 65536.0f);
}
JF_HD float sr_noise(u64 seed, u64 i) { return sr_noise_field(hash64(seed, i >> 2), int(i & 3)); }

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

// Unbiased stochastic rounding floor(x / s + u), u ~ U[0,1) (the backward pass): x * (1 / s) + u in one fused
// multiply-add (one rounding, on the host too), clamped to the code range, then added to the magic constant rounding
// toward minus infinity, which is floor.
JF_HD i8 quantize_stochastic(float x, float inv_scale, float u) {
#if JF_DEVICE_CODE
  const float t = __fmaf_rn(x, inv_scale, u);
  return magic_code(__fadd_rd(fminf(fmaxf(t, -kCodeMax), kCodeMax), kMagic));
#else
  float t = __builtin_fmaf(x, inv_scale, u);
  t = t < -kCodeMax ? -kCodeMax : (t > kCodeMax ? kCodeMax : t);
  return i8(__builtin_floorf(t));
#endif
}

// Dropout keeps element i with probability 1 - p, regenerated in the backward pass from (seed, i) instead of
// storing a mask. The draw is the 16-bit uniform of sr_noise: one hash serves four neighbouring elements (a hash
// per element made dropout compute-bound at a quarter of copy speed), p is resolved to 2^-16.
JF_HD bool dropout_keep(u64 seed, u64 i, float p) { return sr_noise(seed, i) >= p; }
// The scale of a block after dropout: kept codes stay as they are, so the result is exact (no rounding at all).
JF_HD float dropout_scale(float scale, float p) { return scale / (1.0f - p); }

// Dequantization of one code without the int->float converter.
JF_HD float code_to_float(i8 q) { return bits_float(float_bits(kMagic) + u32(i32(q))) - kMagic; }

// Four codes at a time: bias a word of codes by 128 once (biased_codes), then code k is its byte dropped into the
// mantissa of 2^23 (one byte permute) minus 2^23 + 128 (one add), exact: two instructions per code instead of an
// extract, a sign extension and the magic add of code_to_float.
JF_HD u32 biased_codes(u32 word) { return word ^ 0x80808080u; }
#if JF_DEVICE_CODE
__device__ __forceinline__ float biased_code(u32 biased, int k) { return __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7650u | u32(k))) - 8388736.0f; }
#endif

}  // namespace jetforge
