// GPT-2 with the INT8 data flow (DESIGN.md §1): FP32 master weights (gpt2_parameters layout) quantized once per
// step, per-block INT8 activations between operators, BF16 only around the attention core and the logits, an FP32
// residual stream. One object per (shape, batch): every activation lives in one device arena sized up front.
//
// A step: embedding -> per block [LayerNorm -> QKV (BF16 out) -> attention -> quantize(+transpose) -> proj ->
// residual add -> LayerNorm -> fc -> GELU -> fc_proj -> residual add] -> LayerNorm -> tied LM head (BF16 logits) ->
// fused softmax + cross-entropy, then the same backwards, every gradient written into an FP32 buffer of the
// parameter layout. The FP64 oracle is ref::gpt2_step (runtime/reference_gpt2.hpp).
#pragma once
#include <cuda.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/gpt2.hpp"
#include "runtime/kernels.hpp"

namespace jetforge {

class Gpt2Int8 {
 public:
  // Requires hidden / heads = 64 or 128, sequence a multiple of 64, batch * sequence and hidden multiples of 32.
  Gpt2Int8(Context& ctx, const Gpt2Shape& shape, int batch);
  ~Gpt2Int8();
  Gpt2Int8(const Gpt2Int8&) = delete;
  Gpt2Int8& operator=(const Gpt2Int8&) = delete;

  const ParameterLayout& layout() const { return layout_; }
  std::size_t arena_bytes() const;  // activations, quantized weights and scratch, all of it allocated at construction

  // Mean cross-entropy of the batch (inputs, targets: batch x sequence ids) with the parameters in `params`
  // (device FP32, layout().floats values). With `grads` (same size) the backward pass runs too and overwrites it
  // with the gradient of the mean loss. `seed` drives the stochastic rounding of the gradients.
  double step(CUdeviceptr params, CUdeviceptr grads, const std::vector<int>& inputs, const std::vector<int>& targets, std::uint64_t seed, CUstream stream);

 private:
  struct Buffers;
  Context& ctx_;
  Gpt2Shape shape_;
  int batch_;
  ParameterLayout layout_;
  std::unique_ptr<Buffers> b_;
};

}  // namespace jetforge
