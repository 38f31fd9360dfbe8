#include "generator/spec.hpp"

namespace jetforge::gen {

std::string_view device_type_name(DType t) {
  switch (t) {
    case DType::f32: return "float";
    case DType::bf16: return "jetforge::bf16";
    case DType::i8: return "jetforge::i8";
  }
  throw SpecError("unknown dtype");
}

int dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::i8: return 1;
  }
  throw SpecError("unknown dtype");
}

TargetLimits TargetLimits::for_arch(std::string_view arch) {
  // Opt-in shared memory per block, from the CUDA programming guide's compute-capability table.
  struct Known {
    std::string_view arch;
    int sm, max_dynamic_smem;
  };
  static constexpr Known known[] = {{"sm_80", 80, 163 * 1024}, {"sm_86", 86, 99 * 1024}, {"sm_87", 87, 163 * 1024},
                                    {"sm_89", 89, 99 * 1024},  {"sm_90", 90, 227 * 1024}, {"sm_90a", 90, 227 * 1024}};
  std::string names;
  for (const auto& k : known) {
    if (k.arch == arch) return TargetLimits{std::string(arch), k.sm, 1024, 48 * 1024, k.max_dynamic_smem};
    names += (names.empty() ? "" : ", ") + std::string(k.arch);
  }
  throw SpecError("unsupported architecture '" + std::string(arch) + "' (supported: " + names + ")");
}

namespace detail {

void bad_value(std::string_view field, std::string_view text, std::string_view expected) {
  throw SpecError("bad value '" + std::string(text) + "' for field '" + std::string(field) + "': expected " + std::string(expected));
}

std::vector<std::pair<std::string_view, std::string_view>> split_key(std::string_view family, std::string_view key) {
  const size_t colon = key.find(':');
  const std::string_view head = key.substr(0, colon);
  if (head != family) throw SpecError("spec key '" + std::string(key) + "' is not of family " + std::string(family));
  std::vector<std::pair<std::string_view, std::string_view>> out;
  if (colon == std::string_view::npos) return out;
  std::string_view rest = key.substr(colon + 1);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0)
      throw SpecError("malformed spec field '" + std::string(item) + "' in '" + std::string(key) + "': expected name=value");
    out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return out;
}

}  // namespace detail
}  // namespace jetforge::gen
