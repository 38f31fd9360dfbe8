#include "runtime/bf16_ops.hpp"

#include <string>

#include "generator/families.hpp"
#include "runtime/ops.hpp"
#include "runtime/require.hpp"
#include "templates/bf16_layernorm.cuh"
#include "templates/bf16_ops.cuh"
#include "templates/column_sum.cuh"
#include "templates/residual.cuh"

namespace jetforge {

namespace {

void check_bf16(const char* op, const DenseRef& t, const char* what) {
  require(t.dtype == DType::bf16, [&] { return std::string(op) + ": " + what + " must be bf16, got " + std::string(gen::enum_name(t.dtype)); });
}
void check_same(const char* op, const DenseRef& a, const DenseRef& b, const char* what) {
  require(a.rows == b.rows && a.cols == b.cols, [&] {
    return std::string(op) + ": " + what + " is " + std::to_string(b.rows) + "x" + std::to_string(b.cols) + ", expected " + std::to_string(a.rows) + "x" +
           std::to_string(a.cols);
  });
}
void check_rows32(const char* op, const DenseRef& t) {
  require(t.rows % 32 == 0 && t.cols % 8 == 0,
          [&] { return std::string(op) + ": " + std::to_string(t.rows) + "x" + std::to_string(t.cols) + " needs rows a multiple of 32 and cols of 8"; });
}

// The elementwise BF16 kernel: 8 elements per thread.
void run_op(Context& ctx, gen::Bf16Op op, const DenseRef& shape, Bf16OpParams p, CUstream stream) {
  const gen::Bf16OpSpec spec{op, 256};
  p.rows = shape.rows, p.cols = shape.cols;
  ctx.kernel(spec).launch(unsigned((shape.rows * shape.cols / 8 + 255) / 256), p, stream);
}

const bf16* in(const DenseRef& t) { return reinterpret_cast<const bf16*>(t.data); }
bf16* out(const DenseRef& t) { return reinterpret_cast<bf16*>(t.data); }

}  // namespace

void bf16_from_f32(Context& ctx, const DenseRef& x, const DenseRef& y, CUstream stream) {
  require(x.dtype == DType::f32, [] { return "bf16_from_f32: x must be f32"; });
  check_bf16("bf16_from_f32", y, "y");
  check_same("bf16_from_f32", x, y, "y");
  // Elementwise, 8 per thread: any shape with whole vectors (biases are one row).
  require(x.rows * x.cols % 8 == 0, [&] { return "bf16_from_f32: " + std::to_string(x.rows) + "x" + std::to_string(x.cols) + " must hold a multiple of 8 elements"; });
  Bf16OpParams p{};
  p.out = out(y), p.stream = reinterpret_cast<float*>(x.data);
  run_op(ctx, gen::Bf16Op::from_f32, x, p, stream);
}

void bf16_gelu_forward(Context& ctx, const DenseRef& x, const DenseRef& y, CUstream stream) {
  check_bf16("bf16_gelu_forward", x, "x"), check_bf16("bf16_gelu_forward", y, "y"), check_same("bf16_gelu_forward", x, y, "y");
  check_rows32("bf16_gelu_forward", x);
  Bf16OpParams p{};
  p.a = in(x), p.out = out(y);
  run_op(ctx, gen::Bf16Op::gelu, x, p, stream);
}

void bf16_gelu_backward(Context& ctx, const DenseRef& dy, const DenseRef& x, const DenseRef& dx, CUstream stream) {
  for (const DenseRef* t : {&dy, &x, &dx}) check_bf16("bf16_gelu_backward", *t, "every tensor"), check_same("bf16_gelu_backward", dy, *t, "a tensor");
  check_rows32("bf16_gelu_backward", dy);
  Bf16OpParams p{};
  p.a = in(dy), p.b = in(x), p.out = out(dx);
  run_op(ctx, gen::Bf16Op::gelu_grad, dy, p, stream);
}

void bf16_residual_add(Context& ctx, const DenseRef& stream, const DenseRef& x, const DenseRef& copy, CUstream cu_stream) {
  require(stream.dtype == DType::f32, [] { return "bf16_residual_add: the stream must be f32"; });
  check_bf16("bf16_residual_add", x, "x"), check_bf16("bf16_residual_add", copy, "copy");
  check_same("bf16_residual_add", stream, x, "x"), check_same("bf16_residual_add", stream, copy, "copy");
  check_rows32("bf16_residual_add", stream);
  Bf16OpParams p{};
  p.a = in(x), p.out = out(copy), p.stream = reinterpret_cast<float*>(stream.data);
  run_op(ctx, gen::Bf16Op::residual, stream, p, cu_stream);
}

void bf16_layernorm_forward(Context& ctx, const DenseRef& x, CUdeviceptr gamma, CUdeviceptr beta, const DenseRef& y, CUdeviceptr mean, CUdeviceptr rstd,
                            float eps, CUstream stream) {
  check_bf16("bf16_layernorm_forward", x, "x"), check_bf16("bf16_layernorm_forward", y, "y"), check_same("bf16_layernorm_forward", x, y, "y");
  check_rows32("bf16_layernorm_forward", x);
  require(gamma && beta && mean && rstd && eps > 0.0f, [] { return "bf16_layernorm_forward: gamma, beta, mean and rstd must be given, eps positive"; });
  const gen::DenseRowStatsSpec stats{DType::bf16, 8};
  const DenseRowStatsParams sp{reinterpret_cast<const void*>(x.data), reinterpret_cast<float*>(mean), reinterpret_cast<float*>(rstd), x.rows, x.cols, eps};
  ctx.kernel(stats).launch(unsigned((x.rows + stats.warps - 1) / stats.warps), sp, stream);
  Bf16OpParams p{};
  p.a = in(x), p.out = out(y), p.row_mean = reinterpret_cast<const float*>(mean), p.row_rstd = reinterpret_cast<const float*>(rstd);
  p.gamma = reinterpret_cast<const float*>(gamma), p.beta = reinterpret_cast<const float*>(beta);
  run_op(ctx, gen::Bf16Op::layernorm_apply, x, p, stream);
}

std::size_t bf16_layernorm_backward_workspace_bytes(std::int64_t rows, std::int64_t cols) { return 2 * std::size_t(rows / 32 * cols) * 4; }

void bf16_layernorm_backward(Context& ctx, const DenseRef& dy, const DenseRef& x, CUdeviceptr mean, CUdeviceptr rstd, CUdeviceptr gamma, const DenseRef& dx,
                             CUdeviceptr dgamma, CUdeviceptr dbeta, CUdeviceptr workspace, CUstream stream) {
  for (const DenseRef* t : {&dy, &x, &dx})
    check_bf16("bf16_layernorm_backward", *t, "every tensor"), check_same("bf16_layernorm_backward", dy, *t, "a tensor");
  check_rows32("bf16_layernorm_backward", dy);
  require(mean && rstd && gamma && dgamma && dbeta && workspace,
          [] { return "bf16_layernorm_backward: mean, rstd, gamma, dgamma, dbeta and workspace must all be given"; });
  const CUdeviceptr dbeta_partial = workspace + CUdeviceptr(dy.rows / 32 * dy.cols) * 4;
  const Bf16LayerNormGradParams p{in(dy), in(x), reinterpret_cast<const float*>(mean), reinterpret_cast<const float*>(rstd),
                                  reinterpret_cast<const float*>(gamma), out(dx), reinterpret_cast<float*>(workspace), reinterpret_cast<float*>(dbeta_partial),
                                  dy.rows, dy.cols};
  const gen::Bf16LayerNormGradSpec rows{gen::Bf16LayerNormGradKernel::rows, 256}, columns{gen::Bf16LayerNormGradKernel::columns, 128};
  ctx.kernel(rows).launch(unsigned((dy.rows + 7) / 8), p, stream);
  ctx.kernel(columns).launch_2d(unsigned(dy.rows / 32), unsigned((dy.cols + 127) / 128), p, stream);
  sum_block_row_partials(ctx, workspace, dgamma, dy.rows / 32, dy.cols, false, stream, dbeta);  // dbeta_partial follows the dgamma ones
}

void bf16_column_sum(Context& ctx, const DenseRef& x, CUdeviceptr out_sums, bool accumulate, CUdeviceptr workspace, CUstream stream) {
  check_bf16("bf16_column_sum", x, "x");
  check_rows32("bf16_column_sum", x);
  require(out_sums != 0 && workspace != 0, [] { return "bf16_column_sum: out and workspace must be given"; });
  const ColumnSumParams p{reinterpret_cast<const void*>(x.data), nullptr, reinterpret_cast<float*>(workspace), nullptr, x.rows, x.cols, 0, nullptr, 0, 0};
  ctx.kernel(gen::ColumnSumSpec{gen::ColumnSumKernel::partials_bf16, 128}).launch_2d(unsigned(x.rows / 32), unsigned((x.cols + 127) / 128), p, stream);
  sum_block_row_partials(ctx, workspace, out_sums, x.rows / 32, x.cols, accumulate, stream);
}

}  // namespace jetforge
