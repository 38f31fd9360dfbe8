// Fused softmax + cross-entropy of the LM head, forward and backward in one kernel over the logits (llm.c's
// trick): per row, one read for the running maximum and sum of exponentials, one more (mostly from L2) to overwrite
// the logits with their gradient (softmax - onehot(target)) * grad_scale. The vocabulary may be padded (to a
// multiple of the GEMM tile): columns from `vocab` on take no probability and get gradient 0. A target < 0
// (padding token) gives loss 0 and a zero gradient row.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct CrossEntropyParams {
  void* logits;        // rows x padded_vocab, In (BF16 or FP32); overwritten by the gradient
  const int* targets;  // rows
  float* losses;       // rows: -log softmax(logits)[target]
  i64 rows, padded_vocab, vocab;
  float grad_scale;  // d(total loss) / d(row loss), e.g. 1 / rows for the mean
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge {

// (max, sum of exp(x - max)) pairs combine exactly like the online softmax's running state.
struct SoftmaxState {
  float max, sum;
};
__device__ __forceinline__ SoftmaxState combine(SoftmaxState a, SoftmaxState b) {
  const float m = fmaxf(a.max, b.max);
  if (m == neg_inf()) return a;  // both empty
  return SoftmaxState{m, a.sum * __expf(a.max - m) + b.sum * __expf(b.max - m)};
}

// Eight logits of a row as FP32, from and to its storage type: one 16-byte access for BF16, two for FP32 (row + c
// is 16- or 32-byte aligned: the padded vocabulary is a multiple of 8).
template <class In> struct Logits8;
template <> struct Logits8<bf16> {
  static __device__ void load(const bf16* p, float (&x)[8]) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) x[2 * j] = __uint_as_float(w[j] << 16), x[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
  }
  static __device__ void store(bf16* p, const float (&x)[8]) {
    *reinterpret_cast<uint4*>(p) = uint4{pack_bf16x2(x[0], x[1]), pack_bf16x2(x[2], x[3]), pack_bf16x2(x[4], x[5]), pack_bf16x2(x[6], x[7])};
  }
};
template <> struct Logits8<float> {
  static __device__ void load(const float* p, float (&x)[8]) {
    const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
  }
  static __device__ void store(float* p, const float (&x)[8]) {
    reinterpret_cast<float4*>(p)[0] = float4{x[0], x[1], x[2], x[3]};
    reinterpret_cast<float4*>(p)[1] = float4{x[4], x[5], x[6], x[7]};
  }
};

// One CTA per row, 8 logits per thread per step. A thread's running maximum moves once per 8 logits (its sum is
// rescaled then), so each logit costs one exponential per pass (2^(x log2 e - max log2 e), one FMA and one MUFU).
template <class In, int Threads>
__global__ void __launch_bounds__(Threads) cross_entropy_kernel(const CrossEntropyParams p) {
  constexpr int kVec = 8;
  typedef Logits8<In> Vec;
  __shared__ SoftmaxState warp_state[Threads / 32];
  __shared__ SoftmaxState row_state;
  In* row = static_cast<In*>(p.logits) + i64(blockIdx.x) * p.padded_vocab;
  const int target = p.targets[blockIdx.x];

  SoftmaxState s{neg_inf(), 0.0f};
  for (i64 c = i64(threadIdx.x) * kVec; c < p.padded_vocab; c += i64(Threads) * kVec) {
    float x[kVec], m = neg_inf();
    Vec::load(row + c, x);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      if (c + k >= p.vocab) x[k] = neg_inf();  // padding takes no probability
      m = fmaxf(m, x[k]);
    }
    if (m == neg_inf()) continue;  // all padding (2^(-inf + inf) would be NaN below)
    if (m > s.max) s.sum *= fast_exp2((s.max - m) * kLog2e), s.max = m;
    const float max_log2 = s.max * kLog2e;
#pragma unroll
    for (int k = 0; k < kVec; ++k) s.sum += fast_exp2(fmaf(x[k], kLog2e, -max_log2));
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s = combine(s, SoftmaxState{__shfl_xor_sync(0xffffffffu, s.max, o), __shfl_xor_sync(0xffffffffu, s.sum, o)});
  if (threadIdx.x % 32 == 0) warp_state[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    SoftmaxState total = warp_state[0];
    for (int w = 1; w < Threads / 32; ++w) total = combine(total, warp_state[w]);  // fixed order: same bits every run
    row_state = total;
    p.losses[blockIdx.x] = target < 0 ? 0.0f : total.max + __logf(total.sum) - to_float(row[target]);
  }
  __syncthreads();
  // The gradient (softmax - onehot(target)) * grad_scale, written over the logits (the second read mostly hits L2).
  const SoftmaxState total = row_state;
  const float scale = target < 0 ? 0.0f : p.grad_scale, prob_scale = scale / total.sum, max_log2 = total.max * kLog2e;
  for (i64 c = i64(threadIdx.x) * kVec; c < p.padded_vocab; c += i64(Threads) * kVec) {
    float x[kVec];
    Vec::load(row + c, x);
#pragma unroll
    for (int k = 0; k < kVec; ++k) x[k] = c + k < p.vocab ? fast_exp2(fmaf(x[k], kLog2e, -max_log2)) * prob_scale : 0.0f;
    if (target >= c && target < c + kVec)
#pragma unroll
      for (int k = 0; k < kVec; ++k) x[k] -= c + k == target ? scale : 0.0f;
    Vec::store(row + c, x);
  }
}

}  // namespace jetforge
#endif
