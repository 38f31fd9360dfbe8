#include "runtime/gpt2.hpp"

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

}  // namespace jetforge
