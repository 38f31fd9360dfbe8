#include "runtime/gpt2.hpp"

#include <cmath>
#include <random>
#include <stdexcept>

namespace jetforge {

const ParameterTensor& ParameterLayout::at(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return t;
  throw std::out_of_range("no parameter tensor named '" + name + "'");
}

ParameterLayout gpt2_parameters(const Gpt2Shape& s) {
  if (s.layers < 0 || s.hidden <= 0 || s.heads <= 0 || s.hidden % s.heads != 0 || s.sequence <= 0 || s.vocab <= 0)
    throw std::invalid_argument("gpt2_parameters: hidden, heads, sequence and vocab must be positive, layers not negative, hidden a multiple of heads");
  ParameterLayout l;
  const std::int64_t c = s.hidden, f = std::int64_t(s.mlp_ratio) * s.hidden;
  auto add = [&](std::string name, std::int64_t rows, std::int64_t cols, bool decayed, std::int64_t counted) {
    l.tensors.push_back({std::move(name), rows, cols, l.floats, decayed});
    l.floats += (rows * cols + 3) / 4 * 4;
    l.count += counted;
  };
  add("wte", s.padded_vocab(), c, true, std::int64_t(s.vocab) * c);
  add("wpe", s.sequence, c, true, std::int64_t(s.sequence) * c);
  for (int i = 0; i < s.layers; ++i) {
    const std::string h = "h" + std::to_string(i) + ".";
    add(h + "ln1.weight", 1, c, false, c), add(h + "ln1.bias", 1, c, false, c);
    add(h + "attn.qkv.weight", 3 * c, c, true, 3 * c * c), add(h + "attn.qkv.bias", 1, 3 * c, false, 3 * c);
    add(h + "attn.proj.weight", c, c, true, c * c), add(h + "attn.proj.bias", 1, c, false, c);
    add(h + "ln2.weight", 1, c, false, c), add(h + "ln2.bias", 1, c, false, c);
    add(h + "fc.weight", f, c, true, f * c), add(h + "fc.bias", 1, f, false, f);
    add(h + "fc_proj.weight", c, f, true, c * f), add(h + "fc_proj.bias", 1, c, false, c);
  }
  add("ln_f.weight", 1, c, false, c), add("ln_f.bias", 1, c, false, c);
  return l;
}

std::vector<float> gpt2_initial_parameters(const ParameterLayout& layout, int layers, std::uint64_t seed) {
  std::vector<float> p(std::size_t(layout.floats), 0.0f);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const auto& t : layout.tensors) {
    const bool gain = t.name.find("ln") != std::string::npos && t.name.ends_with(".weight");
    const bool residual = t.name.ends_with("attn.proj.weight") || t.name.ends_with("fc_proj.weight");
    const float sigma = residual ? 0.02f / std::sqrt(2.0f * float(std::max(layers, 1))) : 0.02f;
    for (std::int64_t i = 0; i < t.size(); ++i) p[std::size_t(t.offset + i)] = gain ? 1.0f : t.decayed ? sigma * normal(rng) : 0.0f;
  }
  return p;
}

}  // namespace jetforge
