// Attention core in BF16 (DESIGN.md §1 keeps it out of INT8): O = softmax(Q K^T * scale) V per (batch, head),
// causal or not, FlashAttention-2 style: tiles of 64 queries x 64 keys, online softmax, no T x T matrix in memory,
// the log-sum-exp of every row saved for the backward pass, which recomputes the probabilities.
// Portable path (sm_80 and newer): mma.sync m16n8k16 BF16 -> FP32, 4 warps of 16 rows per CTA.
//
// Layout by strides: element (b, h, t, d) of Q, K, V (and their gradients) sits at
// b * qkv_strides.batch + h * qkv_strides.head + t * qkv_strides.token + d, of O and dO alike with o_strides. Both the
// [batch, heads, T, d] layout and the [batch, T, 3, heads, d] one a fused QKV projection writes are strides.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct AttentionStrides {
  i64 batch, head, token;
};

struct AttentionParams {
  const bf16* q;
  const bf16* k;
  const bf16* v;
  bf16* o;           // forward output
  float* lse;        // [batch][heads][T]: natural log of each row's softmax denominator
  const bf16* d_o;   // backward: gradient of O
  float* delta;      // backward: [batch][heads][T], rowsum(dO * O)
  bf16* dq;          // backward outputs, with the qkv strides
  bf16* dk;
  bf16* dv;
  AttentionStrides qkv_strides, o_strides;
  int heads, tokens;
  float scale;  // 1 / sqrt(head_dim)
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge::attention {

constexpr int kBlock = 64;     // queries and keys per tile
constexpr int kThreads = 128;  // 4 warps, 16 rows each
constexpr float kLog2e = 1.4426950408889634f;
__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// D (16 x 8, FP32) += A (16 x 16, BF16, row) * B (16 x 8, BF16, col). Fragments (g = lane / 4, t = lane % 4):
// a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9];
// b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]; c = {D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]}.
__device__ __forceinline__ void mma(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two BF16 in one register, `lo` in the low half (the lower column of a fragment pair).
__device__ __forceinline__ u32 pack(float lo, float hi) {
  u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

__device__ __forceinline__ u32 load_pair(const bf16* p) { return *reinterpret_cast<const u32*>(p); }

// A tile of 64 rows x D columns in shared memory, rows padded by 8 elements so that the 8 rows a fragment load
// touches fall in different banks. Transposed: D rows x 64 columns.
template <int D> struct RowTile {
  static constexpr int kLd = D + 8;
  bf16 e[kBlock * kLd];
  __device__ const bf16* at(int r, int c) const { return &e[r * kLd + c]; }
};
template <int D> struct ColTile {
  static constexpr int kLd = kBlock + 8;
  bf16 e[D * kLd];
  __device__ const bf16* at(int r, int c) const { return &e[r * kLd + c]; }
};

// Copies rows t0 .. t0 + 63 of one (batch, head) into a row tile and/or its transpose; 16-byte chunks.
template <int D> __device__ void load_tile(const bf16* base, const AttentionStrides& s, int t0, RowTile<D>* rows, ColTile<D>* cols) {
  constexpr int kChunksPerRow = D / 8;
  for (int c = int(threadIdx.x); c < kBlock * kChunksPerRow; c += kThreads) {
    const int r = c / kChunksPerRow, d0 = c % kChunksPerRow * 8;
    union {
      uint4 v;
      bf16 h[8];
    } chunk;
    chunk.v = *reinterpret_cast<const uint4*>(base + i64(t0 + r) * s.token + d0);
    if (rows) *reinterpret_cast<uint4*>(&rows->e[r * RowTile<D>::kLd + d0]) = chunk.v;
    if (cols)
#pragma unroll
      for (int k = 0; k < 8; ++k) cols->e[(d0 + k) * ColTile<D>::kLd + r] = chunk.h[k];
  }
}

// A-fragments of 16 rows x D columns, as fragment(ks, j) = register j of the k-step ks (columns 16 ks ..).
// RegisterRows holds them (read once from global memory); TileRows reads them from a row tile in shared memory
// when registers are short.
template <int D> struct RegisterRows {
  u32 a[D / 16][4];
  __device__ void load(const bf16* base, const AttentionStrides& s, int r0) {
    const int g = int(threadIdx.x) % 32 / 4, t = int(threadIdx.x) % 4;
    const bf16* row_g = base + i64(r0 + g) * s.token;
    const bf16* row_g8 = base + i64(r0 + g + 8) * s.token;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      a[ks][0] = load_pair(row_g + 16 * ks + 2 * t);
      a[ks][1] = load_pair(row_g8 + 16 * ks + 2 * t);
      a[ks][2] = load_pair(row_g + 16 * ks + 8 + 2 * t);
      a[ks][3] = load_pair(row_g8 + 16 * ks + 8 + 2 * t);
    }
  }
  __device__ u32 operator()(int ks, int j) const { return a[ks][j]; }
};
template <int D> struct TileRows {
  const RowTile<D>& tile;
  int r0;  // first row within the tile
  __device__ u32 operator()(int ks, int j) const {
    const int g = int(threadIdx.x) % 32 / 4, t = int(threadIdx.x) % 4;
    return load_pair(tile.at(r0 + g + 8 * (j & 1), 16 * ks + 8 * (j >> 1) + 2 * t));
  }
};

// acc (16 x 64) = A (16 x D, fragments) * B^T where B is a row tile (64 x D): scores of 16 rows against 64 rows.
template <int D, class A> __device__ void scores(float (&acc)[8][4], const A& a, const RowTile<D>& b) {
  const int g = int(threadIdx.x) % 32 / 4, t = int(threadIdx.x) % 4;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[nt][i] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    const u32 frag[4] = {a(ks, 0), a(ks, 1), a(ks, 2), a(ks, 3)};
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) mma(acc[nt], frag, load_pair(b.at(8 * nt + g, 16 * ks + 2 * t)), load_pair(b.at(8 * nt + g, 16 * ks + 8 + 2 * t)));
  }
}

// acc (16 x D) += P (16 x 64, the FP32 accumulators of `scores`, rounded to BF16) * B where B^T is a column
// tile (D x 64): the accumulator layout of a 16 x 16 slice is the A-fragment layout, so P never leaves registers.
template <int D> __device__ void accumulate_product(float (&acc)[D / 8][4], const float (&p)[8][4], const ColTile<D>& bt) {
  const int g = int(threadIdx.x) % 32 / 4, t = int(threadIdx.x) % 4;
#pragma unroll
  for (int ks = 0; ks < 4; ++ks) {
    const u32 a[4] = {pack(p[2 * ks][0], p[2 * ks][1]), pack(p[2 * ks][2], p[2 * ks][3]), pack(p[2 * ks + 1][0], p[2 * ks + 1][1]),
                      pack(p[2 * ks + 1][2], p[2 * ks + 1][3])};
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) mma(acc[dt], a, load_pair(bt.at(8 * dt + g, 16 * ks + 2 * t)), load_pair(bt.at(8 * dt + g, 16 * ks + 8 + 2 * t)));
  }
}

// Stores this warp's 16 x D accumulators (times `mul[h]` for row g + 8h) as BF16 rows r0 ...
template <int D> __device__ void store_rows(bf16* base, const AttentionStrides& s, int r0, const float (&acc)[D / 8][4], const float (&mul)[2]) {
  const int g = int(threadIdx.x) % 32 / 4, t = int(threadIdx.x) % 4;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    bf16* row = base + i64(r0 + g + 8 * h) * s.token;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      *reinterpret_cast<u32*>(row + 8 * dt + 2 * t) = pack(acc[dt][2 * h] * mul[h], acc[dt][2 * h + 1] * mul[h]);
  }
}

// Butterflies over the four lanes of a quad (xor 1, then xor 2), so every lane ends with all four values reduced.
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

__device__ __forceinline__ const bf16* head_base(const bf16* p, const AttentionStrides& s, int bh, int heads) {
  return p + i64(bh / heads) * s.batch + i64(bh % heads) * s.head;
}
__device__ __forceinline__ bf16* head_base(bf16* p, const AttentionStrides& s, int bh, int heads) {
  return p + i64(bh / heads) * s.batch + i64(bh % heads) * s.head;
}

// Causal masking of a score tile: query row (q0 + r) may see key column (k0 + c) only when k0 + c <= q0 + r.
__device__ __forceinline__ bool visible(int q, int k) { return k <= q; }

}  // namespace jetforge::attention

namespace jetforge {

// Grid: (T / 64 query tiles, batch * heads). Dynamic shared memory: a K tile and a transposed V tile.
template <int D, bool Causal>
__global__ void __launch_bounds__(attention::kThreads) attention_forward_kernel(const AttentionParams p) {
  using namespace attention;
  extern __shared__ __align__(16) u8 smem[];
  RowTile<D>& k_tile = *reinterpret_cast<RowTile<D>*>(smem);
  ColTile<D>& vt_tile = *reinterpret_cast<ColTile<D>*>(smem + sizeof(RowTile<D>));
  const int warp = int(threadIdx.x) / 32, g = int(threadIdx.x) % 32 / 4, t = int(threadIdx.x) % 4;
  const int tiles = p.tokens / kBlock, qt = Causal ? tiles - 1 - int(blockIdx.x) : int(blockIdx.x);  // longest rows first
  const int bh = int(blockIdx.y), q0 = qt * kBlock, r0 = q0 + 16 * warp;
  const float scale_log2 = p.scale * kLog2e;

  RegisterRows<D> qa;
  qa.load(head_base(p.q, p.qkv_strides, bh, p.heads), p.qkv_strides, r0);
  float acc[D / 8][4] = {};
  float row_max[2] = {neg_inf(), neg_inf()}, row_sum[2] = {0.0f, 0.0f};

  const int last = Causal ? qt : tiles - 1;
  for (int kt = 0; kt <= last; ++kt) {
    __syncthreads();  // the previous tiles are no longer read
    load_tile<D>(head_base(p.k, p.qkv_strides, bh, p.heads), p.qkv_strides, kt * kBlock, &k_tile, nullptr);
    load_tile<D>(head_base(p.v, p.qkv_strides, bh, p.heads), p.qkv_strides, kt * kBlock, nullptr, &vt_tile);
    __syncthreads();
    float s[8][4];
    scores<D>(s, qa, k_tile);
    // Scores in the log2 domain, masked, and the running maximum of each of the thread's two rows.
    float block_max[2] = {neg_inf(), neg_inf()};
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int h = i / 2, key = kt * kBlock + 8 * nt + 2 * t + i % 2;
        s[nt][i] = (!Causal || kt < qt || visible(r0 + g + 8 * h, key)) ? s[nt][i] * scale_log2 : neg_inf();
        block_max[h] = fmaxf(block_max[h], s[nt][i]);
      }
    float rescale[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float m = fmaxf(row_max[h], quad_max(block_max[h]));  // finite: every row sees at least its own key
      rescale[h] = exp2f(row_max[h] - m);
      row_max[h] = m;
    }
    float block_sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        s[nt][i] = exp2f(s[nt][i] - row_max[i / 2]);
        block_sum[i / 2] += s[nt][i];
      }
#pragma unroll
    for (int h = 0; h < 2; ++h) row_sum[h] = row_sum[h] * rescale[h] + quad_sum(block_sum[h]);
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[dt][i] *= rescale[i / 2];
    accumulate_product<D>(acc, s, vt_tile);
  }
  const float inv[2] = {1.0f / row_sum[0], 1.0f / row_sum[1]};
  store_rows<D>(head_base(p.o, p.o_strides, bh, p.heads), p.o_strides, r0, acc, inv);
  if (t == 0)
#pragma unroll
    for (int h = 0; h < 2; ++h) p.lse[i64(bh) * p.tokens + r0 + g + 8 * h] = (row_max[h] + log2f(row_sum[h])) / kLog2e;
}

// delta = rowsum(dO * O) per (batch, head, token): one warp per row. Grid: batch * heads * T / 4 CTAs.
template <int D>
__global__ void __launch_bounds__(attention::kThreads) attention_delta_kernel(const AttentionParams p) {
  const i64 row = i64(blockIdx.x) * (attention::kThreads / 32) + threadIdx.x / 32;
  const int lane = int(threadIdx.x) % 32, bh = int(row / p.tokens), tok = int(row % p.tokens);
  const bf16* o = attention::head_base(p.o, p.o_strides, bh, p.heads) + i64(tok) * p.o_strides.token;
  const bf16* d_o = attention::head_base(p.d_o, p.o_strides, bh, p.heads) + i64(tok) * p.o_strides.token;
  float sum = 0.0f;
  for (int d = lane; d < D; d += 32) sum += bf16_to_float(o[d]) * bf16_to_float(d_o[d]);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (lane == 0) p.delta[row] = sum;
}

// dK and dV of one tile of 64 keys (grid: T / 64, batch * heads): each warp owns 16 keys and walks the query
// tiles that see them, recomputing P^T from the saved log-sum-exp. Dynamic shared memory: the key tile's K and V
// (A operands, read from shared memory to leave registers to the four accumulators), Q and dO of the current
// query tile as row tiles and transposed, and its log-sum-exp and delta.
template <int D, bool Causal>
__global__ void __launch_bounds__(attention::kThreads) attention_backward_kv_kernel(const AttentionParams p) {
  using namespace attention;
  extern __shared__ __align__(16) u8 smem[];
  RowTile<D>* rows = reinterpret_cast<RowTile<D>*>(smem);  // K, V, Q, dO
  ColTile<D>* cols = reinterpret_cast<ColTile<D>*>(smem + 4 * sizeof(RowTile<D>));  // Q^T, dO^T
  float* lse_log2 = reinterpret_cast<float*>(smem + 4 * sizeof(RowTile<D>) + 2 * sizeof(ColTile<D>));
  float* delta = lse_log2 + kBlock;
  const int warp = int(threadIdx.x) / 32, g = int(threadIdx.x) % 32 / 4, t = int(threadIdx.x) % 4;
  const int tiles = p.tokens / kBlock, kt = int(blockIdx.x), bh = int(blockIdx.y), k0 = kt * kBlock + 16 * warp;
  const float scale_log2 = p.scale * kLog2e;

  load_tile<D>(head_base(p.k, p.qkv_strides, bh, p.heads), p.qkv_strides, kt * kBlock, &rows[0], nullptr);
  load_tile<D>(head_base(p.v, p.qkv_strides, bh, p.heads), p.qkv_strides, kt * kBlock, &rows[1], nullptr);
  const TileRows<D> ka{rows[0], 16 * warp}, va{rows[1], 16 * warp};
  float dk[D / 8][4] = {}, dv[D / 8][4] = {};

  for (int qt = Causal ? kt : 0; qt < tiles; ++qt) {
    __syncthreads();  // the previous query tile is no longer read (and, the first time, K and V have landed)
    load_tile<D>(head_base(p.q, p.qkv_strides, bh, p.heads), p.qkv_strides, qt * kBlock, &rows[2], &cols[0]);
    load_tile<D>(head_base(p.d_o, p.o_strides, bh, p.heads), p.o_strides, qt * kBlock, &rows[3], &cols[1]);
    for (int i = int(threadIdx.x); i < kBlock; i += kThreads) {
      lse_log2[i] = p.lse[i64(bh) * p.tokens + qt * kBlock + i] * kLog2e;
      delta[i] = p.delta[i64(bh) * p.tokens + qt * kBlock + i];
    }
    __syncthreads();
    // P^T (this warp's 16 keys x 64 queries) = exp(S^T * scale - lse[query]).
    float pt[8][4];
    scores<D>(pt, ka, rows[2]);
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int col = 8 * nt + 2 * t + i % 2, key = k0 + g + 8 * (i / 2);
        const bool keep = !Causal || qt > kt || visible(qt * kBlock + col, key);
        pt[nt][i] = keep ? exp2f(pt[nt][i] * scale_log2 - lse_log2[col]) : 0.0f;
      }
    accumulate_product<D>(dv, pt, cols[1]);  // dV += P^T dO
    // dS^T = P^T * (dP^T - delta[query]) with dP^T = V dO^T.
    float dpt[8][4];
    scores<D>(dpt, va, rows[3]);
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) dpt[nt][i] = pt[nt][i] * (dpt[nt][i] - delta[8 * nt + 2 * t + i % 2]);
    accumulate_product<D>(dk, dpt, cols[0]);  // dK += dS^T Q (times scale below)
  }
  const float scaled[2] = {p.scale, p.scale}, one[2] = {1.0f, 1.0f};
  store_rows<D>(head_base(p.dk, p.qkv_strides, bh, p.heads), p.qkv_strides, k0, dk, scaled);
  store_rows<D>(head_base(p.dv, p.qkv_strides, bh, p.heads), p.qkv_strides, k0, dv, one);
}

// dQ of one tile of 64 queries (grid: T / 64, batch * heads), each warp 16 queries, walking the key tiles they
// see: no atomics, so the result does not depend on scheduling. Dynamic shared memory: the query tile's Q and dO
// (A operands), K and V of the current key tile as row tiles, and K transposed.
template <int D, bool Causal>
__global__ void __launch_bounds__(attention::kThreads) attention_backward_q_kernel(const AttentionParams p) {
  using namespace attention;
  extern __shared__ __align__(16) u8 smem[];
  RowTile<D>* rows = reinterpret_cast<RowTile<D>*>(smem);  // Q, dO, K, V
  ColTile<D>& kt_tile = *reinterpret_cast<ColTile<D>*>(smem + 4 * sizeof(RowTile<D>));
  const int warp = int(threadIdx.x) / 32, g = int(threadIdx.x) % 32 / 4, t = int(threadIdx.x) % 4;
  const int tiles = p.tokens / kBlock, qt = Causal ? tiles - 1 - int(blockIdx.x) : int(blockIdx.x);
  const int bh = int(blockIdx.y), r0 = qt * kBlock + 16 * warp;
  const float scale_log2 = p.scale * kLog2e;

  load_tile<D>(head_base(p.q, p.qkv_strides, bh, p.heads), p.qkv_strides, qt * kBlock, &rows[0], nullptr);
  load_tile<D>(head_base(p.d_o, p.o_strides, bh, p.heads), p.o_strides, qt * kBlock, &rows[1], nullptr);
  const TileRows<D> qa{rows[0], 16 * warp}, doa{rows[1], 16 * warp};
  float lse_log2[2], delta[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    lse_log2[h] = p.lse[i64(bh) * p.tokens + r0 + g + 8 * h] * kLog2e;
    delta[h] = p.delta[i64(bh) * p.tokens + r0 + g + 8 * h];
  }
  float dq[D / 8][4] = {};

  const int last = Causal ? qt : tiles - 1;
  for (int kt = 0; kt <= last; ++kt) {
    __syncthreads();  // the previous key tile is no longer read (and, the first time, Q and dO have landed)
    load_tile<D>(head_base(p.k, p.qkv_strides, bh, p.heads), p.qkv_strides, kt * kBlock, &rows[2], &kt_tile);
    load_tile<D>(head_base(p.v, p.qkv_strides, bh, p.heads), p.qkv_strides, kt * kBlock, &rows[3], nullptr);
    __syncthreads();
    float pr[8][4], dp[8][4];
    scores<D>(pr, qa, rows[2]);
    scores<D>(dp, doa, rows[3]);  // dP = dO V^T
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int h = i / 2, key = kt * kBlock + 8 * nt + 2 * t + i % 2;
        const bool keep = !Causal || kt < qt || visible(r0 + g + 8 * h, key);
        const float prob = keep ? exp2f(pr[nt][i] * scale_log2 - lse_log2[h]) : 0.0f;
        dp[nt][i] = prob * (dp[nt][i] - delta[h]);  // dS
      }
    accumulate_product<D>(dq, dp, kt_tile);  // dQ += dS K (times scale below)
  }
  const float scaled[2] = {p.scale, p.scale};
  store_rows<D>(head_base(p.dq, p.qkv_strides, bh, p.heads), p.qkv_strides, r0, dq, scaled);
}

}  // namespace jetforge
#endif
