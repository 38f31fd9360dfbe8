#include "tuner/model_config.hpp"

#include <set>

#include "generator/families.hpp"
#include "runtime/attention.hpp"
#include "runtime/gemm.hpp"
#include "runtime/ops.hpp"
#include "tuner/yaml_file.hpp"

namespace jetforge::tuner {

namespace {

struct Field {
  const char* key;
  int ModelConfig::*member;
  bool required;
};
constexpr Field kFields[] = {{"layers", &ModelConfig::layers, true},       {"hidden", &ModelConfig::hidden, true},
                             {"heads", &ModelConfig::heads, true},         {"sequence", &ModelConfig::sequence, true},
                             {"micro_batch", &ModelConfig::micro_batch, true}, {"vocab", &ModelConfig::vocab, true},
                             {"mlp_ratio", &ModelConfig::mlp_ratio, false}, {"k_group", &ModelConfig::k_group, false}};

[[noreturn]] void fail(const std::filesystem::path& file, int line, const std::string& key, const std::string& what) {
  throw ConfigError(file.string() + ":" + std::to_string(line) + ": key '" + key + "': " + what);
}

}  // namespace

YAML::Node load_yaml_file(const std::filesystem::path& file, std::string_view what) {
  try {
    return YAML::LoadFile(file.string());
  } catch (const YAML::BadFile&) {
    throw ConfigError(file.string() + ": cannot read the " + std::string(what) + " (no such file, or not readable)");
  } catch (const YAML::ParserException& e) {
    throw ConfigError(file.string() + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
}

ModelConfig load_model_config(const std::filesystem::path& file) {
  const YAML::Node root = load_yaml_file(file, "model config");
  if (!root.IsMap()) throw ConfigError(file.string() + ":1: a model config is a mapping of keys (name, layers, hidden, ...) to values");
  ModelConfig c;
  std::set<std::string> known = {"name"};
  for (const auto& f : kFields) known.insert(f.key);
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    if (!known.count(key)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      fail(file, kv.first.Mark().line + 1, key, "unknown key (known: " + list + ")");
    }
  }
  if (root["name"]) c.name = root["name"].as<std::string>();
  else c.name = file.stem().string();
  for (const auto& f : kFields) {
    const YAML::Node n = root[f.key];
    if (!n) {
      if (f.required) throw ConfigError(file.string() + ": key '" + f.key + "' is missing");
      continue;
    }
    int v = 0;
    try {
      v = n.as<int>();
    } catch (const YAML::Exception&) {
      fail(file, n.Mark().line + 1, f.key, "expected a positive integer, got '" + n.as<std::string>("?") + "'");
    }
    if (v <= 0) fail(file, n.Mark().line + 1, f.key, "expected a positive integer, got " + std::to_string(v));
    c.*(f.member) = v;
  }
  const auto line_of = [&](const char* key) { return root[key].Mark().line + 1; };
  if (c.hidden % 32 != 0) fail(file, line_of("hidden"), "hidden", std::to_string(c.hidden) + " is not a multiple of the block size 32");
  if (c.hidden % c.heads != 0) fail(file, line_of("heads"), "heads", std::to_string(c.heads) + " does not divide hidden " + std::to_string(c.hidden));
  if (c.tokens() % 32 != 0) fail(file, line_of("sequence"), "sequence", "micro_batch x sequence must be a multiple of 32");
  if (c.k_group != 32 && c.k_group != 64 && c.k_group != 128) fail(file, line_of("k_group"), "k_group", "must be 32, 64 or 128");
  if (c.hidden % c.k_group != 0) fail(file, line_of("k_group"), "k_group", "must divide hidden " + std::to_string(c.hidden));
  return c;
}

std::vector<LinearLayer> linear_layers(const ModelConfig& c) {
  const std::int64_t d = c.hidden, ff = std::int64_t(c.mlp_ratio) * c.hidden;
  const std::int64_t vocab = (std::int64_t(c.vocab) + 127) / 128 * 128;  // padded as Gpt2Shape::padded_vocab
  return {{"qkv", 3 * d, d, gen::GemmOut::bf16},
          {"proj", d, d, gen::GemmOut::i8},
          {"fc1", ff, d, gen::GemmOut::i8},
          {"fc2", d, ff, gen::GemmOut::i8},
          {"lm_head", vocab, d, gen::GemmOut::bf16}};  // the tied embedding; BF16 logits feed the cross-entropy
}

std::string GemmShape::key() const { return gemm_problem_key(out, rounding, group, m, n, k); }

std::vector<GemmShape> gemm_shapes(const ModelConfig& c) {
  const std::int64_t T = c.tokens();
  std::vector<GemmShape> out;
  std::set<std::string> seen;
  auto add = [&](GemmShape s) {
    if (seen.insert(s.key()).second) out.push_back(std::move(s));
  };
  for (const auto& l : linear_layers(c)) {
    add({l.name + " forward", l.forward_out, gen::Rounding::nearest, c.k_group, T, l.out, l.in});
    add({l.name + " backward data", gen::GemmOut::i8, gen::Rounding::stochastic, c.k_group, T, l.in, l.out});
    add({l.name + " backward weight", gen::GemmOut::f32, gen::Rounding::nearest, c.k_group, l.out, l.in, T});
  }
  return out;
}

std::string QuantizeShape::key() const { return quantize_problem_key(in, rounding, transpose, rows, cols); }

std::vector<QuantizeShape> quantize_shapes(const ModelConfig& c) {
  using gen::DType;
  using gen::Rounding;
  const std::int64_t T = c.tokens(), d = c.hidden;
  std::vector<QuantizeShape> out;
  std::set<std::string> seen;
  auto add = [&](QuantizeShape s) {
    if (seen.insert(s.key()).second) out.push_back(std::move(s));
  };
  for (const auto& l : linear_layers(c)) add({"weights " + l.name, DType::f32, Rounding::nearest, false, l.out, l.in});
  // Attention's BF16 core hands back its output (forward) and the QKV gradient (backward); the embedding output
  // enters the first block; the logits' gradient leaves the cross-entropy.
  add({"attention output", DType::bf16, Rounding::nearest, true, T, d});
  add({"qkv gradient", DType::bf16, Rounding::stochastic, true, T, 3 * d});
  add({"embedding output", DType::f32, Rounding::nearest, false, T, d});
  add({"logits gradient", DType::bf16, Rounding::stochastic, true, T, linear_layers(c).back().out});
  return out;
}

std::string TileOpShape::key() const {
  return std::visit([&](const auto& spec) { return gen::block_tile_problem_key(spec, rows, cols); }, fitted);
}
std::string TileOpShape::spec_key() const {
  return std::visit([](const auto& spec) { return gen::canonical_key(spec); }, fitted);
}

std::vector<TileOpShape> tile_op_shapes(const ModelConfig& c) {
  using gen::DType;
  using gen::Elementwise;
  using gen::Rounding;
  const std::int64_t T = c.tokens(), d = c.hidden, ff = std::int64_t(c.mlp_ratio) * d;
  std::vector<TileOpShape> out;
  std::set<std::string> seen;
  auto add = [&](std::string name, TileOpShape::Spec spec, std::int64_t rows, std::int64_t cols) {
    TileOpShape s{std::move(name), std::move(spec), rows, cols};
    if (seen.insert(s.key()).second) out.push_back(std::move(s));
  };
  // The operators as runtime/gpt2_model.cpp runs them, each spec from the operator's own fit.
  for (const auto& l : linear_layers(c)) {
    add("input " + l.name + " transpose", gen::TransposeSpec::fit(T, l.in, 32), T, l.in);
    add("grad output " + l.name + " transpose", gen::TransposeSpec::fit(T, l.out, 32), T, l.out);
    add("weights " + l.name + " transpose", gen::TransposeSpec::fit(l.out, l.in, 32), l.out, l.in);  // W^T for the backward data GEMM
  }
  add("attention gradient dequantize", gen::DequantizeSpec::fit(DType::bf16, T, d, 32), T, d);
  add("gelu forward", gen::ElementwiseSpec::fit(Elementwise::gelu_tanh, Rounding::nearest, T, ff), T, ff);
  add("gelu backward", gen::ElementwiseSpec::fit(Elementwise::gelu_tanh_grad, Rounding::stochastic, T, ff), T, ff);
  add("residual add", gen::ResidualSpec::fit(DType::f32, Rounding::nearest, T, d, true), T, d);  // with the next LayerNorm's statistics
  add("layernorm apply", gen::LayerNormApplySpec::fit(T, d), T, d);
  add("residual add backward", gen::ResidualSpec::fit(DType::f32, Rounding::stochastic, T, d), T, d);
  return out;
}

std::string AttentionShape::key(gen::AttentionKernel kernel) const {
  return attention_problem_key(kernel, AttentionLayout::packed_qkv(batch, heads, tokens, head_dim), true);
}

AttentionShape attention_shape(const ModelConfig& c) { return {c.micro_batch, c.heads, c.sequence, c.hidden / c.heads}; }

std::vector<Problem> training_step_problems(const ModelConfig& c, const gen::TargetLimits& target) {
  using gen::DType;
  std::vector<Problem> out;
  auto add = [&](std::string what, std::string spec) { out.push_back({std::move(what), std::move(spec)}); };
  for (const auto& q : quantize_shapes(c))
    add(q.name + (q.transpose ? " quantize+transpose" : " quantize"), gen::canonical_key(gen::QuantizeSpec::fit(q.in, q.rows, q.cols, 32, q.rounding, q.transpose)));
  for (const auto& g : gemm_shapes(c)) add(g.name, gemm_kernel_key(g.out, g.group, g.rounding, g.m, g.n, g.k, GemmKernelChoice{}, target));
  for (const auto& t : tile_op_shapes(c)) add(t.name, t.spec_key());
  // The rest of a GPT-2 step as runtime/gpt2_model.cpp runs it: the fixed specs its operators launch (their
  // families' defaults).
  // Every LayerNorm forward is a layernorm_apply (above) of statistics the embedding or a residual add took.
  add("layernorm backward", gen::canonical_key(gen::LayerNormSpec::fit(gen::LayerNormPass::backward, c.hidden, target)));
  add("residual statistics", gen::canonical_key(gen::ResidualStatsSpec{}));
  for (auto& key : attention_kernel_keys(target, c.hidden / c.heads, true)) add("attention", std::move(key));
  add("cross-entropy", gen::canonical_key(gen::CrossEntropySpec{}));  // BF16 logits, the default CTA size
  for (const auto& s : gen::EmbeddingSpec::defaults()) add("embedding", gen::canonical_key(s));
  add("bias gradient", gen::canonical_key(gen::ColumnSumSpec::codes(target)));
  add("bias gradient", gen::canonical_key(gen::ColumnSumSpec::partials_reduce()));  // also LayerNorm's dgamma, dbeta
  for (const auto& s : gen::OptimSpec::defaults()) add("optimizer", gen::canonical_key(s));
  return out;
}

std::vector<std::string> training_step_keys(const ModelConfig& c, const gen::TargetLimits& target) {
  std::set<std::string> keys;
  for (const auto& p : training_step_problems(c, target)) keys.insert(p.spec);
  return {keys.begin(), keys.end()};
}

std::vector<gen::KernelSource> training_step_kernels(const ModelConfig& c, const gen::TargetLimits& target) {
  std::vector<gen::KernelSource> out;
  for (const auto& key : training_step_keys(c, target)) out.push_back(gen::emit_key(key, target));
  return out;
}

}  // namespace jetforge::tuner
