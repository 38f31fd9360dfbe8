// Elementwise INT8 operators on the GPU against the FP64 CPU references: every output element within one
// quantization step (nearest: half a step plus FP32 error), every block scale finite, outputs poisoned first.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "runtime/ops.hpp"
#include "runtime/reference_ops.hpp"
#include "testing.hpp"

using namespace jetforge;

namespace {

ref::HostBlockTensor random_q(std::int64_t rows, std::int64_t cols, std::uint64_t seed, double lo, double hi) {
  return ref::quantize(testing::random_blocks(rows, cols, 32, seed, lo, hi), rows, cols, 32, gen::Rounding::nearest, 0);
}

// Largest |got - exact| in quantization steps of got's blocks; NaN (poison) makes it infinite.
double worst_steps(const ref::HostBlockTensor& got, const std::vector<double>& exact) {
  double worst = 0;
  for (std::int64_t r = 0; r < got.rows; ++r)
    for (std::int64_t c = 0; c < got.cols; ++c) {
      const double s = got.scale_at(r, c), d = std::fabs(got.value(r, c) - exact[size_t(r * got.cols + c)]) / s;
      worst = std::isfinite(d) ? std::max(worst, d) : INFINITY;
    }
  return worst;
}

struct Shape {
  std::int64_t rows, cols;
};
const Shape kShapes[] = {{32, 32}, {160, 96}, {1024, 4096}, {8192, 768}};

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("GELU forward and backward (tanh and erf) match the FP64 references") {
    Context& ctx = testing::gpu();
    std::uint64_t seed = 40;
    for (const Shape s : kShapes)
      for (auto form : {GeluForm::tanh, GeluForm::erf}) {
        CAPTURE(s.rows);
        CAPTURE(s.cols);
        CAPTURE(int(form));
        const auto kind = form == GeluForm::tanh ? ref::GeluKind::tanh : ref::GeluKind::erf;
        const auto x = random_q(s.rows, s.cols, ++seed, -1, 1), dy = random_q(s.rows, s.cols, ++seed, -3, 1);
        BlockTensor xd = testing::upload(x), dyd = testing::upload(dy), y(s.rows, s.cols), dx(s.rows, s.cols);
        testing::poison(y);
        testing::poison(dx);
        gelu_forward(ctx, xd.ref(), y.ref(), form, nullptr);
        gelu_backward(ctx, dyd.ref(), xd.ref(), dx.ref(), form, seed, nullptr);
        ctx.device().synchronize();
        const double fwd = worst_steps(testing::download(y), ref::gelu_forward_exact(x, kind));
        const double bwd = worst_steps(testing::download(dx), ref::gelu_backward_exact(dy, x, kind));
        MESSAGE("gelu worst error: forward " << fwd << ", backward " << bwd << " steps");
        CHECK(fwd <= 0.6);
        CHECK(bwd <= 1.1);
      }
  }

  TEST_CASE("dropout forward and backward regenerate the reference mask") {
    Context& ctx = testing::gpu();
    for (const Shape s : kShapes) {
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      const double p = 0.1;
      const auto x = random_q(s.rows, s.cols, 77 + std::uint64_t(s.rows), -1, 1);
      BlockTensor xd = testing::upload(x), y(s.rows, s.cols), dx(s.rows, s.cols);
      testing::poison(y);
      testing::poison(dx);
      dropout_forward(ctx, xd.ref(), y.ref(), float(p), 1234, nullptr);
      dropout_backward(ctx, xd.ref(), dx.ref(), float(p), 1234, 99, nullptr);
      ctx.device().synchronize();
      const auto exact = ref::dropout_exact(x, p, 1234);
      const auto yh = testing::download(y), dxh = testing::download(dx);
      CHECK(worst_steps(yh, exact) <= 0.6);
      CHECK(worst_steps(dxh, exact) <= 1.1);
      size_t dropped = 0, not_zero = 0;  // a dropped element is exactly 0 forward and backward
      for (size_t i = 0; i < exact.size(); ++i)
        if (exact[i] == 0.0) ++dropped, not_zero += yh.codes[i] != 0 || dxh.codes[i] != 0;
      CHECK(dropped > 0);
      CHECK(not_zero == 0);
    }
  }

  TEST_CASE("LayerNorm forward: statistics and normalized output match the FP64 reference") {
    Context& ctx = testing::gpu();
    for (const Shape s : kShapes) {
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      const auto x = random_q(s.rows, s.cols, 300 + std::uint64_t(s.cols), -2, 2);
      std::vector<float> gamma(size_t(s.cols)), beta(size_t(s.cols));
      for (size_t c = 0; c < gamma.size(); ++c) gamma[c] = 0.5f + 0.01f * float(c % 97), beta[c] = 0.1f * float(int(c % 13) - 6);
      BlockTensor xd = testing::upload(x), y(s.rows, s.cols);
      DeviceBuffer gd(gamma.size() * 4), bd(beta.size() * 4), mean(size_t(s.rows) * 4), rstd(size_t(s.rows) * 4);
      gd.upload(gamma.data(), gamma.size() * 4);
      bd.upload(beta.data(), beta.size() * 4);
      testing::poison(y);
      mean.fill_bytes(testing::kNanBytes);
      rstd.fill_bytes(testing::kNanBytes);
      layernorm_forward(ctx, xd.ref(), gd.get(), bd.get(), y.ref(), mean.get(), rstd.get(), 1e-5f, nullptr);
      ctx.device().synchronize();
      ref::RowStats want;
      const auto exact = ref::layernorm_forward_exact(x, gamma, beta, 1e-5, &want);
      std::vector<float> got_mean(size_t(s.rows)), got_rstd(size_t(s.rows));
      mean.download(got_mean.data(), got_mean.size() * 4);
      rstd.download(got_rstd.data(), got_rstd.size() * 4);
      size_t bad_stats = 0;
      for (size_t r = 0; r < got_mean.size(); ++r)
        bad_stats += !(std::fabs(got_mean[r] - want.mean[r]) <= 1e-5 / want.rstd[r] && std::fabs(got_rstd[r] / want.rstd[r] - 1) <= 1e-4);
      CHECK(bad_stats == 0);
      const double worst = worst_steps(testing::download(y), exact);
      MESSAGE("layernorm worst error " << worst << " steps");
      CHECK(worst <= 0.6);
    }
  }

  TEST_CASE("LayerNorm backward: dx within one step, dgamma and dbeta match and are deterministic; the fused kernel gives the same bits") {
    Context& ctx = testing::gpu();
    for (const Shape s : kShapes) {
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      const auto x = random_q(s.rows, s.cols, 500 + std::uint64_t(s.cols), -2, 2), dy = random_q(s.rows, s.cols, 600 + std::uint64_t(s.rows), -3, 0);
      std::vector<float> gamma(size_t(s.cols));
      for (size_t c = 0; c < gamma.size(); ++c) gamma[c] = 0.5f + 0.01f * float(c % 97);
      ref::RowStats stats;
      std::vector<float> beta(gamma.size(), 0.0f);
      ref::layernorm_forward_exact(x, gamma, beta, 1e-5, &stats);
      const auto want = ref::layernorm_backward_exact(dy, x, stats, gamma);

      BlockTensor xd = testing::upload(x), dyd = testing::upload(dy), dx(s.rows, s.cols);
      DeviceBuffer gd(gamma.size() * 4), mean(stats.mean.size() * 4), rstd(stats.rstd.size() * 4), dgamma(gamma.size() * 4), dbeta(gamma.size() * 4),
          workspace(layernorm_backward_workspace_bytes(s.rows, s.cols));
      gd.upload(gamma.data(), gamma.size() * 4);
      mean.upload(stats.mean.data(), stats.mean.size() * 4);
      rstd.upload(stats.rstd.data(), stats.rstd.size() * 4);
      std::vector<float> dg[2], dbv(gamma.size());
      for (int run = 0; run < 2; ++run) {
        testing::poison(dx);
        dgamma.fill_bytes(testing::kNanBytes);
        dbeta.fill_bytes(testing::kNanBytes);
        layernorm_backward(ctx, dyd.ref(), xd.ref(), mean.get(), rstd.get(), gd.get(), dx.ref(), dgamma.get(), dbeta.get(), 11, workspace.get(), nullptr);
        ctx.device().synchronize();
        dg[run].resize(gamma.size());
        dgamma.download(dg[run].data(), dg[run].size() * 4);
      }
      dbeta.download(dbv.data(), dbv.size() * 4);
      CHECK(dg[0] == dg[1]);  // deterministic reduction
      const double worst = worst_steps(testing::download(dx), want.dx);
      MESSAGE("layernorm backward worst error " << worst << " steps");
      CHECK(worst <= 1.1);
      size_t bad = 0;
      for (size_t c = 0; c < gamma.size(); ++c) {
        // FP32 sums of `rows` terms of order 1: allow 1e-4 of the value plus of sqrt(rows), the sums' typical size.
        const double scale_g = std::fabs(want.dgamma[c]) + std::sqrt(double(s.rows)), scale_b = std::fabs(want.dbeta[c]) + std::sqrt(double(s.rows));
        bad += !(std::fabs(dg[0][c] - want.dgamma[c]) <= 1e-4 * scale_g) + !(std::fabs(dbv[c] - want.dbeta[c]) <= 1e-4 * scale_b);
      }
      CHECK(bad == 0);

      // The fused kernel (cols a multiple of 128) gives the same bits: dx codes and scales, dgamma, dbeta.
      if (s.cols % 128 != 0) continue;
      const auto separate = testing::download(dx);
      BlockTensor dx_fused(s.rows, s.cols);
      testing::poison(dx_fused);
      dgamma.fill_bytes(testing::kNanBytes), dbeta.fill_bytes(testing::kNanBytes);
      layernorm_backward(ctx, dyd.ref(), xd.ref(), mean.get(), rstd.get(), gd.get(), dx_fused.ref(), dgamma.get(), dbeta.get(), 11, workspace.get(), nullptr,
                         /*fused=*/true);
      const auto fused = testing::download(dx_fused);
      std::vector<float> dg_fused(gamma.size()), db_fused(gamma.size());
      dgamma.download(dg_fused.data(), dg_fused.size() * 4), dbeta.download(db_fused.data(), db_fused.size() * 4);
      CHECK(fused.codes == separate.codes);
      CHECK(fused.scales == separate.scales);
      CHECK(dg_fused == dg[0]);
      CHECK(db_fused == dbv);
    }
  }

  TEST_CASE("residual add: FP32 stream updated, INT8 copy within a step, LayerNorm statistics of the new stream") {
    Context& ctx = testing::gpu();
    for (const Shape s : kShapes) {
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      const auto x = random_q(s.rows, s.cols, 700 + std::uint64_t(s.cols), -2, 1);
      std::vector<float> r(size_t(s.rows * s.cols));
      std::mt19937 rng{static_cast<unsigned>(s.rows)};
      std::normal_distribution<float> normal(0, 3);
      for (auto& v : r) v = normal(rng);
      DenseTensor stream(s.rows, s.cols, DType::f32), grad(s.rows, s.cols, DType::f32);
      stream.buffer().upload(r.data(), r.size() * 4);
      grad.buffer().upload(r.data(), r.size() * 4);
      BlockTensor xd = testing::upload(x), copy(s.rows, s.cols), gcopy(s.rows, s.cols);
      DeviceBuffer mean(size_t(s.rows) * 4), rstd(size_t(s.rows) * 4);
      testing::poison(copy);
      testing::poison(gcopy);
      mean.fill_bytes(testing::kNanBytes);
      rstd.fill_bytes(testing::kNanBytes);
      residual_add(ctx, stream.ref(), xd.ref(), copy.ref(), mean.get(), rstd.get(), 1e-5f, nullptr);
      residual_add_backward(ctx, grad.ref(), xd.ref(), gcopy.ref(), 5, nullptr);
      ctx.device().synchronize();

      auto want_r = r;
      const auto want = ref::residual_add(want_r, x, 1e-5);
      std::vector<float> got_r(r.size()), got_g(r.size()), got_mean(size_t(s.rows)), got_rstd(size_t(s.rows));
      stream.buffer().download(got_r.data(), got_r.size() * 4);
      grad.buffer().download(got_g.data(), got_g.size() * 4);
      mean.download(got_mean.data(), got_mean.size() * 4);
      rstd.download(got_rstd.data(), got_rstd.size() * 4);
      size_t bad_stream = 0, bad_stats = 0;
      std::vector<double> exact(r.size());
      for (size_t i = 0; i < r.size(); ++i) {
        bad_stream += !(std::fabs(got_r[i] - want_r[i]) <= 4e-7 * std::fabs(want_r[i]) + 1e-30) + (got_g[i] != got_r[i]);
        exact[i] = want_r[i];
      }
      for (size_t row = 0; row < got_mean.size(); ++row)
        bad_stats += !(std::fabs(got_mean[row] - want.stats.mean[row]) <= 1e-5 / want.stats.rstd[row] &&
                       std::fabs(got_rstd[row] / want.stats.rstd[row] - 1) <= 1e-4);
      CHECK(bad_stream == 0);
      CHECK(bad_stats == 0);
      CHECK(worst_steps(testing::download(copy), exact) <= 0.6);
      CHECK(worst_steps(testing::download(gcopy), exact) <= 1.1);
    }
  }

  TEST_CASE("elementwise operators reject mismatched shapes and bad probabilities") {
    Context& ctx = testing::gpu();
    BlockTensor a(64, 64), b(64, 32);
    CHECK_THROWS_WITH_AS(gelu_forward(ctx, a.ref(), b.ref(), GeluForm::tanh, nullptr), doctest::Contains("the output is 64x32, expected 64x64"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(dropout_forward(ctx, a.ref(), a.ref(), 1.0f, 1, nullptr), doctest::Contains("p=1.000000 must be in [0, 1)"),
                         std::invalid_argument);
  }
}

TEST_SUITE("gpu") {
  TEST_CASE("column sums (bias gradients) match the FP64 reference, accumulate, and repeat bit for bit") {
    Context& ctx = testing::gpu();
    for (const Shape s : kShapes) {
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      const auto h = random_q(s.rows, s.cols, std::uint64_t(s.rows + 3 * s.cols), -2, 2);
      BlockTensor x = testing::upload(h);
      std::vector<double> want(std::size_t(s.cols), 0.0);
      for (std::int64_t r = 0; r < s.rows; ++r)
        for (std::int64_t c = 0; c < s.cols; ++c) want[std::size_t(c)] += h.value(r, c);
      const auto base = testing::random_vector(std::size_t(s.cols), 4);
      DeviceBuffer out(std::size_t(s.cols) * 4), workspace(column_sum_workspace_bytes(s.rows, s.cols));
      std::vector<float> got[2];
      for (int run = 0; run < 2; ++run) {
        out.upload(base.data(), base.size() * 4);
        column_sum(ctx, x.ref(), out.get(), /*accumulate=*/true, workspace.get(), nullptr);
        got[run].resize(base.size());
        out.download(got[run].data(), got[run].size() * 4);
      }
      CHECK(got[0] == got[1]);
      double scale = 0, worst = 0;
      for (std::int64_t r = 0; r < s.rows; ++r)
        for (std::int64_t c = 0; c < s.cols; ++c) scale = std::max(scale, std::fabs(h.value(r, c)));
      for (std::size_t c = 0; c < want.size(); ++c) worst = std::max(worst, std::fabs(got[0][c] - (want[c] + base[c])));
      CHECK(worst <= 1e-6 * scale * double(s.rows) + 1e-6);  // FP32 sums of `rows` terms
      out.fill_bytes(testing::kNanBytes);
      column_sum(ctx, x.ref(), out.get(), /*accumulate=*/false, workspace.get(), nullptr);
      out.download(got[1].data(), got[1].size() * 4);
      for (std::size_t c = 0; c < want.size(); ++c) CHECK(std::fabs(got[1][c] - want[c]) <= 1e-6 * scale * double(s.rows) + 1e-6);
    }
  }
}
