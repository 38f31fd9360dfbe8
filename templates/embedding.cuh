// Token + position embedding of GPT-2, FP32 (master weights, residual stream). Forward: out[b, t] = wte[token] +
// wpe[t]. Backward, deterministic without atomics: dwte rows are summed per distinct token over that token's
// occurrences in a fixed order (a CSR grouping built on the host from the batch's tokens), dwpe rows per position
// over the batch in order; both added to the existing gradients.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct EmbeddingParams {
  const int* tokens;  // batch * T
  const float* wte;   // vocab x channels
  const float* wpe;   // max_positions x channels
  float* out;         // batch * T x channels
  // backward
  const float* d_out;         // batch * T x channels
  float* d_wte;               // vocab x channels, accumulated into
  float* d_wpe;               // max_positions x channels, accumulated into
  const int* group_tokens;    // distinct tokens of the batch
  const int* group_offsets;   // groups + 1: occurrences of group g are group_rows[offsets[g] .. offsets[g + 1])
  const int* group_rows;      // batch * T row indices, ascending within a group
  i64 rows, tokens_per_sequence, channels, groups;
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge {

// Grid: rows (one CTA per token row); channels a multiple of 4.
template <int Threads>
__global__ void __launch_bounds__(Threads) embedding_forward_kernel(const EmbeddingParams p) {
  const i64 row = blockIdx.x, position = row % p.tokens_per_sequence;
  const float4* te = reinterpret_cast<const float4*>(p.wte + i64(p.tokens[row]) * p.channels);
  const float4* pe = reinterpret_cast<const float4*>(p.wpe + position * p.channels);
  float4* out = reinterpret_cast<float4*>(p.out + row * p.channels);
  for (i64 c = threadIdx.x; c < p.channels / 4; c += Threads) {
    const float4 a = te[c], b = pe[c];
    out[c] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
  }
}

// Grid: groups (one CTA per distinct token).
template <int Threads>
__global__ void __launch_bounds__(Threads) embedding_backward_tokens_kernel(const EmbeddingParams p) {
  const i64 g = blockIdx.x, first = p.group_offsets[g], last = p.group_offsets[g + 1];
  float* dst = p.d_wte + i64(p.group_tokens[g]) * p.channels;
  for (i64 c = threadIdx.x; c < p.channels; c += Threads) {
    float sum = dst[c];
    for (i64 i = first; i < last; ++i) sum += p.d_out[i64(p.group_rows[i]) * p.channels + c];
    dst[c] = sum;
  }
}

// Grid: tokens_per_sequence (one CTA per position), summing over the batch in order.
template <int Threads>
__global__ void __launch_bounds__(Threads) embedding_backward_positions_kernel(const EmbeddingParams p) {
  const i64 position = blockIdx.x, batch = p.rows / p.tokens_per_sequence;
  float* dst = p.d_wpe + position * p.channels;
  for (i64 c = threadIdx.x; c < p.channels; c += Threads) {
    float sum = dst[c];
    for (i64 b = 0; b < batch; ++b) sum += p.d_out[(b * p.tokens_per_sequence + position) * p.channels + c];
    dst[c] = sum;
  }
}

}  // namespace jetforge
#endif
