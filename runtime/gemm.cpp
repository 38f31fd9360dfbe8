#include "runtime/gemm.hpp"

#include <algorithm>
#include <stdexcept>

#include "generator/families.hpp"
#include "runtime/require.hpp"
#include "templates/gemm_sm80.cuh"
#include "templates/gemm_sm90.cuh"

namespace jetforge {

namespace {

std::string shape(const BlockTensorRef& t) { return std::to_string(t.rows) + "x" + std::to_string(t.cols); }

void check_operands(const BlockTensorRef& a, const BlockTensorRef& b, std::int64_t c_rows, std::int64_t c_cols) {
  require(a.block == 32 && b.block == 32, [&] { return std::string("gemm: operands must use 32-row blocks"); });
  require(a.cols == b.cols,
          [&] { return std::string("gemm: A is ") + shape(a) + " and B is " + shape(b) + ": both must have the same K (columns)"; });
  require(a.group == b.group, [&] {
    return std::string("gemm: A and B have K-groups ") + std::to_string(a.group) + " and " + std::to_string(b.group) + ": they must match";
  });
  require(a.group == 32 || a.group == 64 || a.group == 128,
          [&] { return std::string("gemm: K-group ") + std::to_string(a.group) + " is not supported (32, 64 or 128)"; });
  require(a.cols % a.group == 0,
          [&] { return std::string("gemm: K=") + std::to_string(a.cols) + " is not a multiple of the K-group " + std::to_string(a.group); });
  require(c_rows == a.rows && c_cols == b.rows, [&] {
    return std::string("gemm: C must be ") + std::to_string(a.rows) + "x" + std::to_string(b.rows) + " (A rows x B rows), got " +
           std::to_string(c_rows) + "x" + std::to_string(c_cols);
  });
}

// A 2-D TMA map over K-major INT8 codes: boxes of 128 bytes of K by `box_rows` rows, 128-byte swizzle.
TensorMap codes_map(const BlockTensorRef& t, int box_rows) {
  const cuuint64_t dims[2] = {cuuint64_t(t.cols), cuuint64_t(t.rows)};
  const cuuint64_t strides[1] = {cuuint64_t(t.cols)};
  const cuuint32_t box[2] = {128, cuuint32_t(box_rows)};
  TensorMap map;
  encode_tensor_map_sw128(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, t.codes, dims, strides, box);
  return map;
}

bool uses_sm90(const GemmKernelChoice& choice, const gen::TargetLimits& target) { return !choice.portable && gen::GemmSm90Spec::supports(target); }

gen::Rounding output_rounding(gen::GemmOut out, gen::Rounding rounding) { return out == gen::GemmOut::i8 ? rounding : gen::Rounding::nearest; }

gen::GemmSm90Spec sm90_spec(gen::GemmOut out, int group, gen::Rounding rounding, std::int64_t m, std::int64_t n, std::int64_t k, const GemmKernelChoice& c) {
  const int overlap = c.overlap >= 0 ? c.overlap : group == 32 ? 2 : 0;
  gen::GemmSm90Spec spec{c.bn, group, c.stages, out, output_rounding(out, rounding), c.fold, c.cluster, overlap, c.persistent, c.epilogue, c.split_k};
  if (c.split_k == 0) spec.split_k = spec.allows_split_k() ? gemm_default_split_k(out, m, n, k) : 1;
  return spec;
}

gen::GemmSm80Spec sm80_spec(gen::GemmOut out, int group, gen::Rounding rounding, const GemmKernelChoice& c) {
  return gen::GemmSm80Spec{group, 3, out, output_rounding(out, rounding), c.fold};
}

void run(Context& ctx, const BlockTensorRef& a, const BlockTensorRef& b, gen::GemmOut out, const GemmProblem& problem, const GemmOptions& o,
         CUstream stream) {
  const auto& dev = ctx.device().info();
  if (dev.cc_major < 8)
    throw std::runtime_error("gemm: " + dev.name + " is sm_" + std::to_string(dev.cc_major) + std::to_string(dev.cc_minor) +
                             "; the per-block INT8 GEMM needs sm_80 or newer (INT8 mma)");
  const auto scales = [](const BlockTensorRef& t) { return reinterpret_cast<const float*>(t.scales); };
  GemmKernelChoice choice = o.kernel;
  if (o.use_tuned) {
    const gen::Signature signature{gen::signature_tag("gemm"), std::int64_t(out), std::int64_t(output_rounding(out, o.rounding)), a.group, problem.m, problem.n,
                                   problem.k};
    if (auto winner = ctx.tuned<GemmKernelChoice>(
            signature, [&] { return gemm_problem_key(out, o.rounding, a.group, problem.m, problem.n, problem.k); }, choice_from_spec))
      choice = *winner;
  }
  if (uses_sm90(choice, ctx.limits())) {
    const auto spec = sm90_spec(out, a.group, o.rounding, problem.m, problem.n, problem.k, choice);
    GemmSm90Params params;
    params.a = codes_map(a, gen::GemmSm90Spec::kBM);
    params.b = codes_map(b, spec.bn / spec.cluster);  // with a cluster, each CTA loads its share of the B tile
    params.a_scales = scales(a);
    params.b_scales = scales(b);
    params.problem = problem;
    const std::int64_t m_tiles = (problem.m + spec.kBM * spec.cluster - 1) / (spec.kBM * spec.cluster) * spec.cluster;  // whole clusters
    const std::int64_t tiles = m_tiles * ((problem.n + spec.bn - 1) / spec.bn), units = tiles * spec.split_k;
    if (spec.split_k > 1) {
      const auto flags = ctx.split_k_flags(stream, std::size_t(tiles), spec.split_k);
      params.split_flags = reinterpret_cast<u32*>(flags.flags), params.split_base = flags.base;
    }
    // Persistent: one CTA per SM (384 threads of 168 registers leave room for no second), whole clusters.
    const std::int64_t ctas = spec.persistent ? std::min<std::int64_t>(units, dev.sm_count / spec.cluster * spec.cluster) : units;
    ctx.kernel(spec).launch(unsigned(ctas), params, stream, unsigned(spec.smem_bytes()), unsigned(spec.cluster));
  } else {
    const auto spec = sm80_spec(out, a.group, o.rounding, choice);
    const GemmSm80Params params{reinterpret_cast<const i8*>(a.codes), reinterpret_cast<const i8*>(b.codes), scales(a), scales(b), problem};
    const std::int64_t tiles = (problem.m + spec.kBM - 1) / spec.kBM * ((problem.n + spec.kBN - 1) / spec.kBN);
    ctx.kernel(spec).launch(unsigned(tiles), params, stream, unsigned(spec.smem_bytes()));
  }
}

}  // namespace

std::string gemm_problem_key(gen::GemmOut out, gen::Rounding rounding, int group, std::int64_t m, std::int64_t n, std::int64_t k) {
  return "gemm:out=" + std::string(gen::enum_name(out)) + ",round=" + std::string(gen::enum_name(output_rounding(out, rounding))) + ",group=" +
         std::to_string(group) + ",m=" + std::to_string(m) + ",n=" + std::to_string(n) + ",k=" + std::to_string(k);
}

int gemm_default_split_k(gen::GemmOut out, std::int64_t m, std::int64_t n, std::int64_t k) {
  if (out != gen::GemmOut::f32) return 1;
  constexpr std::int64_t kSms = 132, kTile = gen::GemmSm90Spec::kBM, kSlice = gen::GemmSm90Spec::kBK;  // the H100; 128 x 128 tiles
  const std::int64_t tiles = (m + kTile - 1) / kTile * ((n + kTile - 1) / kTile), slices = (k + kSlice - 1) / kSlice;
  // Each split's epilogue, taken in turn, costs about four K slices (run 148: 768 x 768 x 8192 in 69.8 / 49.6 / 54.6 /
  // 84.4 us at 1 / 2 / 4 / 8 splits, 3072 x 768 x 8192 in 137.2 / 125.4 / 133.0 / 163.2).
  const auto cost = [&](std::int64_t s) { return double((tiles * s + kSms - 1) / kSms * ((slices + s - 1) / s) + 4 * s); };
  int best = 1;
  for (int s : {2, 4, 8})
    if (slices / s >= 4 && cost(s) < 0.9 * cost(best)) best = s;
  return best;
}

GemmKernelChoice choice_from_spec(const std::string& spec_key) {
  if (spec_key.starts_with("gemm_sm90:")) {
    const auto s = gen::parse_key<gen::GemmSm90Spec>(spec_key);
    return GemmKernelChoice{false, s.bn, s.stages, s.fold, s.cluster, s.overlap, s.persistent, s.epilogue, s.split_k};
  }
  const auto s = gen::parse_key<gen::GemmSm80Spec>(spec_key);  // throws, naming the family, for anything else
  return GemmKernelChoice{true, 128, s.stages, s.fold, 1};
}

std::string gemm_kernel_key(gen::GemmOut out, int group, gen::Rounding rounding, std::int64_t m, std::int64_t n, std::int64_t k,
                            const GemmKernelChoice& choice, const gen::TargetLimits& target) {
  return uses_sm90(choice, target) ? gen::canonical_key(sm90_spec(out, group, rounding, m, n, k, choice))
                                   : gen::canonical_key(sm80_spec(out, group, rounding, choice));
}

void gemm(Context& ctx, const BlockTensorRef& a, const BlockTensorRef& b, const BlockTensorRef& c, const GemmOptions& o, CUstream stream) {
  check_operands(a, b, c.rows, c.cols);
  require(c.block == 32 && c.group == 32, [&] { return std::string("gemm: INT8 output must use 32x32 blocks"); });
  require(!o.accumulate, [&] { return std::string("gemm: accumulate applies to FP32 output only"); });
  const GemmProblem problem{reinterpret_cast<void*>(c.codes), reinterpret_cast<float*>(c.scales), reinterpret_cast<const float*>(o.bias), a.rows, b.rows,
                            a.cols, seed_key(o.seed), 0};
  run(ctx, a, b, gen::GemmOut::i8, problem, o, stream);
}

void gemm(Context& ctx, const BlockTensorRef& a, const BlockTensorRef& b, const DenseRef& c, const GemmOptions& o, CUstream stream) {
  check_operands(a, b, c.rows, c.cols);
  require(c.dtype == DType::f32 || c.dtype == DType::bf16, [&] { return std::string("gemm: dense output must be f32 or bf16"); });
  require(o.rounding == gen::Rounding::nearest, [&] { return std::string("gemm: stochastic rounding applies to INT8 output only"); });
  require(!o.accumulate || c.dtype == DType::f32, [&] { return std::string("gemm: accumulate needs FP32 output"); });
  const GemmProblem problem{reinterpret_cast<void*>(c.data), nullptr, reinterpret_cast<const float*>(o.bias), a.rows, b.rows, a.cols, 0,
                            o.accumulate ? 1 : 0};
  run(ctx, a, b, c.dtype == DType::f32 ? gen::GemmOut::f32 : gen::GemmOut::bf16, problem, o, stream);
}

void linear_backward_data(Context& ctx, const BlockTensorRef& dy, const BlockTensorRef& w_t, const BlockTensorRef& dx, std::uint64_t seed,
                          CUstream stream) {
  gemm(ctx, dy, w_t, dx, GemmOptions{gen::Rounding::stochastic, seed, 0, false, {}}, stream);
}

void linear_backward_weight(Context& ctx, const BlockTensorRef& dy_t, const BlockTensorRef& x_t, const DenseRef& dw, bool accumulate,
                            CUstream stream) {
  gemm(ctx, dy_t, x_t, dw, GemmOptions{gen::Rounding::nearest, 0, 0, accumulate, {}}, stream);
}

}  // namespace jetforge
