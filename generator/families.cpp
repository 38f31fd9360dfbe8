#include "generator/families.hpp"

#include <algorithm>

namespace jetforge::gen {

namespace {

void require(bool ok, std::string_view family, const std::string& what) {
  if (!ok) throw SpecError(std::string(family) + " spec: " + what);
}

// The warp-per-block kernels share their shape rules: one warp owns a B x B block, and each lane owns whole
// 16-byte chunks of it, which bounds B from both sides.
void validate_warp_per_block(std::string_view family, int block, int warps, int static_smem, const TargetLimits& t) {
  require(block == 16 || block == 32 || block == 64, family, "block=" + std::to_string(block) + " is not supported (16, 32 or 64)");
  require(warps >= 1 && warps * 32 <= t.max_threads_per_block, family,
          "warps=" + std::to_string(warps) + " must be in 1.." + std::to_string(t.max_threads_per_block / 32));
  require(static_smem <= t.max_static_smem, family,
          "needs " + std::to_string(static_smem) + " bytes of static shared memory, " + t.arch + " allows " + std::to_string(t.max_static_smem) +
              " (use fewer warps or a smaller block)");
}

int transpose_tile_smem(int block, int warps) { return warps * block * (block + 4); }

std::string round_expr(Rounding r) { return r == Rounding::nearest ? "jetforge::kRoundNearest" : "jetforge::kRoundStochastic"; }

template <class Spec> FamilyInfo family_info(std::string_view summary) {
  return FamilyInfo{
      Spec::family, summary,
      [] {
        std::vector<std::string> keys;
        for (const Spec& s : Spec::defaults()) keys.push_back(canonical_key(s));
        return keys;
      },
      [](std::string_view key, const TargetLimits& target) { return emit_checked(parse_key<Spec>(key), target); }};
}

}  // namespace

void QuantizeSpec::validate(const TargetLimits& t) const {
  require(in == DType::f32 || in == DType::bf16, family, "in must be f32 or bf16");
  validate_warp_per_block(family, block, warps, transpose ? transpose_tile_smem(block, warps) : 0, t);
}

std::string QuantizeSpec::kernel_expr() const {
  return "jetforge::quantize_kernel<" + std::string(device_type_name(in)) + ", " + std::to_string(block) + ", " + round_expr(round) + ", " +
         (transpose ? "true" : "false") + ", " + std::to_string(warps) + ">";
}

std::vector<QuantizeSpec> QuantizeSpec::defaults() {
  std::vector<QuantizeSpec> out;
  for (DType in : {DType::f32, DType::bf16})
    for (Rounding round : {Rounding::nearest, Rounding::stochastic})
      for (bool transpose : {false, true}) out.push_back(QuantizeSpec{in, 32, round, transpose, 8});
  return out;
}

void DequantizeSpec::validate(const TargetLimits& t) const {
  require(out == DType::f32 || out == DType::bf16, family, "out must be f32 or bf16");
  validate_warp_per_block(family, block, warps, 0, t);
}

std::string DequantizeSpec::kernel_expr() const {
  return "jetforge::dequantize_kernel<" + std::string(device_type_name(out)) + ", " + std::to_string(block) + ", " + std::to_string(warps) + ">";
}

std::vector<DequantizeSpec> DequantizeSpec::defaults() { return {DequantizeSpec{DType::f32, 32, 8}, DequantizeSpec{DType::bf16, 32, 8}}; }

void TransposeSpec::validate(const TargetLimits& t) const { validate_warp_per_block(family, block, warps, transpose_tile_smem(block, warps), t); }

std::string TransposeSpec::kernel_expr() const {
  return "jetforge::transpose_kernel<" + std::to_string(block) + ", " + std::to_string(warps) + ">";
}

std::vector<TransposeSpec> TransposeSpec::defaults() { return {TransposeSpec{32, 8}}; }

std::uint64_t hash_templates(std::string_view template_file) {
  Fnv1a64 h;
  for (const auto& t : template_closure(template_file)) h.add(t.name).add(t.text);
  return h.value();
}

const std::vector<FamilyInfo>& families() {
  static const std::vector<FamilyInfo> all = {
      family_info<QuantizeSpec>("FP32/BF16 -> per-block INT8 codes + FP32 scales (nearest or stochastic), optionally with X^T"),
      family_info<DequantizeSpec>("per-block INT8 codes + scales -> FP32/BF16"),
      family_info<TransposeSpec>("BlockTensor -> its transpose (codes and scale grid)"),
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
