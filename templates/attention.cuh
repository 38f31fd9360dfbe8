// Attention core in BF16 (DESIGN.md §1 keeps it out of INT8): O = softmax(Q K^T * scale) V per (batch, head),
// causal or not, FlashAttention-2 style: online softmax over tiles of keys, no T x T matrix in memory, the
// log-sum-exp of every row saved for the backward pass, which recomputes the probabilities.
// Portable path (sm_80 and newer): mma.sync m16n8k16 BF16 -> FP32 with every operand fragment read from shared memory
// by ldmatrix, tiles streamed in by cp.async one tile ahead (double buffering). Forward: CTAs of 128 queries, 4 warps
// of 32 rows (each K/V fragment feeds two row tiles); backward: CTAs of 64 keys (dK, dV) or 64 queries (dQ), 4 warps
// of 16 rows. The Hopper kernels (attention_sm90.cuh) keep this contract.
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
#include "jetforge/cta_tile.cuh"

namespace jetforge::attention {

// Every kernel keeps one tile resident and streams tiles of N rows past it (keys in the forward pass and for dQ,
// queries for dK and dV): N = 64, or 32 at head_dim 128, where the accumulators take most of the registers.
constexpr int kThreads = 128;      // 4 warps
constexpr int kForwardWarpRows = 32, kForwardRows = 4 * kForwardWarpRows;  // forward: queries per warp, per CTA
constexpr int kBackwardRows = 64;  // backward: keys (dK, dV) or queries (dQ) per CTA, 16 per warp

// D (16 x 8, FP32) += A (16 x 16, BF16, row) * B (16 x 8, BF16, col). Fragments (g = lane / 4, t = lane % 4):
// a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9];
// b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]; c = {D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]}.
__device__ __forceinline__ void mma(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8 x 8 BF16 matrices from shared memory; lanes 8i .. 8i + 7 give the row addresses of matrix i, and register
// i receives matrix i in fragment order (lane: row lane / 4, columns 2 (lane % 4), +1), or transposed with Trans.
template <bool Trans> __device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], const bf16* row) {
  const u32 a = u32(__cvta_generic_to_shared(row));
  if constexpr (Trans) asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
  else asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

// Rows x D BF16 in shared memory, rows padded by 8 elements (16 bytes) so that the 8 rows of an ldmatrix fall in
// distinct banks. A tile of queries or keys: row = token, column = head dimension.
template <int Rows, int D> struct RowTile {
  static constexpr int kLd = D + 8;
  bf16 e[Rows * kLd];
  __device__ const bf16* at(int r, int c) const { return &e[r * kLd + c]; }

  // Starts copying tokens t0 .. t0 + count - 1 of one (batch, head) into rows 0 .. count - 1 (16-byte cp.async).
  __device__ void load_async(const bf16* head, i64 token_stride, int t0, int count = Rows) {
    constexpr int kChunksPerRow = D / 8;
    for (int c = int(threadIdx.x); c < count * kChunksPerRow; c += kThreads) {
      const int r = c / kChunksPerRow, d0 = c % kChunksPerRow * 8;
      cp_async_16(&e[r * kLd + d0], head + i64(t0 + r) * token_stride + d0);
    }
  }

  // The 16 x 16 A-fragment with top-left (r0, c0): matrices (r0, c0), (r0 + 8, c0), (r0, c0 + 8), (r0 + 8, c0 + 8).
  __device__ void a_fragment(u32 (&a)[4], int r0, int c0) const {
    const int lane = int(threadIdx.x) % 32;
    ldmatrix_x4<false>(a, at(r0 + lane % 8 + 8 * (lane / 8 % 2), c0 + 8 * (lane / 16)));
  }
  // B-fragments {b0, b1} of the n-tiles n0 and n0 + 8 at k-step k0 when rows are n (B^T is stored, as K in Q K^T).
  __device__ void b_fragments_of_rows(u32 (&b)[4], int n0, int k0) const {
    const int lane = int(threadIdx.x) % 32;
    ldmatrix_x4<false>(b, at(n0 + lane % 8 + 8 * (lane / 16), k0 + 8 * (lane / 8 % 2)));
  }
  // The same when rows are k (B is stored, as V in P V): transposed loads of (k0, n0), (k0 + 8, n0), (k0, n0 + 8), ...
  __device__ void b_fragments_of_cols(u32 (&b)[4], int k0, int n0) const {
    const int lane = int(threadIdx.x) % 32;
    ldmatrix_x4<true>(b, at(k0 + lane % 8 + 8 * (lane / 8 % 2), n0 + 8 * (lane / 16)));
  }
};

// A operands of M row tiles (16 rows each, D wide) starting at row r0 of a row tile: read by ldmatrix when used,
// or once into registers (InRegisters) when the accumulators leave room for them.
template <int M, int D, bool InRegisters, class Tile> struct RowFragments {
  const Tile& tile;
  int r0;
  u32 f[InRegisters ? M : 1][InRegisters ? D / 16 : 1][4];
  __device__ RowFragments(const Tile& t, int row0) : tile(t), r0(row0) {}
  __device__ void load() {
    if constexpr (InRegisters)
#pragma unroll
      for (int m = 0; m < M; ++m)
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) tile.a_fragment(f[m][ks], r0 + 16 * m, 16 * ks);
  }
  __device__ void operator()(int m, int ks, u32 (&a)[4]) const {
    if constexpr (InRegisters)
#pragma unroll
      for (int j = 0; j < 4; ++j) a[j] = f[m][ks][j];
    else tile.a_fragment(a, r0 + 16 * m, 16 * ks);
  }
};

// acc[m] (16 x N) = A[m] (16 x D) * B^T for M row tiles of A against the N rows of B (keys or queries, D wide).
template <int M, int D, int N, class A, class BTile> __device__ void scores(float (&acc)[M][N / 8][4], const A& a, const BTile& b) {
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int nt = 0; nt < N / 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[m][nt][i] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    u32 af[M][4];
#pragma unroll
    for (int m = 0; m < M; ++m) a(m, ks, af[m]);
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      u32 bf[4];
      b.b_fragments_of_rows(bf, 16 * np, 16 * ks);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        mma(acc[m][2 * np], af[m], bf[0], bf[1]);
        mma(acc[m][2 * np + 1], af[m], bf[2], bf[3]);
      }
    }
  }
}

// acc[m] (16 x D) += P[m] (16 x N, FP32 rounded to BF16) * B for the N rows of B (D wide): the accumulator layout
// of a 16 x 16 slice of P is the A-fragment layout, so P never leaves registers.
template <int M, int D, int N, class BTile> __device__ void accumulate_product(float (&acc)[M][D / 8][4], const float (&p)[M][N / 8][4], const BTile& b) {
#pragma unroll
  for (int ks = 0; ks < N / 16; ++ks) {
    u32 pa[M][4];
#pragma unroll
    for (int m = 0; m < M; ++m) {
      pa[m][0] = pack_bf16x2(p[m][2 * ks][0], p[m][2 * ks][1]);
      pa[m][1] = pack_bf16x2(p[m][2 * ks][2], p[m][2 * ks][3]);
      pa[m][2] = pack_bf16x2(p[m][2 * ks + 1][0], p[m][2 * ks + 1][1]);
      pa[m][3] = pack_bf16x2(p[m][2 * ks + 1][2], p[m][2 * ks + 1][3]);
    }
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      u32 bf[4];
      b.b_fragments_of_cols(bf, 16 * ks, 16 * dp);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        mma(acc[m][2 * dp], pa[m], bf[0], bf[1]);
        mma(acc[m][2 * dp + 1], pa[m], bf[2], bf[3]);
      }
    }
  }
}

// Stores a warp's 16 x D accumulators (times `mul[h]` for row g + 8h) as BF16 rows r0 ...
template <int D> __device__ void store_rows(bf16* base, const AttentionStrides& s, int r0, const float (&acc)[D / 8][4], const float (&mul)[2]) {
  const int g = int(threadIdx.x) % 32 / 4, t = int(threadIdx.x) % 4;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    bf16* row = base + i64(r0 + g + 8 * h) * s.token;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      *reinterpret_cast<u32*>(row + 8 * dt + 2 * t) = pack_bf16x2(acc[dt][2 * h] * mul[h], acc[dt][2 * h + 1] * mul[h]);
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

// Element (row, col) of a warp's 16 x N accumulator tile held in acc[nt][i]: row g + 8 (i / 2), column 8 nt + 2t + i % 2.
__device__ __forceinline__ int acc_row(int i) { return int(threadIdx.x) % 32 / 4 + 8 * (i / 2); }
__device__ __forceinline__ int acc_col(int nt, int i) { return 8 * nt + 2 * (int(threadIdx.x) % 4) + i % 2; }

}  // namespace jetforge::attention

namespace jetforge {

// Grid: (ceil(T / 128) query tiles, batch * heads). Dynamic shared memory: the query tile and two stages of N-key K
// and V tiles. With T an odd multiple of 64 the last query tile has 64 rows: warps 2 and 3 then only help load.
template <int D, bool Causal, int N>
__global__ void __launch_bounds__(attention::kThreads) attention_forward_kernel(const AttentionParams p) {
  using namespace attention;
  constexpr int M = kForwardWarpRows / 16;
  typedef RowTile<kForwardRows, D> QTile;
  typedef RowTile<N, D> KvTile;
  extern __shared__ __align__(16) u8 smem[];
  QTile& q_tile = *reinterpret_cast<QTile*>(smem);
  KvTile* k_tiles = reinterpret_cast<KvTile*>(smem + sizeof(QTile));  // [2]
  KvTile* v_tiles = k_tiles + 2;                                       // [2]
  const int warp = int(threadIdx.x) / 32;
  const int q_tiles = (p.tokens + kForwardRows - 1) / kForwardRows, qt = Causal ? q_tiles - 1 - int(blockIdx.x) : int(blockIdx.x);  // longest rows first
  const int bh = int(blockIdx.y), q0 = qt * kForwardRows, rows = min(kForwardRows, p.tokens - q0);
  const int r0 = q0 + kForwardWarpRows * warp;  // the warp's first query
  const bool active = r0 < q0 + rows;
  const int key_tiles = (Causal ? q0 + rows : p.tokens) / N;
  const float scale_log2 = p.scale * kLog2e;
  const bf16* k_head = head_base(p.k, p.qkv_strides, bh, p.heads);
  const bf16* v_head = head_base(p.v, p.qkv_strides, bh, p.heads);

  q_tile.load_async(head_base(p.q, p.qkv_strides, bh, p.heads), p.qkv_strides.token, q0, rows);
  k_tiles[0].load_async(k_head, p.qkv_strides.token, 0);
  v_tiles[0].load_async(v_head, p.qkv_strides.token, 0);
  cp_async_commit();
  RowFragments<M, D, D == 64, QTile> qa(q_tile, kForwardWarpRows * warp);  // D = 128: no room for Q in registers
  float acc[M][D / 8][4] = {};
  float row_max[M][2], row_sum[M][2] = {};  // row_sum: this thread's columns only, summed over the quad at the end
#pragma unroll
  for (int m = 0; m < M; ++m) row_max[m][0] = row_max[m][1] = neg_inf();

  for (int kt = 0; kt < key_tiles; ++kt) {
    cp_async_wait<0>();
    __syncthreads();  // tile kt has landed for every thread, and nobody reads tile kt - 1 any more
    if (kt + 1 < key_tiles) {
      k_tiles[(kt + 1) % 2].load_async(k_head, p.qkv_strides.token, (kt + 1) * N);
      v_tiles[(kt + 1) % 2].load_async(v_head, p.qkv_strides.token, (kt + 1) * N);
    }
    cp_async_commit();
    if (kt == 0) qa.load();
    const int k0 = kt * N;
    if (!active || (Causal && k0 > r0 + kForwardWarpRows - 1)) continue;  // no key of this tile is visible to the warp
    const bool diagonal = Causal && k0 + N - 1 > r0;

    float s[M][N / 8][4];
    scores<M, D, N>(s, qa, k_tiles[kt % 2]);
    float block_max[M][2];
#pragma unroll
    for (int m = 0; m < M; ++m) {
      block_max[m][0] = block_max[m][1] = neg_inf();
#pragma unroll
      for (int nt = 0; nt < N / 8; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          if (diagonal && k0 + acc_col(nt, i) > r0 + 16 * m + acc_row(i)) s[m][nt][i] = neg_inf();
          block_max[m][i / 2] = fmaxf(block_max[m][i / 2], s[m][nt][i]);
        }
    }
    // Running maxima in the log2 domain (finite: every row sees key 0 in the first tile), then the probabilities.
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float mx = fmaxf(row_max[m][h], quad_max(block_max[m][h]) * scale_log2);
        const float rescale = fast_exp2(row_max[m][h] - mx);
        row_max[m][h] = mx;
        row_sum[m][h] *= rescale;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) acc[m][dt][2 * h] *= rescale, acc[m][dt][2 * h + 1] *= rescale;
      }
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
      for (int nt = 0; nt < N / 8; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          s[m][nt][i] = fast_exp2(fmaf(s[m][nt][i], scale_log2, -row_max[m][i / 2]));
          row_sum[m][i / 2] += s[m][nt][i];
        }
    accumulate_product<M, D, N>(acc, s, v_tiles[kt % 2]);
  }
  if (!active) return;
  const int g = int(threadIdx.x) % 32 / 4, t = int(threadIdx.x) % 4;
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const float sum[2] = {quad_sum(row_sum[m][0]), quad_sum(row_sum[m][1])};
    const float inv[2] = {1.0f / sum[0], 1.0f / sum[1]};
    store_rows<D>(head_base(p.o, p.o_strides, bh, p.heads), p.o_strides, r0 + 16 * m, acc[m], inv);
    if (t == 0)
#pragma unroll
      for (int h = 0; h < 2; ++h) p.lse[i64(bh) * p.tokens + r0 + 16 * m + g + 8 * h] = (row_max[m][h] + log2f(sum[h])) / kLog2e;
  }
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

// dK and dV of one tile of 64 keys (grid: T / 64, batch * heads): each warp owns 16 keys and walks the N-query
// tiles that see them, recomputing P^T from the saved log-sum-exp. Dynamic shared memory: the key tile's K and V,
// and two stages of (Q, dO, log-sum-exp, delta) of a query tile.
template <int D, bool Causal, int N>
__global__ void __launch_bounds__(attention::kThreads) attention_backward_kv_kernel(const AttentionParams p) {
  using namespace attention;
  typedef RowTile<kBackwardRows, D> KeyTile;
  typedef RowTile<N, D> QueryTile;
  extern __shared__ __align__(16) u8 smem[];
  KeyTile* kv = reinterpret_cast<KeyTile*>(smem);                          // K, V
  QueryTile* stages = reinterpret_cast<QueryTile*>(smem + 2 * sizeof(KeyTile));  // Q and dO of stage 0, then of stage 1
  float* row_stats = reinterpret_cast<float*>(smem + 2 * sizeof(KeyTile) + 4 * sizeof(QueryTile));  // [stage][lse, delta][N]
  const int warp = int(threadIdx.x) / 32;
  const int kt = int(blockIdx.x), bh = int(blockIdx.y), k0 = kt * kBackwardRows + 16 * warp;
  const float scale_log2 = p.scale * kLog2e;
  const bf16* q_head = head_base(p.q, p.qkv_strides, bh, p.heads);
  const bf16* do_head = head_base(p.d_o, p.o_strides, bh, p.heads);
  auto load_query_tile = [&](int qt, int stage) {
    stages[2 * stage].load_async(q_head, p.qkv_strides.token, qt * N);
    stages[2 * stage + 1].load_async(do_head, p.o_strides.token, qt * N);
    if (threadIdx.x < 2 * N / 4) {  // 16-byte chunks of the tile's log-sum-exp, then of its delta
      const int half = int(threadIdx.x) / (N / 4), c = int(threadIdx.x) % (N / 4) * 4;
      cp_async_16(row_stats + (2 * stage + half) * N + c, (half ? p.delta : p.lse) + i64(bh) * p.tokens + qt * N + c);
    }
  };

  const int first = Causal ? kt * kBackwardRows / N : 0, query_tiles = p.tokens / N;  // causal: the first that sees the keys
  kv[0].load_async(head_base(p.k, p.qkv_strides, bh, p.heads), p.qkv_strides.token, kt * kBackwardRows);
  kv[1].load_async(head_base(p.v, p.qkv_strides, bh, p.heads), p.qkv_strides.token, kt * kBackwardRows);
  load_query_tile(first, 0);
  cp_async_commit();
  const RowFragments<1, D, false, KeyTile> ka(kv[0], 16 * warp), va(kv[1], 16 * warp);
  float dk[1][D / 8][4] = {}, dv[1][D / 8][4] = {};

  for (int qt = first; qt < query_tiles; ++qt) {
    const int stage = (qt - first) % 2;
    cp_async_wait<0>();
    __syncthreads();  // this query tile has landed, and nobody reads the previous one any more
    if (qt + 1 < query_tiles) load_query_tile(qt + 1, 1 - stage);
    cp_async_commit();
    const int q0 = qt * N;
    if (Causal && q0 + N - 1 < k0) continue;  // every query of the tile precedes the warp's keys
    const bool diagonal = Causal && q0 < k0 + 15;  // some queries of the tile precede some of the warp's keys
    const QueryTile &q = stages[2 * stage], &d_o = stages[2 * stage + 1];
    const float* lse = row_stats + 2 * stage * N;
    const float* delta = lse + N;
    // P^T (this warp's 16 keys x N queries) = exp(S^T * scale - lse[query]).
    float pt[1][N / 8][4];
    scores<1, D, N>(pt, ka, q);
#pragma unroll
    for (int nt = 0; nt < N / 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int col = acc_col(nt, i);
        const bool keep = !diagonal || k0 + acc_row(i) <= q0 + col;
        pt[0][nt][i] = keep ? fast_exp2(fmaf(pt[0][nt][i], scale_log2, -lse[col] * kLog2e)) : 0.0f;
      }
    accumulate_product<1, D, N>(dv, pt, d_o);  // dV += P^T dO
    // dS^T = P^T * (dP^T - delta[query]) with dP^T = V dO^T.
    float dpt[1][N / 8][4];
    scores<1, D, N>(dpt, va, d_o);
#pragma unroll
    for (int nt = 0; nt < N / 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) dpt[0][nt][i] = pt[0][nt][i] * (dpt[0][nt][i] - delta[acc_col(nt, i)]);
    accumulate_product<1, D, N>(dk, dpt, q);  // dK += dS^T Q (times scale below)
  }
  const float scaled[2] = {p.scale, p.scale}, one[2] = {1.0f, 1.0f};
  store_rows<D>(head_base(p.dk, p.qkv_strides, bh, p.heads), p.qkv_strides, k0, dk[0], scaled);
  store_rows<D>(head_base(p.dv, p.qkv_strides, bh, p.heads), p.qkv_strides, k0, dv[0], one);
}

// dQ of one tile of 64 queries (grid: T / 64, batch * heads), each warp 16 queries, walking the N-key tiles they
// see: no atomics, so the result does not depend on scheduling. Dynamic shared memory: the query tile's Q and dO,
// and two stages of (K, V) of a key tile.
template <int D, bool Causal, int N>
__global__ void __launch_bounds__(attention::kThreads) attention_backward_q_kernel(const AttentionParams p) {
  using namespace attention;
  typedef RowTile<kBackwardRows, D> QueryTile;
  typedef RowTile<N, D> KeyTile;
  extern __shared__ __align__(16) u8 smem[];
  QueryTile* q_do = reinterpret_cast<QueryTile*>(smem);                         // Q, dO
  KeyTile* stages = reinterpret_cast<KeyTile*>(smem + 2 * sizeof(QueryTile));  // K and V of stage 0, then of stage 1
  const int warp = int(threadIdx.x) / 32, g = int(threadIdx.x) % 32 / 4;
  const int tiles = p.tokens / kBackwardRows, qt = Causal ? tiles - 1 - int(blockIdx.x) : int(blockIdx.x);
  const int bh = int(blockIdx.y), r0 = qt * kBackwardRows + 16 * warp;
  const float scale_log2 = p.scale * kLog2e;
  const bf16* k_head = head_base(p.k, p.qkv_strides, bh, p.heads);
  const bf16* v_head = head_base(p.v, p.qkv_strides, bh, p.heads);
  auto load_key_tile = [&](int kt, int stage) {
    stages[2 * stage].load_async(k_head, p.qkv_strides.token, kt * N);
    stages[2 * stage + 1].load_async(v_head, p.qkv_strides.token, kt * N);
  };

  q_do[0].load_async(head_base(p.q, p.qkv_strides, bh, p.heads), p.qkv_strides.token, qt * kBackwardRows);
  q_do[1].load_async(head_base(p.d_o, p.o_strides, bh, p.heads), p.o_strides.token, qt * kBackwardRows);
  load_key_tile(0, 0);
  cp_async_commit();
  const RowFragments<1, D, false, QueryTile> qa(q_do[0], 16 * warp), doa(q_do[1], 16 * warp);
  float lse_log2[2], delta[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    lse_log2[h] = p.lse[i64(bh) * p.tokens + r0 + g + 8 * h] * kLog2e;
    delta[h] = p.delta[i64(bh) * p.tokens + r0 + g + 8 * h];
  }
  float dq[1][D / 8][4] = {};

  const int key_tiles = (Causal ? (qt + 1) * kBackwardRows : p.tokens) / N;
  for (int kt = 0; kt < key_tiles; ++kt) {
    cp_async_wait<0>();
    __syncthreads();  // this key tile has landed, and nobody reads the previous one any more
    if (kt + 1 < key_tiles) load_key_tile(kt + 1, (kt + 1) % 2);
    cp_async_commit();
    const int k0 = kt * N;
    if (Causal && k0 > r0 + 15) continue;  // no key of the tile is visible to the warp's queries
    const bool diagonal = Causal && k0 + N - 1 > r0;  // some keys of the tile follow some of the warp's queries
    const KeyTile &k = stages[2 * (kt % 2)], &v = stages[2 * (kt % 2) + 1];
    float pr[1][N / 8][4], dp[1][N / 8][4];
    scores<1, D, N>(pr, qa, k);
    scores<1, D, N>(dp, doa, v);  // dP = dO V^T
#pragma unroll
    for (int nt = 0; nt < N / 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int h = i / 2;
        const bool keep = !diagonal || k0 + acc_col(nt, i) <= r0 + acc_row(i);
        const float prob = keep ? fast_exp2(fmaf(pr[0][nt][i], scale_log2, -lse_log2[h])) : 0.0f;
        dp[0][nt][i] = prob * (dp[0][nt][i] - delta[h]);  // dS
      }
    accumulate_product<1, D, N>(dq, dp, k);  // dQ += dS K (times scale below)
  }
  const float scaled[2] = {p.scale, p.scale};
  store_rows<D>(head_base(p.dq, p.qkv_strides, bh, p.heads), p.qkv_strides, r0, dq[0], scaled);
}

}  // namespace jetforge
#endif
