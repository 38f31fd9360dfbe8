// GPT-2's parameters as named FP32 tensors in one buffer (master weights; the optimizer's moments use the same
// layout), with the vocabulary padded so that the tied LM head is a whole number of GEMM tiles.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace jetforge {

struct Gpt2Shape {
  int layers = 0, hidden = 0, heads = 0, sequence = 0, vocab = 0, mlp_ratio = 4;
  static constexpr int kVocabMultiple = 128;  // the GEMM's largest tile edge
  static constexpr float kLayerNormEps = 1e-5f;
  std::int64_t padded_vocab() const { return (std::int64_t(vocab) + kVocabMultiple - 1) / kVocabMultiple * kVocabMultiple; }
};

struct ParameterTensor {
  std::string name;          // e.g. "h3.fc.weight"
  std::int64_t rows, cols;   // a vector has rows = 1
  std::int64_t offset;       // in floats from the start of the buffer, a multiple of 4 (16-byte aligned)
  bool decayed;              // weight decay applies (matrices) or not (biases, LayerNorm gains, embeddings' padding aside)
  std::int64_t size() const { return rows * cols; }
};

struct ParameterLayout {
  std::vector<ParameterTensor> tensors;
  std::int64_t floats = 0;  // buffer size, alignment padding included
  std::int64_t count = 0;   // parameters of the model (padding rows of wte and alignment excluded)
  const ParameterTensor& at(const std::string& name) const;  // throws std::out_of_range naming the tensor
};

// wte (padded_vocab x hidden, tied with the LM head), wpe (sequence x hidden), per layer ln1, attention qkv and
// proj, ln2, fc and fc_proj (weights out x in, as the GEMMs take them), then the final LayerNorm.
ParameterLayout gpt2_parameters(const Gpt2Shape& s);

// GPT-2's initialization, reproducible from the seed: N(0, 0.02) matrices and embeddings, the residual projections
// (attn.proj, fc_proj) scaled by 1 / sqrt(2 layers), zero biases, unit LayerNorm gains; alignment gaps 0.
std::vector<float> gpt2_initial_parameters(const ParameterLayout& layout, int layers, std::uint64_t seed);

}  // namespace jetforge
