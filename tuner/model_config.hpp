// Model configs (configs/*.yaml) and what they imply: the (operator, shape) problems of one training step and the
// kernel specs that serve them on a target -- chosen by the same functions the operators use, so that a cache
// built from this list is exactly what a training run will look up.
#pragma once
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "generator/kernel_source.hpp"
#include "generator/families.hpp"
#include "generator/spec.hpp"

namespace jetforge::tuner {

struct ModelConfig {
  std::string name;
  int layers = 0, hidden = 0, heads = 0, sequence = 0, micro_batch = 0, vocab = 0;
  int mlp_ratio = 4;
  int k_group = 32;
  std::int64_t tokens() const { return std::int64_t(micro_batch) * sequence; }
};

// Thrown with "FILE:LINE: key 'KEY': what is wrong".
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

ModelConfig load_model_config(const std::filesystem::path& file);

// The linear layers of a training step, Y = X W^T with W of out x in: the four of every block and the tied LM head.
struct LinearLayer {
  std::string name;  // qkv, proj, fc1, fc2, lm_head
  std::int64_t out, in;
  gen::GemmOut forward_out;  // QKV feeds attention and the LM head the cross-entropy in BF16; the others stay INT8
};
std::vector<LinearLayer> linear_layers(const ModelConfig& config);

// One GEMM of a training step: forward, backward data or backward weight of a linear layer.
struct GemmShape {
  std::string name;  // e.g. "fc1 forward"
  gen::GemmOut out;
  gen::Rounding rounding;
  int group;
  std::int64_t m, n, k;
  std::string key() const;  // the tuning-problem key (gemm_problem_key)
};

// The distinct GEMM problems of one training step of the model.
std::vector<GemmShape> gemm_shapes(const ModelConfig& config);

// One quantize (transpose = false) or quantize_transpose call of a training step.
struct QuantizeShape {
  std::string name;  // e.g. "weights qkv"
  gen::DType in;
  gen::Rounding rounding;
  bool transpose;
  std::int64_t rows, cols;
  std::string key() const;  // the tuning-problem key (quantize_problem_key)
};

// The distinct quantize problems of one training step of the model.
std::vector<QuantizeShape> quantize_shapes(const ModelConfig& config);

// One call of a training step whose kernel comes from a block-tile family: the spec the operator's fit gives for its
// rows x cols matrix (tuning varies the tile).
struct TileOpShape {
  using Spec = std::variant<gen::TransposeSpec, gen::DequantizeSpec, gen::ElementwiseSpec, gen::ResidualSpec, gen::LayerNormApplySpec>;
  std::string name;  // e.g. "gelu forward"
  Spec fitted;
  std::int64_t rows, cols;
  std::string key() const;       // the tuning-problem key (gen::block_tile_problem_key)
  std::string spec_key() const;  // the fitted spec's canonical key
};

// The distinct block-tile problems of one training step of the model.
std::vector<TileOpShape> tile_op_shapes(const ModelConfig& config);

// The attention of a training step: causal, [batch, heads, T, head_dim] as the model's QKV projection packs it.
struct AttentionShape {
  int batch, heads, tokens, head_dim;
  std::string key(gen::AttentionKernel kernel) const;  // the tuning-problem key of one kernel (attention_problem_key)
};
AttentionShape attention_shape(const ModelConfig& config);

struct Problem {
  std::string what;  // e.g. "fc1 forward", "weights qkv quantize+transpose"
  std::string spec;  // canonical key of the kernel that serves it
};

// Every problem of one training step, with the kernel that serves it on `target`.
std::vector<Problem> training_step_problems(const ModelConfig& config, const gen::TargetLimits& target);

// The distinct spec keys of those problems, sorted; and the same kernels emitted.
std::vector<std::string> training_step_keys(const ModelConfig& config, const gen::TargetLimits& target);
std::vector<gen::KernelSource> training_step_kernels(const ModelConfig& config, const gen::TargetLimits& target);

}  // namespace jetforge::tuner
