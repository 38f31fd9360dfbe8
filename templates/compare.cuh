// Bit-exact comparison of two device buffers: the number of 4-byte words (bytes, in a tail shorter than 16 bytes)
// that differ, added to a 64-bit counter. The tuner checks every candidate's output against the default kernel's
// this way instead of downloading both. CPU reference: memcmp.
#pragma once
#include "jetforge/common.cuh"

namespace jetforge {

struct CompareParams {
  const u8* a;
  const u8* b;  // a and b 16-byte aligned
  u64 bytes;
  unsigned long long* differing;  // += the count
};

}  // namespace jetforge

#if JF_DEVICE_CODE
namespace jetforge {

// Grid-stride over 16-byte vectors, then the tail bytes; one atomic per warp that found a difference.
template <int Threads>
__global__ void __launch_bounds__(Threads) compare_kernel(const CompareParams p) {
  const u64 vectors = p.bytes / 16, stride = u64(gridDim.x) * Threads, first = u64(blockIdx.x) * Threads + threadIdx.x;
  unsigned long long n = 0;
  for (u64 i = first; i < vectors; i += stride) {
    const uint4 x = reinterpret_cast<const uint4*>(p.a)[i], y = reinterpret_cast<const uint4*>(p.b)[i];
    n += (x.x != y.x) + (x.y != y.y) + (x.z != y.z) + (x.w != y.w);
  }
  for (u64 i = vectors * 16 + first; i < p.bytes; i += stride) n += p.a[i] != p.b[i];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) n += __shfl_xor_sync(0xffffffffu, n, o);
  if (threadIdx.x % 32 == 0 && n) atomicAdd(p.differing, n);
}

}  // namespace jetforge
#endif
