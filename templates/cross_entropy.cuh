// Fused softmax + cross-entropy of the LM head, forward and backward in one kernel over the logits (llm.c's
// trick): per row, one read for the running maximum and sum of exponentials, one more (from L1/L2) to overwrite
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
  if (m == __int_as_float(0xff800000)) return a;  // both empty
  return SoftmaxState{m, a.sum * __expf(a.max - m) + b.sum * __expf(b.max - m)};
}

// One CTA per row; 8 elements (16 bytes of BF16, 32 of FP32) per thread per step.
template <class In, int Threads>
__global__ void __launch_bounds__(Threads) cross_entropy_kernel(const CrossEntropyParams p) {
  constexpr int kVec = 8;
  __shared__ SoftmaxState warp_state[Threads / 32];
  __shared__ SoftmaxState row_state;
  In* row = static_cast<In*>(p.logits) + i64(blockIdx.x) * p.padded_vocab;
  const int target = p.targets[blockIdx.x];

  SoftmaxState s{__int_as_float(0xff800000), 0.0f};
  for (i64 c = i64(threadIdx.x) * kVec; c < p.padded_vocab; c += i64(Threads) * kVec)
#pragma unroll
    for (int k = 0; k < kVec; ++k)
      if (c + k < p.vocab) s = combine(s, SoftmaxState{to_float(row[c + k]), 1.0f});
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
  const SoftmaxState total = row_state;
  const float inv_sum = 1.0f / total.sum, scale = target < 0 ? 0.0f : p.grad_scale;
  for (i64 c = i64(threadIdx.x) * kVec; c < p.padded_vocab; c += i64(Threads) * kVec)
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const i64 j = c + k;
      const float prob = j < p.vocab ? __expf(to_float(row[j]) - total.max) * inv_sum : 0.0f;
      row[j] = from_float<In>((prob - (j == target ? 1.0f : 0.0f)) * scale);
    }
}

}  // namespace jetforge
#endif
