// The kernel templates, embedded into the library at build time (see cmake/embed_templates.cmake), so
// that nothing reads the source tree at run time.
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace jetforge::gen {

struct EmbeddedTemplate {
  std::string_view name;  // include name, e.g. "quantize.cuh" or "jetforge/common.cuh"
  std::string_view text;
};

std::span<const EmbeddedTemplate> embedded_templates();

// Text of one template; throws std::invalid_argument naming the known templates if there is no such file.
std::string_view template_text(std::string_view name);

// The template and every template it includes with #include "...", recursively, sorted by name: what a
// kernel's source depends on, and so what its hash must cover.
std::vector<EmbeddedTemplate> template_closure(std::string_view name);

}  // namespace jetforge::gen
