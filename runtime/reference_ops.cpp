#include "runtime/reference_ops.hpp"

#include <algorithm>
#include <cmath>

#include "templates/jetforge/common.cuh"

namespace jetforge::ref {

namespace {

std::vector<double> values(const HostBlockTensor& t) {
  std::vector<double> v(t.codes.size());
  for (std::int64_t r = 0; r < t.rows; ++r)
    for (std::int64_t c = 0; c < t.cols; ++c) v[size_t(r * t.cols + c)] = t.value(r, c);
  return v;
}

constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluCubic = 0.044715;

}  // namespace

double gelu(double x, GeluKind kind) {
  if (kind == GeluKind::erf) return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + kGeluCubic * x * x * x)));
}

double gelu_grad(double x, GeluKind kind) {
  if (kind == GeluKind::erf) return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
  const double u = kSqrt2OverPi * (x + kGeluCubic * x * x * x), t = std::tanh(u);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * kSqrt2OverPi * (1.0 + 3.0 * kGeluCubic * x * x);
}

HostBlockTensor quantize_exact(std::span<const double> y, std::int64_t rows, std::int64_t cols, gen::Rounding rounding, std::uint64_t seed) {
  std::vector<float> f(y.begin(), y.end());
  return quantize(f, rows, cols, 32, rounding, seed);
}

std::vector<double> gelu_forward_exact(const HostBlockTensor& x, GeluKind kind) {
  auto v = values(x);
  for (auto& e : v) e = gelu(e, kind);
  return v;
}

std::vector<double> gelu_backward_exact(const HostBlockTensor& dy, const HostBlockTensor& x, GeluKind kind) {
  auto g = values(dy);
  const auto xv = values(x);
  for (size_t i = 0; i < g.size(); ++i) g[i] *= gelu_grad(xv[i], kind);
  return g;
}

HostBlockTensor gelu_forward(const HostBlockTensor& x, GeluKind kind) {
  return quantize_exact(gelu_forward_exact(x, kind), x.rows, x.cols, gen::Rounding::nearest, 0);
}

HostBlockTensor gelu_backward(const HostBlockTensor& dy, const HostBlockTensor& x, GeluKind kind, std::uint64_t seed) {
  return quantize_exact(gelu_backward_exact(dy, x, kind), x.rows, x.cols, gen::Rounding::stochastic, seed);
}

RowStats row_stats(std::span<const double> x, std::int64_t rows, std::int64_t cols, double eps) {
  RowStats s{std::vector<float>(size_t(rows)), std::vector<float>(size_t(rows))};
  for (std::int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (std::int64_t c = 0; c < cols; ++c) mean += x[size_t(r * cols + c)];
    mean /= double(cols);
    for (std::int64_t c = 0; c < cols; ++c) var += (x[size_t(r * cols + c)] - mean) * (x[size_t(r * cols + c)] - mean);
    var /= double(cols);
    s.mean[size_t(r)] = float(mean);
    s.rstd[size_t(r)] = float(1.0 / std::sqrt(var + eps));
  }
  return s;
}

std::vector<double> layernorm_forward_exact(const HostBlockTensor& x, std::span<const float> gamma, std::span<const float> beta, double eps,
                                            RowStats* stats) {
  const auto v = values(x);
  const RowStats s = row_stats(v, x.rows, x.cols, eps);
  std::vector<double> y(v.size());
  for (std::int64_t r = 0; r < x.rows; ++r)
    for (std::int64_t c = 0; c < x.cols; ++c) {
      const size_t i = size_t(r * x.cols + c);
      y[i] = (v[i] - s.mean[size_t(r)]) * s.rstd[size_t(r)] * gamma[size_t(c)] + beta[size_t(c)];
    }
  if (stats) *stats = s;
  return y;
}

HostBlockTensor layernorm_forward(const HostBlockTensor& x, std::span<const float> gamma, std::span<const float> beta, double eps, RowStats* stats) {
  return quantize_exact(layernorm_forward_exact(x, gamma, beta, eps, stats), x.rows, x.cols, gen::Rounding::nearest, 0);
}

LayerNormGrads layernorm_backward_exact(const HostBlockTensor& dy, const HostBlockTensor& x, const RowStats& stats, std::span<const float> gamma) {
  const auto g = values(dy), v = values(x);
  const std::int64_t rows = x.rows, cols = x.cols;
  LayerNormGrads out{std::vector<double>(v.size()), std::vector<double>(size_t(cols), 0.0), std::vector<double>(size_t(cols), 0.0)};
  for (std::int64_t r = 0; r < rows; ++r) {
    const double mean = stats.mean[size_t(r)], rstd = stats.rstd[size_t(r)];
    // dx = rstd * (gg - mean(gg) - xhat * mean(gg * xhat)), gg = dy * gamma
    double mean_gg = 0, mean_ggx = 0;
    for (std::int64_t c = 0; c < cols; ++c) {
      const size_t i = size_t(r * cols + c);
      const double xhat = (v[i] - mean) * rstd, gg = g[i] * gamma[size_t(c)];
      mean_gg += gg, mean_ggx += gg * xhat;
      out.dgamma[size_t(c)] += g[i] * xhat;
      out.dbeta[size_t(c)] += g[i];
    }
    mean_gg /= double(cols), mean_ggx /= double(cols);
    for (std::int64_t c = 0; c < cols; ++c) {
      const size_t i = size_t(r * cols + c);
      const double xhat = (v[i] - mean) * rstd;
      out.dx[i] = rstd * (g[i] * gamma[size_t(c)] - mean_gg - xhat * mean_ggx);
    }
  }
  return out;
}

ResidualOut residual_add(std::vector<float>& r, const HostBlockTensor& x, double eps) {
  const auto v = values(x);
  std::vector<double> sum(v.size());
  for (size_t i = 0; i < v.size(); ++i) sum[i] = r[i] = float(double(r[i]) + v[i]);
  return ResidualOut{quantize_exact(sum, x.rows, x.cols, gen::Rounding::nearest, 0), row_stats(sum, x.rows, x.cols, eps)};
}

std::vector<double> dropout_exact(const HostBlockTensor& x, double p, std::uint64_t seed) {
  auto v = values(x);
  const std::uint32_t key = seed_key(seed);
  for (size_t i = 0; i < v.size(); ++i) v[i] = dropout_keep(key, i, float(p)) ? v[i] / (1.0 - p) : 0.0;
  return v;
}

HostBlockTensor dropout(const HostBlockTensor& x, double p, std::uint64_t seed) {
  HostBlockTensor y = x;
  const std::uint32_t key = seed_key(seed);
  for (size_t i = 0; i < y.codes.size(); ++i)
    if (!dropout_keep(key, i, float(p))) y.codes[i] = 0;
  for (float& s : y.scales) s = dropout_scale(s, float(p));
  return y;
}

CrossEntropy cross_entropy(std::span<const float> logits, std::int64_t rows, std::int64_t padded_vocab, std::int64_t vocab, std::span<const int> targets,
                           double grad_scale) {
  CrossEntropy out{std::vector<double>(std::size_t(rows), 0.0), std::vector<double>(std::size_t(rows * padded_vocab), 0.0)};
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x = logits.data() + r * padded_vocab;
    const int target = targets[std::size_t(r)];
    if (target < 0) continue;
    double m = x[0], sum = 0;
    for (std::int64_t j = 0; j < vocab; ++j) m = std::max(m, double(x[j]));
    for (std::int64_t j = 0; j < vocab; ++j) sum += std::exp(double(x[j]) - m);
    out.losses[std::size_t(r)] = m + std::log(sum) - double(x[target]);
    for (std::int64_t j = 0; j < vocab; ++j)
      out.grads[std::size_t(r * padded_vocab + j)] = (std::exp(double(x[j]) - m) / sum - (j == target ? 1.0 : 0.0)) * grad_scale;
  }
  return out;
}

}  // namespace jetforge::ref
