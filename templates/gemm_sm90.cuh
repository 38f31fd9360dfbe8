// Hopper path of the per-block INT8 GEMM (contract in gemm.cuh): TMA loads into a Stages-deep ring of 128-byte
// K slices completing on mbarriers, one producer warp, two consumer warpgroups of 64 rows each issuing
// s8 wgmma into INT32 scratch accumulators and folding them into FP32 after every K-group, the fold overlapped
// with wgmmas in flight (consume: Overlap). The fold (I2FP + FFMA per element and K-group) is the limit at K-group 32:
// its instructions are not hidden under the wgmmas but add most of a cycle each to the tensor pipe's time, whatever the
// schedule (bench/NOTES.md, sessions 4, 6 and 15; without a fold this pipeline runs at ~1350 TOP/s). With Cluster = 2,
// two CTAs on neighbouring M tiles share their B tile: each loads half of it and multicasts it to both, a quarter less L2
// traffic per output. With Persistent = 1, one CTA per SM walks the tiles in turn, the producer loading the next
// tile's first K slices while the consumers finish and store the last one (the ring's phases run on across tiles).
// With StagedEpilogue = 1, the consumers only copy their FP32 results into a shared-memory tile and go on with the
// next tile's K loop; the producer warpgroup's three other warps scale, round and store it meanwhile (0.98-1.11x the
// consumers' own epilogue, a tuning choice: bench/NOTES.md session 11). With SplitK > 1 (FP32 output), each tile's K
// slices are cut into SplitK ranges, each its own unit of the persistent loop, so that a GEMM of few tiles and a long
// K (the weight gradients) fills the GPU; the units of one tile add into its output in split order, each waiting for
// a flag the previous one raises (split 0 first, with the bias and the accumulation): deterministic, no workspace.
#pragma once
#include "gemm.cuh"
#include "jetforge/sm90.cuh"

namespace jetforge {

struct GemmSm90Params {
  TensorMap a, b;        // INT8 codes; boxes of 128 (K) x BM rows and 128 x BN rows, 128-byte swizzle
  const float* a_scales;  // (M / 32) x (K / G)
  const float* b_scales;  // (N / 32) x (K / G)
  GemmProblem problem;
  u32* split_flags;  // SplitK > 1: one per output tile; split s of a tile waits for split_base + s, then raises it by one
  u32 split_base;    // (a counter the host advances by SplitK per call: flags left by earlier calls never match)
};

}  // namespace jetforge

#if JF_DEVICE_CODE
#include "jetforge/cta_tile.cuh"  // quantize_run

namespace jetforge {

// What an epilogue needs in shared memory: the INT8 output's block maxima of each consumer warp (per warpgroup, warp
// and 32-column block), and in the consumers INT8 staging, one slice per consumer warpgroup; staged, the whole FP32
// tile instead, and its two barriers. The tile's rows are padded by 8 floats: a row then starts 8 banks after the one
// above, so that the consumers' 8-byte writes (4 rows x 8 words per half warp) and the epilogue warps' 16-byte reads
// (8 lanes across a row) hit every bank once.
template <int BN, int StagedEpilogue> struct GemmSm90EpilogueSmem {
  float block_amax[2][4][BN / 32];
  i8 out[2][64 * BN];
};
template <int BN> struct GemmSm90EpilogueSmem<BN, 1> {
  float block_amax[2][4][BN / 32];
  static constexpr int kStride = BN + 8;
  float tile[128][kStride];
  u64 full, empty;  // full: the consumers wrote the tile; empty: the epilogue warps read it
};

template <int BN, int Group, int Stages, int StagedEpilogue> struct GemmSm90Smem {
  static constexpr int kBM = 128, kBK = 128;  // BK: one 128-byte swizzle row of K per stage
  static constexpr int kGroups = kBK / Group;
  i8 a[Stages][kBM * kBK];
  i8 b[Stages][BN * kBK];
  float a_scales[Stages][kBM / 32][kGroups];
  float b_scales[Stages][BN / 32][kGroups];
  u64 full[Stages], empty[Stages];
  GemmSm90EpilogueSmem<BN, StagedEpilogue> epi;
};

// INT8 output, in the consumers: the bias joins the accumulators (before the block scales are chosen), and the
// warp's largest magnitude in each 32-column block (16 rows of it) goes to amax[block]; the two warps sharing a 32 x 32
// block take the larger of theirs.
template <int BN> __device__ __forceinline__ void add_bias_and_warp_maxima(const GemmProblem& p, float (&acc)[BN / 2], float (&amax)[BN / 32], int lane, i64 n0) {
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) gemm::add_bias_quad(p, n0 + 8 * j + 2 * (lane % 4), &acc[4 * j]);
#pragma unroll
  for (int nb = 0; nb < BN / 32; ++nb) {
    float m = 0.0f;
#pragma unroll
    for (int j = 4 * nb; j < 4 * nb + 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) m = fmaxf(m, fabsf(acc[4 * j + e]));
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (lane == 0) amax[nb] = m;
  }
}

// Consumer-side epilogue: acc holds this thread's FP32 results (layout of sm90::Wgmma<BN>); row0 is the first row
// of the warp's 16-row slice, n0 the tile's first column.
template <int BN, int Output, int Round, class Smem>
__device__ void gemm_sm90_epilogue(const GemmProblem& p, float (&acc)[BN / 2], Smem& smem, int wg, int warp, int lane, i64 m0, i64 n0) {
  const int r_in = lane / 4, c_in = 2 * (lane % 4);
  const i64 row0 = m0 + 64 * wg + 16 * warp + r_in;
  if constexpr (Output != kGemmOutI8) {
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      const i64 col = n0 + 8 * j + c_in;
      if (col >= p.n) continue;
#pragma unroll
      for (int h = 0; h < 2; ++h)
        if (row0 + 8 * h < p.m) {
          float v[2] = {acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]};
          gemm::store_dense<Output>(p, row0 + 8 * h, col, v);
        }
    }
  } else {
    add_bias_and_warp_maxima<BN>(p, acc, smem.epi.block_amax[wg][warp], lane, n0);
    constexpr int kBlocks = BN / 32;
    sm90::named_barrier(1 + wg, 128);
    i8* staged = smem.epi.out[wg];
#pragma unroll
    for (int nb = 0; nb < kBlocks; ++nb) {
      const float scale = block_scale(fmaxf(smem.epi.block_amax[wg][warp & ~1][nb], smem.epi.block_amax[wg][warp | 1][nb]));
      const float inv = inverse_scale(scale);
      if (lane == 0 && (warp & 1) == 0 && row0 < p.m && n0 + 32 * nb < p.n)
        p.out_scales[(row0 / 32) * (p.n / 32) + (n0 / 32 + nb)] = scale;
#pragma unroll
      for (int j = 4 * nb; j < 4 * nb + 4; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = 16 * warp + r_in + 8 * h, c = 8 * j + c_in;
          const u64 first = u64((m0 + 64 * wg + r) * p.n + n0 + c);
          *reinterpret_cast<u16*>(&staged[r * BN + c]) = gemm::quantize_pair<Round>(p, first, acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1], inv);
        }
    }
    sm90::named_barrier(1 + wg, 128);
    // 64 rows x BN bytes, 16 bytes per thread per step: whole rows of the output tile per warp.
    const int t = 32 * warp + lane;
#pragma unroll
    for (int i = 0; i < 64 * BN / 16 / 128; ++i) {
      const int chunk = i * 128 + t, r = chunk / (BN / 16), c = chunk % (BN / 16) * 16;
      const i64 row = m0 + 64 * wg + r, col = n0 + c;
      if (row < p.m && col < p.n)
        *reinterpret_cast<uint4*>(static_cast<i8*>(p.out) + row * p.n + col) = *reinterpret_cast<const uint4*>(&staged[r * BN + c]);
    }
  }
}

// StagedEpilogue, consumer side: once the epilogue warps have read the previous tile, this thread's FP32 results go
// into the shared tile at their places (the layout of sm90::Wgmma<BN>), for INT8 output with the bias added and the
// warp's block maxima beside them (cheap here, in registers, and half the epilogue warps' work), and the thread
// signals the tile full.
template <int BN, int Output, class Smem>
__device__ __forceinline__ void stage_tile(const GemmProblem& p, float (&acc)[BN / 2], Smem& smem, int cw, int warp, int lane, i64 n0, int local_tile) {
  if (local_tile > 0) sm90::mbar_wait(&smem.epi.empty, (local_tile - 1) & 1);
  if constexpr (Output == kGemmOutI8) add_bias_and_warp_maxima<BN>(p, acc, smem.epi.block_amax[cw][warp], lane, n0);
  const int r = 64 * cw + 16 * warp + lane / 4, c = 2 * (lane % 4);
#pragma unroll
  for (int j = 0; j < BN / 8; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) *reinterpret_cast<float2*>(&smem.epi.tile[r + 8 * h][8 * j + c]) = make_float2(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
  sm90::mbar_arrive(&smem.epi.full);
}

// StagedEpilogue, the epilogue warps (e = 0 .. 2): warp e takes the tile's 32 x 32 blocks e, e + 3, ..., lane l the
// four columns 4 (l % 8) of rows l / 8 + 4 i (a warp's 16-byte reads cover 4 whole rows of a block). Same values,
// the same additions in the same order and the same rounding as gemm_sm90_epilogue: the results are bit-identical.
template <int BN, int Output, int Round, class Smem>
__device__ void store_staged_tile(const GemmProblem& p, const Smem& smem, int e, int lane, i64 m0, i64 n0) {
  constexpr int kBlocksN = BN / 32, kBlocks = 4 * kBlocksN;
  const int r_in = lane / 8, c_in = 4 * (lane % 8);
  const auto in_matrix = [&](int blk) { return m0 + 32 * (blk / kBlocksN) < p.m && n0 + 32 * (blk % kBlocksN) < p.n; };  // all in or all out
  // INT8: lane k takes the scale of the warp's k-th block, so the divisions of all its blocks run side by side (the
  // block's maximum from its two consumer warps; the bias is in the staged values already).
  float lane_inv = 0.0f;
  if constexpr (Output == kGemmOutI8) {
    const int blk = e + 3 * lane, wg = blk / kBlocksN / 2, w = blk / kBlocksN % 2 * 2, nb = blk % kBlocksN;
    if (blk < kBlocks && in_matrix(blk)) {
      const float scale = block_scale(fmaxf(smem.epi.block_amax[wg][w][nb], smem.epi.block_amax[wg][w + 1][nb]));
      lane_inv = inverse_scale(scale);
      p.out_scales[(m0 / 32 + blk / kBlocksN) * (p.n / 32) + n0 / 32 + nb] = scale;
    }
  }
  for (int blk = e, nth = 0; blk < kBlocks; blk += 3, ++nth) {
    const int br = 32 * (blk / kBlocksN), bc = 32 * (blk % kBlocksN);
    if (!in_matrix(blk)) continue;
    const float* src = &smem.epi.tile[br + r_in][bc + c_in];
    const i64 row = m0 + br + r_in, col = n0 + bc + c_in;
    if constexpr (Output != kGemmOutI8) {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float4 q = *reinterpret_cast<const float4*>(src + 4 * i * smem.epi.kStride);
        float v[4] = {q.x, q.y, q.z, q.w};
        gemm::store_dense<Output>(p, row + 4 * i, col, v);
      }
    } else {
      const float inv = __shfl_sync(0xffffffffu, lane_inv, nth);  // this block is the warp's nth
      i8* dst = static_cast<i8*>(p.out) + row * p.n + col;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float4 q = *reinterpret_cast<const float4*>(src + 4 * i * smem.epi.kStride);
        const float v[4] = {q.x, q.y, q.z, q.w};
        union {
          u32 word;
          i8 codes[4];
        } out;
        // The values are the block's own, so quantize_run needs no clamp: the codes of quantize_pair.
        quantize_run<Round>([&](int k) { return v[k]; }, inv, u64((row + 4 * i) * p.n + col), p.round_key, out.codes);
        *reinterpret_cast<u32*>(dst + 4 * i * p.n) = out.word;
      }
    }
  }
}

// The producer warp, K slices kt0 .. kt1 - 1 of a tile: per stage, one TMA load of A and one of B (with Cluster = 2:
// this rank's half of B, multicast to both CTAs) and the scales of the K slice copied by its lanes (one each), all
// completing on the stage's full barrier. `it` counts the ring's slices over the CTA's tiles (stage it % Stages, phase
// it / Stages).
template <int BN, int Group, int Stages, int Cluster, class Smem>
__device__ __forceinline__ void produce(const GemmSm90Params& params, Smem& smem, int kt0, int kt1, int lane, i64 m0, i64 n0, u32 rank, int& it) {
  constexpr int kBM = Smem::kBM, kBK = Smem::kBK, kGroups = Smem::kGroups;
  constexpr int kStageBytes = (kBM + BN) * kBK;
  const GemmProblem& p = params.problem;
  const i64 groups_k = p.k / Group;
  // Scales of a K slice: 4 + BN/32 block rows x kGroups groups, one per lane. What a lane copies is fixed for the
  // whole loop but for the K slice, so the producer keeps only its source and target within its 40 registers.
  constexpr int kScales = (kBM / 32 + BN / 32) * kGroups;
  static_assert(kScales <= 32, "one scale per producer lane");
  const bool is_a = lane < (kBM / 32) * kGroups;
  const int j = is_a ? lane : lane - (kBM / 32) * kGroups, row = j / kGroups, g = j % kGroups;
  const i64 grow = (is_a ? m0 : n0) / 32 + row;
  const bool copies = lane < kScales && grow < (is_a ? p.m : p.n) / 32;  // rows past the matrix contribute 0
  const float* src = (is_a ? params.a_scales : params.b_scales) + (copies ? grow * groups_k + g : 0);
  float* dst = lane < kScales ? (is_a ? &smem.a_scales[0][row][g] : &smem.b_scales[0][row][g]) : nullptr;
  const int dst_stride = int(is_a ? sizeof(smem.a_scales[0]) : sizeof(smem.b_scales[0])) / 4;  // floats from stage to stage
  for (int kt = kt0; kt < kt1; ++kt, ++it) {
    const int s = it % Stages;
    if (it >= Stages) sm90::mbar_wait(&smem.empty[s], ((it / Stages) - 1) & 1);
    if (lane == 0) {
      sm90::mbar_arrive_expect_tx(&smem.full[s], kStageBytes);  // A and all of B land here, half of B from the partner
      sm90::tma_load_2d(smem.a[s], &params.a, kt * kBK, int(m0), &smem.full[s]);
      if constexpr (Cluster == 1) {
        sm90::tma_load_2d(smem.b[s], &params.b, kt * kBK, int(n0), &smem.full[s]);
      } else {
        constexpr int kHalf = BN / 2;  // rows of B this rank loads for both CTAs (the tensor map's box)
        sm90::tma_load_2d_multicast(&smem.b[s][rank * kHalf * kBK], &params.b, kt * kBK, int(n0) + int(rank) * kHalf, &smem.full[s], 0x3);
      }
    }
    // The lane's scale arrives on the stage's barrier when it lands: waiting for the load here would cost the ring a
    // memory round trip per stage.
    if (copies && i64(kt) * kGroups + g < groups_k) {
      sm90::cp_async_4(dst + s * dst_stride, src + i64(kt) * kGroups);
      sm90::cp_async_mbar_arrive(&smem.full[s]);
    } else {
      if (dst) dst[s * dst_stride] = 0.0f;
      sm90::mbar_arrive(&smem.full[s]);
    }
  }
}

// Folds a K-group's INT32 dot products `part` (columns 32 * nb0 .. of the tile, as many as part holds) into the FP32
// accumulators at the same columns: acc += sa * sb * dot, one scale product per 32x32 block.
template <int Fold, int Regs, int AccRegs, class Smem>
__device__ __forceinline__ void fold_group(float (&acc)[AccRegs], const u32 (&part)[Regs], int nb0, const Smem& smem, int s, int a_block, int g) {
  const float sa = smem.a_scales[s][a_block][g];
#pragma unroll
  for (int nb = 0; nb < Regs / 16; ++nb) {
    const float f = sa * smem.b_scales[s][nb0 + nb][g];
#pragma unroll
    for (int i = 16 * nb; i < 16 * nb + 16; ++i) acc[16 * nb0 + i] = fmaf(gemm::dot_to_float<Fold>(i32(part[i])), f, acc[16 * nb0 + i]);
  }
}

// The consumer warpgroups: wgmma per K-group, fold, epilogue. Overlap = 0: per K-group, the wgmmas of all BN columns
// into one INT32 scratch, wait, fold; the other warpgroup's wgmma runs during the fold. Overlap = 1: the columns in
// two halves with a scratch each, so that one half's wgmma is in flight while the other half is folded (the same
// registers: two half scratches instead of one whole). Overlap = 2: two whole scratches, K-group g + 1's wgmmas in
// flight while g is folded (setmaxnreg's 232 registers hold the 192 of accumulators and scratches; ptxas's report
// of 168 is the launch count).
template <int BN, int Group, int Stages, int Output, int Round, int Fold, int Cluster, int Overlap, int StagedEpilogue, int SplitK, class Smem>
__device__ __forceinline__ void consume(const GemmSm90Params& params, Smem& smem, int kt0, int kt1, int split, int tile, int wg, int warp, int lane,
                                        i64 m0, i64 n0, int local_tile, int& it) {
  constexpr int kBK = Smem::kBK, kGroups = Smem::kGroups;
  constexpr int kHalves = Overlap == 1 ? 2 : 1, kPartN = BN / kHalves;  // column halves with a scratch each
  constexpr int kScratches = Overlap ? 2 : 1;
  const GemmProblem& p = params.problem;
  const int cw = wg - 1;  // consumer warpgroup: rows 64 * cw .. 64 * cw + 63 of the tile
  typedef sm90::Wgmma<kPartN> Mma;
  float acc[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
  const int a_block = 2 * cw + warp / 2;  // this warp's 32-row block of A within the tile

  // Nothing is in flight across an iteration of the K loop: a wgmma in flight over the loop's back edge makes ptxas
  // copy its accumulators and serialize every wgmma of the kernel (warning C7514).
  u32 part[kScratches][Mma::kRegs];
  for (int kt = kt0; kt < kt1; ++kt, ++it) {
    const int s = it % Stages;
    sm90::mbar_wait(&smem.full[s], (it / Stages) & 1);
    const u32 desc_a = sm90::smem_desc_lo_k_major_sw128(&smem.a[s][64 * cw * kBK]);
    const u32 desc_b = sm90::smem_desc_lo_k_major_sw128(smem.b[s]);
    // The wgmmas of K-group g for column half h into scratch p (the first overwrites it), as one commit group.
    auto issue = [&](int p, int h, int g) {
      const u32 step = u32(g * Group) >> 4, b_half = u32(h * kPartN * kBK) >> 4;  // descriptor units: 16 bytes
      sm90::wgmma_fence();
      Mma::template mma<false>(part[p], desc_a + step, desc_b + b_half + step);
#pragma unroll
      for (int kk = 1; kk < Group / 32; ++kk) Mma::template mma<true>(part[p], desc_a + step + 2 * kk, desc_b + b_half + step + 2 * kk);
      sm90::wgmma_commit();
    };
    if constexpr (Overlap == 2) {
      // Two whole-width scratches, unrolled so that each is a fixed set of registers: K-group g + 1's wgmmas run
      // while g is folded (wait<1> retires the oldest commit group).
      issue(0, 0, 0);
      issue(1, 0, 1);
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        if (g + 1 < kGroups) sm90::wgmma_wait<1>();
        else sm90::wgmma_wait<0>();
        fold_group<Fold>(acc, part[g % 2], 0, smem, s, a_block, g);
        if (g + 2 < kGroups) issue(g % 2, 0, g + 2);
      }
    } else if constexpr (Overlap) {
      // Unrolled so that each half's scratch is a fixed set of registers: wait<1> retires the oldest commit group,
      // the half about to be folded, while the other half's wgmma runs.
      issue(0, 0, 0);
      issue(1, 1, 0);
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        sm90::wgmma_wait<1>();
        fold_group<Fold>(acc, part[0], 0, smem, s, a_block, g);
        if (g + 1 < kGroups) {
          issue(0, 0, g + 1);
          sm90::wgmma_wait<1>();
        } else {
          sm90::wgmma_wait<0>();
        }
        fold_group<Fold>(acc, part[1], kPartN / 32, smem, s, a_block, g);
        if (g + 1 < kGroups) issue(1, 1, g + 1);
      }
    } else {
      // Not unrolled: unrolled, the scale loads of every group of the stage are hoisted and the consumer spills at
      // G = 32; a loop iteration costs a few instructions next to a ~130-instruction fold.
#pragma unroll 1
      for (int g = 0; g < kGroups; ++g) {
        issue(0, 0, g);
        sm90::wgmma_wait<0>();
        fold_group<Fold>(acc, part[0], 0, smem, s, a_block, g);
      }
    }
    if (lane == 0) {  // the stage is free once every CTA reading its multicast data is done
      if constexpr (Cluster == 1) sm90::mbar_arrive(&smem.empty[s]);
      else
        for (u32 r = 0; r < u32(Cluster); ++r) sm90::mbar_arrive_cluster(&smem.empty[s], r);
    }
  }
  if constexpr (StagedEpilogue) {
    stage_tile<BN, Output>(p, acc, smem, cw, warp, lane, n0, local_tile);
  } else if constexpr (SplitK == 1) {
    gemm_sm90_epilogue<BN, Output, Round>(p, acc, smem, cw, warp, lane, m0, n0);
  } else {
    // Split s adds into what splits 0 .. s - 1 stored (split 0 stores, with the bias and the accumulation asked for),
    // once the tile's flag says they are done; both consumer warpgroups (named barrier 3) store before it is raised.
    static_assert(Output == kGemmOutF32, "split-K adds FP32 partial results");
    const bool leader = wg == 1 && warp == 0 && lane == 0;
    u32* flag = params.split_flags + tile;
    if (split > 0 && leader)
      while (sm90::ld_acquire_gpu(flag) != params.split_base + u32(split)) {
      }
    sm90::named_barrier(3, 256);
    GemmProblem q = p;
    if (split > 0) q.bias = nullptr, q.accumulate = 1;
    gemm_sm90_epilogue<BN, Output, Round>(q, acc, smem, cw, warp, lane, m0, n0);
    sm90::named_barrier(3, 256);
    if (leader) {
      __threadfence();
      sm90::st_release_gpu(flag, params.split_base + u32(split) + 1);
    }
  }
}

template <int BN, int Group, int Stages, int Output, int Round, int Fold, int Cluster, int Overlap, int Persistent, int StagedEpilogue, int SplitK>
__global__ void __launch_bounds__(384, 1) gemm_sm90_kernel(const __grid_constant__ GemmSm90Params params) {
  static_assert(Cluster == 1 || Cluster == 2, "clusters of 1 or 2 CTAs along M");
  static_assert(SplitK == 1 || (Cluster == 1 && Persistent && !StagedEpilogue), "split-K: no cluster, a persistent grid (a split waits for the one before it, "
                                                                               "which a resident CTA holds), the consumers' epilogue");
  typedef GemmSm90Smem<BN, Group, Stages, StagedEpilogue> Smem;
  constexpr int kBM = Smem::kBM, kBK = Smem::kBK;
  Smem& smem = sm90::swizzle_aligned_smem<Smem>();
  const GemmProblem& p = params.problem;

  // A cluster takes Cluster neighbouring M tiles of one N tile; a rank past the last M tile computes a tile of
  // zeros (its rows are masked) but still loads its share of B for its partner. Both ranks walk the same cluster
  // tiles: one per cluster, or (Persistent) every (gridDim.x / Cluster)-th from their cluster's index on.
  const u32 rank = Cluster == 1 ? 0u : sm90::cluster_rank();
  const int tiles_m = int((p.m + kBM * Cluster - 1) / (kBM * Cluster)), tiles_n = int((p.n + BN - 1) / BN);
  const int tiles = tiles_m * tiles_n, units = tiles * SplitK;  // unit u: split u / tiles of tile u % tiles
  const int first = int(blockIdx.x) / Cluster, step = Persistent ? int(gridDim.x) / Cluster : units;
  const auto origin = [&](int cluster_tile, i64& m0, i64& n0) {
    int tile_m, tile_n;
    gemm::tile_of_block(cluster_tile, tiles_m, tiles_n, tile_m, tile_n);
    m0 = i64(tile_m * Cluster + int(rank)) * kBM, n0 = i64(tile_n) * BN;
  };
  const int k_tiles = int((p.k + kBK - 1) / kBK);
  const auto k_range = [&](int unit, int& kt0, int& kt1) {  // the unit's K slices: SplitK near-equal ranges
    const int split = unit / tiles;
    kt0 = split * k_tiles / SplitK, kt1 = (split + 1) * k_tiles / SplitK;
  };

  const int wg = int(threadIdx.x) / 128, warp = int(threadIdx.x) / 32 % 4, lane = int(threadIdx.x) % 32;
  if (threadIdx.x == 0) {
    sm90::check_dynamic_smem<Smem>();
    for (int s = 0; s < Stages; ++s) {
      sm90::mbar_init(&smem.full[s], 33);  // each producer lane once its scale landed, and lane 0's expectation of the TMA bytes
      sm90::mbar_init(&smem.empty[s], 8 * Cluster);  // one arrival per consumer warp of every CTA its loads write to
    }
    if constexpr (StagedEpilogue) {
      sm90::mbar_init(&smem.epi.full, 256);  // every consumer thread, once its results are in the tile
      sm90::mbar_init(&smem.epi.empty, 96);  // every epilogue thread, once it read its blocks
    }
    sm90::fence_barrier_init();
  }
  if constexpr (Cluster > 1) sm90::cluster_sync();  // the partner's barriers exist before anything targets them
  else __syncthreads();

  int it = 0;  // the ring's slices so far, in the producer and in each consumer alike
  i64 m0, n0;
  if (wg == 0) {
    sm90::setmaxnreg_dec<40>();
    if (warp == 0) {
      for (int u = first; u < units; u += step) {
        int kt0, kt1;
        k_range(u, kt0, kt1);
        origin(u % tiles, m0, n0);
        produce<BN, Group, Stages, Cluster>(params, smem, kt0, kt1, lane, m0, n0, rank, it);
      }
    } else if constexpr (StagedEpilogue) {
      for (int t = first, n = 0; t < tiles; t += step, ++n) {
        origin(t, m0, n0);
        sm90::mbar_wait(&smem.epi.full, n & 1);
        store_staged_tile<BN, Output, Round>(p, smem, warp - 1, lane, m0, n0);
        sm90::mbar_arrive(&smem.epi.empty);
      }
    }
  } else {
    sm90::setmaxnreg_inc<232>();
    for (int u = first, n = 0; u < units; u += step, ++n) {
      int kt0, kt1;
      k_range(u, kt0, kt1);
      origin(u % tiles, m0, n0);
      consume<BN, Group, Stages, Output, Round, Fold, Cluster, Overlap, StagedEpilogue, SplitK>(params, smem, kt0, kt1, u / tiles, u % tiles, wg, warp,
                                                                                                 lane, m0, n0, n, it);
    }
  }
  // No CTA leaves while its partner may still multicast into it or arrive on its barriers.
  if constexpr (Cluster > 1) sm90::cluster_sync();
}

}  // namespace jetforge
#endif
