#include "runtime/optim.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "generator/families.hpp"
#include "templates/optim.cuh"

namespace jetforge {

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(std::int64_t n, unsigned cap) { return unsigned(std::clamp<std::int64_t>((n + kThreads - 1) / kThreads, 1, cap)); }

// CTAs the sum of squares of n values uses (a fixed function of n, so the partials array has a fixed layout).
unsigned sumsq_blocks(std::int64_t n) { return blocks_for(n, 1024); }

}  // namespace

double cosine_lr(std::int64_t step, std::int64_t warmup, std::int64_t total, double max_lr, double min_lr) {
  if (warmup > 0 && step < warmup) return max_lr * double(step + 1) / double(warmup);
  if (step >= total) return min_lr;
  const double progress = double(step - warmup) / double(std::max<std::int64_t>(1, total - warmup));
  return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

std::size_t clip_workspace_bytes(std::span<const GradientBuffer> grads) {
  std::size_t partials = 0;
  for (const auto& g : grads) partials += sumsq_blocks(g.n);
  return partials * sizeof(float);
}

void clip_gradients(Context& ctx, std::span<const GradientBuffer> grads, float max_norm, CUdeviceptr workspace, CUdeviceptr norm, CUdeviceptr factor,
                    CUstream stream) {
  if (!(max_norm > 0.0f)) throw std::invalid_argument("clip_gradients: max_norm must be positive");
  if (!workspace || !norm || !factor) throw std::invalid_argument("clip_gradients: workspace, norm and factor must be given");
  const gen::OptimSpec sumsq{gen::OptimKernel::sum_squares, kThreads}, finish{gen::OptimKernel::clip_factor, 32};
  std::int64_t offset = 0;
  for (const auto& g : grads) {
    const SumSquaresParams p{reinterpret_cast<const float*>(g.data), g.n, reinterpret_cast<float*>(workspace), offset};
    ctx.kernel(sumsq).launch(sumsq_blocks(g.n), p, stream);
    offset += sumsq_blocks(g.n);
  }
  const ClipFactorParams p{reinterpret_cast<const float*>(workspace), offset, max_norm, reinterpret_cast<float*>(norm), reinterpret_cast<float*>(factor)};
  ctx.kernel(finish).launch(1, p, stream);
}

void adamw_step(Context& ctx, CUdeviceptr w, CUdeviceptr g, CUdeviceptr m, CUdeviceptr v, std::int64_t n, std::int64_t step, float lr,
                const AdamWConfig& c, CUdeviceptr clip_factor, CUstream stream) {
  if (step < 1) throw std::invalid_argument("adamw_step: step counts from 1, got " + std::to_string(step));
  const AdamWParams p{reinterpret_cast<float*>(w),
                      reinterpret_cast<const float*>(g),
                      reinterpret_cast<float*>(m),
                      reinterpret_cast<float*>(v),
                      n,
                      reinterpret_cast<const float*>(clip_factor),
                      lr,
                      c.beta1,
                      c.beta2,
                      c.eps,
                      c.weight_decay,
                      float(1.0 - std::pow(double(c.beta1), double(step))),
                      float(1.0 - std::pow(double(c.beta2), double(step)))};
  ctx.kernel(gen::OptimSpec{gen::OptimKernel::adamw, kThreads}).launch(blocks_for(n, 132 * 8), p, stream);
}

OptimizerState::OptimizerState(std::span<const float> initial, std::span<const float> m0, std::span<const float> v0)
    : n(std::int64_t(initial.size())),
      params(initial.size() * 4),
      grads(initial.size() * 4),
      m(initial.size() * 4),
      v(initial.size() * 4),
      workspace_(clip_workspace_bytes(std::vector<GradientBuffer>{{0, n}})),
      norm_(4),
      factor_(4) {
  params.upload(initial.data(), initial.size() * 4);
  grads.fill_bytes(0);
  for (auto [buffer, values] : {std::pair{&m, m0}, {&v, v0}}) {
    if (values.empty()) buffer->fill_bytes(0);
    else if (values.size() == initial.size()) buffer->upload(values.data(), values.size() * 4);
    else
      throw std::invalid_argument("OptimizerState: " + std::to_string(values.size()) + " AdamW moments given for " + std::to_string(initial.size()) +
                                  " parameters");
  }
}

void OptimizerState::clip(Context& ctx, float max_norm, CUstream stream) {
  const GradientBuffer all[] = {{grads.get(), n}};
  clip_gradients(ctx, all, max_norm, workspace_.get(), norm_.get(), factor_.get(), stream);
}

void OptimizerState::adamw_step(Context& ctx, std::int64_t first, std::int64_t count, std::int64_t step, float lr, const AdamWConfig& config,
                                CUstream stream) {
  if (first < 0 || count < 0 || first + count > n)
    throw std::out_of_range("OptimizerState::adamw_step: floats [" + std::to_string(first) + ", " + std::to_string(first + count) + ") outside the " +
                            std::to_string(n) + " parameters");
  const CUdeviceptr at = CUdeviceptr(first) * 4;
  jetforge::adamw_step(ctx, params.get() + at, grads.get() + at, m.get() + at, v.get() + at, count, step, lr, config, factor_.get(), stream);
}

namespace ref {

void adamw_step(std::span<float> w, std::span<const float> g, std::span<float> m, std::span<float> v, std::int64_t step, float lr, const AdamWConfig& c,
                float clip_factor) {
  const double bc1 = 1.0 - std::pow(double(c.beta1), double(step)), bc2 = 1.0 - std::pow(double(c.beta2), double(step));
  for (size_t i = 0; i < w.size(); ++i) {
    const double gi = double(g[i]) * clip_factor;
    m[i] = float(c.beta1 * double(m[i]) + (1.0 - c.beta1) * gi);
    v[i] = float(c.beta2 * double(v[i]) + (1.0 - c.beta2) * gi * gi);
    const double update = (double(m[i]) / bc1) / (std::sqrt(double(v[i]) / bc2) + c.eps);
    w[i] = float(double(w[i]) - lr * (update + c.weight_decay * double(w[i])));
  }
}

double global_norm(std::span<const std::vector<float>> grads) {
  double s = 0;
  for (const auto& g : grads)
    for (float x : g) s += double(x) * double(x);
  return std::sqrt(s);
}

}  // namespace ref
}  // namespace jetforge
