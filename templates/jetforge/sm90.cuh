// Hopper (sm_90a) building blocks: mbarriers, TMA tile loads, wgmma with s8 operands and shared-memory matrix
// descriptors, register reallocation between warpgroups. Thin wrappers over PTX; nothing here knows about GEMMs.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

// Same layout as the driver's CUtensorMap (128 bytes, 64-byte aligned), filled on the host by
// cuTensorMapEncodeTiled and passed inside a __grid_constant__ parameter struct.
struct alignas(64) TensorMap {
  u64 opaque[16];
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge::sm90 {

__device__ __forceinline__ u32 smem_addr(const void* p) { return u32(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void mbar_init(u64* bar, u32 count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count));
}
// The kernel's dynamic shared memory as a Smem aligned to 1024 bytes, the 128-byte swizzle's repeat. Offsetting the
// shared array itself (not a round trip through an integer) keeps the compiler's knowledge that this is shared
// memory: LDS, not generic loads.
template <class Smem> __device__ __forceinline__ Smem& swizzle_aligned_smem() {
  extern __shared__ u8 smem_raw[];
  return *reinterpret_cast<Smem*>(smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u));
}
// Traps unless the launch gave a Smem and its alignment slack, what the spec's smem_bytes() promised (one thread).
template <class Smem> __device__ __forceinline__ void check_dynamic_smem() {
  u32 dynamic_bytes;
  asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_bytes));
  if (sizeof(Smem) + 1023 > dynamic_bytes) __trap();
}

// Makes barrier initialization visible to the async proxy (TMA) before first use.
__device__ __forceinline__ void fence_barrier_init() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }

__device__ __forceinline__ void mbar_arrive(u64* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
}
// Arrives and announces `bytes` of TMA traffic that must land before the phase completes.
__device__ __forceinline__ void mbar_arrive_expect_tx(u64* bar, u32 bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(u64* bar, u32 parity) {
  asm volatile(
      "{\n.reg .pred done;\nwait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}

// 2-D TMA load of one box at (x = inner coordinate, y = outer coordinate) into shared memory; completes on bar.
__device__ __forceinline__ void tma_load_2d(void* dst, const TensorMap* map, int x, int y, u64* bar) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(smem_addr(dst)),
               "l"(map), "r"(x), "r"(y), "r"(smem_addr(bar))
               : "memory");
}

// 4-D TMA load of one box at coordinates (x, y, z, w), innermost first; completes on bar.
__device__ __forceinline__ void tma_load_4d(void* dst, const TensorMap* map, int x, int y, int z, int w, u64* bar) {
  asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];" ::"r"(smem_addr(dst)),
               "l"(map), "r"(x), "r"(y), "r"(z), "r"(w), "r"(smem_addr(bar))
               : "memory");
}

// A 4-byte copy from global to shared memory that completes without the thread waiting for it (cp.async), and an
// arrival on `bar` once every earlier cp.async of this thread has landed (noinc: the arrival is one of the count the
// barrier was initialised with).
__device__ __forceinline__ void cp_async_4(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_mbar_arrive(u64* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(smem_addr(bar)) : "memory");
}

// 1-D bulk copy of `bytes` (a multiple of 16, both addresses 16-byte aligned) into shared memory; completes on bar.
__device__ __forceinline__ void bulk_load(void* dst, const void* src, u32 bytes, u64* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_addr(dst)), "l"(src), "r"(bytes),
               "r"(smem_addr(bar))
               : "memory");
}

// The same load delivered to the same shared-memory offset of every CTA in `cta_mask` (bit i: cluster rank i),
// completing on the barrier at the same offset in each of them.
__device__ __forceinline__ void tma_load_2d_multicast(void* dst, const TensorMap* map, int x, int y, u64* bar, u16 cta_mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(
          smem_addr(dst)),
      "l"(map), "r"(x), "r"(y), "r"(smem_addr(bar)), "h"(cta_mask)
      : "memory");
}

__device__ __forceinline__ u32 cluster_rank() {
  u32 r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}

// Arrives on the barrier at the same offset in cluster CTA `rank` (possibly this one). The arrival releases at CTA
// scope (the default), as a consumer's "done reading this stage" needs: a cluster-scope release costs the warp a
// wait for its memory operations to reach the cluster.
__device__ __forceinline__ void mbar_arrive_cluster(u64* bar, u32 rank) {
  asm volatile(
      "{\n.reg .b32 remote;\nmapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.shared::cluster.b64 _, [remote];\n}\n" ::"r"(smem_addr(bar)),
      "r"(rank)
      : "memory");
}

// The two halves of cluster_sync, for work in between: arrive says this CTA is done with what the others must not
// change or free yet; wait returns once every CTA has arrived.
__device__ __forceinline__ void cluster_arrive() { asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory"); }
// An arrive that publishes nothing (no memory fence): e.g. "done reading the others' shared memory", whose loads
// have completed once their values were used.
__device__ __forceinline__ void cluster_arrive_relaxed() { asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory"); }
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory"); }
// Every thread of every CTA in the cluster.
__device__ __forceinline__ void cluster_sync() {
  cluster_arrive();
  cluster_wait();
}

// The counterpart of the shared variable `local` in cluster CTA `rank` (distributed shared memory), as a generic
// pointer that plain loads read through.
template <class T> __device__ __forceinline__ const T* cluster_peer(const T* local, u32 rank) {
  u64 remote;
  asm volatile("mapa.u64 %0, %1, %2;" : "=l"(remote) : "l"(local), "r"(rank));
  return reinterpret_cast<const T*>(remote);
}

// Shared-memory matrix descriptor of a K-major tile written by TMA with the 128-byte swizzle: rows of 128 bytes,
// 8-row core groups 1024 bytes apart. Only the low word depends on the tile (its address / 16, plus the leading
// byte offset 1); the high word (stride 1024 / 16, 128-byte swizzle mode) is the constant below, joined inside the
// wgmma's asm so that a descriptor costs one register. Advancing along K within the row adds bytes / 16.
__device__ __forceinline__ u32 smem_desc_lo_k_major_sw128(const void* tile) { return ((smem_addr(tile) & 0x3FFFFu) >> 4) | (1u << 16); }
constexpr u32 kSmemDescHiKMajorSw128 = (1024u >> 4) | (1u << 30);

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }

// Registers an asynchronous wgmma reads or writes, pinned at this point of the program: the compiler neither moves
// their other uses across it nor hands them to other values before it. After a wait, on the operands of the wgmmas
// it retired (the compiler sees an asm's operands consumed when it is issued, not when the tensor core is done).
template <int N> __device__ __forceinline__ void pin_registers(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N> __device__ __forceinline__ void pin_registers(u32 (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

template <int Count> __device__ __forceinline__ void setmaxnreg_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(Count)); }
template <int Count> __device__ __forceinline__ void setmaxnreg_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(Count)); }

// Barrier among the `threads` threads that use barrier `id` (1..15; 0 is __syncthreads): waits for all of them; the
// arrive form counts the caller without waiting (a producer's signal to the threads that sync).
__device__ __forceinline__ void named_barrier(int id, int threads) { asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory"); }
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) { asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(threads) : "memory"); }
// A flag in global memory shared by CTAs: read with acquire, written with release semantics at GPU scope.
__device__ __forceinline__ u32 ld_acquire_gpu(const u32* p) {
  u32 v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release_gpu(u32* p, u32 v) { asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory"); }

// D (64 x N, s32) = A (64 x 32, s8, K-major, smem) * B (N x 32, s8, K-major, smem)^T, + D when Accumulate.
// Each thread of the warpgroup holds N/2 accumulators: d[4j + {0,1,2,3}] = rows (lane/4, +8) x columns
// 8j + 2(lane%4) + {0,1} of its warp's 16-row slice. Without Accumulate the registers are outputs only, so the
// compiler may reuse them for other values until the wgmma.
template <int N> struct Wgmma;

// Accumulator operand lists: "+r" / "+f" (read and written) or "=r" / "=f" (written).
#define JF_WGMMA_R8(c, i) c(d[i]), c(d[i + 1]), c(d[i + 2]), c(d[i + 3]), c(d[i + 4]), c(d[i + 5]), c(d[i + 6]), c(d[i + 7])
#define JF_WGMMA_R32(c) JF_WGMMA_R8(c, 0), JF_WGMMA_R8(c, 8), JF_WGMMA_R8(c, 16), JF_WGMMA_R8(c, 24)
#define JF_WGMMA_R16(c) JF_WGMMA_R8(c, 0), JF_WGMMA_R8(c, 8)
#define JF_WGMMA_R64(c) JF_WGMMA_R32(c), JF_WGMMA_R8(c, 32), JF_WGMMA_R8(c, 40), JF_WGMMA_R8(c, 48), JF_WGMMA_R8(c, 56)
#define JF_WGMMA_M64N32K32 \
  "{\n.reg .pred p;\n.reg .b64 da, db;\nsetp.ne.b32 p, %18, 0;\nmov.b64 da, {%16, %19};\nmov.b64 db, {%17, %19};\n" \
  "wgmma.mma_async.sync.aligned.m64n32k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, da, db, p;\n}\n"
#define JF_WGMMA_M64N64K32 \
  "{\n.reg .pred p;\n.reg .b64 da, db;\nsetp.ne.b32 p, %34, 0;\nmov.b64 da, {%32, %35};\nmov.b64 db, {%33, %35};\n" \
  "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, da, db, p;\n}\n"
#define JF_WGMMA_M64N128K32 \
  "{\n.reg .pred p;\n.reg .b64 da, db;\nsetp.ne.b32 p, %66, 0;\nmov.b64 da, {%64, %67};\nmov.b64 db, {%65, %67};\n" \
  "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, da, db, p;\n}\n"

template <> struct Wgmma<32> {
  static constexpr int kRegs = 16;
  template <bool Accumulate> static __device__ void mma(u32 (&d)[16], u32 desc_a, u32 desc_b) {
    if constexpr (Accumulate) asm volatile(JF_WGMMA_M64N32K32 : JF_WGMMA_R16("+r") : "r"(desc_a), "r"(desc_b), "n"(1), "n"(kSmemDescHiKMajorSw128));
    else asm volatile(JF_WGMMA_M64N32K32 : JF_WGMMA_R16("=r") : "r"(desc_a), "r"(desc_b), "n"(0), "n"(kSmemDescHiKMajorSw128));
  }
};

template <> struct Wgmma<64> {
  static constexpr int kRegs = 32;
  template <bool Accumulate> static __device__ void mma(u32 (&d)[32], u32 desc_a, u32 desc_b) {
    if constexpr (Accumulate) asm volatile(JF_WGMMA_M64N64K32 : JF_WGMMA_R32("+r") : "r"(desc_a), "r"(desc_b), "n"(1), "n"(kSmemDescHiKMajorSw128));
    else asm volatile(JF_WGMMA_M64N64K32 : JF_WGMMA_R32("=r") : "r"(desc_a), "r"(desc_b), "n"(0), "n"(kSmemDescHiKMajorSw128));
  }
};

template <> struct Wgmma<128> {
  static constexpr int kRegs = 64;
  template <bool Accumulate> static __device__ void mma(u32 (&d)[64], u32 desc_a, u32 desc_b) {
    if constexpr (Accumulate) asm volatile(JF_WGMMA_M64N128K32 : JF_WGMMA_R64("+r") : "r"(desc_a), "r"(desc_b), "n"(1), "n"(kSmemDescHiKMajorSw128));
    else asm volatile(JF_WGMMA_M64N128K32 : JF_WGMMA_R64("=r") : "r"(desc_a), "r"(desc_b), "n"(0), "n"(kSmemDescHiKMajorSw128));
  }
};

// BF16 wgmma with FP32 accumulators: D (64 x N) += A (64 x 16) * B (16 x N). B comes from a shared-memory descriptor,
// K-major (TransB = 0: rows of B^T, as K in Q K^T) or N-major (TransB = 1: rows of B, as V in P V); A from a K-major
// descriptor (ss) or from registers in the mma.sync A-fragment layout of the warp's 16 rows (rs, N = 64, accumulating).
// Accumulators as in Wgmma. Descriptors are whole 64-bit values here (an N-major operand spanning two swizzle atoms
// needs its own LBO).
#define JF_WGMMA_BF16_SS_N64 \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n" \
  "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, %35;\n}\n"
#define JF_WGMMA_BF16_SS_N128 \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
  "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, %67;\n}\n"
#define JF_WGMMA_BF16_RS_N64 \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
  "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"

template <int N> struct WgmmaBf16;

template <> struct WgmmaBf16<64> {
  static constexpr int kRegs = 32;
  template <int TransB, bool Accumulate> static __device__ void ss(float (&d)[32], u64 desc_a, u64 desc_b) {
    if constexpr (Accumulate) asm volatile(JF_WGMMA_BF16_SS_N64 : JF_WGMMA_R32("+f") : "l"(desc_a), "l"(desc_b), "n"(1), "n"(TransB));
    else asm volatile(JF_WGMMA_BF16_SS_N64 : JF_WGMMA_R32("=f") : "l"(desc_a), "l"(desc_b), "n"(0), "n"(TransB));
  }
  template <int TransB> static __device__ void rs(float (&d)[32], const u32 (&a)[4], u64 desc_b) {
    asm volatile(JF_WGMMA_BF16_RS_N64 : JF_WGMMA_R32("+f") : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(1), "n"(TransB));
  }
};

template <> struct WgmmaBf16<128> {
  static constexpr int kRegs = 64;
  template <int TransB, bool Accumulate> static __device__ void ss(float (&d)[64], u64 desc_a, u64 desc_b) {
    if constexpr (Accumulate) asm volatile(JF_WGMMA_BF16_SS_N128 : JF_WGMMA_R64("+f") : "l"(desc_a), "l"(desc_b), "n"(1), "n"(TransB));
    else asm volatile(JF_WGMMA_BF16_SS_N128 : JF_WGMMA_R64("=f") : "l"(desc_a), "l"(desc_b), "n"(0), "n"(TransB));
  }
};

#undef JF_WGMMA_R8
#undef JF_WGMMA_R16
#undef JF_WGMMA_R32
#undef JF_WGMMA_R64
#undef JF_WGMMA_M64N32K32
#undef JF_WGMMA_M64N64K32
#undef JF_WGMMA_M64N128K32
#undef JF_WGMMA_BF16_SS_N64
#undef JF_WGMMA_BF16_SS_N128
#undef JF_WGMMA_BF16_RS_N64

}  // namespace jetforge::sm90
#endif
