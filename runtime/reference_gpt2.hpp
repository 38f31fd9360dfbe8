// FP64 reference of the whole GPT-2 training step (pre-LayerNorm blocks, causal attention, tanh-GELU MLP, tied LM
// head, mean cross-entropy) on the gpt2_parameters layout: the loss of a batch and the gradient of every parameter.
// It is the oracle of the training runtime's module tests; its own gradients are checked against finite
// differences of its loss.
#pragma once
#include <vector>

#include "runtime/gpt2.hpp"

namespace jetforge::ref {

struct Gpt2Step {
  double loss = 0;
  std::vector<double> grads;  // same layout (and size, `floats`) as the parameters; padding entries stay 0
};

// inputs, targets: batch x s.sequence token ids (< s.vocab); params: gpt2_parameters(s).floats values.
double gpt2_loss(const Gpt2Shape& s, const std::vector<double>& params, const std::vector<int>& inputs, const std::vector<int>& targets, int batch);
Gpt2Step gpt2_step(const Gpt2Shape& s, const std::vector<double>& params, const std::vector<int>& inputs, const std::vector<int>& targets, int batch);

}  // namespace jetforge::ref
