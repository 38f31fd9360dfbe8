#include "runtime/ops.hpp"

#include <algorithm>
#include <stdexcept>

#include "generator/families.hpp"
#include "runtime/require.hpp"
#include "templates/column_sum.cuh"
#include "templates/compare.cuh"
#include "templates/dequantize.cuh"
#include "templates/elementwise.cuh"
#include "templates/layernorm.cuh"
#include "templates/quantize.cuh"
#include "templates/residual.cuh"
#include "templates/transpose.cuh"

namespace jetforge {

namespace {

std::string shape(std::int64_t rows, std::int64_t cols) { return std::to_string(rows) + "x" + std::to_string(cols); }

// The block-wise kernels handle the method's square blocks only.
void check_square(const char* op, const BlockTensorRef& q) {
  require(q.group == q.block, [&] {
    return std::string(op) + ": BlockTensor has " + std::to_string(q.block) + "x" + std::to_string(q.group) +
           " blocks; this operator supports square blocks only";
  });
}

void check_same_shape(const char* op, const DenseRef& x, const BlockTensorRef& q) {
  require(x.rows == q.rows && x.cols == q.cols,
          [&] { return std::string(op) + ": dense tensor is " + shape(x.rows, x.cols) + " but the BlockTensor is " + shape(q.rows, q.cols); });
}

void check_transposed(const char* op, const BlockTensorRef& q, const BlockTensorRef& q_t) {
  require(q_t.rows == q.cols && q_t.cols == q.rows && q_t.block == q.block && q_t.group == q.group, [&] {
    return std::string(op) + ": transposed output must be " + shape(q.cols, q.rows) + " with block " + std::to_string(q.block) + ", got " +
           shape(q_t.rows, q_t.cols) + " with block " + std::to_string(q_t.block);
  });
}

void check_float_dtype(const char* op, DType t) {
  require(t == DType::f32 || t == DType::bf16,
          [&] { return std::string(op) + ": dense tensor must be f32 or bf16, got " + std::string(gen::enum_name(t)); });
}

// The block-wise kernels launch one CTA per tile.
unsigned tile_grid(const gen::BlockTile& tile, const BlockTensorRef& q) {
  return unsigned(q.scale_rows() / tile.rows * (q.scale_cols() / tile.cols));
}

// The same tiles as a 2-D grid, blockIdx.y the tile row (kernels that take it so divide nothing); a grid has at most
// 65535 rows of CTAs.
template <class Params>
void launch_tile_rows(const char* op, const Kernel& kernel, const gen::BlockTile& tile, const BlockTensorRef& q, const Params& params, CUstream stream) {
  const std::int64_t tile_rows = q.scale_rows() / tile.rows;
  require(tile_rows <= 65535, [&] {
    return std::string(op) + ": " + std::to_string(q.rows) + " rows are " + std::to_string(tile_rows) + " rows of tiles of " + std::to_string(tile.rows) +
           " blocks, more than a grid's 65535; run it on at most " + std::to_string(65535L * tile.rows * q.block) + " rows at a time";
  });
  kernel.launch_2d(unsigned(q.scale_cols() / tile.cols), unsigned(tile_rows), params, stream);
}

// The persistent kernels (pipelined_tiles: quantize) launch as many CTAs as fit on the GPU at once, never more than there
// are tiles: a CTA that waits for a free SM would run its whole share of tiles after the others. What fits is
// bounded by threads, registers (allocated per warp in units of 256) and shared memory (ring, static, and the
// 1 KiB the hardware reserves per CTA, out of 228 KiB per SM).
unsigned persistent_grid(Context& ctx, const Kernel& kernel, long ring_bytes, const BlockTensorRef& q, const gen::BlockTile& tile) {
  const long warps = kernel.threads() / 32, warp_registers = (kernel.registers() * 32 + 255) / 256 * 256;
  const long by_threads = 2048 / kernel.threads(), by_registers = 65536 / (warps * warp_registers);
  const long by_smem = 228L * 1024 / (ring_bytes + kernel.static_smem() + 1024);
  const long per_sm = std::max(1L, std::min({by_threads, by_registers, by_smem}));
  return std::min(tile_grid(tile, q), unsigned(ctx.device().info().sm_count * per_sm));
}

void run_quantize(Context& ctx, const DenseRef& x, const BlockTensorRef& out, const BlockTensorRef* out_t, const QuantizeOptions& o,
                  CUstream stream) {
  const char* op = out_t ? "quantize_transpose" : "quantize";
  check_float_dtype(op, x.dtype);
  check_block_shape(op, out.rows, out.cols, out.block);
  check_square(op, out);
  check_same_shape(op, x, out);
  if (out_t) check_transposed(op, out, *out_t);
  const bool transpose = out_t != nullptr;
  std::optional<gen::QuantizeSpec> tuned;
  if (!o.kernel && o.use_tuned && out.block == 32) {
    const gen::Signature signature{gen::signature_tag("quantize"), std::int64_t(x.dtype), std::int64_t(o.rounding), transpose, out.rows, out.cols};
    tuned = ctx.tuned<gen::QuantizeSpec>(
        signature, [&] { return quantize_problem_key(x.dtype, o.rounding, transpose, out.rows, out.cols); },
        [](const std::string& key) { return gen::parse_key<gen::QuantizeSpec>(key); });
  }
  const auto spec = o.kernel ? *o.kernel : tuned ? *tuned : gen::QuantizeSpec::fit(x.dtype, out.rows, out.cols, out.block, o.rounding, transpose);
  require(spec.in == x.dtype && spec.round == o.rounding && spec.transpose == (out_t != nullptr) && spec.block == out.block, [&] {
    return std::string(op) + ": kernel override " + gen::canonical_key(spec) + " does not match the call (dtype, rounding, transposition, block)";
  });
  require(out.rows % (spec.tile.rows * spec.block) == 0 && out.cols % (spec.tile.cols * spec.block) == 0,
          [&] { return std::string(op) + ": kernel override tile does not divide " + shape(out.rows, out.cols); });
  const QuantizeParams params{reinterpret_cast<const void*>(x.data),
                              reinterpret_cast<i8*>(out.codes),
                              reinterpret_cast<float*>(out.scales),
                              out_t ? reinterpret_cast<i8*>(out_t->codes) : nullptr,
                              out_t ? reinterpret_cast<float*>(out_t->scales) : nullptr,
                              out.rows,
                              out.cols,
                              seed_key(o.seed)};
  const Kernel& kernel = ctx.kernel(spec);
  kernel.launch(persistent_grid(ctx, kernel, spec.smem_bytes(), out, spec.tile), params, stream, unsigned(spec.smem_bytes()));
}

}  // namespace

std::string quantize_problem_key(gen::DType in, gen::Rounding rounding, bool transpose, std::int64_t rows, std::int64_t cols) {
  return std::string(transpose ? "quantize_transpose" : "quantize") + ":in=" + std::string(gen::enum_name(in)) + ",round=" +
         std::string(gen::enum_name(rounding)) + ",rows=" + std::to_string(rows) + ",cols=" + std::to_string(cols);
}

void quantize(Context& ctx, const DenseRef& x, const BlockTensorRef& out, const QuantizeOptions& o, CUstream stream) {
  run_quantize(ctx, x, out, nullptr, o, stream);
}

void quantize_transpose(Context& ctx, const DenseRef& x, const BlockTensorRef& out, const BlockTensorRef& out_t, const QuantizeOptions& o,
                        CUstream stream) {
  run_quantize(ctx, x, out, &out_t, o, stream);
}

namespace {

// A block-tile family's block size: its `block` field, or 32 for the families that only have 32 x 32 blocks.
template <class Spec> int block_of(const Spec& spec) {
  if constexpr (requires { spec.block; }) return spec.block;
  return 32;
}

// The spec a block-tile family's operator launches: `override_spec` if the caller gives one (it must be the same
// problem: every field but the tile), else the tuning winner for its problem if the cache has one, else its own fit.
// The tile must divide the matrix (the tuner only offers such tiles).
template <class Spec>
Spec tuned_or_fit(Context& ctx, const char* op, const Spec& fitted, std::int64_t rows, std::int64_t cols,
                  const std::optional<Spec>& override_spec = std::nullopt) {
  if (override_spec)
    require(gen::block_tile_problem_key(*override_spec, rows, cols) == gen::block_tile_problem_key(fitted, rows, cols), [&] {
      return std::string(op) + ": kernel override " + gen::canonical_key(*override_spec) + " is not this call's problem " +
             gen::block_tile_problem_key(fitted, rows, cols);
    });
  const auto chosen = override_spec ? override_spec
                                    : ctx.tuned<Spec>(gen::block_tile_problem_signature(fitted, rows, cols),
                                                      [&] { return gen::block_tile_problem_key(fitted, rows, cols); },
                                                      [](const std::string& key) { return gen::parse_key<Spec>(key); });
  if (!chosen) return fitted;
  require(rows % (chosen->tile.rows * block_of(*chosen)) == 0 && cols % (chosen->tile.cols * block_of(*chosen)) == 0, [&] {
    return std::string(op) + ": the " + (override_spec ? "override " : "tuned kernel ") + gen::canonical_key(*chosen) + " does not tile " +
           shape(rows, cols) + (override_spec ? "" : "; re-run `jetforge tune` or `jetforge cache prune`");
  });
  return *chosen;
}

}  // namespace

void dequantize(Context& ctx, const BlockTensorRef& q, const DenseRef& y, CUstream stream, const std::optional<gen::DequantizeSpec>& override_spec) {
  check_float_dtype("dequantize", y.dtype);
  check_block_shape("dequantize", q.rows, q.cols, q.block);
  check_square("dequantize", q);
  check_same_shape("dequantize", y, q);
  const auto spec = tuned_or_fit(ctx, "dequantize", gen::DequantizeSpec::fit(y.dtype, q.rows, q.cols, q.block), q.rows, q.cols, override_spec);
  const DequantizeParams params{reinterpret_cast<const i8*>(q.codes), reinterpret_cast<const float*>(q.scales), reinterpret_cast<void*>(y.data),
                                q.rows, q.cols};
  launch_tile_rows("dequantize", ctx.kernel(spec), spec.tile, q, params, stream);
}

void transpose(Context& ctx, const BlockTensorRef& q, const BlockTensorRef& q_t, CUstream stream) {
  check_block_shape("transpose", q.rows, q.cols, q.block);
  check_square("transpose", q);
  check_transposed("transpose", q, q_t);
  const auto spec = tuned_or_fit(ctx, "transpose", gen::TransposeSpec::fit(q.rows, q.cols, q.block), q.rows, q.cols);
  const TransposeParams params{reinterpret_cast<const i8*>(q.codes), reinterpret_cast<const float*>(q.scales), reinterpret_cast<i8*>(q_t.codes),
                               reinterpret_cast<float*>(q_t.scales), q.rows, q.cols};
  ctx.kernel(spec).launch(tile_grid(spec.tile, q), params, stream);
}

namespace {

// The operand the elementwise, LayerNorm and residual kernels take: 32 x 32 square blocks, whole blocks.
void check_block32(const char* op, const BlockTensorRef& t) {
  require(t.block == 32, [&] { return std::string(op) + ": only 32 x 32 blocks are supported, got " + std::to_string(t.block); });
  check_block_shape(op, t.rows, t.cols, t.block);
  check_square(op, t);
}

void check_same(const char* op, const char* what, const BlockTensorRef& a, const BlockTensorRef& b) {
  require(a.rows == b.rows && a.cols == b.cols,
          [&] { return std::string(op) + ": " + what + " is " + shape(b.rows, b.cols) + ", expected " + shape(a.rows, a.cols); });
  check_square(op, b);
}

void run_elementwise(Context& ctx, const char* op, gen::Elementwise kind, gen::Rounding rounding, const BlockTensorRef& a, const BlockTensorRef* b,
                     const BlockTensorRef& out, float p, std::uint64_t mask_seed, std::uint64_t round_seed, CUstream stream,
                     const std::optional<gen::ElementwiseSpec>& override_spec = std::nullopt) {
  check_block32(op, a);
  if (b) check_same(op, "the second input", a, *b);
  check_same(op, "the output", a, out);
  const auto spec = tuned_or_fit(ctx, op, gen::ElementwiseSpec::fit(kind, rounding, a.rows, a.cols), a.rows, a.cols, override_spec);
  const ElementwiseParams params{reinterpret_cast<const i8*>(a.codes),
                                 reinterpret_cast<const float*>(a.scales),
                                 b ? reinterpret_cast<const i8*>(b->codes) : nullptr,
                                 b ? reinterpret_cast<const float*>(b->scales) : nullptr,
                                 reinterpret_cast<i8*>(out.codes),
                                 reinterpret_cast<float*>(out.scales),
                                 a.rows,
                                 a.cols,
                                 p,
                                 seed_key(mask_seed),
                                 seed_key(round_seed)};
  launch_tile_rows(op, ctx.kernel(spec), spec.tile, a, params, stream);
}

void check_dropout_p(const char* op, float p) {
  require(p >= 0.0f && p < 1.0f, [&] { return std::string(op) + ": p=" + std::to_string(p) + " must be in [0, 1)"; });
}

}  // namespace

void gelu_forward(Context& ctx, const BlockTensorRef& x, const BlockTensorRef& y, GeluForm form, CUstream stream,
                  const std::optional<gen::ElementwiseSpec>& spec) {
  run_elementwise(ctx, "gelu_forward", form == GeluForm::tanh ? gen::Elementwise::gelu_tanh : gen::Elementwise::gelu_erf, gen::Rounding::nearest, x,
                  nullptr, y, 0.0f, 0, 0, stream, spec);
}

void gelu_backward(Context& ctx, const BlockTensorRef& dy, const BlockTensorRef& x, const BlockTensorRef& dx, GeluForm form, std::uint64_t seed,
                   CUstream stream, const std::optional<gen::ElementwiseSpec>& spec) {
  run_elementwise(ctx, "gelu_backward", form == GeluForm::tanh ? gen::Elementwise::gelu_tanh_grad : gen::Elementwise::gelu_erf_grad,
                  gen::Rounding::stochastic, dy, &x, dx, 0.0f, 0, seed, stream, spec);
}

void dropout_forward(Context& ctx, const BlockTensorRef& x, const BlockTensorRef& y, float p, std::uint64_t mask_seed, CUstream stream) {
  check_dropout_p("dropout_forward", p);
  run_elementwise(ctx, "dropout_forward", gen::Elementwise::dropout, gen::Rounding::nearest, x, nullptr, y, p, mask_seed, 0, stream);
}

void dropout_backward(Context& ctx, const BlockTensorRef& dy, const BlockTensorRef& dx, float p, std::uint64_t mask_seed, CUstream stream) {
  check_dropout_p("dropout_backward", p);
  run_elementwise(ctx, "dropout_backward", gen::Elementwise::dropout, gen::Rounding::nearest, dy, nullptr, dx, p, mask_seed, 0, stream);
}

namespace {

// What both LayerNorm passes pass alike: x, gamma, the statistics (written forward, read backward), the output.
LayerNormParams layernorm_params(const BlockTensorRef& x, CUdeviceptr gamma, CUdeviceptr mean, CUdeviceptr rstd, const BlockTensorRef& out) {
  LayerNormParams params{};
  params.x_codes = reinterpret_cast<const i8*>(x.codes), params.x_scales = reinterpret_cast<const float*>(x.scales);
  params.gamma = reinterpret_cast<const float*>(gamma);
  params.mean = reinterpret_cast<float*>(mean), params.rstd = reinterpret_cast<float*>(rstd);
  params.out_codes = reinterpret_cast<i8*>(out.codes), params.out_scales = reinterpret_cast<float*>(out.scales);
  params.rows = x.rows, params.cols = x.cols;
  return params;
}

// One launch of the LayerNorm family: a CTA per slice of each 32-row strip, the slices of a strip in one cluster.
void run_layernorm(Context& ctx, const char* op, gen::LayerNormPass pass, const LayerNormParams& params, const std::optional<gen::LayerNormSpec>& chosen,
                   CUstream stream) {
  const auto spec = chosen ? *chosen : gen::LayerNormSpec::fit(pass, params.cols, ctx.limits());
  require(spec.pass == pass, [&] { return std::string(op) + ": " + gen::canonical_key(spec) + " is the other pass's kernel"; });
  require(spec.slice > 0 ? std::int64_t(spec.slice) * spec.cluster == params.cols : params.cols % spec.sub == 0, [&] {
    return std::string(op) + ": " + gen::canonical_key(spec) + " does not cover rows of " + std::to_string(params.cols) +
           " columns (slice x cluster must equal cols; streamed rows need cols a multiple of sub)";
  });
  ctx.kernel(spec).launch(unsigned(params.rows / 32 * spec.cluster), params, stream, unsigned(spec.smem_bytes()), unsigned(spec.cluster));
}

}  // namespace

void layernorm_forward(Context& ctx, const BlockTensorRef& x, CUdeviceptr gamma, CUdeviceptr beta, const BlockTensorRef& y, CUdeviceptr mean,
                       CUdeviceptr rstd, float eps, CUstream stream, const std::optional<gen::LayerNormSpec>& spec) {
  require(gamma && beta && mean && rstd, [&] { return "layernorm_forward: gamma, beta, mean and rstd must all be given"; });
  require(eps > 0.0f, [&] { return "layernorm_forward: eps must be positive"; });
  check_block32("layernorm_forward", x);
  check_same("layernorm_forward", "the output", x, y);
  LayerNormParams params = layernorm_params(x, gamma, mean, rstd, y);
  params.beta = reinterpret_cast<const float*>(beta), params.eps = eps;
  run_layernorm(ctx, "layernorm_forward", gen::LayerNormPass::forward, params, spec, stream);
}

void layernorm_apply(Context& ctx, const BlockTensorRef& x, CUdeviceptr gamma, CUdeviceptr beta, CUdeviceptr mean, CUdeviceptr rstd, const BlockTensorRef& y,
                     CUstream stream, const std::optional<gen::LayerNormApplySpec>& override_spec) {
  require(gamma && beta && mean && rstd, [&] { return "layernorm_apply: gamma, beta, mean and rstd must all be given"; });
  check_block32("layernorm_apply", x);
  check_same("layernorm_apply", "the output", x, y);
  LayerNormParams params = layernorm_params(x, gamma, mean, rstd, y);
  params.beta = reinterpret_cast<const float*>(beta);
  const auto spec = tuned_or_fit(ctx, "layernorm_apply", gen::LayerNormApplySpec::fit(x.rows, x.cols), x.rows, x.cols, override_spec);
  launch_tile_rows("layernorm_apply", ctx.kernel(spec), spec.tile, x, params, stream);
}

std::size_t layernorm_backward_workspace_bytes(std::int64_t rows, std::int64_t cols) {
  return std::size_t(2 * (rows / 32) * cols) * sizeof(float);  // the dgamma and dbeta partials of every strip
}

void layernorm_backward(Context& ctx, const BlockTensorRef& dy, const BlockTensorRef& x, CUdeviceptr mean, CUdeviceptr rstd, CUdeviceptr gamma,
                        const BlockTensorRef& dx, CUdeviceptr dgamma, CUdeviceptr dbeta, std::uint64_t seed, CUdeviceptr workspace, CUstream stream,
                        const std::optional<gen::LayerNormSpec>& spec) {
  const char* op = "layernorm_backward";
  require(mean && rstd && gamma && dgamma && dbeta && workspace,
          [&] { return std::string(op) + ": mean, rstd, gamma, dgamma, dbeta and workspace must all be given"; });
  check_block32(op, x);  // every check before the first launch
  check_same(op, "dy", x, dy);
  check_same(op, "dx", x, dx);
  auto* ws = reinterpret_cast<float*>(workspace);
  LayerNormParams params = layernorm_params(x, gamma, mean, rstd, dx);
  params.dy_codes = reinterpret_cast<const i8*>(dy.codes), params.dy_scales = reinterpret_cast<const float*>(dy.scales);
  params.dgamma_partial = ws, params.dbeta_partial = ws + x.rows / 32 * x.cols;
  params.round_key = seed_key(seed);
  run_layernorm(ctx, op, gen::LayerNormPass::backward, params, spec, stream);
  sum_block_row_partials(ctx, workspace, dgamma, x.rows / 32, x.cols, false, stream, dbeta);  // the dbeta partials follow the dgamma ones
}

namespace {

void run_residual(Context& ctx, const char* op, const DenseRef& stream, const BlockTensorRef& x, const BlockTensorRef& copy, gen::Rounding rounding,
                  std::uint64_t seed, CUdeviceptr row_sums, CUstream cu_stream) {
  check_float_dtype(op, stream.dtype);
  check_block32(op, x);
  check_same_shape(op, stream, x);
  check_same(op, "the INT8 copy", x, copy);
  const auto spec = tuned_or_fit(ctx, op, gen::ResidualSpec::fit(stream.dtype, rounding, x.rows, x.cols, row_sums != 0), x.rows, x.cols);
  const ResidualParams params{reinterpret_cast<void*>(stream.data), reinterpret_cast<const i8*>(x.codes), reinterpret_cast<const float*>(x.scales),
                              reinterpret_cast<i8*>(copy.codes),    reinterpret_cast<float*>(copy.scales), x.rows,
                              x.cols,                               seed_key(seed),                         reinterpret_cast<RowSums*>(row_sums)};
  ctx.kernel(spec).launch(tile_grid(spec.tile, x), params, cu_stream);
}

}  // namespace

std::size_t residual_stats_workspace_bytes(std::int64_t rows, std::int64_t cols) { return std::size_t(rows * (cols / 32)) * sizeof(RowSums); }

void residual_add(Context& ctx, const DenseRef& stream, const BlockTensorRef& x, const BlockTensorRef& copy, const LayerNormStatsOut* stats,
                  CUstream cu_stream) {
  if (stats) {
    require(stats->mean && stats->rstd && stats->workspace, [] { return "residual_add: the statistics need mean, rstd and workspace"; });
    require(stats->eps > 0.0f, [] { return "residual_add: eps must be positive"; });
  }
  run_residual(ctx, "residual_add", stream, x, copy, gen::Rounding::nearest, 0, stats ? stats->workspace : 0, cu_stream);
  if (!stats) return;
  const gen::ResidualStatsSpec spec;
  const ResidualStatsParams params{reinterpret_cast<const RowSums*>(stats->workspace), reinterpret_cast<float*>(stats->mean), reinterpret_cast<float*>(stats->rstd),
                                   stream.rows, stream.cols, stats->eps};
  ctx.kernel(spec).launch(unsigned((stream.rows + spec.rows_per_cta() - 1) / spec.rows_per_cta()), params, cu_stream);
}

void residual_add_backward(Context& ctx, const DenseRef& grad_stream, const BlockTensorRef& dx, const BlockTensorRef& copy, std::uint64_t seed,
                           CUstream cu_stream) {
  run_residual(ctx, "residual_add_backward", grad_stream, dx, copy, gen::Rounding::stochastic, seed, 0, cu_stream);
}

std::size_t column_sum_workspace_bytes(std::int64_t rows, std::int64_t cols) { return std::size_t(rows / 32 * cols) * 4; }

namespace {

// Columns per CTA of the INT8 kernel: the most (256 down to 32) that still give every SM a CTA. Same-call sweep on
// the H100 (bench/NOTES.md, session 19, 256 threads): 8192x768 slices of 32 / 64 9.2 / 9.0 us, 8192x4096 64 / 128 / 256
// 22.2 / 17.6 / 19.5 us, 16384x8192 128 / 256 59.6 / 51.0 us.
int column_sum_slice_cols(std::int64_t cols, int sm_count) {
  int slice = 256;
  while (slice > 32 && (cols + slice - 1) / slice * kColumnSumParts < sm_count) slice /= 2;
  return slice;
}

}  // namespace

void column_sum(Context& ctx, const BlockTensorRef& x, CUdeviceptr out, bool accumulate, CUdeviceptr workspace, CUstream stream,
                const std::optional<gen::ColumnSumSpec>& override_spec) {
  check_block32("column_sum", x);
  require(out != 0 && workspace != 0, [] { return "column_sum: out and workspace must be given"; });
  const auto spec = override_spec ? *override_spec : gen::ColumnSumSpec::codes(ctx.limits());
  const bool one_launch = spec.kernel == gen::ColumnSumKernel::sums;
  require(one_launch || spec.kernel == gen::ColumnSumKernel::partials,
          [&] { return "column_sum: " + gen::canonical_key(spec) + " is not an INT8 column-sum kernel (kernel=sums or kernel=partials)"; });
  const int slice_cols = column_sum_slice_cols(x.cols, ctx.device().info().sm_count);
  require(slice_cols <= 4 * spec.cta_threads, [&] {
    return "column_sum: " + gen::canonical_key(spec) + " has too few threads for slices of " + std::to_string(slice_cols) + " columns (4 per 16 columns)";
  });
  // Without clusters, a row of partials per part: at most rows / 32 of them, what the workspace holds.
  const int parts = one_launch ? kColumnSumParts : int(std::min<std::int64_t>(kColumnSumParts, x.rows / 32));
  const ColumnSumParams p{reinterpret_cast<const void*>(x.codes), reinterpret_cast<const float*>(x.scales), reinterpret_cast<float*>(workspace),
                          reinterpret_cast<float*>(out), x.rows, x.cols, accumulate ? 1 : 0, nullptr, slice_cols, parts};
  const std::int64_t slices = (x.cols + slice_cols - 1) / slice_cols;
  ctx.kernel(spec).launch(unsigned(slices * parts), p, stream, 0, one_launch ? unsigned(parts) : 1u);
  if (!one_launch) sum_block_row_partials(ctx, workspace, out, parts, x.cols, accumulate, stream);
}

void sum_block_row_partials(Context& ctx, CUdeviceptr partials, CUdeviceptr out, std::int64_t partial_rows, std::int64_t cols, bool accumulate,
                            CUstream stream, CUdeviceptr out_second) {
  const ColumnSumParams p{nullptr, nullptr, reinterpret_cast<float*>(partials), reinterpret_cast<float*>(out), partial_rows, cols, accumulate ? 1 : 0,
                          reinterpret_cast<float*>(out_second), 0, 0};
  ctx.kernel(gen::ColumnSumSpec::partials_reduce()).launch_2d(unsigned((cols + 31) / 32), out_second ? 2u : 1u, p, stream);
}

void count_differences(Context& ctx, CUdeviceptr a, CUdeviceptr b, std::size_t bytes, CUdeviceptr counter, CUstream stream) {
  require(a % 16 == 0 && b % 16 == 0, [] { return std::string("count_differences: both buffers must be 16-byte aligned"); });
  if (bytes == 0) return;
  const gen::CompareSpec spec;
  const CompareParams p{reinterpret_cast<const u8*>(a), reinterpret_cast<const u8*>(b), bytes, reinterpret_cast<unsigned long long*>(counter)};
  const std::size_t blocks = (bytes / 16 + std::size_t(spec.cta_threads) - 1) / std::size_t(spec.cta_threads);
  ctx.kernel(spec).launch(unsigned(std::clamp<std::size_t>(blocks, 1, std::size_t(ctx.device().info().sm_count) * 8)), p, stream);
}

}  // namespace jetforge
