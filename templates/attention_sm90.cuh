// Hopper path of the attention forward pass (contract in attention.cuh: same parameters, outputs and numerics):
// Q, K and V tiles arrive by TMA (128-byte swizzle, 64 head-dim columns per box), one producer warp keeps two
// stages of K and V in flight, and two consumer warpgroups of 64 queries each compute S = Q K^T with wgmma from
// shared memory, the online softmax in registers, and O += P V with P straight from registers and V read N-major
// (transposed by the tensor core, no copy). Within a warpgroup the softmax of key tile j runs while the tensor core
// computes P V of tile j - 1 (issued together with Q K^T of tile j), so the exponentials and the products overlap.
#pragma once
#include "attention.cuh"
#include "jetforge/sm90.cuh"

namespace jetforge {

struct AttentionSm90Params {
  TensorMap q, k, v;  // 4-D (head_dim, T, heads, batch) BF16 maps with the layout's strides; boxes of 64 x Rows x 1 x 1
  AttentionParams p;  // o, lse, strides, heads, tokens, scale
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge {

// Tiles of Rows tokens x D, each stored as D / 64 slices of Rows x 128 bytes (one TMA box each, 128-byte
// swizzle: rows of 8 x 16-byte chunks, chunk c of row r at c ^ (r % 8)). Slices and tiles are 1024-byte aligned.
template <int D, int Keys> struct AttentionSm90Smem {
  static constexpr int kQueries = 128, kSlices = D / 64;
  bf16 q[kQueries * D];
  bf16 k[2][Keys * D];
  bf16 v[2][Keys * D];
  u64 q_full, k_full[2], v_full[2], k_empty[2], v_empty[2];
};

namespace attention_sm90 {

constexpr u64 kSwizzle128 = 1ull << 62;
constexpr float kLazyRescale = 8.0f;
constexpr u64 kCoreGroupStride = u64(1024 >> 4) << 32;  // SBO: 8-row core groups of 128-byte rows

// K-major operand (rows of a slice are M or N, 64 head-dim columns of K across each 128-byte row): the descriptor of
// the 16-column step `ks` (32 bytes into the swizzled row) of the slice at `slice`.
__device__ __forceinline__ u64 k_major_desc(const bf16* slice, int ks) {
  return u64((sm90::smem_addr(slice) >> 4) + 2 * ks) | (1ull << 16) | kCoreGroupStride | kSwizzle128;
}
// N-major operand (V: rows are K = keys, 64 head-dim columns of N across each row): 16 keys from `key0` of a slice;
// K advances by whole 128-byte rows, 8-row core groups 1024 bytes apart. One slice spans all 64 columns of an
// n64 wgmma, so the leading byte offset (the next slice along N) is never used.
__device__ __forceinline__ u64 n_major_desc(const bf16* slice, int key0) {
  return u64(sm90::smem_addr(slice + key0 * 64) >> 4) | (1ull << 16) | kCoreGroupStride | kSwizzle128;
}

}  // namespace attention_sm90

// Grid: (ceil(T / 128) query tiles, batch * heads), 384 threads: warpgroup 0 produces (one warp issues TMA),
// warpgroups 1 and 2 consume 64 queries each. Keys: keys per K/V tile (64 or 128); Overlap: a tile's softmax runs
// while the previous tile's P V is computed (faster at head_dim 64, not at 128: bench/NOTES.md, session 7).
template <int D, bool Causal, int Keys, bool Overlap>
__global__ void __launch_bounds__(384, 1) attention_forward_sm90_kernel(const __grid_constant__ AttentionSm90Params params) {
  using namespace attention;
  using namespace attention_sm90;
  typedef AttentionSm90Smem<D, Keys> Smem;
  constexpr int kQueries = Smem::kQueries, kSlices = Smem::kSlices;
  extern __shared__ u8 smem_raw[];
  Smem& smem = *reinterpret_cast<Smem*>(smem_raw + ((1024u - (sm90::smem_addr(smem_raw) & 1023u)) & 1023u));
  const AttentionParams& p = params.p;

  const int q_tiles = (p.tokens + kQueries - 1) / kQueries, qt = Causal ? q_tiles - 1 - int(blockIdx.x) : int(blockIdx.x);  // longest rows first
  const int bh = int(blockIdx.y), batch = bh / p.heads, head = bh % p.heads, q0 = qt * kQueries;
  const int last_key = Causal ? min(q0 + kQueries, p.tokens) - 1 : p.tokens - 1;
  const int key_tiles = last_key / Keys + 1;
  const int wg = int(threadIdx.x) / 128, warp = int(threadIdx.x) / 32 % 4, lane = int(threadIdx.x) % 32;

  if (threadIdx.x == 0) {
    u32 dynamic_bytes;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_bytes));
    if (sizeof(Smem) + 1023 > dynamic_bytes) __trap();  // the launch gave less than AttentionSm90Spec::smem_bytes() promised
    sm90::mbar_init(&smem.q_full, 1);
    for (int s = 0; s < 2; ++s) {
      sm90::mbar_init(&smem.k_full[s], 1);
      sm90::mbar_init(&smem.v_full[s], 1);
      sm90::mbar_init(&smem.k_empty[s], 8);  // every consumer warp, once its Q K^T of the stage's tile is done
      sm90::mbar_init(&smem.v_empty[s], 8);  // the same for P V: K is released a whole softmax earlier than V
    }
    sm90::fence_barrier_init();
  }
  __syncthreads();

  if (wg == 0) {
    sm90::setmaxnreg_dec<24>();
    if (threadIdx.x == 0) {
      constexpr u32 kQBytes = kQueries * D * 2, kKvBytes = Keys * D * 2;
      sm90::mbar_arrive_expect_tx(&smem.q_full, kQBytes);
      for (int sl = 0; sl < kSlices; ++sl) sm90::tma_load_4d(smem.q + sl * kQueries * 64, &params.q, 64 * sl, q0, head, batch, &smem.q_full);
      for (int kt = 0; kt < key_tiles; ++kt) {
        const int s = kt % 2;
        if (kt >= 2) sm90::mbar_wait(&smem.k_empty[s], (kt / 2 - 1) & 1);
        sm90::mbar_arrive_expect_tx(&smem.k_full[s], kKvBytes);
        for (int sl = 0; sl < kSlices; ++sl) sm90::tma_load_4d(smem.k[s] + sl * Keys * 64, &params.k, 64 * sl, kt * Keys, head, batch, &smem.k_full[s]);
        if (kt >= 2) sm90::mbar_wait(&smem.v_empty[s], (kt / 2 - 1) & 1);
        sm90::mbar_arrive_expect_tx(&smem.v_full[s], kKvBytes);
        for (int sl = 0; sl < kSlices; ++sl) sm90::tma_load_4d(smem.v[s] + sl * Keys * 64, &params.v, 64 * sl, kt * Keys, head, batch, &smem.v_full[s]);
      }
    }
    return;
  }

  sm90::setmaxnreg_inc<240>();
  const int cw = wg - 1, g = lane / 4, t = lane % 4;
  const int row0 = q0 + 64 * cw + 16 * warp + g;  // this thread's rows: row0 and row0 + 8
  const float scale_log2 = p.scale * kLog2e;
  float o[kSlices][32];
#pragma unroll
  for (int sl = 0; sl < kSlices; ++sl)
#pragma unroll
    for (int i = 0; i < 32; ++i) o[sl][i] = 0.0f;
  float row_max[2] = {neg_inf(), neg_inf()}, row_sum[2] = {0.0f, 0.0f};  // row_sum: this thread's columns only
  sm90::mbar_wait(&smem.q_full, 0);

  // S = Q K^T of key tile kt into sc, as one commit group.
  float sc[Keys / 2];
  auto issue_scores = [&](int kt) {
    const int s = kt % 2;
    sm90::mbar_wait(&smem.k_full[s], (kt / 2) & 1);
    sm90::wgmma_fence();
    const auto q_desc = [&](int ks) { return k_major_desc(smem.q + ks / 4 * kQueries * 64 + 64 * cw * 64, ks % 4); };
    const auto k_desc = [&](int ks) { return k_major_desc(smem.k[s] + ks / 4 * Keys * 64, ks % 4); };
    sm90::WgmmaBf16<Keys>::template ss<0, false>(sc, q_desc(0), k_desc(0));
#pragma unroll
    for (int ks = 1; ks < D / 16; ++ks) sm90::WgmmaBf16<Keys>::template ss<0, true>(sc, q_desc(ks), k_desc(ks));
    sm90::wgmma_commit();
  };
  // O += P V of key tile kt, P in A-fragment layout (16 keys per wgmma k-step), as one commit group.
  u32 pa[Keys / 16][4];
  auto issue_product = [&](int kt) {
    const int s = kt % 2;
    sm90::mbar_wait(&smem.v_full[s], (kt / 2) & 1);
    sm90::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < Keys / 16; ++ks)
#pragma unroll
      for (int sl = 0; sl < kSlices; ++sl) sm90::WgmmaBf16<64>::template rs<1>(o[sl], pa[ks], n_major_desc(smem.v[s] + sl * Keys * 64, 16 * ks));
    sm90::wgmma_commit();
  };
  // The online softmax of key tile kt's scores (sc): masked (causal, and keys past T in a partial last tile), the
  // running maxima updated, P into p_next; returns per row the factor by which O and the row sums shrink.
  u32 p_next[Keys / 16][4];
  auto softmax = [&](int kt, float (&rescale)[2]) {
    const int k0 = kt * Keys;
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
    // Lazy rescaling: the running maximum moves only when a tile's exceeds it by more than kLazyRescale (log2 units;
    // always at the first tile, where key 0 makes it finite). Until then P stays below 2^8, harmless in the FP32 sums
    // and in BF16, and the rescale factor is exactly 1. Measured faster than tracking the maximum exactly (run 75),
    // and without a branch around O's multiply (skipping it when every factor is 1 was slower).
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float mx = quad_max(block_max[h]) * scale_log2, moved = mx > row_max[h] + kLazyRescale ? mx : row_max[h];
      rescale[h] = fast_exp2(row_max[h] - moved);  // exactly 1 when the maximum stays
      row_max[h] = moved;
      row_sum[h] *= rescale[h];
    }
#pragma unroll
    for (int j = 0; j < Keys / 8; ++j) {
      float pr[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        pr[e] = fast_exp2(fmaf(sc[4 * j + e], scale_log2, -row_max[e / 2]));
        row_sum[e / 2] += pr[e];
      }
      p_next[j / 2][2 * (j % 2)] = pack(pr[0], pr[1]);
      p_next[j / 2][2 * (j % 2) + 1] = pack(pr[2], pr[3]);
    }
  };
  // P of the tile whose product is issued next, settled (with O's rescaling) before any wgmma of the stage is.
  auto settle_product_operands = [&] {
#pragma unroll
    for (int ks = 0; ks < Keys / 16; ++ks) {
#pragma unroll
      for (int i = 0; i < 4; ++i) pa[ks][i] = p_next[ks][i];
      sm90::pin_registers(pa[ks]);
    }
    for (int sl = 0; sl < kSlices; ++sl) sm90::pin_registers(o[sl]);
  };
  auto release = [&](u64* empty) {
    if (lane == 0) sm90::mbar_arrive(empty);
  };

  auto rescale_output = [&](const float (&rescale)[2]) {
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int sl = 0; sl < kSlices; ++sl)
#pragma unroll
        for (int j = 0; j < 8; ++j) o[sl][4 * j + 2 * h] *= rescale[h], o[sl][4 * j + 2 * h + 1] *= rescale[h];
  };

  // Per key tile kt: the scores of kt, the product of kt - 1 (P and V of the previous tile), the softmax of kt. With
  // Overlap the two products are in flight together and the softmax runs under the product; without, one after the
  // other. Nothing is in flight across the loop's back edge (a wgmma in flight there makes ptxas serialize every
  // wgmma of the kernel: warning C7514).
  float rescale[2];
  issue_scores(0);
  sm90::wgmma_wait<0>();
  sm90::pin_registers(sc);
  release(&smem.k_empty[0]);
  softmax(0, rescale);  // O is still zero: no rescaling
  for (int kt = 1; kt < key_tiles; ++kt) {
    settle_product_operands();
    if constexpr (Overlap) {
      issue_scores(kt);
      issue_product(kt - 1);
      sm90::wgmma_wait<1>();  // the scores
      sm90::pin_registers(sc);
      release(&smem.k_empty[kt % 2]);
      softmax(kt, rescale);
      sm90::wgmma_wait<0>();  // the product
      for (int sl = 0; sl < kSlices; ++sl) sm90::pin_registers(o[sl]);
      for (int ks = 0; ks < Keys / 16; ++ks) sm90::pin_registers(pa[ks]);
      release(&smem.v_empty[(kt - 1) % 2]);
    } else {
      issue_product(kt - 1);
      sm90::wgmma_wait<0>();
      for (int sl = 0; sl < kSlices; ++sl) sm90::pin_registers(o[sl]);
      release(&smem.v_empty[(kt - 1) % 2]);
      issue_scores(kt);
      sm90::wgmma_wait<0>();
      sm90::pin_registers(sc);
      release(&smem.k_empty[kt % 2]);
      softmax(kt, rescale);
    }
    rescale_output(rescale);
  }
  settle_product_operands();
  issue_product(key_tiles - 1);
  sm90::wgmma_wait<0>();
  for (int sl = 0; sl < kSlices; ++sl) sm90::pin_registers(o[sl]);

  bf16* o_head = attention::head_base(p.o, p.o_strides, bh, p.heads);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = row0 + 8 * h;
    const float sum = quad_sum(row_sum[h]);
    if (row >= p.tokens) continue;  // rows past T of a partial last query tile (whole warps: T is a multiple of 64)
    const float inv = 1.0f / sum;
    bf16* out = o_head + i64(row) * p.o_strides.token;
#pragma unroll
    for (int sl = 0; sl < kSlices; ++sl)
#pragma unroll
      for (int j = 0; j < 8; ++j) *reinterpret_cast<u32*>(out + 64 * sl + 8 * j + 2 * t) = pack(o[sl][4 * j + 2 * h] * inv, o[sl][4 * j + 2 * h + 1] * inv);
    if (t == 0) p.lse[i64(bh) * p.tokens + row] = (row_max[h] + log2f(sum)) / kLog2e;
  }
}

}  // namespace jetforge
#endif
