// The kernel families and their specs. Each spec names its template, its template arguments and its
// launch shape; see spec.hpp for the protocol every spec struct follows.
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "generator/kernel_source.hpp"
#include "generator/spec.hpp"

namespace jetforge::gen {

// The CTA tile of the block-wise kernels (quantize, dequantize, transpose): tile_rows x tile_cols blocks of
// B x B per CTA, `threads` threads. Tiles at least 128 bytes wide keep every row access a full cache line.
struct BlockTile {
  int rows = 4, cols = 4;  // in blocks
  int threads = 256;
  template <class S, class F> static void fields(S& s, F&& f) { f("tile_rows", s.rows), f("tile_cols", s.cols), f("threads", s.threads); }
  // The tile for a rows x cols matrix: the largest of 8, 4, 2, 1 blocks (at most max_rows / max_cols) dividing each
  // dimension, with enough threads for about `chunks_per_thread` 16-byte chunks of `elem_bytes` elements each (at
  // least a warp).
  static BlockTile fit(std::int64_t rows, std::int64_t cols, int block, int elem_bytes, int chunks_per_thread = 4, int max_rows = 4, int max_cols = 4);
};

// Static shared memory of a block-wise kernel with this tile (transposing kernels stage a code tile).
long block_tile_static_smem(int block, const BlockTile& tile, bool transposes, int buffers = 1);

// Tuning a block-tile family (dequantize, transpose, elementwise, residual): its problem is the operator's fitted
// spec without the tile (what the call fixes: op, types, rounding) on a rows x cols matrix, e.g.
// "elementwise:op=gelu_tanh,round=nearest,rows=8192,cols=3072"; its candidates vary the tile.
inline bool is_problem_field(std::string_view name) { return name != "tile_rows" && name != "tile_cols" && name != "threads"; }
template <class Spec> std::string block_tile_problem_key(const Spec& spec, std::int64_t rows, std::int64_t cols) {
  const std::string key = detail::fields_key(spec, is_problem_field);
  return key + (key.find(':') == std::string::npos ? ":" : ",") + "rows=" + std::to_string(rows) + ",cols=" + std::to_string(cols);
}
// The same problem as the integers an operator's per-call lookup hashes (tagged apart from the spec's own).
template <class Spec> Signature block_tile_problem_signature(const Spec& spec, std::int64_t rows, std::int64_t cols) {
  return detail::fields_signature(spec, ~signature_tag(Spec::family), is_problem_field, {rows, cols});
}

// Block-quantize a dense FP32/BF16 matrix; optionally also write the transposed BlockTensor.
struct QuantizeSpec {
  static constexpr std::string_view family = "quantize";
  static constexpr std::string_view template_file = "quantize.cuh";
  static constexpr std::string_view params_type = "jetforge::QuantizeParams";
  DType in = DType::bf16;
  int block = 32;
  Rounding round = Rounding::nearest;
  bool transpose = false;
  BlockTile tile;
  int stages = 4;  // tiles in the shared-memory ring the input streams through
  int transpose_unit = 4;  // transposed codes leave in units of 4, 8 or 16 rows (that many bytes per store)

  template <class S, class F> static void fields(S& s, F&& f) {
    f("in", s.in), f("block", s.block), f("round", s.round), f("transpose", s.transpose);
    BlockTile::fields(s.tile, f);
    f("stages", s.stages), f("transpose_unit", s.transpose_unit);
  }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return tile.threads; }
  int smem_bytes() const;  // dynamic shared memory: the input ring
  // The spec the operator uses for a rows x cols matrix of `in`.
  static QuantizeSpec fit(DType in, std::int64_t rows, std::int64_t cols, int block, Rounding round, bool transpose);
  static std::vector<QuantizeSpec> defaults();
};

// Dense FP32/BF16 matrix from a BlockTensor.
struct DequantizeSpec {
  static constexpr std::string_view family = "dequantize";
  static constexpr std::string_view template_file = "dequantize.cuh";
  static constexpr std::string_view params_type = "jetforge::DequantizeParams";
  DType out = DType::bf16;
  int block = 32;
  BlockTile tile;

  template <class S, class F> static void fields(S& s, F&& f) {
    f("out", s.out), f("block", s.block);
    BlockTile::fields(s.tile, f);
  }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return tile.threads; }
  static DequantizeSpec fit(DType out, std::int64_t rows, std::int64_t cols, int block) {
    return DequantizeSpec{out, block, BlockTile::fit(rows, cols, block, dtype_size(out))};
  }
  static std::vector<DequantizeSpec> defaults();
};

// BlockTensor -> its transpose (codes and scale grid), exact.
struct TransposeSpec {
  static constexpr std::string_view family = "transpose";
  static constexpr std::string_view template_file = "transpose.cuh";
  static constexpr std::string_view params_type = "jetforge::TransposeParams";
  int block = 32;
  BlockTile tile;

  template <class S, class F> static void fields(S& s, F&& f) {
    f("block", s.block);
    BlockTile::fields(s.tile, f);
  }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return tile.threads; }
  static TransposeSpec fit(std::int64_t rows, std::int64_t cols, int block) { return TransposeSpec{block, BlockTile::fit(rows, cols, block, 1)}; }
  static std::vector<TransposeSpec> defaults();
};

// INT8 -> INT8 elementwise operators (templates/elementwise.cuh): GELU requantized per block, dropout exact (codes kept,
// block scales / (1 - p)).
enum class Elementwise { gelu_tanh, gelu_erf, gelu_tanh_grad, gelu_erf_grad, dropout };
template <> struct EnumNames<Elementwise> {
  static constexpr std::pair<Elementwise, std::string_view> table[] = {{Elementwise::gelu_tanh, "gelu_tanh"},
                                                                       {Elementwise::gelu_erf, "gelu_erf"},
                                                                       {Elementwise::gelu_tanh_grad, "gelu_tanh_grad"},
                                                                       {Elementwise::gelu_erf_grad, "gelu_erf_grad"},
                                                                       {Elementwise::dropout, "dropout"}};
};

struct ElementwiseSpec {
  static constexpr std::string_view family = "elementwise";
  static constexpr std::string_view template_file = "elementwise.cuh";
  static constexpr std::string_view params_type = "jetforge::ElementwiseParams";
  Elementwise op = Elementwise::gelu_tanh;
  Rounding round = Rounding::nearest;  // stochastic for gradients
  BlockTile tile;

  template <class S, class F> static void fields(S& s, F&& f) {
    f("op", s.op), f("round", s.round);
    BlockTile::fields(s.tile, f);
  }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return tile.threads; }
  // One block row by up to 4 blocks, two chunks per thread: the fastest tiles on the H100 (bench_ops --sweep of GELU at
  // 8192x4096 and 16384x8192, bench/NOTES.md), small enough that many CTAs overlap their loads and barriers. The tanh
  // forward holds its values as FP16 pairs, half the registers: up to 8 blocks, four chunks per thread.
  static ElementwiseSpec fit(Elementwise op, Rounding round, std::int64_t rows, std::int64_t cols) {
    const bool pairs = op == Elementwise::gelu_tanh;
    return ElementwiseSpec{op, round, BlockTile::fit(rows, cols, 32, 1, pairs ? 4 : 2, 1, pairs ? 8 : 4)};
  }
  static std::vector<ElementwiseSpec> defaults();
};

// LayerNorm forward or backward, one kernel (templates/layernorm.cuh): each 32-row strip split by columns into
// `cluster` slices of `slice` columns, one CTA each, held in shared memory (slice 0: one CTA per strip streams whole
// rows twice instead), walked in sub-tiles of `sub` columns. The forward rounds to nearest, the backward's dx
// stochastically. Not tuned: the variants add the row sums in different orders, so their outputs differ in the last
// bits and none would pass the tuner's bit-exact check; `jetforge_bench_ops --sweep` times them for `fit`.
enum class LayerNormPass { forward, backward };
template <> struct EnumNames<LayerNormPass> {
  static constexpr std::pair<LayerNormPass, std::string_view> table[] = {{LayerNormPass::forward, "forward"}, {LayerNormPass::backward, "backward"}};
};

struct LayerNormSpec {
  static constexpr std::string_view family = "layernorm";
  static constexpr std::string_view template_file = "layernorm.cuh";
  static constexpr std::string_view params_type = "jetforge::LayerNormParams";
  LayerNormPass pass = LayerNormPass::forward;
  int slice = 768;
  int sub = 128;
  int cluster = 1;
  int cta_threads = 128;

  template <class S, class F> static void fields(S& s, F&& f) {
    f("pass", s.pass), f("slice", s.slice), f("sub", s.sub), f("cluster", s.cluster), f("threads", s.cta_threads);
  }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return cta_threads; }
  int smem_bytes() const { return (pass == LayerNormPass::backward ? 2 : 1) * 32 * slice; }  // dynamic: the resident slice
  // The spec for rows of `cols` columns: the fewest CTAs per strip whose slices fit 32 KiB, else 64 KiB (clusters
  // need sm_90), else streamed rows.
  static LayerNormSpec fit(LayerNormPass pass, std::int64_t cols, const TargetLimits& target);
  // Every variant valid on `target` that covers rows of `cols` columns: clusters of 1, 2, 4 or 8 CTAs or streamed
  // rows, sub-tiles of 32 to 512 columns, 128 to 512 threads (what the GPU test and bench_ops --sweep run).
  static std::vector<LayerNormSpec> variants(LayerNormPass pass, std::int64_t cols, const TargetLimits& target);
  static std::vector<LayerNormSpec> defaults();
};

// Threads per CTA: whole warps, within the target's limit (throws SpecError naming the family).
void require_threads(std::string_view family, int threads, const TargetLimits& t);

// Families of a few fixed kernels told apart by an enum (key field `kernel`), each launched with `threads` per
// CTA. Derived names the family and its template and says how each kernel is instantiated (kernel_expr).
template <class Derived, class Kernel> struct KernelChoiceSpec {
  Kernel kernel{};
  int cta_threads = 256;

  constexpr KernelChoiceSpec() = default;
  constexpr KernelChoiceSpec(Kernel k, int threads) : kernel(k), cta_threads(threads) {}
  template <class S, class F> static void fields(S& s, F&& f) { f("kernel", s.kernel), f("threads", s.cta_threads); }
  void validate(const TargetLimits& target) const { require_threads(Derived::family, cta_threads, target); }
  int threads() const { return cta_threads; }
};

// The base of a family whose one parameter is its CTA size.
template <class Derived> struct ThreadsSpec {
  int cta_threads = 256;

  template <class S, class F> static void fields(S& s, F&& f) { f("threads", s.cta_threads); }
  void validate(const TargetLimits& target) const { require_threads(Derived::family, cta_threads, target); }
  int threads() const { return cta_threads; }
};

// Residual stream update r += dequantize(x) with the INT8 copy of the result (templates/residual.cuh).
struct ResidualSpec {
  static constexpr std::string_view family = "residual";
  static constexpr std::string_view template_file = "residual.cuh";
  static constexpr std::string_view params_type = "jetforge::ResidualParams";
  DType stream = DType::f32;
  Rounding round = Rounding::nearest;
  bool stats = false;  // also each row's sum and sum of squares per 32-column block: the next LayerNorm's statistics
  BlockTile tile;

  template <class S, class F> static void fields(S& s, F&& f) {
    f("stream", s.stream), f("round", s.round), f("stats", s.stats);
    BlockTile::fields(s.tile, f);
  }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return tile.threads; }
  // One block row by up to 4 blocks, two chunks per thread: several CTAs per SM overlap their loads and barriers
  // (bench/NOTES.md session 11: FP32 stream 8192x768 87% -> 93% of a copy, 8192x4096 84% -> 85%, against 4 x 4 blocks).
  static ResidualSpec fit(DType stream, Rounding round, std::int64_t rows, std::int64_t cols, bool stats = false) {
    return ResidualSpec{stream, round, stats, BlockTile::fit(rows, cols, 32, dtype_size(stream), 2, 1)};
  }
  static std::vector<ResidualSpec> defaults();
};

// LayerNorm forward with the statistics given (residual_add's): a streaming pass over tiles of blocks.
struct LayerNormApplySpec {
  static constexpr std::string_view family = "layernorm_apply";
  static constexpr std::string_view template_file = "layernorm.cuh";
  static constexpr std::string_view params_type = "jetforge::LayerNormParams";
  BlockTile tile;

  template <class S, class F> static void fields(S& s, F&& f) { BlockTile::fields(s.tile, f); }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const {
    return "jetforge::layernorm_apply_kernel<" + std::to_string(tile.rows) + ", " + std::to_string(tile.cols) + ", " + std::to_string(tile.threads) + ">";
  }
  int threads() const { return tile.threads; }
  // One block row by up to 2 blocks, 64 threads of two chunks each: 4-5 points of a copy faster than 4 blocks at
  // 8192x768 and 8192x4096 and as fast at 16384x8192 (`jetforge_bench_ops --sweep`, H100, bench/NOTES.md, session 14).
  static LayerNormApplySpec fit(std::int64_t rows, std::int64_t cols) { return LayerNormApplySpec{BlockTile::fit(rows, cols, 32, 1, 2, 1, 2)}; }
  static std::vector<LayerNormApplySpec> defaults() { return {fit(128, 128)}; }
};

// The next LayerNorm's mean and rstd from the residual kernel's row sums per block (ResidualSpec::stats), a warp per row.
struct ResidualStatsSpec : ThreadsSpec<ResidualStatsSpec> {
  static constexpr std::string_view family = "residual_stats";
  static constexpr std::string_view template_file = "residual.cuh";
  static constexpr std::string_view params_type = "jetforge::ResidualStatsParams";
  std::string kernel_expr() const { return "jetforge::residual_stats_kernel<" + std::to_string(cta_threads) + ">"; }
  int rows_per_cta() const { return cta_threads / 32; }
  static std::vector<ResidualStatsSpec> defaults() { return {{}}; }
};

// Per-row mean and rstd of a dense FP32/BF16 matrix (the BF16 mode's LayerNorm input), one warp per row.
struct DenseRowStatsSpec {
  static constexpr std::string_view family = "dense_row_stats";
  static constexpr std::string_view template_file = "residual.cuh";
  static constexpr std::string_view params_type = "jetforge::DenseRowStatsParams";
  DType in = DType::f32;
  int warps = 8;

  template <class S, class F> static void fields(S& s, F&& f) { f("in", s.in), f("warps", s.warps); }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const {
    return "jetforge::dense_row_stats_kernel<" + std::string(device_type_name(in)) + ", " + std::to_string(warps) + ">";
  }
  int threads() const { return warps * 32; }
  static std::vector<DenseRowStatsSpec> defaults() { return {{DType::f32, 8}, {DType::bf16, 8}}; }
};

// BF16 twins of the nonlinear operators, the baselines of bench_ops (templates/bf16_ops.cuh).
enum class Bf16Op { gelu, gelu_grad, dropout, layernorm_apply, residual, from_f32 };
template <> struct EnumNames<Bf16Op> {
  static constexpr std::pair<Bf16Op, std::string_view> table[] = {{Bf16Op::gelu, "gelu"},
                                                                  {Bf16Op::gelu_grad, "gelu_grad"},
                                                                  {Bf16Op::dropout, "dropout"},
                                                                  {Bf16Op::layernorm_apply, "layernorm_apply"},
                                                                  {Bf16Op::residual, "residual"},
                                                                  {Bf16Op::from_f32, "from_f32"}};
};

struct Bf16OpSpec {
  static constexpr std::string_view family = "bf16_op";
  static constexpr std::string_view template_file = "bf16_ops.cuh";
  static constexpr std::string_view params_type = "jetforge::Bf16OpParams";
  Bf16Op op = Bf16Op::gelu;
  int cta_threads = 256;

  template <class S, class F> static void fields(S& s, F&& f) { f("op", s.op), f("threads", s.cta_threads); }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return cta_threads; }
  static std::vector<Bf16OpSpec> defaults();
};

// Optimizer kernels (templates/optim.cuh).
enum class OptimKernel { sum_squares, clip_factor, adamw };
template <> struct EnumNames<OptimKernel> {
  static constexpr std::pair<OptimKernel, std::string_view> table[] = {
      {OptimKernel::sum_squares, "sum_squares"}, {OptimKernel::clip_factor, "clip_factor"}, {OptimKernel::adamw, "adamw"}};
};

struct OptimSpec : KernelChoiceSpec<OptimSpec, OptimKernel> {
  using KernelChoiceSpec::KernelChoiceSpec;
  static constexpr std::string_view family = "optim";
  static constexpr std::string_view template_file = "optim.cuh";
  std::string kernel_expr() const;
  std::string params_decl() const;  // each kernel has its own parameter struct
  static std::vector<OptimSpec> defaults() { return {{OptimKernel::sum_squares, 256}, {OptimKernel::clip_factor, 32}, {OptimKernel::adamw, 256}}; }
};

// LayerNorm backward on BF16 tensors: per-row dx, per-32-row dgamma/dbeta partials (templates/bf16_layernorm.cuh).
enum class Bf16LayerNormGradKernel { rows, columns };
template <> struct EnumNames<Bf16LayerNormGradKernel> {
  static constexpr std::pair<Bf16LayerNormGradKernel, std::string_view> table[] = {{Bf16LayerNormGradKernel::rows, "rows"},
                                                                                   {Bf16LayerNormGradKernel::columns, "columns"}};
};

struct Bf16LayerNormGradSpec : KernelChoiceSpec<Bf16LayerNormGradSpec, Bf16LayerNormGradKernel> {
  using KernelChoiceSpec::KernelChoiceSpec;
  static constexpr std::string_view family = "bf16_layernorm_grad";
  static constexpr std::string_view template_file = "bf16_layernorm.cuh";
  static constexpr std::string_view params_type = "jetforge::Bf16LayerNormGradParams";
  std::string kernel_expr() const {
    return kernel == Bf16LayerNormGradKernel::rows ? "jetforge::bf16_layernorm_grad_rows_kernel<" + std::to_string(cta_threads / 32) + ">"
                                                   : "jetforge::bf16_layernorm_grad_columns_kernel<" + std::to_string(cta_threads) + ">";
  }
  static std::vector<Bf16LayerNormGradSpec> defaults() { return {{Bf16LayerNormGradKernel::rows, 256}, {Bf16LayerNormGradKernel::columns, 128}}; }
};

// Throughput probe of the GEMM fold's instructions (templates/fold_probe.cuh, bench_fold): not an operator.
enum class FoldProbeMix { convert, ffma, convert_ffma, magic_ffma };
template <> struct EnumNames<FoldProbeMix> {
  static constexpr std::pair<FoldProbeMix, std::string_view> table[] = {
      {FoldProbeMix::convert, "convert"}, {FoldProbeMix::ffma, "ffma"}, {FoldProbeMix::convert_ffma, "convert_ffma"}, {FoldProbeMix::magic_ffma, "magic_ffma"}};
};
struct FoldProbeSpec : KernelChoiceSpec<FoldProbeSpec, FoldProbeMix> {
  using KernelChoiceSpec::KernelChoiceSpec;
  static constexpr std::string_view family = "fold_probe";
  static constexpr std::string_view template_file = "fold_probe.cuh";
  static constexpr std::string_view params_type = "jetforge::FoldProbeParams";
  std::string kernel_expr() const {
    return "jetforge::fold_probe_kernel<" + std::to_string(int(kernel)) + ", " + std::to_string(cta_threads) + ">";
  }
  static std::vector<FoldProbeSpec> defaults() { return {{FoldProbeMix::convert_ffma, 1024}}; }
};

// How many 4-byte words two device buffers differ in (templates/compare.cuh): the tuner's bit-exact check.
struct CompareSpec : ThreadsSpec<CompareSpec> {
  static constexpr std::string_view family = "compare";
  static constexpr std::string_view template_file = "compare.cuh";
  static constexpr std::string_view params_type = "jetforge::CompareParams";
  std::string kernel_expr() const { return "jetforge::compare_kernel<" + std::to_string(cta_threads) + ">"; }
  static std::vector<CompareSpec> defaults() { return {CompareSpec{}}; }
};

// Column sums of an INT8 BlockTensor or a BF16 matrix (bias gradients), deterministic (templates/column_sum.cuh).
// INT8: sums (one launch, clusters: sm_90) or partials (then reduce); BF16: partials_bf16 (then reduce).
enum class ColumnSumKernel { sums, partials, partials_bf16, reduce };
template <> struct EnumNames<ColumnSumKernel> {
  static constexpr std::pair<ColumnSumKernel, std::string_view> table[] = {{ColumnSumKernel::sums, "sums"},
                                                                           {ColumnSumKernel::partials, "partials"},
                                                                           {ColumnSumKernel::partials_bf16, "partials_bf16"},
                                                                           {ColumnSumKernel::reduce, "reduce"}};
};

struct ColumnSumSpec : KernelChoiceSpec<ColumnSumSpec, ColumnSumKernel> {
  using KernelChoiceSpec::KernelChoiceSpec;
  static constexpr std::string_view family = "column_sum";
  static constexpr std::string_view template_file = "column_sum.cuh";
  static constexpr std::string_view params_type = "jetforge::ColumnSumParams";
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  // The INT8 kernel column_sum launches on `target`: sums where clusters exist, else partials. 256 threads: on the
  // H100, 8-9% faster than 128 at 8192x4096 with column_sum's slices (bench/NOTES.md, session 19).
  static ColumnSumSpec codes(const TargetLimits& target) { return {target.sm >= 90 ? ColumnSumKernel::sums : ColumnSumKernel::partials, 256}; }
  // The kernel sum_block_row_partials launches: the ordered sum of rows of partials (LayerNorm's dgamma and dbeta, the
  // two-launch column sums).
  static ColumnSumSpec partials_reduce() { return {ColumnSumKernel::reduce, 256}; }
  // Valid on every target (sums, the sm_90 kernel, is codes(target) there).
  static std::vector<ColumnSumSpec> defaults() {
    return {{ColumnSumKernel::partials, 128}, {ColumnSumKernel::partials_bf16, 128}, partials_reduce()};
  }
};

// Token + position embedding, forward and deterministic backward (templates/embedding.cuh).
enum class EmbeddingKernel { forward, backward_tokens, backward_positions };
template <> struct EnumNames<EmbeddingKernel> {
  static constexpr std::pair<EmbeddingKernel, std::string_view> table[] = {
      {EmbeddingKernel::forward, "forward"}, {EmbeddingKernel::backward_tokens, "backward_tokens"}, {EmbeddingKernel::backward_positions, "backward_positions"}};
};

struct EmbeddingSpec : KernelChoiceSpec<EmbeddingSpec, EmbeddingKernel> {
  using KernelChoiceSpec::KernelChoiceSpec;
  static constexpr std::string_view family = "embedding";
  static constexpr std::string_view template_file = "embedding.cuh";
  static constexpr std::string_view params_type = "jetforge::EmbeddingParams";
  std::string kernel_expr() const;
  static std::vector<EmbeddingSpec> defaults() {
    return {{EmbeddingKernel::forward, 256}, {EmbeddingKernel::backward_tokens, 256}, {EmbeddingKernel::backward_positions, 256}};
  }
};

// Fused softmax + cross-entropy of the LM head, loss and logit gradient in one kernel (templates/cross_entropy.cuh).
struct CrossEntropySpec {
  static constexpr std::string_view family = "cross_entropy";
  static constexpr std::string_view template_file = "cross_entropy.cuh";
  static constexpr std::string_view params_type = "jetforge::CrossEntropyParams";
  DType in = DType::bf16;  // the logits (the LM head GEMM writes BF16)
  // One CTA per row. 1024 threads: at most two rows per SM in flight (26 MB of GPT-2's BF16 logits over 132 SMs, within
  // L2, where the second read can find them): 667 us on 8192 x 50304, 823 with 512 threads, 837 with 256 (run 157).
  int cta_threads = 1024;

  template <class S, class F> static void fields(S& s, F&& f) { f("in", s.in), f("threads", s.cta_threads); }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return cta_threads; }
  static std::vector<CrossEntropySpec> defaults() { return {{DType::bf16}, {DType::f32}}; }
};

// BF16 attention core (templates/attention.cuh): the forward pass, and the backward pass as three kernels (delta =
// rowsum(dO * O), then dK/dV per key tile and dQ per query tile, each without atomics).
enum class AttentionKernel { forward, delta, backward_kv, backward_q };
template <> struct EnumNames<AttentionKernel> {
  static constexpr std::pair<AttentionKernel, std::string_view> table[] = {{AttentionKernel::forward, "forward"},
                                                                           {AttentionKernel::delta, "delta"},
                                                                           {AttentionKernel::backward_kv, "backward_kv"},
                                                                           {AttentionKernel::backward_q, "backward_q"}};
};

struct AttentionSpec {
  static constexpr std::string_view family = "attention";
  static constexpr std::string_view template_file = "attention.cuh";
  static constexpr std::string_view params_type = "jetforge::AttentionParams";
  static constexpr int kThreads = 128, kBlock = 64;  // 4 warps; T is tiled by 64 (key tiles, backward CTAs)
  static constexpr int kForwardRows = 128;            // queries per forward CTA
  AttentionKernel kernel = AttentionKernel::forward;
  int head_dim = 64;  // 64 or 128
  bool causal = true;
  int tile = 64;      // rows of the tiles a CTA streams past its resident one (keys, or queries for dK/dV): 32 or 64

  template <class S, class F> static void fields(S& s, F&& f) {
    f("kernel", s.kernel), f("head_dim", s.head_dim), f("causal", s.causal), f("tile", s.tile);
  }
  // The kernel the operators launch untuned: 32-row streamed tiles at head_dim 128, where the accumulators take most
  // of the registers (64 spill).
  static AttentionSpec fit(AttentionKernel kernel, int head_dim, bool causal) {
    return {kernel, head_dim, causal, kernel != AttentionKernel::delta && head_dim == 128 ? 32 : 64};
  }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return kThreads; }
  int smem_bytes() const;  // dynamic shared memory: the kernel's tiles (templates/attention.cuh)
  int rows_per_cta() const { return kernel == AttentionKernel::forward ? kForwardRows : kBlock; }  // along T
  int streamed_rows() const { return tile; }
  static std::vector<AttentionSpec> defaults();
};

// Attention core, Hopper path (sm_90a, templates/attention_sm90.cuh): TMA and wgmma, the same contract as the
// portable kernels; the backward's delta stays the portable kernel. The forward's consumer warpgroups either take
// turns at the tensor core (pingpong) or each go at their own pace (plain).
enum class AttentionSchedule { plain, pingpong };
template <> struct EnumNames<AttentionSchedule> {
  static constexpr std::pair<AttentionSchedule, std::string_view> table[] = {{AttentionSchedule::plain, "plain"}, {AttentionSchedule::pingpong, "pingpong"}};
};
struct AttentionSm90Spec {
  static constexpr std::string_view family = "attention_sm90";
  static constexpr std::string_view template_file = "attention_sm90.cuh";
  static constexpr std::string_view params_type = "const __grid_constant__ jetforge::AttentionSm90Params";
  static constexpr int kThreads = 384, kRows = 128;  // a producer warpgroup and two consumers of 64 resident tokens
  AttentionKernel kernel = AttentionKernel::forward;  // forward, backward_kv or backward_q
  int head_dim = 64;  // 64 or 128
  bool causal = true;
  // Tunable: stages of every kernel; keys and schedule of the forward only (the backward kernels stream 64-token tiles).
  int keys = 128;    // forward: keys per K/V tile, 64 or 128
  int stages = 2;    // streamed tiles in flight (forward: K/V; backward: Q/dO or K/V), 2 or 3
  AttentionSchedule schedule = AttentionSchedule::plain;  // forward

  template <class S, class F> static void fields(S& s, F&& f) {
    f("kernel", s.kernel), f("head_dim", s.head_dim), f("causal", s.causal), f("keys", s.keys), f("stages", s.stages), f("schedule", s.schedule);
  }
  // The kernel the operators launch untuned: the forward's schedule as measured on the H100 (bench/NOTES.md, run 87).
  static AttentionSm90Spec fit(AttentionKernel kernel, int head_dim, bool causal) {
    AttentionSm90Spec s{kernel, head_dim, causal};
    if (kernel == AttentionKernel::forward && head_dim == 128) s.schedule = AttentionSchedule::pingpong;
    return s;
  }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return kThreads; }
  int smem_bytes() const;  // dynamic shared memory, alignment slack included
  int streamed_rows() const { return kernel == AttentionKernel::forward ? keys : 64; }  // the TMA box of the streamed tiles
  static std::vector<AttentionSm90Spec> defaults();
  static bool supports(const TargetLimits& t) { return t.arch == "sm_90a"; }
};

// FP32 reference of the attention core on the GPU (templates/attention_reference.cuh): a warp per row, for tests on
// shapes too large for the CPU reference; forward, then backward_q (delta and dQ), then backward_kv. Not an operator.
struct AttentionReferenceSpec {
  static constexpr std::string_view family = "attention_reference";
  static constexpr std::string_view template_file = "attention_reference.cuh";
  static constexpr std::string_view params_type = "jetforge::AttentionReferenceParams";
  static constexpr int kThreads = 128, kRowsPerCta = 4;
  AttentionKernel kernel = AttentionKernel::forward;  // forward, backward_q or backward_kv
  int head_dim = 64;                                  // 64 or 128

  template <class S, class F> static void fields(S& s, F&& f) { f("kernel", s.kernel), f("head_dim", s.head_dim); }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return kThreads; }
  static std::vector<AttentionReferenceSpec> defaults();
};

// Per-block INT8 GEMM, Hopper path (sm_90a): C = A * B^T, both operands K-major INT8 BlockTensors.
enum class GemmOut { f32, bf16, i8 };
template <> struct EnumNames<GemmOut> {
  static constexpr std::pair<GemmOut, std::string_view> table[] = {{GemmOut::f32, "f32"}, {GemmOut::bf16, "bf16"}, {GemmOut::i8, "i8"}};
};
// INT32 -> FP32 in the per-K-group fold: the converter instruction, or the FP32-adder trick (templates/gemm.cuh).
enum class GemmFold { convert, magic };
template <> struct EnumNames<GemmFold> {
  static constexpr std::pair<GemmFold, std::string_view> table[] = {{GemmFold::convert, "convert"}, {GemmFold::magic, "magic"}};
};

// Who stores a Hopper GEMM tile: the consumer warpgroups after their K loop, or (staged) the producer warpgroup's
// other three warps from a shared-memory copy of the FP32 tile while the consumers run the next tile's K loop.
enum class GemmEpilogue { consumers, staged };
template <> struct EnumNames<GemmEpilogue> {
  static constexpr std::pair<GemmEpilogue, std::string_view> table[] = {{GemmEpilogue::consumers, "consumers"}, {GemmEpilogue::staged, "staged"}};
};

struct GemmSm90Spec {
  static constexpr std::string_view family = "gemm_sm90";
  static constexpr std::string_view template_file = "gemm_sm90.cuh";
  static constexpr std::string_view params_type = "const __grid_constant__ jetforge::GemmSm90Params";
  static constexpr int kBM = 128, kBK = 128, kThreads = 384;  // two consumer warpgroups of 64 rows + a producer
  int bn = 128;     // tile columns: 64 or 128
  int group = 32;   // K-group: columns of K per scale (32 = the method's square blocks; 64, 128 coarser and faster)
  int stages = 4;   // depth of the TMA ring, 128 bytes of K per stage
  GemmOut out = GemmOut::i8;
  Rounding round = Rounding::nearest;  // INT8 output only
  GemmFold fold = GemmFold::convert;
  int cluster = 1;  // 2: CTA pairs along M share their B tile through TMA multicast
  int overlap = 1;  // 1: each consumer folds one half of its columns while the other half's wgmma runs (faster at
                    // K-group 32, slower at 128: bench/NOTES.md, session 4); 2: folds K-group g while g + 1's
                    // wgmma runs, with two whole scratches (K-groups 32 and 64; fastest at 32, session 6)
  int persistent = 1;  // 1: one CTA per SM walks the tiles, loading the next tile's first K slices under the last
                       // one's epilogue; 0: a CTA per tile
  GemmEpilogue epilogue = GemmEpilogue::consumers;  // staged: a tuning choice, 0.98-1.11x (bench/NOTES.md session 11)
  int split_k = 1;  // > 1 (FP32 output, persistent, no cluster, consumers' epilogue): each tile's K in split_k ranges,
                    // units of their own, added into the output in split order (templates/gemm_sm90.cuh)

  template <class S, class F> static void fields(S& s, F&& f) {
    f("bn", s.bn), f("group", s.group), f("stages", s.stages), f("out", s.out), f("round", s.round), f("fold", s.fold), f("cluster", s.cluster),
        f("overlap", s.overlap), f("persistent", s.persistent), f("epilogue", s.epilogue), f("split_k", s.split_k);
  }
  void validate(const TargetLimits& target) const;
  // Whether the other fields allow split_k > 1: FP32 output, persistent, no cluster, the consumers' epilogue.
  bool allows_split_k() const { return out == GemmOut::f32 && persistent == 1 && cluster == 1 && epilogue == GemmEpilogue::consumers; }
  std::string kernel_expr() const;
  int threads() const { return kThreads; }
  int smem_bytes() const;  // dynamic shared memory per CTA, alignment slack included
  static std::vector<GemmSm90Spec> defaults();
  static bool supports(const TargetLimits& t) { return t.arch == "sm_90a"; }
};

// Per-block INT8 GEMM, portable path (sm_80 and newer): mma.sync m16n8k32, 128 x 128 tiles, cp.async ring.
struct GemmSm80Spec {
  static constexpr std::string_view family = "gemm_sm80";
  static constexpr std::string_view template_file = "gemm_sm80.cuh";
  static constexpr std::string_view params_type = "jetforge::GemmSm80Params";
  static constexpr int kBM = 128, kBN = 128, kBK = 64, kThreads = 256;
  int group = 32;
  int stages = 3;  // depth of the cp.async ring, 64 bytes of K per stage
  GemmOut out = GemmOut::i8;
  Rounding round = Rounding::nearest;
  GemmFold fold = GemmFold::convert;

  template <class S, class F> static void fields(S& s, F&& f) {
    f("group", s.group), f("stages", s.stages), f("out", s.out), f("round", s.round), f("fold", s.fold);
  }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return kThreads; }
  int smem_bytes() const { return stages * (kBM + kBN) * kBK; }
  static std::vector<GemmSm80Spec> defaults();
};

// Type-erased view of a family, for the command line and for "compile every template" tests.
struct FamilyInfo {
  std::string_view name;
  std::string_view summary;
  std::function<std::vector<std::string>()> default_keys;
  std::function<KernelSource(std::string_view key, const TargetLimits&)> emit_key;  // parse, validate, emit
  std::function<bool(const TargetLimits&)> supports;  // whether the family has kernels for this target at all
};

const std::vector<FamilyInfo>& families();

// Parses a key of any family ("quantize:in=f32,..."), validates it for the target and emits its source.
KernelSource emit_key(std::string_view key, const TargetLimits& target);

}  // namespace jetforge::gen
