// FP32 reference of the attention core on the GPU, for tests on shapes too large for the FP64 CPU reference
// (runtime/reference_attention.hpp): one warp per row, the lanes splitting the head dimension, expf/logf, no BF16
// rounding of P or dS. Inputs are the operators' BF16 tensors by their layout's strides (attention.cuh); outputs are
// FP32, [batch * heads][T][head_dim] (lse and delta [batch * heads][T]). Three kernels, in this order: forward (O, lse),
// backward_q (delta from that O, then dQ), backward_kv (dK, dV from that lse and delta).
#pragma once
#include "attention.cuh"

namespace jetforge {

struct AttentionReferenceParams {
  const bf16* q;
  const bf16* k;
  const bf16* v;
  const bf16* d_o;
  AttentionStrides qkv_strides, o_strides;
  int heads, tokens;
  i64 rows;  // batch * heads * T
  int causal;
  float scale;
  float* o;
  float* lse;
  float* delta;
  float* dq;
  float* dk;
  float* dv;
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge::attention_reference {

constexpr int kRowsPerCta = 4;  // a warp per row, 128 threads

// A warp's row of a head: lane l holds columns l, l + 32, ...
template <int D> struct Row {
  float x[D / 32];
  __device__ void load(const bf16* head, i64 token_stride, int t) {
#pragma unroll
    for (int c = 0; c < D / 32; ++c) x[c] = bf16_to_float(head[i64(t) * token_stride + threadIdx.x % 32 + 32 * c]);
  }
  __device__ void load(const float* rows, int t) {
#pragma unroll
    for (int c = 0; c < D / 32; ++c) x[c] = rows[i64(t) * D + threadIdx.x % 32 + 32 * c];
  }
  __device__ void store(float* rows, int t, float mul) const {
#pragma unroll
    for (int c = 0; c < D / 32; ++c) rows[i64(t) * D + threadIdx.x % 32 + 32 * c] = x[c] * mul;
  }
  __device__ float dot(const Row& o) const {
    float s = 0;
#pragma unroll
    for (int c = 0; c < D / 32; ++c) s = fmaf(x[c], o.x[c], s);
#pragma unroll
    for (int m = 16; m > 0; m /= 2) s += __shfl_xor_sync(0xffffffffu, s, m);
    return s;
  }
  __device__ void axpy(float a, const Row& o) {  // x += a * o
#pragma unroll
    for (int c = 0; c < D / 32; ++c) x[c] = fmaf(a, o.x[c], x[c]);
  }
};

// The query row a warp computes in the forward and backward_q kernels: its index among batch * heads * T, its head,
// its token i and the last key it sees, that head's K and V, and its Q. False for a warp past the last row.
template <int D> struct QueryRow {
  i64 row;
  int bh, i, last;
  const bf16 *k, *v;
  Row<D> q;
  __device__ bool init(const AttentionReferenceParams& p) {
    row = i64(blockIdx.x) * kRowsPerCta + threadIdx.x / 32;
    if (row >= p.rows) return false;
    bh = int(row / p.tokens), i = int(row % p.tokens), last = p.causal ? i : p.tokens - 1;
    k = attention::head_base(p.k, p.qkv_strides, bh, p.heads), v = attention::head_base(p.v, p.qkv_strides, bh, p.heads);
    q.load(attention::head_base(p.q, p.qkv_strides, bh, p.heads), p.qkv_strides.token, i);
    return true;
  }
};

}  // namespace jetforge::attention_reference

namespace jetforge {

// O and lse of one query row per warp (online softmax in FP32). Grid: ceil(batch * heads * T / 4).
template <int D> __global__ void __launch_bounds__(128) attention_reference_forward_kernel(const AttentionReferenceParams p) {
  using namespace attention_reference;
  QueryRow<D> r;
  if (!r.init(p)) return;
  Row<D> kj, vj, o = {};
  float m = neg_inf(), l = 0;
  for (int j = 0; j <= r.last; ++j) {
    kj.load(r.k, p.qkv_strides.token, j), vj.load(r.v, p.qkv_strides.token, j);
    const float s = r.q.dot(kj) * p.scale, m_new = fmaxf(m, s), c = expf(m - m_new), pj = expf(s - m_new);
    l = l * c + pj;
#pragma unroll
    for (int e = 0; e < D / 32; ++e) o.x[e] *= c;
    o.axpy(pj, vj);
    m = m_new;
  }
  o.store(p.o + i64(r.bh) * p.tokens * D, r.i, 1.0f / l);
  if (threadIdx.x % 32 == 0) p.lse[r.row] = m + logf(l);
}

// delta = rowsum(dO * O) and dQ = scale * sum_j P_ij (dP_ij - delta_i) K_j of one query row per warp.
template <int D> __global__ void __launch_bounds__(128) attention_reference_backward_q_kernel(const AttentionReferenceParams p) {
  using namespace attention_reference;
  QueryRow<D> r;
  if (!r.init(p)) return;
  Row<D> d_o, o, kj, vj, dq = {};
  d_o.load(attention::head_base(p.d_o, p.o_strides, r.bh, p.heads), p.o_strides.token, r.i);
  o.load(p.o + i64(r.bh) * p.tokens * D, r.i);
  const float delta = d_o.dot(o), lse = p.lse[r.row];
  if (threadIdx.x % 32 == 0) p.delta[r.row] = delta;
  for (int j = 0; j <= r.last; ++j) {
    kj.load(r.k, p.qkv_strides.token, j), vj.load(r.v, p.qkv_strides.token, j);
    const float pij = expf(r.q.dot(kj) * p.scale - lse);
    dq.axpy(pij * (d_o.dot(vj) - delta), kj);
  }
  dq.store(p.dq + i64(r.bh) * p.tokens * D, r.i, p.scale);
}

// dV = sum_i P_ij dO_i and dK = scale * sum_i P_ij (dP_ij - delta_i) Q_i of one key row per warp.
template <int D> __global__ void __launch_bounds__(128) attention_reference_backward_kv_kernel(const AttentionReferenceParams p) {
  using namespace attention_reference;
  const i64 row = i64(blockIdx.x) * kRowsPerCta + threadIdx.x / 32;
  if (row >= p.rows) return;
  const int bh = int(row / p.tokens), j = int(row % p.tokens), first = p.causal ? j : 0;
  const bf16 *q = attention::head_base(p.q, p.qkv_strides, bh, p.heads), *d_o = attention::head_base(p.d_o, p.o_strides, bh, p.heads);
  const float *lse = p.lse + i64(bh) * p.tokens, *delta = p.delta + i64(bh) * p.tokens;
  Row<D> k, v, qi, doi, dk = {}, dv = {};
  k.load(attention::head_base(p.k, p.qkv_strides, bh, p.heads), p.qkv_strides.token, j);
  v.load(attention::head_base(p.v, p.qkv_strides, bh, p.heads), p.qkv_strides.token, j);
  for (int i = first; i < p.tokens; ++i) {
    qi.load(q, p.qkv_strides.token, i), doi.load(d_o, p.o_strides.token, i);
    const float pij = expf(qi.dot(k) * p.scale - lse[i]);
    dv.axpy(pij, doi);
    dk.axpy(pij * (doi.dot(v) - delta[i]), qi);
  }
  dk.store(p.dk + i64(bh) * p.tokens * D, j, p.scale);
  dv.store(p.dv + i64(bh) * p.tokens * D, j, 1.0f);
}

}  // namespace jetforge
#endif
