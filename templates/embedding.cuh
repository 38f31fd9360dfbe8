// Token + position embedding of GPT-2, FP32 (master weights, residual stream). Forward: out[b, t] = wte[token] +
// wpe[t], and optionally each row's mean and rstd: a warp holds a whole row, so the first LayerNorm's statistics come
// from the pass that writes the stream, as every later LayerNorm's come from a residual add. Backward,
// deterministic without atomics: dwte rows are summed per distinct token over that token's occurrences in a fixed
// order (a CSR grouping built on the host from the batch's tokens), dwpe rows per position over the batch in order;
// both added to the existing gradients.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct EmbeddingParams {
  const int* tokens;  // batch * T
  const float* wte;   // vocab x channels
  const float* wpe;   // max_positions x channels
  float* out;         // batch * T x channels
  float* mean;        // forward, if not null: batch * T, each row's mean of out
  float* rstd;        // and 1 / sqrt(var + eps)
  float eps;
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

// Grid: rows / (Threads / 32), a warp per token row; channels a multiple of 4 (of 32 with statistics). The
// statistics are summed as residual_kernel and residual_stats_kernel sum them: FP32 over each 32-column block, FP64
// over the blocks in a fixed order.
template <int Threads>
__global__ void __launch_bounds__(Threads) embedding_forward_kernel(const EmbeddingParams p) {
  static_assert(Threads % 32 == 0, "whole warps");
  const int lane = int(threadIdx.x) % 32;
  const i64 row = i64(blockIdx.x) * (Threads / 32) + int(threadIdx.x) / 32, quads = p.channels / 4;
  if (row >= p.rows) return;  // whole warps
  const i64 position = row % p.tokens_per_sequence;
  const float4* te = reinterpret_cast<const float4*>(p.wte + i64(p.tokens[row]) * p.channels);
  const float4* pe = reinterpret_cast<const float4*>(p.wpe + position * p.channels);
  float4* out = reinterpret_cast<float4*>(p.out + row * p.channels);
  double sum = 0.0, sum_sq = 0.0;  // lanes 0, 8, 16, 24: their blocks'
  // The whole warp walks the row (a block's 32 columns are 8 neighbouring lanes' quads), so that every lane takes
  // part in the block sums' butterfly.
  for (i64 first = 0; first < quads; first += 32) {
    const i64 c = first + lane;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (c < quads) {
      const float4 a = te[c], b = pe[c];
      v = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
      out[c] = v;
    }
    if (p.mean) {
      float s = v.x + v.y + v.z + v.w, q = v.x * v.x;
      q = fmaf(v.y, v.y, q), q = fmaf(v.z, v.z, q), q = fmaf(v.w, v.w, q);
#pragma unroll
      for (int o = 1; o < 8; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o), q += __shfl_xor_sync(0xffffffffu, q, o);
      if (lane % 8 == 0) sum += s, sum_sq += q;
    }
  }
  if (!p.mean) return;
#pragma unroll
  for (int o = 8; o < 32; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o), sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, o);
  if (lane != 0) return;
  const LayerNormRowStats stats = layernorm_row_stats(sum, sum_sq, double(p.channels), p.eps);
  p.mean[row] = stats.mean, p.rstd[row] = stats.rstd;
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
