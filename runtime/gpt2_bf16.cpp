// The BF16 mode of the GPT-2 step: the same graph as Gpt2Int8 (runtime/gpt2_model.cpp) with BF16 activations,
// cuBLASLt GEMMs (BF16 in, FP32 accumulation; weight gradients in FP32) and the BF16 operators.
#include <memory>
#include <string>

#include "runtime/arena.hpp"
#include "runtime/attention.hpp"
#include "runtime/bf16_ops.hpp"
#include "runtime/cublaslt.hpp"
#include "runtime/embedding.hpp"
#include "runtime/gpt2_model.hpp"
#include "runtime/loss.hpp"
#include "runtime/ops.hpp"
#include "runtime/require.hpp"

namespace jetforge {

namespace {

// The three GEMMs of a linear layer Y = X W^T + b (W: out x in), on n tokens.
struct Linear {
  std::unique_ptr<LtMatmul> forward, backward_data, backward_weight;
  Linear(std::int64_t n, std::int64_t out, std::int64_t in, bool bias, CUdeviceptr workspace)
      : forward(std::make_unique<LtMatmul>(n, out, in, false, true, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F, bias, workspace)),
        backward_data(std::make_unique<LtMatmul>(n, in, out, false, false, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F, false, workspace)),
        backward_weight(std::make_unique<LtMatmul>(out, in, n, true, false, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F, false, workspace)) {}
};

}  // namespace

struct Gpt2Bf16::Buffers {
  DeviceBuffer memory;
  struct Layer {
    DenseRef x_in, h1, qkv, o, x_mid, h2, f, g;  // BF16
    CUdeviceptr mean1 = 0, rstd1 = 0, mean2 = 0, rstd2 = 0, lse = 0;
    DenseRef qkv_w, proj_w, fc_w, fc_proj_w;  // BF16 copies of the master weights
    DenseRef qkv_b, proj_b, fc_b, fc_proj_b;  // and biases (cuBLASLt's bias epilogue takes the output's type)
  };
  std::vector<Layer> layers;
  DenseRef x_final, xf, wte, stream, grad_stream, branch, logits, dcopy, dx, dh, dg, df, d_o, d_qkv;
  CUdeviceptr mean_f = 0, rstd_f = 0, losses = 0, targets = 0, tokens = 0, delta = 0, column_ws = 0, layernorm_ws = 0, lt_workspace = 0;
  std::unique_ptr<Linear> qkv, proj, fc, fc_proj, lm_head;

  void lay_out(Arena& a, const Gpt2Shape& s, int batch) {
    const std::int64_t n = std::int64_t(batch) * s.sequence, c = s.hidden, f = std::int64_t(s.mlp_ratio) * c, v = s.padded_vocab();
    auto bf16 = [&](std::int64_t rows, std::int64_t cols) { return a.dense(rows, cols, DType::bf16); };
    layers.assign(std::size_t(s.layers), Layer{});
    for (auto& l : layers) {
      l.x_in = bf16(n, c), l.h1 = bf16(n, c), l.qkv = bf16(n, 3 * c), l.o = bf16(n, c), l.x_mid = bf16(n, c), l.h2 = bf16(n, c);
      l.f = bf16(n, f), l.g = bf16(n, f);
      l.mean1 = a.take(std::size_t(n) * 4), l.rstd1 = a.take(std::size_t(n) * 4), l.mean2 = a.take(std::size_t(n) * 4), l.rstd2 = a.take(std::size_t(n) * 4);
      l.lse = a.take(std::size_t(n * s.heads) * 4);
      l.qkv_w = bf16(3 * c, c), l.proj_w = bf16(c, c), l.fc_w = bf16(f, c), l.fc_proj_w = bf16(c, f);
      l.qkv_b = bf16(1, 3 * c), l.proj_b = bf16(1, c), l.fc_b = bf16(1, f), l.fc_proj_b = bf16(1, c);
    }
    x_final = bf16(n, c), xf = bf16(n, c), wte = bf16(v, c);
    stream = a.dense(n, c, DType::f32), grad_stream = a.dense(n, c, DType::f32);
    branch = bf16(n, c), logits = bf16(n, v), dcopy = bf16(n, c), dx = bf16(n, c), dh = bf16(n, c), dg = bf16(n, f), df = bf16(n, f);
    d_o = bf16(n, c), d_qkv = bf16(n, 3 * c);
    mean_f = a.take(std::size_t(n) * 4), rstd_f = a.take(std::size_t(n) * 4);
    losses = a.take(std::size_t(n) * 4), targets = a.take(std::size_t(n) * 4), tokens = a.take(std::size_t(n) * 4);
    delta = a.take(std::size_t(n * s.heads) * 4);
    column_ws = a.take(column_sum_workspace_bytes(n, std::max(3 * c, f)));
    layernorm_ws = a.take(bf16_layernorm_backward_workspace_bytes(n, c));
    lt_workspace = a.take(LtMatmul::kWorkspace);
  }
};

Gpt2Bf16::Gpt2Bf16(Context& ctx, const Gpt2Shape& shape, int batch)
    : Gpt2Model("Gpt2Bf16", ctx, shape, batch), b_(std::make_unique<Buffers>()) {
  b_->memory = allocate_arena([&](Arena& a) { b_->lay_out(a, shape, batch); });
  const std::int64_t n = std::int64_t(batch) * shape.sequence, c = shape.hidden, f = std::int64_t(shape.mlp_ratio) * c;
  const CUdeviceptr ws = b_->lt_workspace;
  b_->qkv = std::make_unique<Linear>(n, 3 * c, c, true, ws), b_->proj = std::make_unique<Linear>(n, c, c, true, ws);
  b_->fc = std::make_unique<Linear>(n, f, c, true, ws), b_->fc_proj = std::make_unique<Linear>(n, c, f, true, ws);
  b_->lm_head = std::make_unique<Linear>(n, shape.padded_vocab(), c, false, ws);
}

Gpt2Bf16::~Gpt2Bf16() = default;

std::size_t Gpt2Bf16::arena_bytes() const { return b_->memory.bytes(); }

double Gpt2Bf16::step(CUdeviceptr params, CUdeviceptr grads, const std::vector<int>& inputs, const std::vector<int>& targets, std::uint64_t,
                      CUstream s) {
  const Gpt2Shape& sh = shape_;
  const float eps = Gpt2Shape::kLayerNormEps;
  const std::int64_t n = std::int64_t(batch_) * sh.sequence;
  check_tokens(inputs, targets);
  Buffers& b = *b_;
  auto master = [&](const std::string& name) { return tensor_ref(params, name); };
  const float one = 1.0f, zero = 0.0f;
  auto forward = [&](const Linear& l, const DenseRef& x, const DenseRef& w, const DenseRef& y, const DenseRef& bias) {
    l.forward->run(x.data, w.data, y.data, &one, &zero, s, bias.data);
  };
  auto backward = [&](const Linear& l, const DenseRef& dy, const DenseRef& x, const DenseRef& w, const DenseRef& dx, const std::string& weight,
                      const std::string& bias) {
    l.backward_weight->run(dy.data, x.data, tensor_at(grads, weight), &one, &zero, s);
    if (!bias.empty()) bf16_column_sum(ctx_, dy, tensor_at(grads, bias), false, b.column_ws, s);
    l.backward_data->run(dy.data, w.data, dx.data, &one, &zero, s);
  };
  const AttentionLayout attention = AttentionLayout::packed_qkv(batch_, sh.heads, sh.sequence, sh.hidden / sh.heads);
  const CUdeviceptr k_offset = attention.packed_offset(1), v_offset = attention.packed_offset(2);

  // Weights and biases: BF16 copies of the masters, once per step.
  bf16_from_f32(ctx_, master("wte"), b.wte, s);
  for (int l = 0; l < sh.layers; ++l) {
    const std::string h = "h" + std::to_string(l) + ".";
    auto& L = b.layers[std::size_t(l)];
    bf16_from_f32(ctx_, master(h + "attn.qkv.weight"), L.qkv_w, s), bf16_from_f32(ctx_, master(h + "attn.proj.weight"), L.proj_w, s);
    bf16_from_f32(ctx_, master(h + "fc.weight"), L.fc_w, s), bf16_from_f32(ctx_, master(h + "fc_proj.weight"), L.fc_proj_w, s);
    bf16_from_f32(ctx_, master(h + "attn.qkv.bias"), L.qkv_b, s), bf16_from_f32(ctx_, master(h + "attn.proj.bias"), L.proj_b, s);
    bf16_from_f32(ctx_, master(h + "fc.bias"), L.fc_b, s), bf16_from_f32(ctx_, master(h + "fc_proj.bias"), L.fc_proj_b, s);
  }

  // Forward.
  embed(params, inputs, targets, b.tokens, b.targets, b.stream.data, s);
  bf16_from_f32(ctx_, b.stream, sh.layers > 0 ? b.layers[0].x_in : b.x_final, s);
  for (int l = 0; l < sh.layers; ++l) {
    const std::string h = "h" + std::to_string(l) + ".";
    auto& L = b.layers[std::size_t(l)];
    const DenseRef& next = l + 1 < sh.layers ? b.layers[std::size_t(l) + 1].x_in : b.x_final;
    bf16_layernorm_forward(ctx_, L.x_in, tensor_at(params, h + "ln1.weight"), tensor_at(params, h + "ln1.bias"), L.h1, L.mean1, L.rstd1, eps, s);
    forward(*b.qkv, L.h1, L.qkv_w, L.qkv, L.qkv_b);
    attention_forward(ctx_, attention, true, L.qkv.data, L.qkv.data + k_offset, L.qkv.data + v_offset, L.o.data, L.lse, s);
    forward(*b.proj, L.o, L.proj_w, b.branch, L.proj_b);
    bf16_residual_add(ctx_, b.stream, b.branch, L.x_mid, s);
    bf16_layernorm_forward(ctx_, L.x_mid, tensor_at(params, h + "ln2.weight"), tensor_at(params, h + "ln2.bias"), L.h2, L.mean2, L.rstd2, eps, s);
    forward(*b.fc, L.h2, L.fc_w, L.f, L.fc_b);
    bf16_gelu_forward(ctx_, L.f, L.g, s);
    forward(*b.fc_proj, L.g, L.fc_proj_w, b.branch, L.fc_proj_b);
    bf16_residual_add(ctx_, b.stream, b.branch, next, s);
  }
  bf16_layernorm_forward(ctx_, b.x_final, tensor_at(params, "ln_f.weight"), tensor_at(params, "ln_f.bias"), b.xf, b.mean_f, b.rstd_f, eps, s);
  forward(*b.lm_head, b.xf, b.wte, b.logits, DenseRef{});
  cross_entropy(ctx_, b.logits, sh.vocab, b.targets, b.losses, 1.0f / float(n), s);  // logits now hold their gradient

  if (grads) {
    backward(*b.lm_head, b.logits, b.xf, b.wte, b.dh, "wte", "");  // the embedding's share of wte is added below
    bf16_layernorm_backward(ctx_, b.dh, b.x_final, b.mean_f, b.rstd_f, tensor_at(params, "ln_f.weight"), b.dx, tensor_at(grads, "ln_f.weight"),
                            tensor_at(grads, "ln_f.bias"), b.layernorm_ws, s);
    check(driver().cuMemsetD8Async(b.grad_stream.data, 0, std::size_t(b.grad_stream.bytes()), s), "cuMemsetD8Async (gradient stream)");
    bf16_residual_add(ctx_, b.grad_stream, b.dx, b.dcopy, s);
    for (int l = sh.layers - 1; l >= 0; --l) {
      const std::string h = "h" + std::to_string(l) + ".";
      auto& L = b.layers[std::size_t(l)];
      // MLP: dcopy is the gradient of the fc_proj output.
      backward(*b.fc_proj, b.dcopy, L.g, L.fc_proj_w, b.dg, h + "fc_proj.weight", h + "fc_proj.bias");
      bf16_gelu_backward(ctx_, b.dg, L.f, b.df, s);
      backward(*b.fc, b.df, L.h2, L.fc_w, b.dh, h + "fc.weight", h + "fc.bias");
      bf16_layernorm_backward(ctx_, b.dh, L.x_mid, L.mean2, L.rstd2, tensor_at(params, h + "ln2.weight"), b.dx, tensor_at(grads, h + "ln2.weight"),
                              tensor_at(grads, h + "ln2.bias"), b.layernorm_ws, s);
      bf16_residual_add(ctx_, b.grad_stream, b.dx, b.dcopy, s);
      // Attention: dcopy is now the gradient of the proj output.
      backward(*b.proj, b.dcopy, L.o, L.proj_w, b.d_o, h + "attn.proj.weight", h + "attn.proj.bias");
      attention_backward(ctx_, attention, true, L.qkv.data, L.qkv.data + k_offset, L.qkv.data + v_offset, L.o.data, L.lse, b.d_o.data, b.delta,
                         b.d_qkv.data, b.d_qkv.data + k_offset, b.d_qkv.data + v_offset, s);
      backward(*b.qkv, b.d_qkv, L.h1, L.qkv_w, b.dh, h + "attn.qkv.weight", h + "attn.qkv.bias");
      bf16_layernorm_backward(ctx_, b.dh, L.x_in, L.mean1, L.rstd1, tensor_at(params, h + "ln1.weight"), b.dx, tensor_at(grads, h + "ln1.weight"),
                              tensor_at(grads, h + "ln1.bias"), b.layernorm_ws, s);
      bf16_residual_add(ctx_, b.grad_stream, b.dx, b.dcopy, s);
    }
    embed_backward(grads, inputs, b.grad_stream.data, s);
  }

  return mean_loss(b.losses, s);
}

}  // namespace jetforge
