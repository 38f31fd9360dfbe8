// CPU references of the nonlinear operators: known values, backward passes against central finite differences
// of the FP64 forward, quantized outputs within one quantization step of the exact results, dropout statistics.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "runtime/reference_ops.hpp"
#include "templates/jetforge/common.cuh"
#include "testing.hpp"

using namespace jetforge;
using gen::Rounding;

namespace {

ref::HostBlockTensor random_q(std::int64_t rows, std::int64_t cols, std::uint64_t seed, double lo = -1, double hi = 1) {
  return ref::quantize(testing::random_blocks(rows, cols, 32, seed, lo, hi), rows, cols, 32, Rounding::nearest, 0);
}

// Every element of q within `steps` quantization steps of exact.
bool within_steps(const ref::HostBlockTensor& q, const std::vector<double>& exact, double steps) {
  for (std::int64_t r = 0; r < q.rows; ++r)
    for (std::int64_t c = 0; c < q.cols; ++c)
      // + 1e-4 steps: the references quantize the FP32 rounding of the exact value, up to 2^-24 * 127 steps away.
      if (!(std::fabs(q.value(r, c) - exact[size_t(r * q.cols + c)]) <= (steps + 1e-4) * q.scale_at(r, c))) return false;
  return true;
}

}  // namespace

using testing::random_vector;

TEST_SUITE("reference") {
  TEST_CASE("GELU: known values, derivative against finite differences") {
    CHECK(ref::gelu(1.0, ref::GeluKind::erf) == doctest::Approx(0.8413447460685429).epsilon(1e-12));
    CHECK(ref::gelu(1.0, ref::GeluKind::tanh) == doctest::Approx(0.8411919906082768).epsilon(1e-12));
    CHECK(ref::gelu(-3.0, ref::GeluKind::erf) == doctest::Approx(-0.004049694).epsilon(1e-6));
    for (auto kind : {ref::GeluKind::tanh, ref::GeluKind::erf})
      for (double x = -6; x <= 6; x += 0.37) {
        const double h = 1e-6, fd = (ref::gelu(x + h, kind) - ref::gelu(x - h, kind)) / (2 * h);
        CHECK(ref::gelu_grad(x, kind) == doctest::Approx(fd).epsilon(1e-7));
      }
  }

  TEST_CASE("GELU forward and backward quantize to within one step of the exact results") {
    const auto x = random_q(64, 96, 1, -1, 1), dy = random_q(64, 96, 2, -3, 0);
    for (auto kind : {ref::GeluKind::tanh, ref::GeluKind::erf}) {
      CHECK(within_steps(ref::gelu_forward(x, kind), ref::gelu_forward_exact(x, kind), 0.5));
      CHECK(within_steps(ref::gelu_backward(dy, x, kind, 5), ref::gelu_backward_exact(dy, x, kind), 1.0));
    }
  }

  TEST_CASE("LayerNorm backward matches finite differences of the FP64 forward") {
    const std::int64_t rows = 32, cols = 64;
    auto x = random_q(rows, cols, 3, -1, 1);
    const auto dy = random_q(rows, cols, 4, -1, 1);
    const auto gamma = random_vector(size_t(cols), 5), beta = random_vector(size_t(cols), 6);
    const double eps = 1e-5;
    ref::RowStats stats;
    ref::layernorm_forward_exact(x, gamma, beta, eps, &stats);
    const auto grads = ref::layernorm_backward_exact(dy, x, stats, gamma);
    // L = sum(dy * y), differentiated by central differences of an FP64 forward over the dequantized inputs.
    std::vector<double> xv(size_t(rows * cols)), g(size_t(rows * cols));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) xv[size_t(r * cols + c)] = x.value(r, c), g[size_t(r * cols + c)] = dy.value(r, c);
    auto loss = [&](const std::vector<double>& xs, const std::vector<float>& gm, const std::vector<float>& bt) {
      double l = 0;
      for (std::int64_t r = 0; r < rows; ++r) {
        double mean = 0, var = 0;  // FP64 statistics: the float ones in RowStats are too coarse for differences
        for (std::int64_t c = 0; c < cols; ++c) mean += xs[size_t(r * cols + c)];
        mean /= double(cols);
        for (std::int64_t c = 0; c < cols; ++c) var += std::pow(xs[size_t(r * cols + c)] - mean, 2);
        const double rstd = 1.0 / std::sqrt(var / double(cols) + eps);
        for (std::int64_t c = 0; c < cols; ++c) l += g[size_t(r * cols + c)] * ((xs[size_t(r * cols + c)] - mean) * rstd * gm[size_t(c)] + bt[size_t(c)]);
      }
      return l;
    };
    const double h = 1e-4;
    double worst = 0;
    for (size_t i = 0; i < xv.size(); i += 7) {
      auto plus = xv, minus = xv;
      plus[i] += h, minus[i] -= h;
      const double fd = (loss(plus, gamma, beta) - loss(minus, gamma, beta)) / (2 * h);
      worst = std::max(worst, std::fabs(fd - grads.dx[i]) / (std::fabs(fd) + 1e-3));
    }
    CHECK(worst < 1e-3);  // float statistics in RowStats bound the agreement
    for (std::int64_t c = 0; c < cols; c += 5) {
      auto gp = gamma, gm = gamma, bp = beta, bm = beta;
      gp[size_t(c)] += float(h), gm[size_t(c)] -= float(h), bp[size_t(c)] += float(h), bm[size_t(c)] -= float(h);
      const double dh_g = double(gp[size_t(c)]) - double(gm[size_t(c)]), dh_b = double(bp[size_t(c)]) - double(bm[size_t(c)]);
      CHECK(grads.dgamma[size_t(c)] == doctest::Approx((loss(xv, gp, beta) - loss(xv, gm, beta)) / dh_g).epsilon(1e-3));
      CHECK(grads.dbeta[size_t(c)] == doctest::Approx((loss(xv, gamma, bp) - loss(xv, gamma, bm)) / dh_b).epsilon(1e-3));
    }
    CHECK(within_steps(ref::quantize_exact(grads.dx, rows, cols, Rounding::stochastic, 9), grads.dx, 1.0));
  }

  TEST_CASE("residual add keeps the FP32 stream, emits its INT8 copy and the next LayerNorm's statistics") {
    const std::int64_t rows = 64, cols = 128;
    const auto x = random_q(rows, cols, 7, -1, 1);
    auto r = random_vector(size_t(rows * cols), 8);
    const auto before = r;
    const auto out = ref::residual_add(r, x, 1e-5);
    std::vector<double> sum(r.size());
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t c = 0; c < cols; ++c) {
        const size_t k = size_t(i * cols + c);
        CHECK(r[k] == float(double(before[k]) + x.value(i, c)));
        sum[k] = r[k];
      }
    CHECK(within_steps(out.q, sum, 0.5));
    const auto stats = ref::row_stats(sum, rows, cols, 1e-5);
    CHECK(out.stats.mean == stats.mean);
    CHECK(out.stats.rstd == stats.rstd);
  }

  TEST_CASE("dropout keeps 1 - p of the elements, is unbiased, and regenerates the same mask backward") {
    const std::int64_t rows = 128, cols = 128;
    const auto x = random_q(rows, cols, 10, 0, 0);
    const double p = 0.1;
    const auto y = ref::dropout_exact(x, p, 42);
    size_t kept = 0;
    double sum_x = 0, sum_y = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      kept += y[i] != 0.0;
      sum_x += x.value(std::int64_t(i) / cols, std::int64_t(i) % cols);
      sum_y += y[i];
    }
    const double n = double(y.size());
    CHECK(std::fabs(double(kept) / n - (1 - p)) < 6 * std::sqrt(p * (1 - p) / n));
    CHECK(std::fabs(sum_y - sum_x) < 6 * std::sqrt(n) * 1.0);  // E[y] = x
    const auto dx = ref::dropout_exact(x, p, 42);                // the backward mask from the same seed
    size_t mask_differs = 0;
    for (size_t i = 0; i < y.size(); ++i) mask_differs += (dx[i] == 0.0) != (y[i] == 0.0);
    CHECK(mask_differs == 0);
    CHECK(ref::dropout_exact(x, p, 43) != y);
    CHECK(within_steps(ref::dropout(x, p, 42), y, 1e-6));  // the INT8 operator is exact
  }
}
