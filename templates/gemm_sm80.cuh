// Portable path of the per-block INT8 GEMM (contract in gemm.cuh), for sm_80 and newer: cp.async into a
// Stages-deep ring of 64-byte K slices, ldmatrix from XOR-swizzled shared memory, mma.sync m16n8k32 s8 into INT32
// per K-group, folded into FP32. 8 warps as 2 (M) x 4 (N), each owning 64 x 32 outputs of a 128 x 128 tile.
#pragma once
#include "gemm.cuh"

namespace jetforge {

struct GemmSm80Params {
  const i8* a;  // M x K codes
  const i8* b;  // N x K codes
  const float* a_scales;  // (M / 32) x (K / G)
  const float* b_scales;  // (N / 32) x (K / G)
  GemmProblem problem;
};

}  // namespace jetforge

#if JF_DEVICE_CODE
#include "jetforge/cta_tile.cuh"

namespace jetforge {

namespace sm80 {

constexpr int kBM = 128, kBN = 128, kBK = 64, kThreads = 256;

// Byte offset of (row, 16-byte chunk) in a 64-byte-row tile: chunks XOR-swizzled by (row / 2) % 4, so the 8 rows
// one ldmatrix phase reads land on 8 distinct 16-byte bank groups.
__device__ __forceinline__ int swizzled(int row, int chunk) { return row * kBK + ((chunk ^ ((row >> 1) & 3)) << 4); }

// 16-byte cp.async that writes zeros where the source is outside the matrix.
__device__ __forceinline__ void cp_async_16_or_zero(void* smem, const void* gmem, bool inside) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(u32(__cvta_generic_to_shared(smem))), "l"(gmem), "r"(inside ? 16 : 0)
               : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(u32(__cvta_generic_to_shared(smem_row))));
}

// d = a * b (+ d when accumulate): m16n8k32, A row-major (K-major), B column-major (K-major), s8 -> s32.
__device__ __forceinline__ void mma_m16n8k32(i32 (&d)[4], const u32 (&a)[4], u32 b0, u32 b1, bool accumulate) {
  const i32 c0 = accumulate ? d[0] : 0, c1 = accumulate ? d[1] : 0, c2 = accumulate ? d[2] : 0, c3 = accumulate ? d[3] : 0;
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};"
               : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(c0), "r"(c1), "r"(c2), "r"(c3));
}

}  // namespace sm80

template <int Group, int Stages> struct GemmSm80Smem {
  i8 a[Stages][sm80::kBM * sm80::kBK];
  i8 b[Stages][sm80::kBN * sm80::kBK];
};

template <int Group, int Stages, int Output, int Round, int Fold>
__global__ void __launch_bounds__(sm80::kThreads) gemm_sm80_kernel(const GemmSm80Params params) {
  using namespace sm80;
  typedef GemmSm80Smem<Group, Stages> Smem;
  extern __shared__ __align__(128) u8 smem_raw[];
  Smem& smem = *reinterpret_cast<Smem*>(smem_raw);
  const GemmProblem& p = params.problem;

  int tile_m, tile_n;
  gemm::tile_of_block(int(blockIdx.x), int((p.m + kBM - 1) / kBM), int((p.n + kBN - 1) / kBN), tile_m, tile_n);
  const i64 m0 = i64(tile_m) * kBM, n0 = i64(tile_n) * kBN;
  const int k_tiles = int((p.k + kBK - 1) / kBK);
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int warp_m = warp / 4, warp_n = warp % 4;  // warp tile: rows 64 * warp_m, columns 32 * warp_n

  // Each thread copies 2 chunks of A and 2 of B per stage: chunk c covers row c / 4, bytes (c % 4) * 16.
  auto load_stage = [&](int kt, int s) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int c = i * kThreads + tid, row = c / 4, chunk = c % 4;
      const i64 k = i64(kt) * kBK + chunk * 16;
      const bool k_in = k < p.k;
      const i64 ra = m0 + row, rb = n0 + row;
      cp_async_16_or_zero(&smem.a[s][swizzled(row, chunk)], params.a + (ra < p.m && k_in ? ra * p.k + k : 0), ra < p.m && k_in);
      cp_async_16_or_zero(&smem.b[s][swizzled(row, chunk)], params.b + (rb < p.n && k_in ? rb * p.k + k : 0), rb < p.n && k_in);
    }
  };
#pragma unroll
  for (int s = 0; s < Stages - 1; ++s) {
    if (s < k_tiles) load_stage(s, s);
    cp_async_commit();
  }

  float acc[4][4][4];  // [m16 tile][n8 tile][fragment]
  i32 part[4][4][4];
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.0f;

  const i64 groups_k = p.k / Group;
  const i64 a_block0 = m0 / 32 + 2 * warp_m, b_block = n0 / 32 + warp_n;  // this warp's scale rows
  const int steps = k_tiles * (kBK / 32);  // k32 steps
  for (int step = 0; step < steps; ++step) {
    const int kt = step / 2, s = kt % Stages, kk = (step % 2) * 32;
    if (step % 2 == 0) {
      cp_async_wait<Stages - 2>();
      __syncthreads();  // stage kt has landed for every thread; stage kt - 1 is no longer read
      if (kt + Stages - 1 < k_tiles) load_stage(kt + Stages - 1, (kt + Stages - 1) % Stages);
      cp_async_commit();
    }
    u32 af[4][4], bf[2][4];
#pragma unroll
    for (int mt = 0; mt < 4; ++mt) {
      const int q = lane / 8, row = 64 * warp_m + 16 * mt + (q & 1) * 8 + lane % 8;
      ldmatrix_x4(af[mt], &smem.a[s][swizzled(row, (kk + (q >> 1) * 16) / 16)]);
    }
#pragma unroll
    for (int np = 0; np < 2; ++np) {
      const int q = lane / 8, row = 32 * warp_n + 16 * np + (q >> 1) * 8 + lane % 8;
      ldmatrix_x4(bf[np], &smem.b[s][swizzled(row, (kk + (q & 1) * 16) / 16)]);
    }
    const bool first_of_group = (step * 32) % Group == 0;
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) mma_m16n8k32(part[mt][nt], af[mt], bf[nt / 2][(nt % 2) * 2], bf[nt / 2][(nt % 2) * 2 + 1], !first_of_group);

    if ((step * 32 + 32) % Group == 0 || step == steps - 1) {  // the K-group is complete: fold it
      const i64 g = i64(step) * 32 / Group;
      const bool g_in = g < groups_k;
      const float sb = g_in && b_block < p.n / 32 ? __ldg(params.b_scales + b_block * groups_k + g) : 0.0f;
#pragma unroll
      for (int half = 0; half < 2; ++half) {  // m16 tiles 2 * half, 2 * half + 1 share a 32-row block
        const i64 a_block = a_block0 + half;
        const float f = (g_in && a_block < p.m / 32 ? __ldg(params.a_scales + a_block * groups_k + g) : 0.0f) * sb;
#pragma unroll
        for (int mt = 2 * half; mt < 2 * half + 2; ++mt)
#pragma unroll
          for (int nt = 0; nt < 4; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mt][nt][e] = fmaf(gemm::dot_to_float<Fold>(part[mt][nt][e]), f, acc[mt][nt][e]);
      }
    }
  }
  cp_async_wait<0>();

  // Epilogue. Fragment (mt, nt, e): row 64 warp_m + 16 mt + lane / 4 + 8 (e / 2), column 32 warp_n + 8 nt + 2 (lane % 4) + e % 2.
  // The warp owns two whole 32 x 32 output blocks: rows 0-31 (m16 tiles 0, 1) and 32-63 (tiles 2, 3) of its slice.
  const i64 row_base = m0 + 64 * warp_m + lane / 4, col_base = n0 + 32 * warp_n + 2 * (lane % 4);
  if constexpr (Output == kGemmOutI8)
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) gemm::add_bias_quad(p, col_base + 8 * nt, acc[mt][nt]);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float inv = 0.0f;
    if constexpr (Output == kGemmOutI8) {
      float m = 0.0f;
#pragma unroll
      for (int mt = 2 * half; mt < 2 * half + 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) m = fmaxf(m, fabsf(acc[mt][nt][e]));
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
      const float scale = block_scale(m);
      inv = inverse_scale(scale);
      const i64 block_row = m0 / 32 + 2 * warp_m + half, block_col = n0 / 32 + warp_n;
      if (lane == 0 && block_row < p.m / 32 && block_col < p.n / 32) p.out_scales[block_row * (p.n / 32) + block_col] = scale;
    }
#pragma unroll
    for (int mt = 2 * half; mt < 2 * half + 2; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const i64 row = row_base + 16 * mt + 8 * h;
        if (row >= p.m) continue;
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
          const i64 col = col_base + 8 * nt;
          if (col >= p.n) continue;
          float v[2] = {acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1]};
          if constexpr (Output == kGemmOutI8)
            *reinterpret_cast<u16*>(static_cast<i8*>(p.out) + row * p.n + col) = gemm::quantize_pair<Round>(p, u64(row * p.n + col), v[0], v[1], inv);
          else
            gemm::store_dense<Output>(p, row, col, v);
        }
      }
  }
}

}  // namespace jetforge
#endif
