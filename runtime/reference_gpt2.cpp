#include "runtime/reference_gpt2.hpp"

#include <cmath>
#include <stdexcept>

#include "runtime/reference_attention.hpp"
#include "runtime/reference_ops.hpp"

namespace jetforge::ref {

namespace {

// A row-major rows x cols matrix of FP64 values.
struct Mat {
  int rows = 0, cols = 0;
  std::vector<double> v;
  Mat() = default;
  Mat(int r, int c) : rows(r), cols(c), v(std::size_t(r) * c, 0.0) {}
  double& at(int r, int c) { return v[std::size_t(r) * cols + c]; }
  double at(int r, int c) const { return v[std::size_t(r) * cols + c]; }
};

// Views of one parameter tensor inside the flat parameter (or gradient) vector.
struct Params {
  const ParameterLayout& layout;
  const std::vector<double>& values;
  double w(const std::string& name, int r, int c) const {
    const auto& t = layout.at(name);
    return values[std::size_t(t.offset + std::int64_t(r) * t.cols + c)];
  }
  double b(const std::string& name, int i) const { return values[std::size_t(layout.at(name).offset + i)]; }
};
struct Grads {
  const ParameterLayout& layout;
  std::vector<double>& values;
  double& w(const std::string& name, int r, int c) {
    const auto& t = layout.at(name);
    return values[std::size_t(t.offset + std::int64_t(r) * t.cols + c)];
  }
  double& b(const std::string& name, int i) { return values[std::size_t(layout.at(name).offset + i)]; }
};

// y = x W^T + bias, W of out x in.
Mat linear(const Mat& x, const Params& p, const std::string& weight, const std::string& bias, int out) {
  Mat y(x.rows, out);
  for (int r = 0; r < x.rows; ++r)
    for (int o = 0; o < out; ++o) {
      double sum = bias.empty() ? 0.0 : p.b(bias, o);
      for (int i = 0; i < x.cols; ++i) sum += x.at(r, i) * p.w(weight, o, i);
      y.at(r, o) = sum;
    }
  return y;
}
// dx = dy W, dW += dy^T x, dbias += column sums of dy.
Mat linear_backward(const Mat& dy, const Mat& x, const Params& p, Grads& g, const std::string& weight, const std::string& bias) {
  Mat dx(x.rows, x.cols);
  for (int r = 0; r < dy.rows; ++r)
    for (int o = 0; o < dy.cols; ++o) {
      const double d = dy.at(r, o);
      if (!bias.empty()) g.b(bias, o) += d;
      for (int i = 0; i < x.cols; ++i) {
        dx.at(r, i) += d * p.w(weight, o, i);
        g.w(weight, o, i) += d * x.at(r, i);
      }
    }
  return dx;
}

struct LayerNormCache {
  std::vector<double> mean, rstd;
};
Mat layernorm(const Mat& x, const Params& p, const std::string& name, LayerNormCache& cache) {
  Mat y(x.rows, x.cols);
  cache.mean.assign(std::size_t(x.rows), 0.0), cache.rstd.assign(std::size_t(x.rows), 0.0);
  for (int r = 0; r < x.rows; ++r) {
    double mean = 0, var = 0;
    for (int c = 0; c < x.cols; ++c) mean += x.at(r, c);
    mean /= x.cols;
    for (int c = 0; c < x.cols; ++c) var += (x.at(r, c) - mean) * (x.at(r, c) - mean);
    const double rstd = 1.0 / std::sqrt(var / x.cols + double(Gpt2Shape::kLayerNormEps));
    cache.mean[std::size_t(r)] = mean, cache.rstd[std::size_t(r)] = rstd;
    for (int c = 0; c < x.cols; ++c) y.at(r, c) = (x.at(r, c) - mean) * rstd * p.b(name + ".weight", c) + p.b(name + ".bias", c);
  }
  return y;
}
Mat layernorm_backward(const Mat& dy, const Mat& x, const LayerNormCache& cache, const Params& p, Grads& g, const std::string& name) {
  Mat dx(x.rows, x.cols);
  for (int r = 0; r < x.rows; ++r) {
    const double mean = cache.mean[std::size_t(r)], rstd = cache.rstd[std::size_t(r)];
    double c1 = 0, c2 = 0;  // means of dy * gamma and dy * gamma * xhat
    for (int c = 0; c < x.cols; ++c) {
      const double xhat = (x.at(r, c) - mean) * rstd, dxhat = dy.at(r, c) * p.b(name + ".weight", c);
      g.b(name + ".weight", c) += dy.at(r, c) * xhat;
      g.b(name + ".bias", c) += dy.at(r, c);
      c1 += dxhat, c2 += dxhat * xhat;
    }
    c1 /= x.cols, c2 /= x.cols;
    for (int c = 0; c < x.cols; ++c) {
      const double xhat = (x.at(r, c) - mean) * rstd, dxhat = dy.at(r, c) * p.b(name + ".weight", c);
      dx.at(r, c) = rstd * (dxhat - c1 - xhat * c2);
    }
  }
  return dx;
}

// Causal multi-head attention on qkv rows [q | k | v] (each `hidden` wide, head h at columns h * d ..).
AttentionShape attention_shape(const Gpt2Shape& s, int batch) { return AttentionShape{batch, s.heads, s.sequence, s.hidden / s.heads, true}; }
void split_heads(const Gpt2Shape& s, int batch, const Mat& qkv, std::vector<double> (&out)[3]) {
  const int d = s.hidden / s.heads;
  for (auto& o : out) o.assign(std::size_t(batch) * s.sequence * s.hidden, 0.0);
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < s.sequence; ++t)
      for (int which = 0; which < 3; ++which)
        for (int h = 0; h < s.heads; ++h)
          for (int e = 0; e < d; ++e)
            out[which][((std::size_t(b) * s.heads + h) * s.sequence + t) * d + e] = qkv.at(b * s.sequence + t, which * s.hidden + h * d + e);
}
Mat merge_heads(const Gpt2Shape& s, int batch, const std::vector<double>& x) {
  const int d = s.hidden / s.heads;
  Mat m(batch * s.sequence, s.hidden);
  for (int b = 0; b < batch; ++b)
    for (int h = 0; h < s.heads; ++h)
      for (int t = 0; t < s.sequence; ++t)
        for (int e = 0; e < d; ++e) m.at(b * s.sequence + t, h * d + e) = x[((std::size_t(b) * s.heads + h) * s.sequence + t) * d + e];
  return m;
}
std::vector<double> heads_of(const Gpt2Shape& s, int batch, const Mat& m) {  // the inverse of merge_heads
  const int d = s.hidden / s.heads;
  std::vector<double> x(std::size_t(batch) * s.sequence * s.hidden);
  for (int b = 0; b < batch; ++b)
    for (int h = 0; h < s.heads; ++h)
      for (int t = 0; t < s.sequence; ++t)
        for (int e = 0; e < d; ++e) x[((std::size_t(b) * s.heads + h) * s.sequence + t) * d + e] = m.at(b * s.sequence + t, h * d + e);
  return x;
}

struct BlockCache {
  Mat x_in, ln1, qkv, attn, x_mid, ln2, fc, gelu;
  LayerNormCache ln1_stats, ln2_stats;
};

Gpt2Step run(const Gpt2Shape& s, const std::vector<double>& values, const std::vector<int>& inputs, const std::vector<int>& targets, int batch,
             bool backward) {
  const ParameterLayout layout = gpt2_parameters(s);
  if (values.size() != std::size_t(layout.floats)) throw std::invalid_argument("gpt2 reference: parameters do not match the layout");
  if (inputs.size() != std::size_t(batch) * s.sequence || targets.size() != inputs.size())
    throw std::invalid_argument("gpt2 reference: inputs and targets must hold batch x sequence tokens");
  const Params p{layout, values};
  const int n = batch * s.sequence, c = s.hidden, f = s.mlp_ratio * s.hidden;

  Mat x(n, c);
  for (int r = 0; r < n; ++r)
    for (int e = 0; e < c; ++e) x.at(r, e) = p.w("wte", inputs[std::size_t(r)], e) + p.w("wpe", r % s.sequence, e);
  std::vector<BlockCache> blocks(std::size_t(s.layers));
  for (int l = 0; l < s.layers; ++l) {
    BlockCache& k = blocks[std::size_t(l)];
    const std::string h = "h" + std::to_string(l) + ".";
    k.x_in = x;
    k.ln1 = layernorm(x, p, h + "ln1", k.ln1_stats);
    k.qkv = linear(k.ln1, p, h + "attn.qkv.weight", h + "attn.qkv.bias", 3 * c);
    std::vector<double> qkv[3];
    split_heads(s, batch, k.qkv, qkv);
    k.attn = merge_heads(s, batch, attention_forward(attention_shape(s, batch), qkv[0], qkv[1], qkv[2]).o);
    const Mat proj = linear(k.attn, p, h + "attn.proj.weight", h + "attn.proj.bias", c);
    for (std::size_t i = 0; i < x.v.size(); ++i) x.v[i] += proj.v[i];
    k.x_mid = x;
    k.ln2 = layernorm(x, p, h + "ln2", k.ln2_stats);
    k.fc = linear(k.ln2, p, h + "fc.weight", h + "fc.bias", f);
    k.gelu = k.fc;
    for (auto& e : k.gelu.v) e = gelu(e, GeluKind::tanh);
    const Mat out = linear(k.gelu, p, h + "fc_proj.weight", h + "fc_proj.bias", c);
    for (std::size_t i = 0; i < x.v.size(); ++i) x.v[i] += out.v[i];
  }
  LayerNormCache final_stats;
  const Mat xf = layernorm(x, p, "ln_f", final_stats);
  const Mat logits = linear(xf, p, "wte", "", s.vocab);  // the first `vocab` rows of the tied embedding
  Gpt2Step step;
  Mat dlogits(n, s.vocab);
  for (int r = 0; r < n; ++r) {
    double m = logits.at(r, 0), sum = 0;
    for (int j = 0; j < s.vocab; ++j) m = std::max(m, logits.at(r, j));
    for (int j = 0; j < s.vocab; ++j) sum += std::exp(logits.at(r, j) - m);
    const int target = targets[std::size_t(r)];
    step.loss += (m + std::log(sum) - logits.at(r, target)) / n;
    for (int j = 0; j < s.vocab; ++j) dlogits.at(r, j) = (std::exp(logits.at(r, j) - m) / sum - (j == target ? 1.0 : 0.0)) / n;
  }
  if (!backward) return step;

  step.grads.assign(values.size(), 0.0);
  Grads g{layout, step.grads};
  Mat dx = layernorm_backward(linear_backward(dlogits, xf, p, g, "wte", ""), x, final_stats, p, g, "ln_f");
  for (int l = s.layers - 1; l >= 0; --l) {
    const BlockCache& k = blocks[std::size_t(l)];
    const std::string h = "h" + std::to_string(l) + ".";
    Mat dgelu = linear_backward(dx, k.gelu, p, g, h + "fc_proj.weight", h + "fc_proj.bias");
    for (std::size_t i = 0; i < dgelu.v.size(); ++i) dgelu.v[i] *= gelu_grad(k.fc.v[i], GeluKind::tanh);
    const Mat dln2 = linear_backward(dgelu, k.ln2, p, g, h + "fc.weight", h + "fc.bias");
    const Mat dmid = layernorm_backward(dln2, k.x_mid, k.ln2_stats, p, g, h + "ln2");
    for (std::size_t i = 0; i < dx.v.size(); ++i) dx.v[i] += dmid.v[i];
    const Mat dattn = linear_backward(dx, k.attn, p, g, h + "attn.proj.weight", h + "attn.proj.bias");
    std::vector<double> qkv[3];
    split_heads(s, batch, k.qkv, qkv);
    const auto grads = attention_backward(attention_shape(s, batch), qkv[0], qkv[1], qkv[2], heads_of(s, batch, dattn));
    Mat dqkv(n, 3 * c);
    const Mat parts[3] = {merge_heads(s, batch, grads.dq), merge_heads(s, batch, grads.dk), merge_heads(s, batch, grads.dv)};
    for (int r = 0; r < n; ++r)
      for (int which = 0; which < 3; ++which)
        for (int e = 0; e < c; ++e) dqkv.at(r, which * c + e) = parts[which].at(r, e);
    const Mat dln1 = linear_backward(dqkv, k.ln1, p, g, h + "attn.qkv.weight", h + "attn.qkv.bias");
    const Mat din = layernorm_backward(dln1, k.x_in, k.ln1_stats, p, g, h + "ln1");
    for (std::size_t i = 0; i < dx.v.size(); ++i) dx.v[i] += din.v[i];
  }
  for (int r = 0; r < n; ++r)
    for (int e = 0; e < c; ++e) {
      g.w("wte", inputs[std::size_t(r)], e) += dx.at(r, e);
      g.w("wpe", r % s.sequence, e) += dx.at(r, e);
    }
  return step;
}

}  // namespace

double gpt2_loss(const Gpt2Shape& s, const std::vector<double>& params, const std::vector<int>& inputs, const std::vector<int>& targets, int batch) {
  return run(s, params, inputs, targets, batch, false).loss;
}

Gpt2Step gpt2_step(const Gpt2Shape& s, const std::vector<double>& params, const std::vector<int>& inputs, const std::vector<int>& targets, int batch) {
  return run(s, params, inputs, targets, batch, true);
}

}  // namespace jetforge::ref
