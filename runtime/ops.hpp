// Operator API over BlockTensors. Every call checks shapes and dtypes first and fails with a message that
// says what was wrong; kernels are looked up (and built on first use) in the context.
#pragma once
#include <cuda.h>

#include <cstdint>
#include <optional>

#include "generator/families.hpp"
#include "runtime/kernels.hpp"
#include "runtime/tensor.hpp"

namespace jetforge {

struct QuantizeOptions {
  gen::Rounding rounding = gen::Rounding::nearest;
  std::uint64_t seed = 0;  // stochastic rounding: same seed, same codes
  // Kernel override for tuners and benchmarks: tile, threads and ring depth are taken from it; its dtype,
  // rounding and transposition must match the call.
  std::optional<gen::QuantizeSpec> kernel;
  bool use_tuned = true;  // without an override: the kernel `jetforge tune` found for this problem, if the cache has one
};

// The tuning-problem key of a quantize (transpose = false) or quantize_transpose call: what its winner is stored by.
std::string quantize_problem_key(gen::DType in, gen::Rounding rounding, bool transpose, std::int64_t rows, std::int64_t cols);

// x (FP32/BF16) -> out (INT8 + scales).
void quantize(Context& ctx, const DenseRef& x, const BlockTensorRef& out, const QuantizeOptions& options, CUstream stream);

// x -> out and out_t (the BlockTensor of x^T), in one pass over x.
void quantize_transpose(Context& ctx, const DenseRef& x, const BlockTensorRef& out, const BlockTensorRef& out_t,
                        const QuantizeOptions& options, CUstream stream);

// q -> y (FP32/BF16). `spec` overrides the kernel (tuned winner or fit) with one of the same output type and block.
void dequantize(Context& ctx, const BlockTensorRef& q, const DenseRef& y, CUstream stream, const std::optional<gen::DequantizeSpec>& spec = std::nullopt);

// q -> q_t, exactly (no re-quantization).
void transpose(Context& ctx, const BlockTensorRef& q, const BlockTensorRef& q_t, CUstream stream);

// Elementwise INT8 -> INT8 operators (32 x 32 blocks); outputs get fresh per-block scales.
enum class GeluForm { tanh, erf };
// y = gelu(x), nearest rounding.
// `spec` overrides the kernel (tuned winner or fit) with one of the same op and rounding.
void gelu_forward(Context& ctx, const BlockTensorRef& x, const BlockTensorRef& y, GeluForm form, CUstream stream,
                  const std::optional<gen::ElementwiseSpec>& spec = std::nullopt);
// dx = dy * gelu'(x), stochastic rounding seeded by `seed`.
void gelu_backward(Context& ctx, const BlockTensorRef& dy, const BlockTensorRef& x, const BlockTensorRef& dx, GeluForm form, std::uint64_t seed,
                   CUstream stream, const std::optional<gen::ElementwiseSpec>& spec = std::nullopt);
// y = x * keep / (1 - p), keep drawn per element from (mask_seed, index); the backward with the same p and
// mask_seed regenerates the mask instead of storing it. Exact: kept codes stay, dropped ones become 0, and every
// block scale is divided by 1 - p (no rounding, so no rounding seed).
void dropout_forward(Context& ctx, const BlockTensorRef& x, const BlockTensorRef& y, float p, std::uint64_t mask_seed, CUstream stream);
void dropout_backward(Context& ctx, const BlockTensorRef& dy, const BlockTensorRef& dx, float p, std::uint64_t mask_seed, CUstream stream);

// LayerNorm over the columns of x: y = (x - mean) * rstd * gamma + beta, nearest rounding; mean and rstd (FP32,
// one per row) are written for the backward pass. gamma and beta: FP32, cols values. `spec`: the kernel variant to
// launch (tests, benchmarks), else the fit for the shape; both passes take it.
void layernorm_forward(Context& ctx, const BlockTensorRef& x, CUdeviceptr gamma, CUdeviceptr beta, const BlockTensorRef& y, CUdeviceptr mean,
                       CUdeviceptr rstd, float eps, CUstream stream, const std::optional<gen::LayerNormSpec>& spec = std::nullopt);

// LayerNorm forward with mean and rstd given (residual_add's LayerNormStatsOut): y = (x - mean) * rstd * gamma + beta,
// INT8 out (nearest); one streaming pass, nothing is written to mean or rstd. `spec` overrides the kernel (tuned winner
// or fit) with another tile.
void layernorm_apply(Context& ctx, const BlockTensorRef& x, CUdeviceptr gamma, CUdeviceptr beta, CUdeviceptr mean, CUdeviceptr rstd, const BlockTensorRef& y,
                     CUstream stream, const std::optional<gen::LayerNormApplySpec>& spec = std::nullopt);

// The next LayerNorm's statistics of the updated residual stream, taken in the residual add's pass: mean and rstd
// (FP32 per row) from row sums per 32-column block kept in `workspace`, residual_stats_workspace_bytes(rows, cols) bytes.
struct LayerNormStatsOut {
  CUdeviceptr mean = 0, rstd = 0, workspace = 0;
  float eps = 1e-5f;
};
std::size_t residual_stats_workspace_bytes(std::int64_t rows, std::int64_t cols);

// Residual stream (FP32 or BF16, rows x cols) += dequantize(x), in place; `copy` receives the INT8 copy of the
// updated stream (nearest), and `stats` (if not null) its LayerNorm statistics.
void residual_add(Context& ctx, const DenseRef& stream, const BlockTensorRef& x, const BlockTensorRef& copy, const LayerNormStatsOut* stats,
                  CUstream cu_stream);
// Gradient stream += dequantize(dx), in place; `copy` receives its INT8 copy with stochastic rounding (seed).
void residual_add_backward(Context& ctx, const DenseRef& grad_stream, const BlockTensorRef& dx, const BlockTensorRef& copy, std::uint64_t seed,
                           CUstream cu_stream);

// Bytes of scratch layernorm_backward needs for a rows x cols input.
std::size_t layernorm_backward_workspace_bytes(std::int64_t rows, std::int64_t cols);

// LayerNorm backward: dx (INT8, stochastic rounding with `seed`) and dgamma, dbeta (FP32, cols values, summed in a
// fixed order: the same bits on every run) from dy, x and the forward's mean and rstd.
void layernorm_backward(Context& ctx, const BlockTensorRef& dy, const BlockTensorRef& x, CUdeviceptr mean, CUdeviceptr rstd, CUdeviceptr gamma,
                        const BlockTensorRef& dx, CUdeviceptr dgamma, CUdeviceptr dbeta, std::uint64_t seed, CUdeviceptr workspace, CUstream stream,
                        const std::optional<gen::LayerNormSpec>& spec = std::nullopt);

// out (cols FP32) = or += the column sums of x (a linear layer's bias gradient from dY), summed in a fixed order.
// workspace: column_sum_workspace_bytes(rows, cols) bytes (used where the GPU has no clusters). The kernel:
// gen::ColumnSumSpec::codes(target) unless `spec` (kernel=sums or kernel=partials) says otherwise.
std::size_t column_sum_workspace_bytes(std::int64_t rows, std::int64_t cols);
void column_sum(Context& ctx, const BlockTensorRef& x, CUdeviceptr out, bool accumulate, CUdeviceptr workspace, CUstream stream,
                const std::optional<gen::ColumnSumSpec>& spec = std::nullopt);
// out (cols FP32) = or += the sum over the rows of `partials` (partial_rows x cols FP32), in a fixed order: the last
// step of the deterministic column reductions that take two launches (LayerNorm's dgamma and dbeta, with a row of
// partials per 32-row strip; bias gradients on BF16, or on INT8 where the GPU has no clusters). With `out_second`, a
// second such matrix right after the first is summed into it in the same launch.
void sum_block_row_partials(Context& ctx, CUdeviceptr partials, CUdeviceptr out, std::int64_t partial_rows, std::int64_t cols, bool accumulate,
                            CUstream stream, CUdeviceptr out_second = 0);

// *counter (a device u64) += the number of 4-byte words in which the `bytes` at a and b differ (0: identical bits).
// a and b 16-byte aligned.
void count_differences(Context& ctx, CUdeviceptr a, CUdeviceptr b, std::size_t bytes, CUdeviceptr counter, CUstream stream);

}  // namespace jetforge
