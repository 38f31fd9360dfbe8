// The nonlinear operators on BF16 tensors (FP32 arithmetic), for the BF16 training mode: the same model and runtime
// as the INT8 data flow, differing only in precision. Kernels: templates/bf16_ops.cuh (also the INT8 operators'
// benchmark twins), templates/bf16_layernorm.cuh, templates/column_sum.cuh.
#pragma once
#include <cuda.h>

#include <cstdint>

#include "runtime/kernels.hpp"
#include "runtime/tensor.hpp"

namespace jetforge {

// y (BF16) = x (FP32), elementwise; rows x cols with cols a multiple of 8.
void bf16_from_f32(Context& ctx, const DenseRef& x, const DenseRef& y, CUstream stream);
// GELU (tanh form): y = gelu(x); dx = dy * gelu'(x).
void bf16_gelu_forward(Context& ctx, const DenseRef& x, const DenseRef& y, CUstream stream);
void bf16_gelu_backward(Context& ctx, const DenseRef& dy, const DenseRef& x, const DenseRef& dx, CUstream stream);
// Residual stream (FP32) += x (BF16), and `copy` (BF16) receives the updated stream; also the gradient stream's add.
void bf16_residual_add(Context& ctx, const DenseRef& stream, const DenseRef& x, const DenseRef& copy, CUstream cu_stream);
// LayerNorm: y = (x - mean) * rstd * gamma + beta, mean/rstd (FP32, rows) saved; backward into dx (BF16) and
// dgamma, dbeta (FP32, written). workspace: bf16_layernorm_backward_workspace_bytes.
void bf16_layernorm_forward(Context& ctx, const DenseRef& x, CUdeviceptr gamma, CUdeviceptr beta, const DenseRef& y, CUdeviceptr mean, CUdeviceptr rstd,
                            float eps, CUstream stream);
std::size_t bf16_layernorm_backward_workspace_bytes(std::int64_t rows, std::int64_t cols);
void bf16_layernorm_backward(Context& ctx, const DenseRef& dy, const DenseRef& x, CUdeviceptr mean, CUdeviceptr rstd, CUdeviceptr gamma, const DenseRef& dx,
                             CUdeviceptr dgamma, CUdeviceptr dbeta, CUdeviceptr workspace, CUstream stream);
// out (cols FP32) = or += the column sums of x (BF16), in a fixed order; workspace: column_sum_workspace_bytes.
void bf16_column_sum(Context& ctx, const DenseRef& x, CUdeviceptr out, bool accumulate, CUdeviceptr workspace, CUstream stream);

}  // namespace jetforge
