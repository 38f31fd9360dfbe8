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

// Block-quantize a dense FP32/BF16 matrix; optionally also write the transposed BlockTensor.
struct QuantizeSpec {
  static constexpr std::string_view family = "quantize";
  static constexpr std::string_view template_file = "quantize.cuh";
  static constexpr std::string_view params_type = "jetforge::QuantizeParams";
  DType in = DType::bf16;
  int block = 32;
  Rounding round = Rounding::nearest;
  bool transpose = false;
  int warps = 8;  // one warp per B x B block

  template <class S, class F> static void fields(S& s, F&& f) {
    f("in", s.in), f("block", s.block), f("round", s.round), f("transpose", s.transpose), f("warps", s.warps);
  }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return warps * 32; }
  static std::vector<QuantizeSpec> defaults();
};

// Dense FP32/BF16 matrix from a BlockTensor.
struct DequantizeSpec {
  static constexpr std::string_view family = "dequantize";
  static constexpr std::string_view template_file = "dequantize.cuh";
  static constexpr std::string_view params_type = "jetforge::DequantizeParams";
  DType out = DType::bf16;
  int block = 32;
  int warps = 8;

  template <class S, class F> static void fields(S& s, F&& f) { f("out", s.out), f("block", s.block), f("warps", s.warps); }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return warps * 32; }
  static std::vector<DequantizeSpec> defaults();
};

// BlockTensor -> its transpose (codes and scale grid), exact.
struct TransposeSpec {
  static constexpr std::string_view family = "transpose";
  static constexpr std::string_view template_file = "transpose.cuh";
  static constexpr std::string_view params_type = "jetforge::TransposeParams";
  int block = 32;
  int warps = 8;

  template <class S, class F> static void fields(S& s, F&& f) { f("block", s.block), f("warps", s.warps); }
  void validate(const TargetLimits& target) const;
  std::string kernel_expr() const;
  int threads() const { return warps * 32; }
  static std::vector<TransposeSpec> defaults();
};

// Type-erased view of a family, for the command line and for "compile every template" tests.
struct FamilyInfo {
  std::string_view name;
  std::string_view summary;
  std::function<std::vector<std::string>()> default_keys;
  std::function<KernelSource(std::string_view key, const TargetLimits&)> emit_key;  // parse, validate, emit
};

const std::vector<FamilyInfo>& families();

// Parses a key of any family ("quantize:in=f32,..."), validates it for the target and emits its source.
KernelSource emit_key(std::string_view key, const TargetLimits& target);

}  // namespace jetforge::gen
