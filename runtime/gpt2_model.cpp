#include "runtime/gpt2_model.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "runtime/arena.hpp"
#include "runtime/attention.hpp"
#include "runtime/embedding.hpp"
#include "runtime/gemm.hpp"
#include "runtime/loss.hpp"
#include "runtime/ops.hpp"
#include "runtime/require.hpp"

namespace jetforge {

namespace {

// The same memory seen as another shape of no more elements (scratch reused across layers).
BlockTensorRef reshaped(const BlockTensorRef& t, std::int64_t rows, std::int64_t cols) {
  BlockTensorRef r = t;
  r.rows = rows, r.cols = cols;
  return r;
}

struct QuantizedWeight {
  BlockTensorRef q;  // W (out x in), nearest rounding of the FP32 master
};

}  // namespace

struct Gpt2Int8::Buffers {
  DeviceBuffer memory;
  struct Layer {
    BlockTensorRef x_in, h1, h1_t, o_q, o_q_t, x_mid, h2, h2_t, f, g, g_t;
    CUdeviceptr mean1 = 0, rstd1 = 0, mean2 = 0, rstd2 = 0, lse = 0;
    DenseRef qkv, o;  // BF16: the attention's input (packed QKV) and output
    QuantizedWeight qkv_w, proj_w, fc_w, fc_proj_w;
  };
  std::vector<Layer> layers;
  BlockTensorRef x_final, xf, xf_t, branch, dl, dl_t, dcopy, dx, dh, d_wide, d_wide2, d_t, do_q, dqkv_q;
  BlockTensorRef weight_t;  // W^T of the weight whose backward data GEMM runs next: one buffer for all (weight_transposed)
  QuantizedWeight wte;
  DenseRef stream, grad_stream, logits, d_o, d_qkv;
  CUdeviceptr mean_f = 0, rstd_f = 0, losses = 0, targets = 0, tokens = 0, delta = 0, column_ws = 0, layernorm_ws = 0, residual_ws = 0;

  // Every piece, in order; run once to measure and once on the allocation.
  void lay_out(Arena& a, const Gpt2Shape& s, int batch) {
    const std::int64_t n = std::int64_t(batch) * s.sequence, c = s.hidden, f = std::int64_t(s.mlp_ratio) * c, v = s.padded_vocab();
    const std::int64_t wide = std::max(f, 3 * c);
    layers.assign(std::size_t(s.layers), Layer{});
    auto weight = [&](std::int64_t out, std::int64_t in) { return QuantizedWeight{a.block(out, in)}; };
    for (auto& l : layers) {
      l.x_in = a.block(n, c), l.h1 = a.block(n, c), l.h1_t = a.block(c, n);
      l.mean1 = a.take(std::size_t(n) * 4), l.rstd1 = a.take(std::size_t(n) * 4);
      l.qkv = a.dense(n, 3 * c, DType::bf16), l.o = a.dense(n, c, DType::bf16), l.lse = a.take(std::size_t(n * s.heads) * 4);
      l.o_q = a.block(n, c), l.o_q_t = a.block(c, n), l.x_mid = a.block(n, c);
      l.h2 = a.block(n, c), l.h2_t = a.block(c, n), l.mean2 = a.take(std::size_t(n) * 4), l.rstd2 = a.take(std::size_t(n) * 4);
      l.f = a.block(n, f), l.g = a.block(n, f), l.g_t = a.block(f, n);
      l.qkv_w = weight(3 * c, c), l.proj_w = weight(c, c), l.fc_w = weight(f, c), l.fc_proj_w = weight(c, f);
    }
    x_final = a.block(n, c), xf = a.block(n, c), xf_t = a.block(c, n);
    mean_f = a.take(std::size_t(n) * 4), rstd_f = a.take(std::size_t(n) * 4);
    wte = weight(v, c);
    stream = a.dense(n, c, DType::f32), grad_stream = a.dense(n, c, DType::f32);
    logits = a.dense(n, v, DType::bf16), dl = a.block(n, v), dl_t = a.block(v, n);
    losses = a.take(std::size_t(n) * 4), targets = a.take(std::size_t(n) * 4), tokens = a.take(std::size_t(n) * 4);
    branch = a.block(n, c), dcopy = a.block(n, c), dx = a.block(n, c), dh = a.block(n, c), do_q = a.block(n, c);
    d_wide = a.block(n, wide), d_wide2 = a.block(n, wide), d_t = a.block(wide, n), dqkv_q = a.block(n, 3 * c);
    weight_t = a.block(32, std::max(v, s.layers > 0 ? wide : 0) * c / 32);  // the largest weight's elements, viewed as each W^T
    d_o = a.dense(n, c, DType::bf16), d_qkv = a.dense(n, 3 * c, DType::bf16);
    delta = a.take(std::size_t(n * s.heads) * 4);
    column_ws = a.take(column_sum_workspace_bytes(n, std::max(wide, c)));
    layernorm_ws = a.take(layernorm_backward_workspace_bytes(n, c));
    residual_ws = a.take(residual_stats_workspace_bytes(n, c));
  }
};

Gpt2Model::Gpt2Model(const char* name, Context& ctx, const Gpt2Shape& shape, int batch)
    : name_(name), ctx_(ctx), shape_(shape), batch_(batch), layout_(gpt2_parameters(shape)) {
  const int head_dim = shape.heads > 0 ? shape.hidden / shape.heads : 0;
  require(head_dim == 64 || head_dim == 128, [&] { return std::string(name) + ": hidden / heads = " + std::to_string(head_dim) + " must be 64 or 128"; });
  require(shape.sequence % 64 == 0, [&] { return std::string(name) + ": sequence=" + std::to_string(shape.sequence) + " must be a multiple of 64"; });
  require(batch > 0 && shape.hidden % 32 == 0, [&] { return std::string(name) + ": batch must be positive and hidden a multiple of 32"; });
}

void Gpt2Model::check_tokens(const std::vector<int>& inputs, const std::vector<int>& targets) const {
  const std::size_t n = std::size_t(batch_) * std::size_t(shape_.sequence);
  require(inputs.size() == n && targets.size() == n,
          [&] { return std::string(name_) + "::step: inputs and targets must hold batch x sequence = " + std::to_string(n) + " tokens"; });
}

CUdeviceptr Gpt2Model::tensor_at(CUdeviceptr base, const std::string& name) const { return base + CUdeviceptr(layout_.at(name).offset) * 4; }

DenseRef Gpt2Model::tensor_ref(CUdeviceptr base, const std::string& name) const {
  const auto& t = layout_.at(name);
  return DenseRef{tensor_at(base, name), t.rows, t.cols, DType::f32};
}

EmbeddingShape Gpt2Model::embedding_shape() const { return EmbeddingShape{batch_, shape_.sequence, shape_.hidden, shape_.padded_vocab(), shape_.sequence}; }

void Gpt2Model::embed(CUdeviceptr params, const std::vector<int>& inputs, const std::vector<int>& targets, CUdeviceptr tokens, CUdeviceptr targets_dev,
                      CUdeviceptr stream, CUstream s, const EmbeddingStatsOut* stats) {
  check(driver().cuMemcpyHtoDAsync(tokens, inputs.data(), inputs.size() * 4, s), "cuMemcpyHtoDAsync (tokens)");
  check(driver().cuMemcpyHtoDAsync(targets_dev, targets.data(), targets.size() * 4, s), "cuMemcpyHtoDAsync (targets)");
  embedding_forward(ctx_, embedding_shape(), tokens, tensor_at(params, "wte"), tensor_at(params, "wpe"), stream, s, stats);
}

void Gpt2Model::embed_backward(CUdeviceptr grads, const std::vector<int>& inputs, CUdeviceptr grad_stream, CUstream s) {
  const auto& wpe = layout_.at("wpe");
  const CUdeviceptr d_wte = tensor_at(grads, "wte"), d_wpe = tensor_at(grads, "wpe");
  check(driver().cuMemsetD8Async(d_wpe, 0, std::size_t(wpe.size()) * 4, s), "cuMemsetD8Async (wpe gradient)");
  const DeviceTokenGroups groups(TokenGroups::of(inputs));
  embedding_backward(ctx_, embedding_shape(), groups, grad_stream, d_wte, d_wpe, s);
  check(driver().cuStreamSynchronize(s), "cuStreamSynchronize");  // the token groups are freed on return
}

double Gpt2Model::mean_loss(CUdeviceptr losses, CUstream s) const {
  std::vector<float> host(static_cast<std::size_t>(batch_) * std::size_t(shape_.sequence));
  check(driver().cuStreamSynchronize(s), "cuStreamSynchronize");
  check(driver().cuMemcpyDtoH(host.data(), losses, host.size() * 4), "cuMemcpyDtoH (losses)");
  double sum = 0;
  for (float x : host) sum += x;
  return sum / double(host.size());
}

Gpt2Int8::Gpt2Int8(Context& ctx, const Gpt2Shape& shape, int batch)
    : Gpt2Model("Gpt2Int8", ctx, shape, batch), b_(std::make_unique<Buffers>()) {
  b_->memory = allocate_arena([&](Arena& a) { b_->lay_out(a, shape, batch); });
}

Gpt2Int8::~Gpt2Int8() = default;

std::size_t Gpt2Int8::arena_bytes() const { return b_->memory.bytes(); }

double Gpt2Int8::step(CUdeviceptr params, CUdeviceptr grads, const std::vector<int>& inputs, const std::vector<int>& targets, std::uint64_t seed,
                      CUstream s) {
  const Gpt2Shape& sh = shape_;
  const float eps = Gpt2Shape::kLayerNormEps;
  const std::int64_t n = std::int64_t(batch_) * sh.sequence, c = sh.hidden, f = std::int64_t(sh.mlp_ratio) * c;
  check_tokens(inputs, targets);
  Buffers& b = *b_;
  auto master = [&](const std::string& name) { return tensor_ref(params, name); };
  auto grad = [&](const std::string& name) { return tensor_ref(grads, name); };
  std::uint64_t draws = 0;
  auto next_seed = [&] { return seed * 0x9E3779B97F4A7C15ull + ++draws; };  // a distinct rounding stream per operator
  const QuantizeOptions nearest{};
  auto stochastic = [&] { return QuantizeOptions{gen::Rounding::stochastic, next_seed(), std::nullopt}; };
  auto gemm_bias = [&](CUdeviceptr bias) {
    GemmOptions o;
    o.bias = bias;
    return o;
  };
  const AttentionLayout attention = AttentionLayout::packed_qkv(batch_, sh.heads, sh.sequence, sh.hidden / sh.heads);
  const CUdeviceptr k_offset = attention.packed_offset(1), v_offset = attention.packed_offset(2);

  // Weights: quantized once per step. A backward data GEMM takes W^T, which one buffer holds for each in turn: the
  // transpose of the quantized W, the same bits as quantizing W^T (square blocks), without a W^T per layer kept
  // through the step (at d = 4096 a block's transposes were 192 of its 1286 MiB).
  quantize(ctx_, master("wte"), b.wte.q, nearest, s);
  for (int l = 0; l < sh.layers; ++l) {
    const std::string h = "h" + std::to_string(l) + ".";
    auto& L = b.layers[std::size_t(l)];
    quantize(ctx_, master(h + "attn.qkv.weight"), L.qkv_w.q, nearest, s);
    quantize(ctx_, master(h + "attn.proj.weight"), L.proj_w.q, nearest, s);
    quantize(ctx_, master(h + "fc.weight"), L.fc_w.q, nearest, s);
    quantize(ctx_, master(h + "fc_proj.weight"), L.fc_proj_w.q, nearest, s);
  }
  auto weight_transposed = [&](const QuantizedWeight& w) {
    const BlockTensorRef t = reshaped(b.weight_t, w.q.cols, w.q.rows);
    transpose(ctx_, w.q, t, s);
    return t;
  };

  // Forward.
  // Every LayerNorm takes the statistics that the pass writing its input stream took (layernorm_apply): the
  // embedding's for the first, a residual add's for the others.
  const EmbeddingStatsOut first_stats{sh.layers > 0 ? b.layers[0].mean1 : b.mean_f, sh.layers > 0 ? b.layers[0].rstd1 : b.rstd_f, eps};
  embed(params, inputs, targets, b.tokens, b.targets, b.stream.data, s, &first_stats);
  quantize(ctx_, b.stream, sh.layers > 0 ? b.layers[0].x_in : b.x_final, nearest, s);  // a 0-layer model: embedding -> head
  for (int l = 0; l < sh.layers; ++l) {
    const std::string h = "h" + std::to_string(l) + ".";
    auto& L = b.layers[std::size_t(l)];
    const bool last = l + 1 == sh.layers;
    const BlockTensorRef& next = last ? b.x_final : b.layers[std::size_t(l) + 1].x_in;
    const LayerNormStatsOut mid_stats{L.mean2, L.rstd2, b.residual_ws, eps};
    const LayerNormStatsOut next_stats{last ? b.mean_f : b.layers[std::size_t(l) + 1].mean1, last ? b.rstd_f : b.layers[std::size_t(l) + 1].rstd1,
                                       b.residual_ws, eps};
    layernorm_apply(ctx_, L.x_in, tensor_at(params, h + "ln1.weight"), tensor_at(params, h + "ln1.bias"), L.mean1, L.rstd1, L.h1, s);
    transpose(ctx_, L.h1, L.h1_t, s);
    gemm(ctx_, L.h1, L.qkv_w.q, L.qkv, gemm_bias(tensor_at(params, h + "attn.qkv.bias")), s);
    attention_forward(ctx_, attention, true, L.qkv.data, L.qkv.data + k_offset, L.qkv.data + v_offset, L.o.data, L.lse, s);
    quantize_transpose(ctx_, L.o, L.o_q, L.o_q_t, nearest, s);
    gemm(ctx_, L.o_q, L.proj_w.q, b.branch, gemm_bias(tensor_at(params, h + "attn.proj.bias")), s);
    residual_add(ctx_, b.stream, b.branch, L.x_mid, &mid_stats, s);
    layernorm_apply(ctx_, L.x_mid, tensor_at(params, h + "ln2.weight"), tensor_at(params, h + "ln2.bias"), L.mean2, L.rstd2, L.h2, s);
    transpose(ctx_, L.h2, L.h2_t, s);
    gemm(ctx_, L.h2, L.fc_w.q, L.f, gemm_bias(tensor_at(params, h + "fc.bias")), s);
    gelu_forward(ctx_, L.f, L.g, GeluForm::tanh, s);
    transpose(ctx_, L.g, L.g_t, s);
    gemm(ctx_, L.g, L.fc_proj_w.q, b.branch, gemm_bias(tensor_at(params, h + "fc_proj.bias")), s);
    residual_add(ctx_, b.stream, b.branch, next, &next_stats, s);
  }
  layernorm_apply(ctx_, b.x_final, tensor_at(params, "ln_f.weight"), tensor_at(params, "ln_f.bias"), b.mean_f, b.rstd_f, b.xf, s);
  gemm(ctx_, b.xf, b.wte.q, b.logits, GemmOptions{}, s);
  cross_entropy(ctx_, b.logits, sh.vocab, b.targets, b.losses, 1.0f / float(n), s);  // logits now hold their gradient

  if (grads) {
    // LM head and final LayerNorm.
    transpose(ctx_, b.xf, b.xf_t, s);
    quantize_transpose(ctx_, b.logits, b.dl, b.dl_t, stochastic(), s);
    linear_backward_weight(ctx_, b.dl_t, b.xf_t, grad("wte"), false, s);  // the embedding's share is added below
    linear_backward_data(ctx_, b.dl, weight_transposed(b.wte), b.dh, next_seed(), s);
    layernorm_backward(ctx_, b.dh, b.x_final, b.mean_f, b.rstd_f, tensor_at(params, "ln_f.weight"), b.dx, tensor_at(grads, "ln_f.weight"),
                       tensor_at(grads, "ln_f.bias"), next_seed(), b.layernorm_ws, s);
    check(driver().cuMemsetD8Async(b.grad_stream.data, 0, std::size_t(b.grad_stream.bytes()), s), "cuMemsetD8Async (gradient stream)");
    residual_add_backward(ctx_, b.grad_stream, b.dx, b.dcopy, next_seed(), s);

    for (int l = sh.layers - 1; l >= 0; --l) {
      const std::string h = "h" + std::to_string(l) + ".";
      auto& L = b.layers[std::size_t(l)];
      const BlockTensorRef dg = reshaped(b.d_wide, n, f), df = reshaped(b.d_wide2, n, f);
      // MLP: dcopy is the gradient of the fc_proj output (and of the skip path, already in the stream).
      column_sum(ctx_, b.dcopy, tensor_at(grads, h + "fc_proj.bias"), false, b.column_ws, s);
      transpose(ctx_, b.dcopy, reshaped(b.d_t, c, n), s);
      linear_backward_weight(ctx_, reshaped(b.d_t, c, n), L.g_t, grad(h + "fc_proj.weight"), false, s);
      linear_backward_data(ctx_, b.dcopy, weight_transposed(L.fc_proj_w), dg, next_seed(), s);
      gelu_backward(ctx_, dg, L.f, df, GeluForm::tanh, next_seed(), s);
      column_sum(ctx_, df, tensor_at(grads, h + "fc.bias"), false, b.column_ws, s);
      transpose(ctx_, df, reshaped(b.d_t, f, n), s);
      linear_backward_weight(ctx_, reshaped(b.d_t, f, n), L.h2_t, grad(h + "fc.weight"), false, s);
      linear_backward_data(ctx_, df, weight_transposed(L.fc_w), b.dh, next_seed(), s);
      layernorm_backward(ctx_, b.dh, L.x_mid, L.mean2, L.rstd2, tensor_at(params, h + "ln2.weight"), b.dx, tensor_at(grads, h + "ln2.weight"),
                         tensor_at(grads, h + "ln2.bias"), next_seed(), b.layernorm_ws, s);
      residual_add_backward(ctx_, b.grad_stream, b.dx, b.dcopy, next_seed(), s);
      // Attention: dcopy is now the gradient of the proj output.
      column_sum(ctx_, b.dcopy, tensor_at(grads, h + "attn.proj.bias"), false, b.column_ws, s);
      transpose(ctx_, b.dcopy, reshaped(b.d_t, c, n), s);
      linear_backward_weight(ctx_, reshaped(b.d_t, c, n), L.o_q_t, grad(h + "attn.proj.weight"), false, s);
      linear_backward_data(ctx_, b.dcopy, weight_transposed(L.proj_w), b.do_q, next_seed(), s);
      dequantize(ctx_, b.do_q, b.d_o, s);
      attention_backward(ctx_, attention, true, L.qkv.data, L.qkv.data + k_offset, L.qkv.data + v_offset, L.o.data, L.lse, b.d_o.data, b.delta,
                         b.d_qkv.data, b.d_qkv.data + k_offset, b.d_qkv.data + v_offset, s);
      quantize_transpose(ctx_, b.d_qkv, b.dqkv_q, reshaped(b.d_t, 3 * c, n), stochastic(), s);
      column_sum(ctx_, b.dqkv_q, tensor_at(grads, h + "attn.qkv.bias"), false, b.column_ws, s);
      linear_backward_weight(ctx_, reshaped(b.d_t, 3 * c, n), L.h1_t, grad(h + "attn.qkv.weight"), false, s);
      linear_backward_data(ctx_, b.dqkv_q, weight_transposed(L.qkv_w), b.dh, next_seed(), s);
      layernorm_backward(ctx_, b.dh, L.x_in, L.mean1, L.rstd1, tensor_at(params, h + "ln1.weight"), b.dx, tensor_at(grads, h + "ln1.weight"),
                         tensor_at(grads, h + "ln1.bias"), next_seed(), b.layernorm_ws, s);
      residual_add_backward(ctx_, b.grad_stream, b.dx, b.dcopy, next_seed(), s);
    }
    embed_backward(grads, inputs, b.grad_stream.data, s);
  }

  return mean_loss(b.losses, s);
}

std::unique_ptr<Gpt2Model> make_gpt2(Context& ctx, const Gpt2Shape& shape, int batch, const std::string& precision) {
  if (precision == "int8") return std::make_unique<Gpt2Int8>(ctx, shape, batch);
  if (precision == "bf16") return std::make_unique<Gpt2Bf16>(ctx, shape, batch);
  throw std::invalid_argument("precision '" + precision + "' is not one of int8, bf16");
}

}  // namespace jetforge
