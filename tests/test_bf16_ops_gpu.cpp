// The BF16 mode's operators on the GPU against FP64 on the same BF16 inputs: results within BF16 rounding (2^-8
// relative) plus FP32 error, reductions deterministic (skipped without a GPU).
#include <doctest/doctest.h>

#include <cmath>

#include "runtime/bf16_ops.hpp"
#include "runtime/ops.hpp"
#include "runtime/reference_ops.hpp"
#include "templates/jetforge/common.cuh"
#include "testing.hpp"

using namespace jetforge;

namespace {

// Every element within half a BF16 ulp of `want` plus `abs` (FP32 arithmetic on the way).
std::size_t off(const std::vector<float>& got, const std::vector<double>& want, double abs) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) bad += !(std::fabs(got[i] - want[i]) <= std::fabs(want[i]) / 256 + abs);
  return bad;
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("BF16 mode operators: LayerNorm forward/backward, GELU, residual add, column sums, FP32 -> BF16") {
    Context& ctx = testing::gpu();
    const std::int64_t rows = 256, cols = 768;
    const std::size_t n = std::size_t(rows * cols);
    const auto x = testing::as_stored(testing::random_vector(n, 1, 2.0f), DType::bf16), dy = testing::as_stored(testing::random_vector(n, 2), DType::bf16);
    const auto gamma = testing::random_vector(std::size_t(cols), 3), beta = testing::random_vector(std::size_t(cols), 4);
    DenseTensor xd = testing::upload_dense(x, rows, cols, DType::bf16), dyd = testing::upload_dense(dy, rows, cols, DType::bf16), y(rows, cols, DType::bf16), dx(rows, cols, DType::bf16);
    DeviceBuffer g(std::size_t(cols) * 4), b(std::size_t(cols) * 4), mean(std::size_t(rows) * 4), rstd(std::size_t(rows) * 4), dgamma(std::size_t(cols) * 4),
        dbeta(std::size_t(cols) * 4), ws(bf16_layernorm_backward_workspace_bytes(rows, cols)), sums(std::size_t(cols) * 4),
        col_ws(column_sum_workspace_bytes(rows, cols));
    g.upload(gamma.data(), gamma.size() * 4), b.upload(beta.data(), beta.size() * 4);

    // LayerNorm forward and backward, against FP64.
    y.buffer().fill_bytes(testing::kNanBytes), dx.buffer().fill_bytes(testing::kNanBytes);
    bf16_layernorm_forward(ctx, xd.ref(), g.get(), b.get(), y.ref(), mean.get(), rstd.get(), 1e-5f, nullptr);
    bf16_layernorm_backward(ctx, dyd.ref(), xd.ref(), mean.get(), rstd.get(), g.get(), dx.ref(), dgamma.get(), dbeta.get(), ws.get(), nullptr);
    std::vector<double> want_y(n), want_dx(n), want_dg(std::size_t(cols), 0.0), want_db(std::size_t(cols), 0.0);
    for (std::int64_t r = 0; r < rows; ++r) {
      double m = 0, var = 0, c1 = 0, c2 = 0;
      for (std::int64_t c = 0; c < cols; ++c) m += x[std::size_t(r * cols + c)];
      m /= double(cols);
      for (std::int64_t c = 0; c < cols; ++c) var += (x[std::size_t(r * cols + c)] - m) * (x[std::size_t(r * cols + c)] - m);
      const double rs = 1.0 / std::sqrt(var / double(cols) + 1e-5);
      for (std::int64_t c = 0; c < cols; ++c) {
        const std::size_t i = std::size_t(r * cols + c);
        const double xhat = (x[i] - m) * rs, gg = dy[i] * gamma[std::size_t(c)];
        want_y[i] = xhat * gamma[std::size_t(c)] + beta[std::size_t(c)];
        c1 += gg, c2 += gg * xhat;
        want_dg[std::size_t(c)] += dy[i] * xhat, want_db[std::size_t(c)] += dy[i];
      }
      c1 /= double(cols), c2 /= double(cols);
      for (std::int64_t c = 0; c < cols; ++c) {
        const std::size_t i = std::size_t(r * cols + c);
        want_dx[i] = rs * (dy[i] * gamma[std::size_t(c)] - c1 - (x[i] - m) * rs * c2);
      }
    }
    CHECK(off(testing::download_dense(y), want_y, 1e-4) == 0);
    CHECK(off(testing::download_dense(dx), want_dx, 1e-3) == 0);
    std::vector<float> got_dg(static_cast<std::size_t>(cols)), got_db(static_cast<std::size_t>(cols));
    dgamma.download(got_dg.data(), got_dg.size() * 4), dbeta.download(got_db.data(), got_db.size() * 4);
    std::size_t bad = 0;
    for (std::int64_t c = 0; c < cols; ++c)
      bad += !(std::fabs(got_dg[std::size_t(c)] - want_dg[std::size_t(c)]) <= 1e-4 * double(rows)) +
             !(std::fabs(got_db[std::size_t(c)] - want_db[std::size_t(c)]) <= 1e-4 * double(rows));
    CHECK(bad == 0);

    // GELU forward and backward.
    bf16_gelu_forward(ctx, xd.ref(), y.ref(), nullptr);
    bf16_gelu_backward(ctx, dyd.ref(), xd.ref(), dx.ref(), nullptr);
    std::vector<double> want_g(n), want_gb(n);
    for (std::size_t i = 0; i < n; ++i) want_g[i] = ref::gelu(x[i], ref::GeluKind::tanh), want_gb[i] = dy[i] * ref::gelu_grad(x[i], ref::GeluKind::tanh);
    CHECK(off(testing::download_dense(y), want_g, 1e-3) == 0);  // tanh.approx: ~2^-11 relative
    CHECK(off(testing::download_dense(dx), want_gb, 1e-3) == 0);

    // Residual add: the FP32 stream gains x, the copy is its BF16 rounding.
    const auto s0 = testing::random_vector(n, 5);
    DenseTensor stream = testing::upload_dense(s0, rows, cols, DType::f32);
    bf16_residual_add(ctx, stream.ref(), xd.ref(), y.ref(), nullptr);
    const auto s1 = testing::download_dense(stream);
    const auto copy = testing::download_dense(y);
    bad = 0;
    for (std::size_t i = 0; i < n; ++i) bad += s1[i] != s0[i] + x[i] || copy[i] != bf16_to_float(float_to_bf16(s1[i]));
    CHECK(bad == 0);

    // FP32 -> BF16, and column sums (bias gradients).
    bf16_from_f32(ctx, stream.ref(), y.ref(), nullptr);
    CHECK(testing::download_dense(y) == copy);
    bf16_column_sum(ctx, dyd.ref(), sums.get(), false, col_ws.get(), nullptr);
    std::vector<float> got_sums(static_cast<std::size_t>(cols));
    sums.download(got_sums.data(), got_sums.size() * 4);
    bad = 0;
    for (std::int64_t c = 0; c < cols; ++c) bad += !(std::fabs(got_sums[std::size_t(c)] - want_db[std::size_t(c)]) <= 1e-4 * double(rows));
    CHECK(bad == 0);
  }
}
