// Per-block INT8 GEMMs (C = A B^T, both operands K-major BlockTensors) and the linear layer built on them.
#pragma once
#include <cuda.h>

#include <cstdint>

#include "generator/families.hpp"
#include "runtime/kernels.hpp"
#include "runtime/tensor.hpp"

namespace jetforge {

// The kernel-shape choices a tuner varies; the defaults are the shipped choice for every shape.
struct GemmKernelChoice {
  bool portable = false;  // the mma.sync path even on Hopper (always taken below sm_90)
  int bn = 128;           // Hopper path: tile columns
  int stages = 4;         // Hopper path: TMA ring depth (the portable path's ring is 3 deep)
  gen::GemmFold fold = gen::GemmFold::convert;  // INT32 -> FP32 in the per-K-group fold
  int cluster = 1;  // Hopper path: 2 = CTA pairs along M share B through TMA multicast
  int overlap = -1;  // Hopper path: 1 = fold one column half of a consumer's tile under the other half's wgmma;
                     // 2 = fold a K-group under the next one's wgmma (two scratches; K-groups 32 and 64 only);
                     // -1 = by K-group (2 at 32, where it is fastest, 0 at 64 and 128)
  int persistent = 1;  // Hopper path: 1 = a CTA per SM walks the tiles (the next tile's loads under the epilogue)
  gen::GemmEpilogue epilogue = gen::GemmEpilogue::consumers;  // Hopper path: staged = stored by the producer warpgroup's
                                                              // other warps under the next tile's K loop
  int split_k = 0;  // Hopper path, FP32 output: K cut into this many ranges added in turn; 0 = the shape's default
                    // (gemm_default_split_k) where the rest of the choice allows it (persistent, no cluster, consumers)
};

struct GemmOptions {
  gen::Rounding rounding = gen::Rounding::nearest;  // INT8 output: nearest (forward) or stochastic (gradients)
  std::uint64_t seed = 0;                           // stochastic rounding
  CUdeviceptr bias = 0;                             // N FP32 values added to every row (INT8 output: before quantizing), or 0
  bool accumulate = false;                          // FP32 output: C += A B^T
  GemmKernelChoice kernel;
  bool use_tuned = true;  // take the kernel choice `jetforge tune` found for this problem, if the cache has one
};

// The key tuning winners are stored under: output, rounding, K-group and shape.
std::string gemm_problem_key(gen::GemmOut out, gen::Rounding rounding, int group, std::int64_t m, std::int64_t n, std::int64_t k);
// The kernel choice a winning spec key stands for (gemm_sm90 or gemm_sm80); throws gen::SpecError otherwise.
GemmKernelChoice choice_from_spec(const std::string& spec_key);

// Split-K by default for FP32 output (the weight gradients: few output tiles, a long K): the count in {1, 2, 4, 8}
// that a model of the time takes lowest (waves of 128 x 128 tiles over 132 SMs times K slices per split, plus four
// slices per split for the epilogues taken in turn; another count must win by 10%). Shape-only, so that an offline cache
// build without a GPU names the same kernels; the tuner decides per GPU.
int gemm_default_split_k(gen::GemmOut out, std::int64_t m, std::int64_t n, std::int64_t k);

// The canonical key of the kernel a GEMM call of M x N x K runs on `target`: the Hopper path on sm_90a unless the
// choice asks for the portable one (INT8 output rounds as asked; dense output always nearest).
std::string gemm_kernel_key(gen::GemmOut out, int group, gen::Rounding rounding, std::int64_t m, std::int64_t n, std::int64_t k,
                            const GemmKernelChoice& choice, const gen::TargetLimits& target);

// C = A B^T quantized per 32x32 block (the INT8 data flow).
void gemm(Context& ctx, const BlockTensorRef& a, const BlockTensorRef& b, const BlockTensorRef& c, const GemmOptions& options, CUstream stream);
// C = A B^T as FP32 or BF16.
void gemm(Context& ctx, const BlockTensorRef& a, const BlockTensorRef& b, const DenseRef& c, const GemmOptions& options, CUstream stream);

// Linear layer Y = X W^T, X: tokens x in, W: out x in. The backward GEMMs take transposed BlockTensors: those that
// the producers of X and dY write beside the originals, and W^T (quantize_transpose of the master, or transpose of
// the quantized W: the same bits).
template <class Out> void linear_forward(Context& ctx, const BlockTensorRef& x, const BlockTensorRef& w, const Out& y, const GemmOptions& o, CUstream s) {
  gemm(ctx, x, w, y, o, s);
}
// dX = dY W = dY (W^T)^T: INT8 out with stochastic rounding.
void linear_backward_data(Context& ctx, const BlockTensorRef& dy, const BlockTensorRef& w_t, const BlockTensorRef& dx, std::uint64_t seed,
                          CUstream stream);
// dW = dY^T X = (dY^T) (X^T)^T: FP32 out, optionally accumulated into an existing gradient.
void linear_backward_weight(Context& ctx, const BlockTensorRef& dy_t, const BlockTensorRef& x_t, const DenseRef& dw, bool accumulate,
                            CUstream stream);

}  // namespace jetforge
