// Kernel specs: one plain struct per kernel family, with a field list that gives every spec a canonical
// key ("family:field=value,..."), a parser for that key, and a stable hash.
//
// A family's spec struct provides:
//   static constexpr std::string_view family, template_file;
//   template <class S, class F> static void fields(S& spec, F&& f);  // f(name, member) in key order
//   void validate(const TargetLimits&) const;                        // throws SpecError
//   std::string kernel_expr() const;                                 // the template instantiation
//   int threads() const;                                             // threads per CTA
//   static std::vector<Spec> defaults();                             // what `jetforge specs` lists
#pragma once
#include <array>
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace jetforge::gen {

// Bumped whenever emission changes in a way that alters compiled code for an unchanged spec.
constexpr std::string_view kGeneratorVersion = "jetforge-gen-1";

struct SpecError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

enum class DType { f32, bf16, i8 };
enum class Rounding { nearest, stochastic };

template <class E> struct EnumNames;
template <> struct EnumNames<DType> {
  static constexpr std::pair<DType, std::string_view> table[] = {{DType::f32, "f32"}, {DType::bf16, "bf16"}, {DType::i8, "i8"}};
};
template <> struct EnumNames<Rounding> {
  static constexpr std::pair<Rounding, std::string_view> table[] = {{Rounding::nearest, "nearest"}, {Rounding::stochastic, "stochastic"}};
};

template <class E> std::string_view enum_name(E v) {
  for (const auto& [value, name] : EnumNames<E>::table)
    if (value == v) return name;
  throw SpecError("enum value out of range");
}

std::string_view device_type_name(DType t);  // the template-side type: "float", "jetforge::bf16", ...
int dtype_size(DType t);

// What a compilation target allows; validation checks specs against it before anything is compiled.
struct TargetLimits {
  std::string arch;  // "sm_90a", "sm_80", ...
  int sm = 0;        // 90, 80, ...
  int max_threads_per_block = 1024;
  int max_static_smem = 48 * 1024;
  int max_dynamic_smem = 0;  // opt-in per-block limit
  static TargetLimits for_arch(std::string_view arch);  // throws SpecError on an unknown arch
};

namespace detail {

inline std::string field_value(int v) { return std::to_string(v); }
inline std::string field_value(bool v) { return v ? "1" : "0"; }
template <class E> std::string field_value(E v) { return std::string(enum_name(v)); }

[[noreturn]] void bad_value(std::string_view field, std::string_view text, std::string_view expected);

inline void parse_value(std::string_view field, std::string_view text, int& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc() || end != text.data() + text.size()) bad_value(field, text, "an integer");
}
inline void parse_value(std::string_view field, std::string_view text, bool& out) {
  if (text == "1" || text == "true") out = true;
  else if (text == "0" || text == "false") out = false;
  else bad_value(field, text, "0 or 1");
}
template <class E> void parse_value(std::string_view field, std::string_view text, E& out) {
  std::string expected;
  for (const auto& [value, name] : EnumNames<E>::table) {
    if (name == text) {
      out = value;
      return;
    }
    expected += (expected.empty() ? "" : "|") + std::string(name);
  }
  bad_value(field, text, expected);
}

std::vector<std::pair<std::string_view, std::string_view>> split_key(std::string_view family, std::string_view key);

}  // namespace detail

// A spec (or an operator's problem) as a few integers: element 0 names the family, the rest are the field values
// in key order. Per-call lookups (Context::kernel, Context::tuned) hash this instead of building a key string.
using Signature = std::array<std::int64_t, 16>;
struct SignatureHash {
  std::size_t operator()(const Signature& s) const {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the values
    for (std::int64_t v : s) h = (h ^ std::uint64_t(v)) * 1099511628211ull;
    return std::size_t(h);
  }
};
inline std::int64_t signature_tag(std::string_view name) { return std::int64_t(std::hash<std::string_view>{}(name)); }

namespace detail {

inline bool every_field(std::string_view) { return true; }

// "family:name=value,..." over the fields `keep(name)` accepts ("family" alone if none).
template <class Spec, class Keep> std::string fields_key(const Spec& spec, const Keep& keep) {
  std::string key(Spec::family);
  char sep = ':';
  Spec::fields(spec, [&](std::string_view name, const auto& value) {
    if (!keep(name)) return;
    key += sep;
    key += name;
    key += '=';
    key += field_value(value);
    sep = ',';
  });
  return key;
}

// `tag`, the values of the fields `keep(name)` accepts (ints, bools and enums), then `extra`.
template <class Spec, class Keep>
Signature fields_signature(const Spec& spec, std::int64_t tag, const Keep& keep, std::initializer_list<std::int64_t> extra = {}) {
  Signature sig{};
  sig[0] = tag;
  std::size_t n = 1;
  auto put = [&](std::int64_t v) {
    if (n == sig.size()) throw std::logic_error(std::string(Spec::family) + ": more values than a Signature holds");
    sig[n++] = v;
  };
  Spec::fields(spec, [&](std::string_view name, const auto& value) {
    if (keep(name)) put(std::int64_t(value));
  });
  for (const std::int64_t v : extra) put(v);
  return sig;
}

}  // namespace detail

template <class Spec> std::string canonical_key(const Spec& spec) { return detail::fields_key(spec, detail::every_field); }

template <class Spec> Signature spec_signature(const Spec& spec) {
  return detail::fields_signature(spec, signature_tag(Spec::family), detail::every_field);
}

// Parses "family:field=value,...". Fields may come in any order; missing ones keep their defaults.
template <class Spec> Spec parse_key(std::string_view key) {
  Spec spec;
  for (const auto& [name, text] : detail::split_key(Spec::family, key)) {
    bool found = false;
    std::string known;
    Spec::fields(spec, [&](std::string_view field, auto& member) {
      known += (known.empty() ? "" : ", ") + std::string(field);
      if (field == name) {
        detail::parse_value(field, text, member);
        found = true;
      }
    });
    if (!found)
      throw SpecError("unknown field '" + std::string(name) + "' for kernel family " + std::string(Spec::family) + " (fields: " + known + ")");
  }
  return spec;
}

}  // namespace jetforge::gen
