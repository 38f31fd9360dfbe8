// INT8 -> INT8 elementwise operators with per-block requantization (DESIGN.md §1): GELU (tanh or erf form)
// forward and backward, dropout forward and backward. Each element is computed in FP32 from the dequantized
// inputs; every 32 x 32 block of the output gets a fresh scale, nearest rounding forward, stochastic backward.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

enum ElementwiseOp { kGeluTanh = 0, kGeluErf = 1, kGeluTanhGrad = 2, kGeluErfGrad = 3, kDropout = 4, kLayerNormApply = 5, kLayerNormGrad = 6 };

struct ElementwiseParams {
  const i8* a_codes;  // x (forward) or dy (backward), rows x cols
  const float* a_scales;
  const i8* b_codes;  // x, for the GELU backward
  const float* b_scales;
  i8* out_codes;
  float* out_scales;
  i64 rows, cols;
  float p;          // dropout probability
  u64 mask_seed;    // dropout keeps element i where dropout_keep(mask_seed, i, p)
  u64 round_seed;   // stochastic rounding of gradients: sr_noise(round_seed, i)
  const float* row_mean;  // LayerNorm: per-row statistics (row_stats_kernel) and per-column affine parameters
  const float* row_rstd;
  const float* gamma;
  const float* beta;
  const float* row_c1;  // LayerNorm backward: per row, mean(dy * gamma) and mean(dy * gamma * xhat)
  const float* row_c2;
};

// LayerNorm backward, per-row part: c1 = mean(dy * gamma), c2 = mean(dy * gamma * xhat) with
// xhat = (x - mean) * rstd; per-column part: partial sums of dy * xhat and dy over each 32-row block row.
struct LayerNormGradParams {
  const i8* dy_codes;
  const float* dy_scales;
  const i8* x_codes;
  const float* x_scales;
  const float* mean;
  const float* rstd;
  const float* gamma;
  float* c1;              // rows
  float* c2;              // rows
  float* dgamma_partial;  // (rows / 32) x cols, summed in order by column_sum_reduce_kernel (deterministic)
  float* dbeta_partial;   // (rows / 32) x cols
  i64 rows, cols;
  i8* dx_codes;  // fused kernel only: dx, stochastic rounding with `seed` (as the elementwise dx kernel rounds)
  float* dx_scales;
  u64 seed;
};

// Per-row mean and 1 / sqrt(variance + eps) of a BlockTensor (32 x 32 blocks): LayerNorm's statistics.
struct RowStatsParams {
  const i8* codes;
  const float* scales;
  float* mean;  // rows
  float* rstd;  // rows
  i64 rows, cols;
  float eps;
};

}  // namespace jetforge

#if JF_DEVICE_CODE
#include "jetforge/cta_tile.cuh"

namespace jetforge {

__device__ __forceinline__ float fast_tanh(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));  // relative error ~2^-11, far below a quantization step
  return y;
}

// The LayerNorm backward's arithmetic, rounded step by step (no contraction into FMAs), so that the separate kernels
// and the fused one give the same bits: dx, and the terms of c2 and dgamma.
__device__ __forceinline__ float layernorm_xhat_term(float g, float x, float mean, float rstd) { return __fmul_rn(__fmul_rn(g, __fsub_rn(x, mean)), rstd); }
__device__ __forceinline__ float layernorm_dx(float dy, float x, float mean, float rstd, float gamma, float c1, float c2) {
  const float xhat = __fmul_rn(__fsub_rn(x, mean), rstd);
  return __fmul_rn(rstd, __fsub_rn(__fsub_rn(__fmul_rn(dy, gamma), c1), __fmul_rn(xhat, c2)));
}

// draw: the element's uniform random number in [0, 1), dropout only.
template <int Op> __device__ __forceinline__ float elementwise_apply(float a, float b, i64 row, i64 col, float draw, const ElementwiseParams& p) {
  constexpr float kSqrt2OverPi = 0.7978845608f, kCubic = 0.044715f, kRsqrt2 = 0.7071067812f, kRsqrt2Pi = 0.3989422804f;
  if constexpr (Op == kGeluTanh) {
    return 0.5f * a * (1.0f + fast_tanh(kSqrt2OverPi * (a + kCubic * a * a * a)));
  } else if constexpr (Op == kGeluErf) {
    return 0.5f * a * (1.0f + erff(a * kRsqrt2));
  } else if constexpr (Op == kGeluTanhGrad) {  // a = dy, b = x
    const float t = fast_tanh(kSqrt2OverPi * (b + kCubic * b * b * b));
    return a * (0.5f * (1.0f + t) + 0.5f * b * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kCubic * b * b));
  } else if constexpr (Op == kGeluErfGrad) {
    return a * (0.5f * (1.0f + erff(b * kRsqrt2)) + b * kRsqrt2Pi * __expf(-0.5f * b * b));
  } else if constexpr (Op == kDropout) {
    return draw >= p.p ? a / (1.0f - p.p) : 0.0f;  // draw = sr_noise(mask_seed, index): dropout_keep
  } else if constexpr (Op == kLayerNormApply) {
    return (a - __ldg(p.row_mean + row)) * __ldg(p.row_rstd + row) * __ldg(p.gamma + col) + __ldg(p.beta + col);
  } else {  // kLayerNormGrad: a = dy, b = x
    return layernorm_dx(a, b, __ldg(p.row_mean + row), __ldg(p.row_rstd + row), __ldg(p.gamma + col), __ldg(p.row_c1 + row), __ldg(p.row_c2 + row));
  }
}

// One CTA per tile of TileBR x TileBC blocks (B = 32), 16 codes per chunk.
template <int Op, int Round, int TileBR, int TileBC, int Threads>
__global__ void __launch_bounds__(Threads, streaming_min_ctas(Threads)) elementwise_kernel(const ElementwiseParams p) {
  constexpr int B = 32, kRows = TileBR * B, kCols = TileBC * B;
  constexpr bool kTwoInputs = Op == kGeluTanhGrad || Op == kGeluErfGrad || Op == kLayerNormGrad;
  typedef CtaTile<i8, kRows, kCols, Threads> Tile;
  constexpr int kN = Tile::kChunksPerThread, kE = Tile::kElemsPerChunk;
  __shared__ BlockAmax<TileBR * TileBC, Threads> amax;

  const i64 tiles_per_row = p.cols / kCols, blocks_per_row = p.cols / B;
  const i64 tile_r = blockIdx.x / tiles_per_row, tile_c = blockIdx.x % tiles_per_row;
  const i64 r0 = tile_r * kRows, c0 = tile_c * kCols;
  const i64 origin = r0 * p.cols + c0;

  typename Tile::Chunk a[kN], b[kN];
  Tile::load(a, p.a_codes + origin, p.cols);
  if constexpr (kTwoInputs) Tile::load(b, p.b_codes + origin, p.cols);

  float y[kN][kE];
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const i64 block = (r0 + Tile::row(i)) / B * blocks_per_row + (c0 + Tile::col()) / B;
    const float sa = __ldg(p.a_scales + block), sb = kTwoInputs ? __ldg(p.b_scales + block) : 0.0f;
    const u64 first = u64((r0 + Tile::row(i)) * p.cols + c0 + Tile::col());  // a multiple of 16
    u64 mask_hash[kE / 4] = {};  // dropout: one hash per 4 elements, as dropout_keep draws them
    if constexpr (Op == kDropout)
#pragma unroll
      for (int j = 0; j < kE / 4; ++j) mask_hash[j] = hash64(p.mask_seed, first / 4 + j);
#pragma unroll
    for (int k = 0; k < kE; ++k)
      y[i][k] = elementwise_apply<Op>(code_to_float(a[i].elem[k]) * sa, kTwoInputs ? code_to_float(b[i].elem[k]) * sb : 0.0f, r0 + Tile::row(i),
                                      c0 + Tile::col() + k, Op == kDropout ? sr_noise_field(mask_hash[k / 4], k % 4) : 0.0f, p);
  }
  store_requantized<Tile, B, TileBR, TileBC, Threads, Round>(y, amax, p.out_codes, p.out_scales, p.cols, tile_r, tile_c, p.round_seed);
}

// Chunk `chunk` (16 codes, inside one 32 x 32 block) of row `row` of a BlockTensor with `cols` columns, dequantized.
__device__ __forceinline__ void load_row_chunk(const i8* codes, const float* scales, i64 row, i64 chunk, i64 cols, float (&x)[16]) {
  union {
    uint4 vec;
    i8 elem[16];
  } q;
  q.vec = __ldg(reinterpret_cast<const uint4*>(codes + row * cols + chunk * 16));
  const float s = __ldg(scales + row / 32 * (cols / 32) + chunk / 2);
#pragma unroll
  for (int k = 0; k < 16; ++k) x[k] = code_to_float(q.elem[k]) * s;
}

// One warp per row: each lane folds its 16-code chunks into a running (count, mean, M2) (Chan et al.), then the
// lanes combine theirs; no E[x^2] - E[x]^2 cancellation.
struct Moments {
  float n, mean, m2;
};
__device__ __forceinline__ Moments combine(Moments a, Moments b) {
  const float n = a.n + b.n;
  if (n == 0.0f) return a;
  const float delta = b.mean - a.mean, wb = b.n / n;
  return Moments{n, a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.n * wb};
}

template <int Warps>
__global__ void __launch_bounds__(Warps * 32) row_stats_kernel(const RowStatsParams p) {
  const int lane = int(threadIdx.x) % 32;
  const i64 row = i64(blockIdx.x) * Warps + int(threadIdx.x) / 32;
  if (row >= p.rows) return;
  Moments m{0.0f, 0.0f, 0.0f};
  for (i64 c = lane; c < p.cols / 16; c += 32) {
    float x[16], sum = 0.0f;
    load_row_chunk(p.codes, p.scales, row, c, p.cols, x);
#pragma unroll
    for (int k = 0; k < 16; ++k) sum += x[k];
    Moments chunk{16.0f, sum * (1.0f / 16.0f), 0.0f};
#pragma unroll
    for (int k = 0; k < 16; ++k) chunk.m2 += (x[k] - chunk.mean) * (x[k] - chunk.mean);
    m = combine(m, chunk);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    m = combine(m, Moments{__shfl_xor_sync(0xffffffffu, m.n, o), __shfl_xor_sync(0xffffffffu, m.mean, o), __shfl_xor_sync(0xffffffffu, m.m2, o)});
  if (lane == 0) {
    p.mean[row] = m.mean;
    p.rstd[row] = 1.0f / sqrtf(m.m2 / float(p.cols) + p.eps);
  }
}

// c1 and c2 of one LayerNorm-backward row, by the 32 lanes of a warp (each lane's chunks in order, then a fixed
// shuffle tree); every lane gets the results.
__device__ __forceinline__ void layernorm_grad_row(const LayerNormGradParams& p, i64 row, int lane, float& c1, float& c2) {
  const float mean = p.mean[row], rstd = p.rstd[row];
  float s1 = 0.0f, s2 = 0.0f;
  for (i64 c = lane; c < p.cols / 16; c += 32) {
    float g[16], x[16];
    load_row_chunk(p.dy_codes, p.dy_scales, row, c, p.cols, g);
    load_row_chunk(p.x_codes, p.x_scales, row, c, p.cols, x);
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      const float gg = __fmul_rn(g[k], __ldg(p.gamma + c * 16 + k));
      s1 = __fadd_rn(s1, gg);
      s2 = __fadd_rn(s2, layernorm_xhat_term(gg, x[k], mean, rstd));
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s1 += __shfl_xor_sync(0xffffffffu, s1, o), s2 += __shfl_xor_sync(0xffffffffu, s2, o);
  c1 = s1 / float(p.cols), c2 = s2 / float(p.cols);
}

// One warp per row: c1 and c2 of the LayerNorm backward.
template <int Warps>
__global__ void __launch_bounds__(Warps * 32) layernorm_grad_rows_kernel(const LayerNormGradParams p) {
  const int lane = int(threadIdx.x) % 32;
  const i64 row = i64(blockIdx.x) * Warps + int(threadIdx.x) / 32;
  if (row >= p.rows) return;
  float c1, c2;
  layernorm_grad_row(p, row, lane, c1, c2);
  if (lane == 0) p.c1[row] = c1, p.c2[row] = c2;
}

// Column sums over one 32-row block row per CTA, one thread per column: partials of dgamma and dbeta.
template <int Threads>
__global__ void __launch_bounds__(Threads) layernorm_grad_columns_kernel(const LayerNormGradParams p) {
  const i64 col = i64(blockIdx.y) * Threads + threadIdx.x, block_row = blockIdx.x;
  if (col >= p.cols) return;
  const i64 blocks_per_row = p.cols / 32;
  const float sg = __ldg(p.dy_scales + block_row * blocks_per_row + col / 32), sx = __ldg(p.x_scales + block_row * blocks_per_row + col / 32);
  float dg = 0.0f, db = 0.0f;
  for (int r = 0; r < 32; ++r) {
    const i64 row = block_row * 32 + r;
    const float g = code_to_float(p.dy_codes[row * p.cols + col]) * sg;
    dg = __fadd_rn(dg, layernorm_xhat_term(g, code_to_float(p.x_codes[row * p.cols + col]) * sx, __ldg(p.mean + row), __ldg(p.rstd + row)));
    db += g;
  }
  p.dgamma_partial[block_row * p.cols + col] = dg;
  p.dbeta_partial[block_row * p.cols + col] = db;
}

// The two passes above and the elementwise dx in one kernel per 32-row strip (rows x cols, cols a multiple of
// 128; 256 threads): c1 and c2 of the strip's rows (one warp per row, summed as layernorm_grad_rows_kernel sums
// them), then per 32 x 128 tile dx quantized per block and the dgamma/dbeta partials of its columns (summed over the
// 32 rows in order, as layernorm_grad_columns_kernel does). The second pass reads the strip again, from L2: dy and x
// leave memory once. Bit-identical to the separate kernels.
template <int Round>
__global__ void __launch_bounds__(256) layernorm_grad_fused_kernel(const LayerNormGradParams p) {
  constexpr int B = 32, kTileCols = 128, kBlocks = kTileCols / B;
  typedef CtaTile<i8, B, kTileCols, 256> Tile;  // one 16-code chunk per thread
  __shared__ float row_c1[B], row_c2[B];
  __shared__ float col_g[B][kTileCols], col_b[B][kTileCols];  // per-row terms of dgamma and dbeta
  __shared__ BlockAmax<kBlocks, 256> amax;
  const i64 r0 = i64(blockIdx.x) * B;
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;

  for (int r = warp; r < B; r += 8) {
    float c1, c2;
    layernorm_grad_row(p, r0 + r, lane, c1, c2);
    if (lane == 0) row_c1[r] = c1, row_c2[r] = c2;
  }
  __syncthreads();

  const int r = Tile::row(0), col = Tile::col();  // this thread's chunk: row r of the strip, columns col .. col + 15
  const i64 row = r0 + r;
  const float mean = p.mean[row], rstd = p.rstd[row], c1 = row_c1[r], c2 = row_c2[r];
  for (i64 c0 = 0; c0 < p.cols; c0 += kTileCols) {
    float g[16], x[16], y[1][16];
    load_row_chunk(p.dy_codes, p.dy_scales, row, (c0 + col) / 16, p.cols, g);
    load_row_chunk(p.x_codes, p.x_scales, row, (c0 + col) / 16, p.cols, x);
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      y[0][k] = layernorm_dx(g[k], x[k], mean, rstd, __ldg(p.gamma + c0 + col + k), c1, c2);
      col_g[r][col + k] = layernorm_xhat_term(g[k], x[k], mean, rstd);
      col_b[r][col + k] = g[k];
    }
    store_requantized<Tile, B, 1, kBlocks, 256, Round>(y, amax, p.dx_codes, p.dx_scales, p.cols, blockIdx.x, c0 / kTileCols, p.seed);  // barriers
    if (threadIdx.x < kTileCols) {
      float dg = 0.0f, db = 0.0f;
      for (int rr = 0; rr < B; ++rr) dg = __fadd_rn(dg, col_g[rr][threadIdx.x]), db += col_b[rr][threadIdx.x];
      p.dgamma_partial[blockIdx.x * p.cols + c0 + threadIdx.x] = dg;
      p.dbeta_partial[blockIdx.x * p.cols + c0 + threadIdx.x] = db;
    }
    __syncthreads();  // the next tile overwrites col_g, col_b
  }
}

}  // namespace jetforge
#endif
