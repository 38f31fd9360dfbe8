// Hopper path of the attention core (contract in attention.cuh: same parameters, outputs and numerics). Every kernel
// keeps one tile of 128 tokens resident and streams tiles of the other operand past it: one producer warp loads them
// by TMA (4-D maps over the layout's strides, 128-byte swizzle, 64 head-dim columns per box) Stages tiles ahead, two
// consumer warpgroups of 64 tokens each multiply with wgmma. Products over the head dimension (Q K^T, dO V^T) read
// both operands K-major from shared memory; products over tokens (P V, dS K, P^T dO, dS^T Q) take the probabilities
// from registers and read the other operand N-major, transposed by the tensor core (no copy).
//   forward:     128 queries resident, K and V streamed (Keys per tile, Stages ahead), online softmax; the
//                consumers in turns at the tensor core (PingPong) or each at its own pace.
//   backward_kv: 128 keys resident (K, V), Q, dO and the rows' log-sum-exp and delta streamed 64 queries at a time;
//                dV += P^T dO, dK += dS^T Q.
//   backward_q:  128 queries resident (Q, dO), K and V streamed 64 keys at a time; dQ += dS K.
// The backward is deterministic like the portable one: every gradient element is summed in one thread, in order.
#pragma once
#include "attention.cuh"
#include "jetforge/sm90.cuh"

namespace jetforge {

struct AttentionSm90Params {
  TensorMap q, k, v, d_o;  // 4-D (head_dim, T, heads, batch) BF16 maps with the layout's strides; boxes of 64 x rows
  AttentionParams p;       // o, lse, delta, gradients, strides, heads, tokens, scale
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge::attention_sm90 {

constexpr int kRows = 128;  // tokens of the resident tile; 64 per consumer warpgroup
// The forward's running maximum moves when a tile's exceeds it by more than this (log2 units). 0, an exact maximum,
// gives each row's heaviest term P = 1, no BF16 rounding; 8 (a lazy maximum, P up to 2^8) measured no faster and left
// O's RMS error 1.7% above SDPA's (bench/NOTES.md, runs 89-91). Written as a comparison, not fmaxf: ptxas schedules
// the head_dim 64 kernel 10% slower from that form (run 92).
constexpr float kRescaleThreshold = 0.0f;
constexpr u64 kSwizzle128 = 1ull << 62;
constexpr u64 kCoreGroupStride = u64(1024 >> 4) << 32;  // SBO: 8-row core groups of 128-byte rows

// Rows tokens x D in shared memory as D / 64 slices of Rows x 128 bytes, one TMA box each (128-byte swizzle: chunk c of
// row r at c ^ (r % 8)). Its size is a multiple of 1024 bytes, so tiles laid out back to back stay swizzle-aligned.
template <int Rows, int D> struct Tile {
  static constexpr int kSlices = D / 64;
  static constexpr u32 kBytes = Rows * D * 2;
  bf16 e[Rows * D];

  __device__ const bf16* slice(int sl) const { return e + sl * Rows * 64; }
  // Tokens t0 .. t0 + Rows - 1 of (head, batch), completing on bar (tokens past T arrive as zeros).
  __device__ void load(const TensorMap* map, int t0, int head, int batch, u64* bar) {
    for (int sl = 0; sl < kSlices; ++sl) sm90::tma_load_4d(e + sl * Rows * 64, map, 64 * sl, t0, head, batch, bar);
  }
  // As a K-major operand (the head dimension is K): rows r0 .. of the 16-column step ks (32 bytes into the swizzled row).
  __device__ u64 k_major(int r0, int ks) const {
    return u64((sm90::smem_addr(slice(ks / 4) + r0 * 64) >> 4) + 2 * ks % 8) | (1ull << 16) | kCoreGroupStride | kSwizzle128;
  }
  // As an N-major operand (tokens are K, the head dimension N): tokens r0 .. r0 + 15 of slice sl, the 64 columns of an
  // n64 wgmma; K advances by whole 128-byte rows, so the leading byte offset (the next slice) is never used.
  __device__ u64 n_major(int sl, int r0) const { return u64(sm90::smem_addr(slice(sl) + r0 * 64) >> 4) | (1ull << 16) | kCoreGroupStride | kSwizzle128; }
};

// acc (64 x N) = rows a_r0 .. a_r0 + 63 of a times the first N rows of b, transposed: the sum over the head dimension.
template <int N, class ATile, class BTile> __device__ __forceinline__ void issue_scores(float (&acc)[N / 2], const ATile& a, int a_r0, const BTile& b) {
  constexpr int kSteps = ATile::kSlices * 4;
  sm90::WgmmaBf16<N>::template ss<0, false>(acc, a.k_major(a_r0, 0), b.k_major(0, 0));
#pragma unroll
  for (int ks = 1; ks < kSteps; ++ks) sm90::WgmmaBf16<N>::template ss<0, true>(acc, a.k_major(a_r0, ks), b.k_major(0, ks));
}

// acc (64 x D, 64 columns per slice) += P (64 x K, BF16 fragments of 16 tokens) times tokens 0 .. K - 1 of b.
template <int K, int D, class BTile> __device__ __forceinline__ void issue_product(float (&acc)[D / 64][32], const u32 (&pa)[K / 16][4], const BTile& b) {
#pragma unroll
  for (int ks = 0; ks < K / 16; ++ks)
#pragma unroll
    for (int sl = 0; sl < D / 64; ++sl) sm90::WgmmaBf16<64>::template rs<1>(acc[sl], pa[ks], b.n_major(sl, 16 * ks));
}

// FP32 accumulators of a 64 x K product (Wgmma layout) as the BF16 A fragments of the next product over those K.
template <int K> __device__ __forceinline__ void to_fragments(const float (&x)[K / 2], u32 (&pa)[K / 16][4]) {
#pragma unroll
  for (int j = 0; j < K / 8; ++j) {
    pa[j / 2][2 * (j % 2)] = pack_bf16x2(x[4 * j], x[4 * j + 1]);
    pa[j / 2][2 * (j % 2) + 1] = pack_bf16x2(x[4 * j + 2], x[4 * j + 3]);
  }
}

// Stores a warpgroup's 64 x D accumulators as BF16: the thread's rows row0 and row0 + 8 (times mul[0], mul[1]), those
// below T.
template <int D> __device__ void store_rows(bf16* head, i64 token_stride, int row0, int tokens, const float (&acc)[D / 64][32], const float (&mul)[2]) {
  const int t = int(threadIdx.x) % 4;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (row0 + 8 * h >= tokens) continue;
    bf16* out = head + i64(row0 + 8 * h) * token_stride;
#pragma unroll
    for (int sl = 0; sl < D / 64; ++sl)
#pragma unroll
      for (int j = 0; j < 8; ++j)
        *reinterpret_cast<u32*>(out + 64 * sl + 8 * j + 2 * t) = pack_bf16x2(acc[sl][4 * j + 2 * h] * mul[h], acc[sl][4 * j + 2 * h + 1] * mul[h]);
  }
}

// The start every kernel shares: the shared-memory struct aligned for the swizzle (the kernel traps if the launch gave
// less than the spec's smem_bytes() promised) and its barriers initialized by thread 0.
template <class Smem> __device__ Smem& smem_of() {
  Smem& smem = sm90::swizzle_aligned_smem<Smem>();
  if (threadIdx.x == 0) {
    sm90::check_dynamic_smem<Smem>();
    smem.init_barriers();
    sm90::fence_barrier_init();
  }
  __syncthreads();
  return smem;
}

// Pins every register of an array of accumulator (float) or fragment (u32) rows: sm90::pin_registers on each.
template <class T, int R, int N> __device__ __forceinline__ void pin_all(T (&x)[R][N]) {
#pragma unroll
  for (int r = 0; r < R; ++r) sm90::pin_registers(x[r]);
}

// A consumer warp is done with a stage (the barrier counts the 8 consumer warps).
__device__ __forceinline__ void release(u64* empty) {
  if (threadIdx.x % 32 == 0) sm90::mbar_arrive(empty);
}

}  // namespace jetforge::attention_sm90

namespace jetforge {

template <int D, int Keys, int Stages> struct AttentionForwardSm90Smem {
  attention_sm90::Tile<attention_sm90::kRows, D> q;
  attention_sm90::Tile<Keys, D> k[Stages], v[Stages];
  u64 q_full, k_full[Stages], v_full[Stages], k_empty[Stages], v_empty[Stages];
  __device__ void init_barriers() {
    sm90::mbar_init(&q_full, 1);
    for (int s = 0; s < Stages; ++s) {
      sm90::mbar_init(&k_full[s], 1), sm90::mbar_init(&v_full[s], 1);
      sm90::mbar_init(&k_empty[s], 8), sm90::mbar_init(&v_empty[s], 8);  // K is released a softmax earlier than V
    }
  }
};

// Grid: (ceil(T / 128) query tiles, batch * heads), 384 threads. Keys: keys per K/V tile (64 or 128); Stages: K/V
// tiles in flight (2 or 3); PingPong: the schedule of the consumer warpgroups (below).
template <int D, bool Causal, int Keys, int Stages, bool PingPong>
__global__ void __launch_bounds__(384, 1) attention_forward_sm90_kernel(const __grid_constant__ AttentionSm90Params params) {
  using namespace attention;
  using namespace attention_sm90;
  typedef AttentionForwardSm90Smem<D, Keys, Stages> Smem;
  Smem& smem = smem_of<Smem>();
  const AttentionParams& p = params.p;
  const int q_tiles = (p.tokens + kRows - 1) / kRows, qt = Causal ? q_tiles - 1 - int(blockIdx.x) : int(blockIdx.x);  // longest rows first
  const int bh = int(blockIdx.y), batch = bh / p.heads, head = bh % p.heads, q0 = qt * kRows;
  const int key_tiles = (Causal ? min(q0 + kRows, p.tokens) - 1 : p.tokens - 1) / Keys + 1;
  const int wg = int(threadIdx.x) / 128;
  // The consumers' register budget steers ptxas's schedule: 232 measured faster at head_dim 64, 240 at 128 (run 78).
  constexpr int kConsumerRegs = D == 64 ? 232 : 240, kProducerRegs = kConsumerRegs == 232 ? 40 : 24;

  if (wg == 0) {
    sm90::setmaxnreg_dec<kProducerRegs>();
    if (threadIdx.x == 0) {
      sm90::mbar_arrive_expect_tx(&smem.q_full, smem.q.kBytes);
      smem.q.load(&params.q, q0, head, batch, &smem.q_full);
      for (int kt = 0; kt < key_tiles; ++kt) {
        const int s = kt % Stages;
        if (kt >= Stages) sm90::mbar_wait(&smem.k_empty[s], (kt / Stages - 1) & 1);
        sm90::mbar_arrive_expect_tx(&smem.k_full[s], smem.k[s].kBytes);
        smem.k[s].load(&params.k, kt * Keys, head, batch, &smem.k_full[s]);
        if (kt >= Stages) sm90::mbar_wait(&smem.v_empty[s], (kt / Stages - 1) & 1);
        sm90::mbar_arrive_expect_tx(&smem.v_full[s], smem.v[s].kBytes);
        smem.v[s].load(&params.v, kt * Keys, head, batch, &smem.v_full[s]);
      }
    }
    return;
  }

  sm90::setmaxnreg_inc<kConsumerRegs>();
  const int cw = wg - 1, t = int(threadIdx.x) % 4;
  const int row0 = q0 + 64 * cw + 16 * (int(threadIdx.x) / 32 % 4) + int(threadIdx.x) % 32 / 4;  // this thread's rows: row0, row0 + 8
  const float scale_log2 = p.scale * kLog2e;
  float o[D / 64][32] = {};
  float row_max[2] = {neg_inf(), neg_inf()}, row_sum[2] = {0.0f, 0.0f};  // row_sum: this thread's columns only
  float sc[Keys / 2];
  u32 pa[Keys / 16][4];
  sm90::mbar_wait(&smem.q_full, 0);

  // The softmax of tile kt: its scores in sc become P in pa, O is rescaled for them.
  const auto softmax = [&](int kt) {
    const int k0 = kt * Keys;
    // Mask (causal, and keys past T in a partial last tile), then the online softmax as in the portable kernel; the
    // running maximum moves when a tile's exceeds it by more than kRescaleThreshold.
    const bool masked = (Causal && k0 + Keys - 1 > q0 + 64 * cw) || k0 + Keys > p.tokens;
    float block_max[2] = {neg_inf(), neg_inf()};
#pragma unroll
    for (int j = 0; j < Keys / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + 8 * j + 2 * t + e % 2, row = row0 + 8 * (e / 2);
        if (masked && ((Causal && key > row) || key >= p.tokens)) sc[4 * j + e] = neg_inf();
        block_max[e / 2] = fmaxf(block_max[e / 2], sc[4 * j + e]);
      }
    float rescale[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float mx = quad_max(block_max[h]) * scale_log2, moved = mx > row_max[h] + kRescaleThreshold ? mx : row_max[h];
      rescale[h] = fast_exp2(row_max[h] - moved);  // 2^-inf = 0 at the first tile (key 0 makes mx finite)
      row_max[h] = moved;
      row_sum[h] *= rescale[h];
    }
#pragma unroll
    for (int j = 0; j < Keys / 8; ++j) {  // P packed to BF16 fragments as it is computed: fewer live registers
      float pr[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        pr[e] = fast_exp2(fmaf(sc[4 * j + e], scale_log2, -row_max[e / 2]));
        row_sum[e / 2] += pr[e];
      }
      pa[j / 2][2 * (j % 2)] = pack_bf16x2(pr[0], pr[1]);
      pa[j / 2][2 * (j % 2) + 1] = pack_bf16x2(pr[2], pr[3]);
    }
#pragma unroll
    for (int sl = 0; sl < D / 64; ++sl)
#pragma unroll
      for (int i = 0; i < 32; ++i) o[sl][i] *= rescale[i % 4 / 2];
  };

  // A turn at the tensor core: the scores of tile kt (if scores) and P V of tile kt - 1 (if product), issued back to
  // back, waited for; then the softmax of tile kt. Constant arguments at every call, so the branches fold away (ptxas
  // serializes a wgmma under a branch it sees). With PingPong (FA3's schedule) the consumer warpgroups alternate: turn
  // kt issues the scores of tile kt with P V of tile kt - 1, and its softmax runs under the other's turn; named barrier
  // 1 + cw is this warpgroup's turn, complete once the other has issued its own. Without, each warpgroup goes at its
  // own pace, one product per turn (measured faster at head_dim 64, slower at 128: bench/NOTES.md, run 87).
  const auto turn = [&](const bool scores, const bool product, int kt) {
    const int s = kt % Stages, ps = (kt + Stages - 1) % Stages;  // the stages of tiles kt and kt - 1
    if (PingPong) sm90::named_barrier(1 + cw, 256);
    if (scores) sm90::mbar_wait(&smem.k_full[s], (kt / Stages) & 1);
    if (product) sm90::mbar_wait(&smem.v_full[ps], ((kt - 1) / Stages) & 1);
    sm90::wgmma_fence();
    if (scores) issue_scores<Keys>(sc, smem.q, 64 * cw, smem.k[s]);
    if (product) issue_product<Keys, D>(o, pa, smem.v[ps]);
    sm90::wgmma_commit();
    if (PingPong && (scores || cw == 0)) sm90::named_barrier_arrive(2 - cw, 256);  // the other's turn (it has none after its last)
    sm90::wgmma_wait<0>();
    if (product) {
      pin_all(o);
      pin_all(pa);
      release(&smem.v_empty[ps]);
    }
    if (scores) {
      sm90::pin_registers(sc);
      release(&smem.k_empty[s]);
      softmax(kt);
    }
  };
  if (PingPong) {
    if (cw == 1) sm90::named_barrier_arrive(1, 256);  // warpgroup 0 goes first
    turn(true, false, 0);
    for (int kt = 1; kt < key_tiles; ++kt) turn(true, true, kt);
    turn(false, true, key_tiles);
  } else {
    for (int kt = 0; kt < key_tiles; ++kt) {
      turn(true, false, kt);
      turn(false, true, kt + 1);
    }
  }

  const float sum[2] = {quad_sum(row_sum[0]), quad_sum(row_sum[1])}, inv[2] = {1.0f / sum[0], 1.0f / sum[1]};
  store_rows<D>(head_base(p.o, p.o_strides, bh, p.heads), p.o_strides.token, row0, p.tokens, o, inv);
  if (t == 0)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      if (row0 + 8 * h < p.tokens) p.lse[i64(bh) * p.tokens + row0 + 8 * h] = (row_max[h] + log2f(sum[h])) / kLog2e;
}

// Both backward kernels: two resident 128-token tiles (K and V, or Q and dO) and Stages stages of two streamed 64-token
// tiles (Q and dO, or K and V); the dK/dV kernel also streams the queries' log-sum-exp and delta.
template <int D, int Stages> struct AttentionBackwardSm90Smem {
  attention_sm90::Tile<attention_sm90::kRows, D> resident[2];
  attention_sm90::Tile<64, D> streamed[Stages][2];  // [stage][which]
  float lse[Stages][64], delta[Stages][64];         // [stage][query]
  u64 resident_full, full[Stages], empty[Stages];
  __device__ void init_barriers() {
    sm90::mbar_init(&resident_full, 1);
    for (int s = 0; s < Stages; ++s) sm90::mbar_init(&full[s], 1), sm90::mbar_init(&empty[s], 8);
  }
  // The producer thread: the resident tiles (tokens t0 .. of maps res[0], res[1]), then `count` pairs of streamed tiles
  // (64 tokens each from 64 * first on, maps str[0], str[1]) through the ring, each stage with extra_bytes more that
  // `extra(stage, tile)` loads beside them.
  template <class Extra>
  __device__ void produce(const TensorMap* const (&res)[2], int t0, const TensorMap* const (&str)[2], int first, int count, int head, int batch,
                          int extra_bytes, Extra&& extra) {
    sm90::mbar_arrive_expect_tx(&resident_full, 2 * resident[0].kBytes);
    for (int w = 0; w < 2; ++w) resident[w].load(res[w], t0, head, batch, &resident_full);
    for (int it = 0; it < count; ++it) {
      const int s = it % Stages;
      if (it >= Stages) sm90::mbar_wait(&empty[s], (it / Stages - 1) & 1);
      sm90::mbar_arrive_expect_tx(&full[s], 2 * streamed[s][0].kBytes + extra_bytes);
      for (int w = 0; w < 2; ++w) streamed[s][w].load(str[w], 64 * (first + it), head, batch, &full[s]);
      extra(s, first + it);
    }
  }
  // A consumer warpgroup's two score products of the ring's it-th stage, waited for: x = R0 S0^T and y = R1 S1^T with
  // R the resident tiles' rows r0 .. r0 + 63 and S the stage's streamed tiles (S^T and dP^T, or S and dP).
  __device__ __forceinline__ void scores(float (&x)[32], float (&y)[32], int it, int r0) {
    const int s = it % Stages;
    sm90::mbar_wait(&full[s], (it / Stages) & 1);
    sm90::wgmma_fence();
    attention_sm90::issue_scores<64>(x, resident[0], r0, streamed[s][0]);
    attention_sm90::issue_scores<64>(y, resident[1], r0, streamed[s][1]);
    sm90::wgmma_commit();
    sm90::wgmma_wait<0>();
    sm90::pin_registers(x);
    sm90::pin_registers(y);
  }
};

// dK and dV of 128 keys (grid: ceil(T / 128), batch * heads; 384 threads), walking the 64-query tiles that see them.
template <int D, bool Causal, int Stages>
__global__ void __launch_bounds__(384, 1) attention_backward_kv_sm90_kernel(const __grid_constant__ AttentionSm90Params params) {
  using namespace attention;
  using namespace attention_sm90;
  typedef AttentionBackwardSm90Smem<D, Stages> Smem;
  Smem& smem = smem_of<Smem>();
  const AttentionParams& p = params.p;
  const int bh = int(blockIdx.y), batch = bh / p.heads, head = bh % p.heads, k0 = int(blockIdx.x) * kRows;
  const int first = Causal ? k0 / 64 : 0, query_tiles = p.tokens / 64;  // causal: the first query tile that sees a key
  const int wg = int(threadIdx.x) / 128;

  if (wg == 0) {
    sm90::setmaxnreg_dec<40>();
    if (threadIdx.x == 0) {
      const TensorMap* const kv[2] = {&params.k, &params.v};
      const TensorMap* const q_do[2] = {&params.q, &params.d_o};
      smem.produce(kv, k0, q_do, first, query_tiles - first, head, batch, 2 * 64 * 4, [&](int s, int qt) {
        sm90::bulk_load(smem.lse[s], p.lse + i64(bh) * p.tokens + 64 * qt, 64 * 4, &smem.full[s]);
        sm90::bulk_load(smem.delta[s], p.delta + i64(bh) * p.tokens + 64 * qt, 64 * 4, &smem.full[s]);
      });
    }
    return;
  }

  sm90::setmaxnreg_inc<232>();
  const int cw = wg - 1, t = int(threadIdx.x) % 4, keys0 = k0 + 64 * cw;
  const int key_row = keys0 + 16 * (int(threadIdx.x) / 32 % 4) + int(threadIdx.x) % 32 / 4;  // this thread's keys: key_row, key_row + 8
  const float scale_log2 = p.scale * kLog2e;
  float dk[D / 64][32] = {}, dv[D / 64][32] = {};
  sm90::mbar_wait(&smem.resident_full, 0);

  for (int qt = first; qt < query_tiles; ++qt) {
    const int it = qt - first, s = it % Stages, q0 = 64 * qt;
    const auto &q = smem.streamed[s][0], &d_o = smem.streamed[s][1];
    float pt[32], dpt[32];  // P^T and dP^T, then dS^T: 64 keys x 64 queries
    smem.scores(pt, dpt, it, 64 * cw);  // S^T = K Q^T, dP^T = V dO^T

    // P^T = exp(S^T * scale - lse[query]), 0 where masked (causal, and keys past T); dS^T = P^T (dP^T - delta[query]).
    const bool masked = (Causal && q0 < keys0 + 63) || keys0 + 64 > p.tokens;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int col = 8 * (i / 4) + 2 * t + i % 2, key = key_row + 8 * (i % 4 / 2);
      const bool hidden = masked && ((Causal && key > q0 + col) || key >= p.tokens);
      pt[i] = hidden ? 0.0f : fast_exp2(fmaf(pt[i], scale_log2, -smem.lse[s][col] * kLog2e));
      dpt[i] = pt[i] * (dpt[i] - smem.delta[s][col]);
    }
    u32 pf[4][4], dsf[4][4];
    to_fragments<64>(pt, pf);
    to_fragments<64>(dpt, dsf);
    pin_all(pf), pin_all(dsf), pin_all(dk), pin_all(dv);
    sm90::wgmma_fence();
    issue_product<64, D>(dv, pf, d_o);  // dV += P^T dO
    issue_product<64, D>(dk, dsf, q);   // dK += dS^T Q
    sm90::wgmma_commit();
    sm90::wgmma_wait<0>();
    pin_all(dk), pin_all(dv), pin_all(pf), pin_all(dsf);
    release(&smem.empty[s]);
  }
  const float scaled[2] = {p.scale, p.scale}, one[2] = {1.0f, 1.0f};
  store_rows<D>(head_base(p.dk, p.qkv_strides, bh, p.heads), p.qkv_strides.token, key_row, p.tokens, dk, scaled);
  store_rows<D>(head_base(p.dv, p.qkv_strides, bh, p.heads), p.qkv_strides.token, key_row, p.tokens, dv, one);
}

// dQ of 128 queries (grid: ceil(T / 128), batch * heads; 384 threads), walking the 64-key tiles they see.
template <int D, bool Causal, int Stages>
__global__ void __launch_bounds__(384, 1) attention_backward_q_sm90_kernel(const __grid_constant__ AttentionSm90Params params) {
  using namespace attention;
  using namespace attention_sm90;
  typedef AttentionBackwardSm90Smem<D, Stages> Smem;
  Smem& smem = smem_of<Smem>();
  const AttentionParams& p = params.p;
  const int q_tiles = (p.tokens + kRows - 1) / kRows, qt = Causal ? q_tiles - 1 - int(blockIdx.x) : int(blockIdx.x);
  const int bh = int(blockIdx.y), batch = bh / p.heads, head = bh % p.heads, q0 = qt * kRows;
  const int key_tiles = (Causal ? min(q0 + kRows, p.tokens) : p.tokens) / 64;
  const int wg = int(threadIdx.x) / 128;

  if (wg == 0) {
    sm90::setmaxnreg_dec<40>();
    if (threadIdx.x == 0) {
      const TensorMap* const q_do[2] = {&params.q, &params.d_o};
      const TensorMap* const kv[2] = {&params.k, &params.v};
      smem.produce(q_do, q0, kv, 0, key_tiles, head, batch, 0, [](int, int) {});
    }
    return;
  }

  sm90::setmaxnreg_inc<232>();
  const int cw = wg - 1, t = int(threadIdx.x) % 4;
  const int row0 = q0 + 64 * cw + 16 * (int(threadIdx.x) / 32 % 4) + int(threadIdx.x) % 32 / 4;  // this thread's rows: row0, row0 + 8
  const float scale_log2 = p.scale * kLog2e;
  float lse_log2[2], delta[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const bool inside = row0 + 8 * h < p.tokens;  // rows past T (a partial last tile) compute garbage that is not stored
    lse_log2[h] = inside ? p.lse[i64(bh) * p.tokens + row0 + 8 * h] * kLog2e : 0.0f;
    delta[h] = inside ? p.delta[i64(bh) * p.tokens + row0 + 8 * h] : 0.0f;
  }
  float dq[D / 64][32] = {};
  sm90::mbar_wait(&smem.resident_full, 0);

  for (int kt = 0; kt < key_tiles; ++kt) {
    const int s = kt % Stages, k0 = 64 * kt;
    const auto& k = smem.streamed[s][0];
    float sc[32], dp[32];  // S and dP, then dS: 64 queries x 64 keys
    smem.scores(sc, dp, kt, 64 * cw);  // S = Q K^T, dP = dO V^T

    const bool masked = Causal && k0 + 63 > q0 + 64 * cw;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int key = k0 + 8 * (i / 4) + 2 * t + i % 2, h = i % 4 / 2;
      const float prob = masked && key > row0 + 8 * h ? 0.0f : fast_exp2(fmaf(sc[i], scale_log2, -lse_log2[h]));
      dp[i] = prob * (dp[i] - delta[h]);  // dS
    }
    u32 dsf[4][4];
    to_fragments<64>(dp, dsf);
    pin_all(dsf), pin_all(dq);
    sm90::wgmma_fence();
    issue_product<64, D>(dq, dsf, k);  // dQ += dS K
    sm90::wgmma_commit();
    sm90::wgmma_wait<0>();
    pin_all(dq), pin_all(dsf);
    release(&smem.empty[s]);
  }
  const float scaled[2] = {p.scale, p.scale};
  store_rows<D>(head_base(p.dq, p.qkv_strides, bh, p.heads), p.qkv_strides.token, row0, p.tokens, dq, scaled);
}

}  // namespace jetforge
#endif
