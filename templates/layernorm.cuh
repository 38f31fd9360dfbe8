// LayerNorm forward and backward on INT8 BlockTensors (32 x 32 blocks), one kernel each (DESIGN.md §1, §3).
// A 32-row strip is split by columns into Cluster slices of Slice columns, one CTA each, and a CTA keeps its slice
// of the inputs in shared memory, so every input byte leaves DRAM once although each pass needs whole-row sums
// first. Per-row partial sums go through distributed shared memory and are added in cluster-rank order: every
// CTA of a strip gets the same bits, and so does every run. Slice = 0: one CTA per strip streams whole rows from
// global memory twice (the second read mostly from L2), for GPUs without clusters and rows too wide to hold.
//   forward:  mean and rstd of every row (sums of codes and of squared codes by dp4a, times the block's scale and
//             its square, added in FP64), then y = (x - mean) * rstd * gamma + beta, fresh block scales, nearest.
//   backward: c1 = mean(dy * gamma) and c2 = mean(dy * gamma * xhat) of every row, the strip's column partials of
//             dgamma = sum(dy * xhat) and dbeta = sum(dy), then dx = rstd * (dy * gamma - c1 - xhat * c2), fresh
//             block scales, stochastic rounding.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct LayerNormParams {
  const i8* x_codes;
  const float* x_scales;
  const i8* dy_codes;  // backward
  const float* dy_scales;
  const float* gamma;  // cols
  const float* beta;   // cols, forward
  float* mean;         // rows: written by the forward, read by the backward
  float* rstd;
  i8* out_codes;  // y (forward) or dx (backward)
  float* out_scales;
  float* dgamma_partial;  // backward: (rows / 32) x cols, summed in order afterwards (column_sum_reduce_kernel)
  float* dbeta_partial;
  i64 rows, cols;
  float eps;
  u32 round_key;  // stochastic rounding of dx: seed_key(seed)
};

}  // namespace jetforge

#if JF_DEVICE_CODE
#include "jetforge/cta_tile.cuh"
#include "jetforge/sm90.cuh"

namespace jetforge {

// The per-row sums a CTA shares with its cluster: forward (sum x, sum x^2) in FP64, backward (sum dy*gamma,
// sum dy*gamma*xhat) in FP32.
template <bool Backward> struct LayerNormRowSums { typedef double2 type; };
template <> struct LayerNormRowSums<true> { typedef float2 type; };

// Bytes per chunk of a sub-tile: a warp's 32 lanes along one row of up to 512 columns, 4 bytes each at least.
__host__ __device__ constexpr int layernorm_chunk_bytes(int sub_cols) { return sub_cols <= 128 ? 4 : sub_cols / 32; }

template <bool Backward, int Round, int Slice, int SubCols, int Cluster, int Threads>
__global__ void __launch_bounds__(Threads) layernorm_kernel(const LayerNormParams p) {
  constexpr int B = 32, kInputs = Backward ? 2 : 1, kE = layernorm_chunk_bytes(SubCols), kWords = kE / 4;
  constexpr bool kResident = Slice > 0;
  static_assert(kResident || Cluster == 1, "a streamed row is one CTA's");
  static_assert(Slice % SubCols == 0 && SubCols % B == 0, "a slice holds whole sub-tiles of whole blocks");
  // The thread layout of one B x SubCols sub-tile: kE-byte chunks, a row's lanes in one warp, kN rows per thread
  // (the same rows in every sub-tile, so row sums stay in registers until the end).
  typedef CtaTile<i8, B, SubCols, Threads, kE> Tile;
  constexpr int kN = Tile::kChunksPerThread, kLanesPerRow = Tile::kChunksPerRow, kRowGroups = Tile::kRowStep;
  static_assert(kLanesPerRow <= 32, "a row's lanes share a warp");
  typedef typename LayerNormRowSums<Backward>::type RowSums;
  constexpr int kColGroups = Backward ? kRowGroups : 1, kColCols = Backward ? SubCols : 1;  // the forward has no column sums

  extern __shared__ __align__(16) i8 slice_smem[];  // kInputs x B x Slice codes
  __shared__ RowSums row_sums[B];                   // this CTA's share of each row's sums (read by the whole cluster)
  __shared__ float row_a[B], row_b[B];              // forward: mean, rstd; backward: c1, c2
  __shared__ __align__(16) float terms[2][kColGroups][kColCols];  // backward: each row group's dgamma and dbeta terms of a sub-tile
  // The forward's maxima by warp partials where the sub-tile allows: 3% faster (store_requantized_chunks).
  __shared__ BlockAmax<SubCols / B, Threads, !Backward && Tile::template kWarpsShareBlocks<B>> amax;

  const i64 strip = blockIdx.x / Cluster, r0 = strip * B, blocks_per_row = p.cols / B;
  const int rank = int(blockIdx.x % Cluster);  // the cluster spans consecutive CTAs
  const i64 slice_cols = kResident ? Slice : p.cols, c_begin = rank * slice_cols;
  const int sub_tiles = int(slice_cols / SubCols);
  const i8* inputs[2] = {p.x_codes, p.dy_codes};
  const float* input_scales[2] = {p.x_scales, p.dy_scales};

  if constexpr (kResident) {
    constexpr int kChunks = B * Slice / 16;
    for (int in = 0; in < kInputs; ++in)
      for (int c = int(threadIdx.x); c < kChunks; c += Threads) {
        const int row = c / (Slice / 16), col = c % (Slice / 16) * 16;
        cp_async_16(slice_smem + in * B * Slice + row * Slice + col, inputs[in] + (r0 + row) * p.cols + c_begin + col);
      }
    cp_async_commit();
  }
  // Chunk i of this thread in sub-tile s of input `in`, biased (biased_codes).
  auto chunk = [&](int in, int s, int i, u32 (&w)[kWords]) {
    typename Tile::Chunk c;
    const int col = s * SubCols + Tile::col();
    if constexpr (kResident) c.vec = *reinterpret_cast<const typename Tile::Vec*>(slice_smem + in * B * Slice + Tile::row(i) * Slice + col);
    else c.vec = __ldg(reinterpret_cast<const typename Tile::Vec*>(inputs[in] + (r0 + Tile::row(i)) * p.cols + c_begin + col));
#pragma unroll
    for (int j = 0; j < kWords; ++j) w[j] = biased_codes(reinterpret_cast<const u32*>(c.elem)[j]);
  };
  auto scale = [&](int in, int s) { return __ldg(input_scales[in] + strip * blocks_per_row + (c_begin + s * SubCols + Tile::col()) / B); };

  // Backward: xhat = x * (sx * rstd) - mean * rstd, per row.
  float rstd[kN], mean_rstd[kN];
  if constexpr (Backward)
#pragma unroll
    for (int i = 0; i < kN; ++i) rstd[i] = __ldg(p.rstd + r0 + Tile::row(i)), mean_rstd[i] = __ldg(p.mean + r0 + Tile::row(i)) * rstd[i];
  if constexpr (kResident) cp_async_wait<0>();
  __syncthreads();

  // Pass 1: this CTA's share of the row sums (and, backward, the strip's column partials).
  RowSums sums[kN];
#pragma unroll
  for (int i = 0; i < kN; ++i) sums[i] = RowSums{0, 0};
  for (int s = 0; s < sub_tiles; ++s) {
    const i64 c0 = c_begin + s * SubCols + Tile::col();  // this thread's first column
    if constexpr (!Backward) {
      const double sx = scale(0, s), sx2 = sx * sx;
#pragma unroll
      for (int i = 0; i < kN; ++i) {
        u32 w[kWords];
        chunk(0, s, i, w);
        u32 sum = 0, squares = 0;  // exact: codes + 128 and their squares, then the bias taken out
#pragma unroll
        for (int j = 0; j < kWords; ++j) sum = __dp4a(w[j], 0x01010101u, sum), squares = __dp4a(w[j], w[j], squares);
        // sum (u - 128) = sum u - 128 n, sum (u - 128)^2 = sum u^2 - 256 sum u + 128^2 n.
        const int n = kE, codes = int(sum) - 128 * n, codes2 = int(squares) - 256 * int(sum) + 128 * 128 * n;
        sums[i].x += double(codes) * sx;
        sums[i].y += double(codes2) * sx2;
      }
    } else {
      const float sdy = scale(1, s), sx = scale(0, s);
      float sg[kE], dgq[kE] = {}, dbq[kE] = {};  // dy * gamma = code * (sdy * gamma); column sums in codes, scaled once
#pragma unroll
      for (int k = 0; k < kE; ++k) sg[k] = sdy * __ldg(p.gamma + c0 + k);
#pragma unroll
      for (int i = 0; i < kN; ++i) {
        u32 wdy[kWords], wx[kWords];
        chunk(1, s, i, wdy);
        chunk(0, s, i, wx);
        const CodeAffine xhat_of(sx * rstd[i], -mean_rstd[i]);
#pragma unroll
        for (int k = 0; k < kE; ++k) {
          const float qdy = biased_code(wdy[k / 4], k % 4), xhat = xhat_of(wx[k / 4], k % 4), gg = qdy * sg[k];
          sums[i].x += gg;
          sums[i].y = fmaf(gg, xhat, sums[i].y);
          dgq[k] = fmaf(qdy, xhat, dgq[k]);
          dbq[k] += qdy;
        }
      }
      // The strip's column partials: the row groups' terms added in order.
      const int group = int(threadIdx.x) / kLanesPerRow;
      __syncthreads();  // the previous sub-tile's terms are summed
      // 16-byte stores: with 4-byte ones, a warp's lanes, kE floats apart, would meet kE to a bank (run 244: 2-3% faster).
      float4* dg_terms = reinterpret_cast<float4*>(&terms[0][group][Tile::col()]);
      float4* db_terms = reinterpret_cast<float4*>(&terms[1][group][Tile::col()]);
#pragma unroll
      for (int j = 0; j < kWords; ++j) {
        dg_terms[j] = make_float4(dgq[4 * j] * sdy, dgq[4 * j + 1] * sdy, dgq[4 * j + 2] * sdy, dgq[4 * j + 3] * sdy);
        db_terms[j] = make_float4(dbq[4 * j] * sdy, dbq[4 * j + 1] * sdy, dbq[4 * j + 2] * sdy, dbq[4 * j + 3] * sdy);
      }
      __syncthreads();
      for (int c = int(threadIdx.x); c < 2 * SubCols; c += Threads) {
        const int which = c / SubCols, col = c % SubCols;
        float total = 0.0f;
#pragma unroll
        for (int g = 0; g < kRowGroups; ++g) total += terms[which][g][col];
        (which == 0 ? p.dgamma_partial : p.dbeta_partial)[strip * p.cols + c_begin + s * SubCols + col] = total;
      }
    }
  }
  // The lanes of a row add their sums in a fixed tree; the row's first lane publishes them.
#pragma unroll
  for (int i = 0; i < kN; ++i) {
#pragma unroll
    for (int o = 1; o < kLanesPerRow; o <<= 1) sums[i].x += __shfl_xor_sync(0xffffffffu, sums[i].x, o), sums[i].y += __shfl_xor_sync(0xffffffffu, sums[i].y, o);
    if (Tile::col() == 0) row_sums[Tile::row(i)] = sums[i];
  }
  __syncthreads();
  if constexpr (Cluster > 1) sm90::cluster_sync();  // every CTA's row_sums are written
  if (threadIdx.x < B) {
    const int row = int(threadIdx.x);
    RowSums total{0, 0};
    for (int q = 0; q < Cluster; ++q) {  // in rank order: the same bits in every CTA of the strip
      RowSums v = row_sums[row];
      if constexpr (Cluster > 1) v = *sm90::cluster_peer(&row_sums[row], u32(q));
      total.x += v.x, total.y += v.y;
    }
    if constexpr (!Backward) {
      const LayerNormRowStats stats = layernorm_row_stats(total.x, total.y, double(p.cols), p.eps);
      row_a[row] = stats.mean, row_b[row] = stats.rstd;
      if (rank == 0) p.mean[r0 + row] = row_a[row], p.rstd[r0 + row] = row_b[row];
    } else {
      row_a[row] = total.x / float(p.cols), row_b[row] = total.y / float(p.cols);
    }
  }
  __syncthreads();
  if constexpr (Cluster > 1) sm90::cluster_arrive_relaxed();  // done reading the others' row_sums (waited for before exit)

  // Pass 2: the output, quantized per block as each sub-tile completes. Backward: dx = rstd (dy gamma - c1 - xhat c2)
  // = rstd y with y = qdy (sdy gamma) + qx (sx a) + b, a = -c2 rstd and b = c2 mean rstd - c1 per row: two FMAs per
  // element, and rstd goes into each chunk's block maximum and quantization factor (mul_round_up / mul_round_down).
  float a[kN], b[kN];  // forward: rstd, mean * rstd; backward: as above
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const float ra = row_a[Tile::row(i)], rb = row_b[Tile::row(i)];  // forward: mean, rstd; backward: c1, c2
    a[i] = Backward ? -rb * rstd[i] : rb, b[i] = Backward ? fmaf(rb, mean_rstd[i], -ra) : ra * rb;
  }
  for (int s = 0; s < sub_tiles; ++s) {
    const i64 c0 = c_begin + s * SubCols + Tile::col();
    const float sx = scale(0, s), sdy = Backward ? scale(1, s) : 0.0f;
    float gamma[kE], beta[kE];
#pragma unroll
    for (int k = 0; k < kE; ++k) gamma[k] = __ldg(p.gamma + c0 + k), beta[k] = Backward ? sdy * gamma[k] : __ldg(p.beta + c0 + k);  // backward: sdy * gamma
    float y[kN][kE];
#pragma unroll
    for (int i = 0; i < kN; ++i) {
      u32 wx[kWords], wdy[kWords];
      chunk(0, s, i, wx);
      if constexpr (Backward) chunk(1, s, i, wdy);
      const CodeAffine x_term(sx * a[i], Backward ? b[i] : -b[i]);  // forward: (x - mean) * rstd
#pragma unroll
      for (int k = 0; k < kE; ++k) {
        const float xt = x_term(wx[k / 4], k % 4);
        if constexpr (!Backward) {
          y[i][k] = fmaf(xt, gamma[k], beta[k]);
        } else {
          y[i][k] = fmaf(biased_code(wdy[k / 4], k % 4), beta[k], xt);  // dx / rstd
        }
      }
    }
    const i64 tile_c = (c_begin + s * SubCols) / SubCols;
    if constexpr (!Backward) {
      store_requantized<Tile, B, 1, SubCols / B, Threads, Round>(y, amax, p.out_codes, p.out_scales, p.cols, strip, tile_c, 0, nullptr, s);
    } else {
      store_requantized_chunks<Tile, B, 1, SubCols / B, Threads>(
          [&](int i) { return mul_round_up(max_abs(y[i]), rstd[i]); },
          [&](int i, float inv, u64 first, i8 (&q)[kE]) { quantize_run<Round>([&](int k) { return y[i][k]; }, mul_round_down(inv, rstd[i]), first, p.round_key, q); },
          amax, p.out_codes, p.out_scales, p.cols, strip, tile_c, nullptr, s);
    }
  }
  if constexpr (Cluster > 1) sm90::cluster_wait();  // no CTA leaves while another may still read its row_sums
}

// LayerNorm forward with the statistics given (residual_add takes them in its own pass, DESIGN.md §1): y = (x - mean)
// * rstd * gamma + beta, fresh block scales, nearest rounding; a streaming pass, one CTA per tile of TileBR x TileBC
// blocks, 16 codes per chunk, on a 2-D grid (blockIdx.y the tile row: no division).
template <int TileBR, int TileBC, int Threads>
__global__ void __launch_bounds__(Threads, streaming_min_ctas(Threads)) layernorm_apply_kernel(const LayerNormParams p) {
  constexpr int B = 32, kRows = TileBR * B, kCols = TileBC * B;
  typedef CtaTile<i8, kRows, kCols, Threads> Tile;
  constexpr int kN = Tile::kChunksPerThread, kE = Tile::kElemsPerChunk, kWords = kE / 4;
  // Maxima by warp partials where the tile allows: on the 2-D grid 3-4% faster than by atomics (run 211).
  __shared__ BlockAmax<TileBR * TileBC, Threads, Tile::template kWarpsShareBlocks<B>> amax;
  const i64 blocks_per_row = p.cols / B, tile_r = blockIdx.y, tile_c = blockIdx.x;
  const i64 r0 = tile_r * kRows, c0 = tile_c * kCols;
  typename Tile::Chunk x[kN];
  Tile::load(x, p.x_codes + r0 * p.cols + c0, p.cols);
  float y[kN][kE];
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const i64 row = r0 + Tile::row(i), col = c0 + Tile::col();
    // xhat = code * (s * rstd) - mean * rstd: one FMA per element with the row's constants, as layernorm_kernel does
    // (so both give the same bits for the same statistics).
    const float rstd = __ldg(p.rstd + row);
    const CodeAffine xhat_of(__ldg(p.x_scales + row / B * blocks_per_row + col / B) * rstd, -(__ldg(p.mean + row) * rstd));
#pragma unroll
    for (int j = 0; j < kWords; ++j) {  // four codes, and their gamma and beta as one 16-byte load each
      const u32 w = biased_codes(reinterpret_cast<const u32*>(x[i].elem)[j]);
      const float4 g = __ldg(reinterpret_cast<const float4*>(p.gamma + col) + j), be = __ldg(reinterpret_cast<const float4*>(p.beta + col) + j);
      const float gk[4] = {g.x, g.y, g.z, g.w}, bk[4] = {be.x, be.y, be.z, be.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) y[i][4 * j + k] = fmaf(xhat_of(w, k), gk[k], bk[k]);
    }
  }
  store_requantized<Tile, B, TileBR, TileBC, Threads, kRoundNearest>(y, amax, p.out_codes, p.out_scales, p.cols, tile_r, tile_c, 0);
}

}  // namespace jetforge
#endif
