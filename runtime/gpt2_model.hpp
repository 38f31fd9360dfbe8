// GPT-2 training steps. Gpt2Int8 is the INT8 data flow (DESIGN.md §1): FP32 master weights (gpt2_parameters
// layout) quantized once per step, per-block INT8 activations between operators, BF16 only around the attention
// core and the logits, an FP32 residual stream. Gpt2Bf16 is the same model in BF16. One object per (shape, batch):
// every activation lives in one device arena sized up front.
//
// A step: embedding -> per block [LayerNorm -> QKV (BF16 out) -> attention -> quantize(+transpose) -> proj ->
// residual add -> LayerNorm -> fc -> GELU -> fc_proj -> residual add] -> LayerNorm -> tied LM head (BF16 logits) ->
// fused softmax + cross-entropy, then the same backwards, every gradient written into an FP32 buffer of the
// parameter layout. The FP64 oracle is ref::gpt2_step (runtime/reference_gpt2.hpp).
#pragma once
#include <cuda.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/embedding.hpp"
#include "runtime/gpt2.hpp"
#include "runtime/kernels.hpp"
#include "runtime/tensor.hpp"

namespace jetforge {

// A training step of GPT-2 in one precision; the INT8 data flow and the BF16 mode share the parameter layout, the
// data, the optimizer and the training loop, and differ only here.
class Gpt2Model {
 public:
  virtual ~Gpt2Model() = default;
  Gpt2Model(const Gpt2Model&) = delete;
  Gpt2Model& operator=(const Gpt2Model&) = delete;
  const ParameterLayout& layout() const { return layout_; }
  virtual std::size_t arena_bytes() const = 0;  // activations, weight copies and scratch, all allocated at construction
  // Mean cross-entropy of the batch (inputs, targets: batch x sequence ids) with the parameters in `params`
  // (device FP32, layout().floats values). With `grads` (same size) the backward pass runs too and overwrites it
  // with the gradient of the mean loss. `seed` drives the stochastic rounding of the gradients (INT8).
  virtual double step(CUdeviceptr params, CUdeviceptr grads, const std::vector<int>& inputs, const std::vector<int>& targets, std::uint64_t seed,
                      CUstream stream) = 0;

 protected:
  // Checks what both precisions need: hidden / heads = 64 or 128, sequence a multiple of 64, hidden of 32.
  Gpt2Model(const char* name, Context& ctx, const Gpt2Shape& shape, int batch);
  // The steps both precisions share: the batch's tokens in, the FP32 embedding of them into `stream` (and, if `stats`
  // is given, the first LayerNorm's statistics of it)...
  void embed(CUdeviceptr params, const std::vector<int>& inputs, const std::vector<int>& targets, CUdeviceptr tokens, CUdeviceptr targets_dev,
             CUdeviceptr stream, CUstream s, const EmbeddingStatsOut* stats = nullptr);
  // ... the gradient stream into wte (added to the LM head's share) and wpe (written) ...
  void embed_backward(CUdeviceptr grads, const std::vector<int>& inputs, CUdeviceptr grad_stream, CUstream s);
  // ... and the mean of the per-token losses, once the step is done.
  double mean_loss(CUdeviceptr losses, CUstream s) const;
  EmbeddingShape embedding_shape() const;
  // Throws, naming the model, unless inputs and targets hold batch x sequence tokens.
  void check_tokens(const std::vector<int>& inputs, const std::vector<int>& targets) const;
  // A named tensor of the parameter layout inside a buffer of that layout (the parameters or their gradients):
  // its address, and the tensor as an FP32 matrix.
  CUdeviceptr tensor_at(CUdeviceptr base, const std::string& name) const;
  DenseRef tensor_ref(CUdeviceptr base, const std::string& name) const;

  const char* name_;
  Context& ctx_;
  Gpt2Shape shape_;
  int batch_;
  ParameterLayout layout_;
};

// "int8" or "bf16"; throws std::invalid_argument naming the precision otherwise.
std::unique_ptr<Gpt2Model> make_gpt2(Context& ctx, const Gpt2Shape& shape, int batch, const std::string& precision);

class Gpt2Int8 : public Gpt2Model {
 public:
  Gpt2Int8(Context& ctx, const Gpt2Shape& shape, int batch);
  ~Gpt2Int8() override;
  std::size_t arena_bytes() const override;
  double step(CUdeviceptr params, CUdeviceptr grads, const std::vector<int>& inputs, const std::vector<int>& targets, std::uint64_t seed,
              CUstream stream) override;

 private:
  struct Buffers;
  std::unique_ptr<Buffers> b_;
};

// The same model with BF16 activations, cuBLASLt BF16 GEMMs (FP32 accumulation) and the BF16 operators of
// runtime/bf16_ops.hpp: what BF16 training would pay, for the side-by-side comparison.
class Gpt2Bf16 : public Gpt2Model {
 public:
  Gpt2Bf16(Context& ctx, const Gpt2Shape& shape, int batch);
  ~Gpt2Bf16() override;
  std::size_t arena_bytes() const override;
  double step(CUdeviceptr params, CUdeviceptr grads, const std::vector<int>& inputs, const std::vector<int>& targets, std::uint64_t seed,
              CUstream stream) override;

 private:
  struct Buffers;
  std::unique_ptr<Buffers> b_;
};

}  // namespace jetforge
