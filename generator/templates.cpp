#include "generator/templates.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>

#include "generator/hash.hpp"

namespace jetforge::gen {

std::string hex64(std::uint64_t v) {
  static const char* digits = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[i] = digits[v & 15];
  return s;
}

std::string_view template_text(std::string_view name) {
  for (const auto& t : embedded_templates())
    if (t.name == name) return t.text;
  std::string known;
  for (const auto& t : embedded_templates()) known += (known.empty() ? "" : ", ") + std::string(t.name);
  throw std::invalid_argument("no kernel template named '" + std::string(name) + "' (embedded: " + known + ")");
}

namespace {

void collect_includes(std::string_view name, std::set<std::string_view>& seen) {
  if (!seen.insert(name).second) return;
  const std::string_view text = template_text(name);
  constexpr std::string_view directive = "#include \"";
  for (size_t pos = text.find(directive); pos != std::string_view::npos; pos = text.find(directive, pos + 1)) {
    const size_t begin = pos + directive.size();
    const size_t end = text.find('"', begin);
    if (end == std::string_view::npos) break;
    collect_includes(text.substr(begin, end - begin), seen);
  }
}

}  // namespace

std::vector<EmbeddedTemplate> template_closure(std::string_view name) {
  std::set<std::string_view> names;
  collect_includes(name, names);
  std::vector<EmbeddedTemplate> out;
  for (auto n : names) out.push_back({n, template_text(n)});
  return out;
}

}  // namespace jetforge::gen
