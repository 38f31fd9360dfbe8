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
  int bn = 128;    // tile columns
  int stages = 4;  // TMA ring depth
};

struct GemmOptions {
  gen::Rounding rounding = gen::Rounding::nearest;  // INT8 output: nearest (forward) or stochastic (gradients)
  std::uint64_t seed = 0;                           // stochastic rounding
  CUdeviceptr bias = 0;                             // dense output: N FP32 values added to every row, or 0
  bool accumulate = false;                          // FP32 output: C += A B^T
  GemmKernelChoice kernel;
};

// The Hopper kernel spec a GEMM call runs (INT8 output rounds as asked; dense output always nearest).
gen::GemmSm90Spec gemm_sm90_spec(gen::GemmOut out, int group, gen::Rounding rounding, const GemmKernelChoice& choice);

// C = A B^T quantized per 32x32 block (the INT8 data flow).
void gemm(Context& ctx, const BlockTensorRef& a, const BlockTensorRef& b, const BlockTensorRef& c, const GemmOptions& options, CUstream stream);
// C = A B^T as FP32 or BF16.
void gemm(Context& ctx, const BlockTensorRef& a, const BlockTensorRef& b, const DenseRef& c, const GemmOptions& options, CUstream stream);

// Linear layer Y = X W^T, X: tokens x in, W: out x in. The backward GEMMs take the transposed BlockTensors
// that quantize_transpose (weights, once per step) and the producers of X and dY write beside the originals.
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
