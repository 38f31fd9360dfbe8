#include "generator/families.hpp"

#include <algorithm>
#include <map>
#include <mutex>

namespace jetforge::gen {

namespace {

void require(bool ok, std::string_view family, const std::string& what) {
  if (!ok) throw SpecError(std::string(family) + " spec: " + what);
}

// Static shared memory of the block-wise kernels: the staged code tile of the transposing ones and three
// floats per block (maximum, scale, inverse scale).
}  // namespace

void require_threads(std::string_view family, int threads, const TargetLimits& t) {
  require(threads >= 32 && threads % 32 == 0 && threads <= t.max_threads_per_block, family,
          "threads=" + std::to_string(threads) + " must be a multiple of 32 in 32.." + std::to_string(t.max_threads_per_block));
}

long block_tile_static_smem(int block, const BlockTile& tile, bool transposes, int buffers) {
  const long elems = long(tile.rows) * tile.cols * block * block;
  return buffers * ((transposes ? elems : 0) + long(tile.rows) * tile.cols * 12);
}

namespace {

// The block-wise kernels share their shape rules: a CTA owns a tile of whole B x B blocks and every thread
// owns the same number of 16-byte chunks of each tile it moves (input, output, and the transposed codes).
// `buffers`: copies of the static shared memory the kernel keeps (quantize double-buffers its own).
void validate_block_tile(std::string_view family, int block, const BlockTile& tile, int elem_bytes, bool transposes, const TargetLimits& t,
                         int buffers = 1) {
  require(block == 16 || block == 32 || block == 64, family, "block=" + std::to_string(block) + " is not supported (16, 32 or 64)");
  for (int v : {tile.rows, tile.cols})
    require(v == 1 || v == 2 || v == 4 || v == 8, family, "tile_rows/tile_cols=" + std::to_string(v) + " must be 1, 2, 4 or 8 blocks");
  require_threads(family, tile.threads, t);
  // Each thread owns whole 16-byte chunks in one column of the tile: the threads must cover a row's chunks a
  // whole number of times, and the rows a whole number of row steps.
  const int chunks_per_row = tile.cols * block * elem_bytes / 16;
  require(tile.threads % chunks_per_row == 0 && tile.rows * block % (tile.threads / chunks_per_row) == 0, family,
          "threads=" + std::to_string(tile.threads) + " does not split a " + std::to_string(tile.rows * block) + "x" +
              std::to_string(tile.cols * block) + " tile of " + std::to_string(elem_bytes) + "-byte elements into whole columns of 16-byte chunks");
  const long smem = block_tile_static_smem(block, tile, transposes, buffers);
  require(smem <= t.max_static_smem, family,
          "needs " + std::to_string(smem) + " bytes of static shared memory, " + t.arch + " allows " + std::to_string(t.max_static_smem) +
              " (use a smaller tile)");
}

std::string tile_args(int block, const BlockTile& tile) {
  return std::to_string(block) + ", " + std::to_string(tile.rows) + ", " + std::to_string(tile.cols);
}

std::string round_expr(Rounding r) { return r == Rounding::nearest ? "jetforge::kRoundNearest" : "jetforge::kRoundStochastic"; }

std::string gemm_epilogue_args(GemmOut out, Rounding round, GemmFold fold) {
  const char* output = out == GemmOut::f32 ? "jetforge::kGemmOutF32" : out == GemmOut::bf16 ? "jetforge::kGemmOutBF16" : "jetforge::kGemmOutI8";
  return std::string(output) + ", " + round_expr(round) + ", " + (fold == GemmFold::convert ? "jetforge::kFoldConvert" : "jetforge::kFoldMagic");
}

template <class Spec> FamilyInfo family_info(std::string_view summary) {
  return FamilyInfo{
      Spec::family, summary,
      [] {
        std::vector<std::string> keys;
        for (const Spec& s : Spec::defaults()) keys.push_back(canonical_key(s));
        return keys;
      },
      [](std::string_view key, const TargetLimits& target) { return emit_checked(parse_key<Spec>(key), target); },
      [](const TargetLimits& target) {
        if constexpr (requires { Spec::supports(target); }) return Spec::supports(target);
        else return true;
      }};
}

}  // namespace

BlockTile BlockTile::fit(std::int64_t rows, std::int64_t cols, int block, int elem_bytes, int chunks_per_thread, int max_rows, int max_cols) {
  auto largest = [&](std::int64_t n, int most) {
    for (int t : {8, 4, 2, 1})
      if (t <= most && n % (std::int64_t(t) * block) == 0) return t;
    return 1;
  };
  BlockTile tile{largest(rows, max_rows), largest(cols, max_cols), 0};
  const int chunks = tile.rows * tile.cols * block * block * elem_bytes / 16;
  const int chunks_per_row = tile.cols * block * elem_bytes / 16;
  tile.threads = std::max(std::clamp(chunks / chunks_per_thread, 32, 1024), chunks_per_row);
  return tile;
}

void QuantizeSpec::validate(const TargetLimits& t) const {
  require(in == DType::f32 || in == DType::bf16, family, "in must be f32 or bf16");
  // The block maxima and the staged transposed codes are double-buffered (templates/quantize.cuh).
  validate_block_tile(family, block, tile, dtype_size(in), transpose, t, 2);
  require(stages >= 2 && stages <= 8, family, "stages=" + std::to_string(stages) + " must be in 2..8");
  require((transpose_unit == 4 || transpose_unit == 8 || transpose_unit == 16) && tile.rows * block % transpose_unit == 0, family,
          "transpose_unit=" + std::to_string(transpose_unit) + " must be 4, 8 or 16 and divide the tile's " + std::to_string(tile.rows * block) + " rows");
  const long total = smem_bytes() + block_tile_static_smem(block, tile, transpose, 2);
  require(total <= t.max_dynamic_smem, family,
          "an input ring of " + std::to_string(stages) + " tiles needs " + std::to_string(total) + " bytes of shared memory in all, " + t.arch +
              " allows " + std::to_string(t.max_dynamic_smem) + " (use fewer stages or a smaller tile)");
}

int QuantizeSpec::smem_bytes() const { return stages * tile.rows * tile.cols * block * block * dtype_size(in); }

std::string QuantizeSpec::kernel_expr() const {
  return "jetforge::quantize_kernel<" + std::string(device_type_name(in)) + ", " + tile_args(block, tile) + ", " + round_expr(round) + ", " +
         (transpose ? "true" : "false") + ", " + std::to_string(tile.threads) + ", " + std::to_string(stages) + ", " + std::to_string(transpose_unit) + ">";
}

QuantizeSpec QuantizeSpec::fit(DType in, std::int64_t rows, std::int64_t cols, int block, Rounding round, bool transpose) {
  // One CTA of up to 1024 threads (2 chunks each) per SM with a ring of two tiles. Measured on H100 (bench
  // --sweep, session 3 run 23; % of copy at 8192x4096 / 16384x8192, BF16 nearest): quantize 94 / 95 with 2 tiles,
  // 91 / 85 with 4; quantize+transpose 91 / 86 with 2, 84 / 81 with 4. `jetforge tune` searches the rest.
  return QuantizeSpec{in, block, round, transpose, BlockTile::fit(rows, cols, block, dtype_size(in), 2), 2};
}

std::vector<QuantizeSpec> QuantizeSpec::defaults() {
  std::vector<QuantizeSpec> out;
  for (DType in : {DType::f32, DType::bf16})
    for (Rounding round : {Rounding::nearest, Rounding::stochastic})
      for (bool transpose : {false, true}) out.push_back(fit(in, 128, 128, 32, round, transpose));
  return out;
}

void DequantizeSpec::validate(const TargetLimits& t) const {
  require(out == DType::f32 || out == DType::bf16, family, "out must be f32 or bf16");
  // A thread loads its codes in chunks of up to 16 and stores their values as 16-byte vectors (templates/dequantize.cuh).
  const long codes_per_thread = long(tile.rows) * tile.cols * block * block / std::max(tile.threads, 1);
  const long chunk = std::min(codes_per_thread, 16L);
  require(chunk * dtype_size(out) >= 16 && 16 % chunk == 0, family,
          "threads=" + std::to_string(tile.threads) + " leaves " + std::to_string(codes_per_thread) + " codes per thread; the " +
              std::string(enum_name(out)) + " output needs at least " + std::to_string(16 / dtype_size(out)) + ", a power of two (use fewer threads)");
  validate_block_tile(family, block, tile, int(16 / chunk), false, t);  // chunks of `chunk` one-byte codes: 16-byte chunks of 16 / chunk-byte elements
}

std::string DequantizeSpec::kernel_expr() const {
  return "jetforge::dequantize_kernel<" + std::string(device_type_name(out)) + ", " + tile_args(block, tile) + ", " + std::to_string(tile.threads) + ">";
}

std::vector<DequantizeSpec> DequantizeSpec::defaults() { return {fit(DType::f32, 128, 128, 32), fit(DType::bf16, 128, 128, 32)}; }

void TransposeSpec::validate(const TargetLimits& t) const { validate_block_tile(family, block, tile, 1, true, t); }

std::string TransposeSpec::kernel_expr() const { return "jetforge::transpose_kernel<" + tile_args(block, tile) + ", " + std::to_string(tile.threads) + ">"; }

std::vector<TransposeSpec> TransposeSpec::defaults() { return {fit(128, 128, 32)}; }

void ElementwiseSpec::validate(const TargetLimits& t) const {
  validate_block_tile(family, 32, tile, 1, false, t);
  if (op != Elementwise::gelu_tanh && op != Elementwise::dropout) {
    // Every GELU form but the tanh forward (FP16 pairs) looks its values up in a table of 256 floats per block
    // (kLookup in templates/elementwise.cuh).
    const long smem = block_tile_static_smem(32, tile, false) + long(tile.rows) * tile.cols * 256 * 4;
    require(smem <= t.max_static_smem, family,
            "the value tables of a " + std::to_string(tile.rows) + "x" + std::to_string(tile.cols) + "-block tile need " + std::to_string(smem) +
                " bytes of static shared memory, " + t.arch + " allows " + std::to_string(t.max_static_smem) + " (use a smaller tile)");
  }
  require(op != Elementwise::dropout || round == Rounding::nearest, family, "dropout is exact (the block scale takes 1 / (1 - p)); it has no rounding: round=nearest");
}

std::string ElementwiseSpec::kernel_expr() const {
  static constexpr const char* ops[] = {"jetforge::kGeluTanh", "jetforge::kGeluErf", "jetforge::kGeluTanhGrad", "jetforge::kGeluErfGrad", "jetforge::kDropout"};
  return "jetforge::elementwise_kernel<" + std::string(ops[int(op)]) + ", " + round_expr(round) + ", " + std::to_string(tile.rows) + ", " +
         std::to_string(tile.cols) + ", " + std::to_string(tile.threads) + ">";
}

std::vector<ElementwiseSpec> ElementwiseSpec::defaults() {
  std::vector<ElementwiseSpec> out;
  for (auto [op, round] : {std::pair{Elementwise::gelu_tanh, Rounding::nearest}, std::pair{Elementwise::gelu_erf, Rounding::nearest},
                           std::pair{Elementwise::gelu_tanh_grad, Rounding::stochastic}, std::pair{Elementwise::gelu_erf_grad, Rounding::stochastic},
                           std::pair{Elementwise::dropout, Rounding::nearest}})
    out.push_back(fit(op, round, 128, 128));
  return out;
}

void LayerNormSpec::validate(const TargetLimits& t) const {
  require(sub == 32 || sub == 128 || sub == 256 || sub == 512, family, "sub=" + std::to_string(sub) + " must be 32, 128, 256 or 512 columns");
  require(slice >= 0 && slice % sub == 0, family, "slice=" + std::to_string(slice) + " must be a multiple of sub=" + std::to_string(sub) + " (or 0: streamed rows)");
  require(cluster >= 1 && cluster <= 8, family, "cluster=" + std::to_string(cluster) + " must be in 1..8");
  require(slice > 0 || cluster == 1, family, "streamed rows (slice=0) take one CTA per strip, not a cluster of " + std::to_string(cluster));
  require(cluster == 1 || t.sm >= 90, family, "clusters of CTAs need sm_90 or newer, not " + t.arch);
  require_threads(family, cta_threads, t);
  // A row's chunks (4 bytes, or sub / 32 for wider sub-tiles) in one warp, the 32 rows a whole number of row groups.
  const int lanes_per_row = sub <= 128 ? sub / 4 : 32, groups = cta_threads / lanes_per_row;
  require(cta_threads % lanes_per_row == 0 && groups <= 32 && 32 % groups == 0, family,
          "threads=" + std::to_string(cta_threads) + " does not split 32 rows of " + std::to_string(sub) + " columns into " +
              std::to_string(lanes_per_row) + " chunks per row (1 to 32 row groups)");
  require(smem_bytes() <= t.max_dynamic_smem, family,
          "a slice of " + std::to_string(slice) + " columns needs " + std::to_string(smem_bytes()) + " bytes of shared memory, " + t.arch + " allows " +
              std::to_string(t.max_dynamic_smem) + " (use a larger cluster or slice=0)");
  const long column_terms = pass == LayerNormPass::backward ? 8L * groups * sub : 8;  // dgamma/dbeta terms of each row group
  require(column_terms <= t.max_static_smem / 2, family,
          "threads=" + std::to_string(cta_threads) + " with sub=" + std::to_string(sub) + " needs " + std::to_string(column_terms) +
              " bytes of column-sum terms (at most half the static shared memory); use fewer threads or a narrower sub");
}

std::string LayerNormSpec::kernel_expr() const {
  const bool backward = pass == LayerNormPass::backward;
  return "jetforge::layernorm_kernel<" + std::string(backward ? "true" : "false") + ", " + round_expr(backward ? Rounding::stochastic : Rounding::nearest) +
         ", " + std::to_string(slice) + ", " + std::to_string(sub) + ", " + std::to_string(cluster) + ", " + std::to_string(cta_threads) + ">";
}

LayerNormSpec LayerNormSpec::fit(LayerNormPass pass, std::int64_t cols, const TargetLimits& t) {
  // 128 threads and slices of at most 32 KiB (else 64 KiB, for rows of 8192 in a cluster of 8): many small CTAs per
  // SM overlap one another's load, cluster exchange and store phases; sub-tiles of 256 columns where they divide the
  // slice, in both passes (bench_ops --sweep on the H100, bench/NOTES.md, session 14).
  const int widest = cols % 256 == 0 ? 256 : cols % 128 == 0 ? 128 : 32;
  LayerNormSpec spec{pass, 0, widest, 1, 128};
  for (long budget : {32L * 1024, 64L * 1024})
    for (int c = 1; c <= 8 && (c == 1 || t.sm >= 90); ++c) {
      if (cols % (32L * c) != 0 || cols / c % spec.sub != 0) continue;
      spec.slice = int(cols / c), spec.cluster = c;
      if (spec.smem_bytes() <= budget && spec.smem_bytes() <= t.max_dynamic_smem) return spec;
    }
  spec.slice = 0, spec.cluster = 1;
  return spec;
}

std::vector<LayerNormSpec> LayerNormSpec::variants(LayerNormPass pass, std::int64_t cols, const TargetLimits& t) {
  std::vector<LayerNormSpec> out;
  for (int cluster : {1, 2, 4, 8, 0})  // 0: streamed rows
    for (int sub : {32, 128, 256, 512})
      for (int threads : {128, 256, 512}) {
        // Streamed rows take the sub-tile width from cols at run time: it must divide them.
        if (cluster == 0 ? cols % sub != 0 : cols % cluster != 0) continue;
        const LayerNormSpec spec{pass, cluster == 0 ? 0 : int(cols / cluster), sub, std::max(cluster, 1), threads};
        try {
          spec.validate(t);
        } catch (const SpecError&) {
          continue;  // e.g. a slice of no whole number of sub-tiles, or too many threads for 32-column sub-tiles
        }
        out.push_back(spec);
      }
  return out;
}

std::vector<LayerNormSpec> LayerNormSpec::defaults() {
  // Valid on every target (one CTA per strip); the cluster variants are the sm_90 fits of wider rows.
  const TargetLimits sm80 = TargetLimits::for_arch("sm_80");
  return {fit(LayerNormPass::forward, 768, sm80), fit(LayerNormPass::backward, 768, sm80)};
}

void ResidualSpec::validate(const TargetLimits& t) const {
  require(stream == DType::f32 || stream == DType::bf16, family, "stream must be f32 or bf16");
  validate_block_tile(family, 32, tile, dtype_size(stream), false, t);
}

std::string ResidualSpec::kernel_expr() const {
  return "jetforge::residual_kernel<" + std::string(device_type_name(stream)) + ", " + round_expr(round) + ", " + std::to_string(int(stats)) + ", " +
         std::to_string(tile.rows) + ", " + std::to_string(tile.cols) + ", " + std::to_string(tile.threads) + ">";
}

std::vector<ResidualSpec> ResidualSpec::defaults() {
  std::vector<ResidualSpec> out;
  for (DType stream : {DType::f32, DType::bf16})
    for (Rounding round : {Rounding::nearest, Rounding::stochastic}) out.push_back(fit(stream, round, 128, 128));
  out.push_back(fit(DType::f32, Rounding::nearest, 128, 256, true));
  out.push_back(fit(DType::bf16, Rounding::nearest, 32, 32, true));
  return out;
}

void LayerNormApplySpec::validate(const TargetLimits& t) const { validate_block_tile(family, 32, tile, 1, false, t); }

void DenseRowStatsSpec::validate(const TargetLimits& t) const {
  require(in == DType::f32 || in == DType::bf16, family, "in must be f32 or bf16");
  require_threads(family, warps * 32, t);
}

void Bf16OpSpec::validate(const TargetLimits& t) const {
  require_threads(family, cta_threads, t);
}

std::string Bf16OpSpec::kernel_expr() const {
  static constexpr const char* ops[] = {"jetforge::kBf16Gelu",     "jetforge::kBf16GeluGrad", "jetforge::kBf16Dropout",
                                        "jetforge::kBf16LayerNormApply", "jetforge::kBf16Residual", "jetforge::kBf16FromF32"};
  return "jetforge::bf16_op_kernel<" + std::string(ops[int(op)]) + ", " + std::to_string(cta_threads) + ">";
}

std::vector<Bf16OpSpec> Bf16OpSpec::defaults() {
  std::vector<Bf16OpSpec> out;
  for (auto op : {Bf16Op::gelu, Bf16Op::gelu_grad, Bf16Op::dropout, Bf16Op::layernorm_apply, Bf16Op::residual, Bf16Op::from_f32}) out.push_back({op, 256});
  return out;
}

std::string OptimSpec::kernel_expr() const {
  static constexpr const char* names[] = {"jetforge::sum_squares_kernel", "jetforge::clip_factor_kernel", "jetforge::adamw_kernel"};
  return std::string(names[int(kernel)]) + "<" + std::to_string(cta_threads) + ">";
}

std::string OptimSpec::params_decl() const {
  static constexpr const char* params[] = {"jetforge::SumSquaresParams", "jetforge::ClipFactorParams", "jetforge::AdamWParams"};
  return params[int(kernel)];
}

void ColumnSumSpec::validate(const TargetLimits& t) const {
  require(kernel != ColumnSumKernel::sums || t.sm >= 90, family, "kernel=sums takes a cluster of CTAs, which needs sm_90 or newer, not " + t.arch +
                                                                    "; use kernel=partials there");
  require_threads(family, cta_threads, t);
  // The INT8 kernels keep 16 FP32 sums per thread in static shared memory (48 KiB at most).
  require((kernel != ColumnSumKernel::sums && kernel != ColumnSumKernel::partials) || cta_threads <= 512, family,
          "threads=" + std::to_string(cta_threads) + ": the INT8 kernels take at most 512");
}

std::string ColumnSumSpec::kernel_expr() const {
  switch (kernel) {
    case ColumnSumKernel::sums: return "jetforge::column_sum_codes_kernel<" + std::to_string(cta_threads) + ", jetforge::kColumnSumParts>";
    case ColumnSumKernel::partials: return "jetforge::column_sum_codes_kernel<" + std::to_string(cta_threads) + ", 1>";
    case ColumnSumKernel::partials_bf16: return "jetforge::column_sum_partials_kernel<" + std::to_string(cta_threads) + ">";
    case ColumnSumKernel::reduce: return "jetforge::column_sum_reduce_kernel<" + std::to_string(cta_threads) + ">";
  }
  return "";
}

std::string EmbeddingSpec::kernel_expr() const {
  static constexpr const char* names[] = {"jetforge::embedding_forward_kernel", "jetforge::embedding_backward_tokens_kernel",
                                          "jetforge::embedding_backward_positions_kernel"};
  return std::string(names[int(kernel)]) + "<" + std::to_string(cta_threads) + ">";
}

void CrossEntropySpec::validate(const TargetLimits& t) const {
  require(in == DType::f32 || in == DType::bf16, family, "in=" + std::string(enum_name(in)) + " is not supported (f32 or bf16)");
  require(cta_threads % 32 == 0, family, "threads=" + std::to_string(cta_threads) + " must be a multiple of 32");
  require_threads(family, cta_threads, t);
}

std::string CrossEntropySpec::kernel_expr() const {
  return "jetforge::cross_entropy_kernel<" + std::string(device_type_name(in)) + ", " + std::to_string(cta_threads) + ">";
}

void AttentionSpec::validate(const TargetLimits& t) const {
  require(head_dim == 64 || head_dim == 128, family, "head_dim=" + std::to_string(head_dim) + " is not supported (64 or 128)");
  require(t.sm >= 80, family, "needs sm_80 or newer (mma.sync with BF16), not " + t.arch);
  require(tile == 32 || tile == 64, family, "tile=" + std::to_string(tile) + " is not supported (32 or 64)");
  require(kernel != AttentionKernel::delta || tile == 64, family, "tile does not apply to kernel=delta (leave it at 64)");
  require(smem_bytes() <= t.max_dynamic_smem, family,
          "needs " + std::to_string(smem_bytes()) + " bytes of shared memory, " + t.arch + " allows " + std::to_string(t.max_dynamic_smem));
}

int AttentionSpec::smem_bytes() const {
  // RowTile<Rows, D>: Rows x (D + 8) BF16 (templates/attention.cuh). Forward: the 128-query tile and two stages of K
  // and V; backward: two resident 64-row tiles and two stages of two streamed tiles, plus (dK, dV) two stages of
  // the streamed queries' log-sum-exps and deltas.
  const int row_bytes = (head_dim + 8) * 2, n = streamed_rows();
  switch (kernel) {
    case AttentionKernel::forward: return (kForwardRows + 4 * n) * row_bytes;
    case AttentionKernel::delta: return 0;
    case AttentionKernel::backward_kv: return (2 * kBlock + 4 * n) * row_bytes + 2 * 2 * n * 4;
    case AttentionKernel::backward_q: return (2 * kBlock + 4 * n) * row_bytes;
  }
  return 0;
}

std::string AttentionSpec::kernel_expr() const {
  static constexpr const char* names[] = {"jetforge::attention_forward_kernel", "jetforge::attention_delta_kernel",
                                          "jetforge::attention_backward_kv_kernel", "jetforge::attention_backward_q_kernel"};
  const std::string d = std::to_string(head_dim);
  if (kernel == AttentionKernel::delta) return std::string(names[int(kernel)]) + "<" + d + ">";
  return std::string(names[int(kernel)]) + "<" + d + (causal ? ", true, " : ", false, ") + std::to_string(streamed_rows()) + ">";
}

std::vector<AttentionSpec> AttentionSpec::defaults() {
  std::vector<AttentionSpec> out;
  for (int d : {64, 128})
    for (AttentionKernel k : {AttentionKernel::forward, AttentionKernel::delta, AttentionKernel::backward_kv, AttentionKernel::backward_q})
      for (bool causal : {true, false})
        if (k != AttentionKernel::delta || causal) out.push_back(fit(k, d, causal));
  return out;
}

void AttentionSm90Spec::validate(const TargetLimits& t) const {
  require(t.arch == "sm_90a", family, "needs sm_90a (wgmma and TMA), not " + t.arch + "; use the portable attention kernels there");
  require(kernel != AttentionKernel::delta, family, "kernel=delta has no Hopper version (use the attention family's)");
  require(head_dim == 64 || head_dim == 128, family, "head_dim=" + std::to_string(head_dim) + " is not supported (64 or 128)");
  require(keys == 64 || keys == 128, family, "keys=" + std::to_string(keys) + " is not supported (64 or 128)");
  require(stages == 2 || stages == 3, family, "stages=" + std::to_string(stages) + " is not supported (2 or 3)");
  require(kernel == AttentionKernel::forward || (keys == 128 && schedule == AttentionSchedule::plain), family,
          "keys and schedule apply to the forward kernel only (leave them at 128 and plain)");
  require(smem_bytes() <= t.max_dynamic_smem, family,
          "needs " + std::to_string(smem_bytes()) + " bytes of shared memory, " + t.arch + " allows " + std::to_string(t.max_dynamic_smem));
}

int AttentionSm90Spec::smem_bytes() const {
  // Mirrors the kernels' shared-memory structs in templates/attention_sm90.cuh (they trap if given less): the resident
  // 128-token tile(s), the stages of the streamed tiles, the backward's stages of log-sum-exps and deltas, barriers.
  const int tile_row = head_dim * 2, n = streamed_rows();
  if (kernel == AttentionKernel::forward) return (kRows + 2 * stages * n) * tile_row + (1 + 4 * stages) * 8 + 1024;
  return (2 * kRows + 2 * stages * n) * tile_row + stages * 2 * n * 4 + (1 + 2 * stages) * 8 + 1024;
}

std::string AttentionSm90Spec::kernel_expr() const {
  const std::string d = std::to_string(head_dim), c = causal ? "true" : "false";
  switch (kernel) {
    case AttentionKernel::forward:
      return "jetforge::attention_forward_sm90_kernel<" + d + ", " + c + ", " + std::to_string(keys) + ", " + std::to_string(stages) + ", " +
             (schedule == AttentionSchedule::pingpong ? "true" : "false") + ">";
    case AttentionKernel::backward_kv: return "jetforge::attention_backward_kv_sm90_kernel<" + d + ", " + c + ", " + std::to_string(stages) + ">";
    case AttentionKernel::backward_q: return "jetforge::attention_backward_q_sm90_kernel<" + d + ", " + c + ", " + std::to_string(stages) + ">";
    case AttentionKernel::delta: break;
  }
  return {};
}

std::vector<AttentionSm90Spec> AttentionSm90Spec::defaults() {
  std::vector<AttentionSm90Spec> out;
  for (AttentionKernel k : {AttentionKernel::forward, AttentionKernel::backward_kv, AttentionKernel::backward_q})
    for (int d : {64, 128})
      for (bool causal : {true, false}) out.push_back(fit(k, d, causal));
  return out;
}

void AttentionReferenceSpec::validate(const TargetLimits&) const {
  require(kernel != AttentionKernel::delta, family, "kernel=delta: the reference's backward_q kernel computes delta");
  require(head_dim == 64 || head_dim == 128, family, "head_dim=" + std::to_string(head_dim) + " is not supported (64 or 128)");
}

std::string AttentionReferenceSpec::kernel_expr() const {
  return "jetforge::attention_reference_" + std::string(enum_name(kernel)) + "_kernel<" + std::to_string(head_dim) + ">";
}

std::vector<AttentionReferenceSpec> AttentionReferenceSpec::defaults() {
  std::vector<AttentionReferenceSpec> out;
  for (int d : {64, 128})
    for (AttentionKernel k : {AttentionKernel::forward, AttentionKernel::backward_q, AttentionKernel::backward_kv}) out.push_back({k, d});
  return out;
}

void GemmSm90Spec::validate(const TargetLimits& t) const {
  require(t.arch == "sm_90a", family, "needs sm_90a (wgmma and TMA), not " + t.arch + "; use the portable GEMM path there");
  require(bn == 64 || bn == 128, family, "bn=" + std::to_string(bn) + " is not supported (64 or 128)");
  require(group == 32 || group == 64 || group == 128, family, "group=" + std::to_string(group) + " is not supported (32, 64 or 128)");
  require(stages >= 2 && stages <= 8, family, "stages=" + std::to_string(stages) + " must be in 2..8");
  require(cluster == 1 || cluster == 2, family, "cluster=" + std::to_string(cluster) + " is not supported (1 or 2)");
  require(overlap >= 0 && overlap <= 2, family, "overlap=" + std::to_string(overlap) + " must be 0, 1 or 2");
  require(persistent == 0 || persistent == 1, family, "persistent=" + std::to_string(persistent) + " must be 0 or 1");
  require(overlap != 2 || kBK / group >= 2, family, "overlap=2 needs two K-groups per 128-deep K slice (group 32 or 64)");
  require(out == GemmOut::i8 || round == Rounding::nearest, family, "stochastic rounding applies to INT8 output only");
  require(split_k >= 1 && split_k <= 16, family, "split_k=" + std::to_string(split_k) + " must be in 1..16");
  require(split_k == 1 || allows_split_k(), family,
          "split_k=" + std::to_string(split_k) + " needs FP32 output, persistent=1, cluster=1 and epilogue=consumers (splits add FP32 partial results in turn)");
  require(smem_bytes() <= t.max_dynamic_smem, family,
          "needs " + std::to_string(smem_bytes()) + " bytes of shared memory, " + t.arch + " allows " + std::to_string(t.max_dynamic_smem) +
              " (use fewer stages, bn=64 or epilogue=consumers)");
}

int GemmSm90Spec::smem_bytes() const {
  // Mirrors GemmSm90Smem in templates/gemm_sm90.cuh; the kernel traps if it was given less than it needs.
  const int groups = kBK / group;
  const int tiles = stages * (kBM + bn) * kBK;
  const int scales = stages * (kBM / 32 + bn / 32) * groups * 4;
  const int barriers = 2 * stages * 8;
  const int block_maxima = 2 * 4 * (bn / 32) * 4;
  const int epilogue = block_maxima + (this->epilogue == GemmEpilogue::staged ? kBM * (bn + 8) * 4 + 2 * 8  // the FP32 tile and its two barriers
                                                                               : 2 * 64 * bn);  // INT8 staging
  return tiles + scales + barriers + epilogue + 1024 /* alignment of the swizzled tiles */ + 64 /* struct padding */;
}

std::string GemmSm90Spec::kernel_expr() const {
  return "jetforge::gemm_sm90_kernel<" + std::to_string(bn) + ", " + std::to_string(group) + ", " + std::to_string(stages) + ", " +
         gemm_epilogue_args(out, round, fold) + ", " + std::to_string(cluster) + ", " + std::to_string(overlap) + ", " +
         std::to_string(persistent) + ", " + (epilogue == GemmEpilogue::staged ? "1" : "0") + ", " + std::to_string(split_k) + ">";
}

std::vector<GemmSm90Spec> GemmSm90Spec::defaults() {
  std::vector<GemmSm90Spec> out;
  for (int group : {32, 128}) {
    out.push_back(GemmSm90Spec{128, group, 4, GemmOut::i8, Rounding::nearest, GemmFold::convert, 1});
    out.push_back(GemmSm90Spec{128, group, 4, GemmOut::i8, Rounding::nearest, GemmFold::convert, 1, 0});
    out.push_back(GemmSm90Spec{64, group, 4, GemmOut::i8, Rounding::nearest, GemmFold::magic, 1});
    out.push_back(GemmSm90Spec{128, group, 4, GemmOut::i8, Rounding::nearest, GemmFold::convert, 2});
    out.push_back(GemmSm90Spec{128, group, 4, GemmOut::i8, Rounding::stochastic, GemmFold::convert, 1});
    out.push_back(GemmSm90Spec{128, group, 4, GemmOut::f32, Rounding::nearest, GemmFold::convert, 1});
    out.push_back(GemmSm90Spec{128, group, 4, GemmOut::bf16, Rounding::nearest, GemmFold::convert, 1});
  }
  // The staged epilogue with INT8 (stochastic) and FP32 output.
  const int overlap = 2, persistent = 1;
  out.push_back(GemmSm90Spec{128, 32, 4, GemmOut::i8, Rounding::stochastic, GemmFold::convert, 1, overlap, persistent, GemmEpilogue::staged});
  out.push_back(GemmSm90Spec{128, 32, 4, GemmOut::f32, Rounding::nearest, GemmFold::convert, 1, overlap, persistent, GemmEpilogue::staged});
  // Split-K, FP32 output (the weight gradients).
  out.push_back(GemmSm90Spec{128, 32, 4, GemmOut::f32, Rounding::nearest, GemmFold::convert, 1, overlap, persistent, GemmEpilogue::consumers, 4});
  return out;
}

void GemmSm80Spec::validate(const TargetLimits& t) const {
  require(group == 32 || group == 64 || group == 128, family, "group=" + std::to_string(group) + " is not supported (32, 64 or 128)");
  require(stages >= 2 && stages <= 6, family, "stages=" + std::to_string(stages) + " must be in 2..6");
  require(out == GemmOut::i8 || round == Rounding::nearest, family, "stochastic rounding applies to INT8 output only");
  require(smem_bytes() <= t.max_dynamic_smem, family,
          "needs " + std::to_string(smem_bytes()) + " bytes of shared memory, " + t.arch + " allows " + std::to_string(t.max_dynamic_smem));
}

std::string GemmSm80Spec::kernel_expr() const {
  return "jetforge::gemm_sm80_kernel<" + std::to_string(group) + ", " + std::to_string(stages) + ", " + gemm_epilogue_args(out, round, fold) + ">";
}

std::vector<GemmSm80Spec> GemmSm80Spec::defaults() {
  std::vector<GemmSm80Spec> out;
  for (int group : {32, 128}) {
    out.push_back(GemmSm80Spec{group, 3, GemmOut::i8, Rounding::nearest, GemmFold::convert});
    out.push_back(GemmSm80Spec{group, 3, GemmOut::i8, Rounding::stochastic, GemmFold::convert});
    out.push_back(GemmSm80Spec{group, 3, GemmOut::f32, Rounding::nearest, GemmFold::convert});
    out.push_back(GemmSm80Spec{group, 3, GemmOut::bf16, Rounding::nearest, GemmFold::convert});
  }
  return out;
}

std::uint64_t hash_templates(std::string_view template_file) {
  static std::mutex mutex;
  static std::map<std::string, std::uint64_t, std::less<>> memo;  // the embedded texts never change in a process
  std::lock_guard lock(mutex);
  if (auto it = memo.find(template_file); it != memo.end()) return it->second;
  Fnv1a64 h;
  for (const auto& t : template_closure(template_file)) h.add(t.name).add(t.text);
  return memo.emplace(std::string(template_file), h.value()).first->second;
}

const std::vector<FamilyInfo>& families() {
  static const std::vector<FamilyInfo> all = {
      family_info<QuantizeSpec>("FP32/BF16 -> per-block INT8 codes + FP32 scales (nearest or stochastic), optionally with X^T"),
      family_info<DequantizeSpec>("per-block INT8 codes + scales -> FP32/BF16"),
      family_info<TransposeSpec>("BlockTensor -> its transpose (codes and scale grid)"),
      family_info<ElementwiseSpec>("INT8 -> INT8 GELU (tanh/erf) forward and backward, dropout, with fresh per-block scales"),
      family_info<LayerNormSpec>("LayerNorm forward (statistics + normalized INT8 output) or backward (dx, dgamma/dbeta partials), one pass per 32-row strip"),
      family_info<ResidualSpec>("residual stream r += dequantize(x) (FP32/BF16 stream) with the INT8 copy of r, nearest or stochastic"),
      family_info<LayerNormApplySpec>("LayerNorm forward with the statistics given (residual_add's): y = (x - mean) rstd gamma + beta, INT8 out"),
      family_info<ResidualStatsSpec>("the next LayerNorm's mean and rstd from the residual kernel's row sums per 32-column block"),
      family_info<DenseRowStatsSpec>("per-row mean and rstd of a dense FP32/BF16 matrix (the BF16 mode's LayerNorm statistics)"),
      family_info<Bf16OpSpec>("BF16 twins of the nonlinear operators (benchmark baselines)"),
      family_info<OptimSpec>("optimizer: per-CTA sums of squares, global-norm clip factor, fused AdamW"),
      family_info<Bf16LayerNormGradSpec>("LayerNorm backward on BF16 tensors (BF16 mode): per-row dx, per-32-row dgamma/dbeta partials"),
      family_info<ColumnSumSpec>("column sums of an INT8 BlockTensor (bias gradients): block-row partials, then their ordered sum"),
      family_info<EmbeddingSpec>("token + position embedding (FP32), forward and deterministic backward (per distinct token, per position)"),
      family_info<CrossEntropySpec>("fused softmax + cross-entropy over (padded) vocabulary rows: per-row loss, logits overwritten by their gradient"),
      family_info<AttentionSpec>("BF16 attention core softmax(Q K^T / sqrt(d)) V, causal or not: forward with log-sum-exp, backward (mma.sync)"),
      family_info<AttentionSm90Spec>("BF16 attention core on Hopper (TMA, wgmma; sm_90a only): forward and backward, the portable kernels' contract"),
      family_info<AttentionReferenceSpec>("FP32 reference of the attention core, a warp per row (tests on shapes too large for the CPU reference; not an operator)"),
      family_info<GemmSm90Spec>("per-block INT8 GEMM C = A B^T on Hopper (wgmma, TMA), INT8/BF16/FP32 out (sm_90a only)"),
      family_info<FoldProbeSpec>("instruction-throughput probe of the GEMM fold's conversion and FMA (bench_fold; not an operator)"),
      family_info<CompareSpec>("the number of 4-byte words two device buffers differ in (the tuner's bit-exact check on the GPU)"),
      family_info<GemmSm80Spec>("per-block INT8 GEMM C = A B^T, portable path (mma.sync, cp.async; sm_80 and newer)"),
  };
  return all;
}

KernelSource emit_key(std::string_view key, const TargetLimits& target) {
  const std::string_view family = key.substr(0, key.find(':'));
  std::string names;
  for (const auto& f : families()) {
    if (f.name == family) return f.emit_key(key, target);
    names += (names.empty() ? "" : ", ") + std::string(f.name);
  }
  throw SpecError("unknown kernel family '" + std::string(family) + "' in spec '" + std::string(key) + "' (families: " + names + ")");
}

}  // namespace jetforge::gen
