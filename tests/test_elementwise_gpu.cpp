// Elementwise INT8 operators on the GPU against the FP64 CPU references: every output element within one
// quantization step (nearest: half a step plus FP32 error), every block scale finite, outputs poisoned first.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "generator/families.hpp"
#include "runtime/ops.hpp"
#include "runtime/reference_ops.hpp"
#include "templates/jetforge/common.cuh"
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

// Blocks whose largest code magnitude is not 127 although they hold a nonzero code: a scale looser than the block's
// largest value (errors in steps of the block's own scale would not show it).
std::size_t loose_blocks(const ref::HostBlockTensor& t) {
  std::size_t loose = 0;
  for (std::int64_t br = 0; br < t.rows / t.block; ++br)
    for (std::int64_t bc = 0; bc < t.cols / t.block; ++bc) {
      int largest = 0;
      for (std::int64_t r = br * t.block; r < (br + 1) * t.block; ++r)
        for (std::int64_t c = bc * t.block; c < (bc + 1) * t.block; ++c) largest = std::max(largest, std::abs(int(t.codes[size_t(r * t.cols + c)])));
      loose += largest != 0 && largest != 127;
    }
  return loose;
}

struct Shape {
  std::int64_t rows, cols;
};
const Shape kShapes[] = {{32, 32}, {160, 96}, {1024, 4096}, {8192, 768}};

// One LayerNorm problem on random data with its FP64 references, the device buffers every way of running it
// writes, and the checks each must pass (outputs poisoned first).
struct LayerNormCase {
  Shape s;
  ref::HostBlockTensor x, dy;
  std::vector<float> gamma, beta;
  ref::RowStats stats;
  std::vector<double> y_exact;
  ref::LayerNormGrads grads;
  BlockTensor xd, dyd, y, dx;
  DeviceBuffer gamma_d, beta_d, mean, rstd, dgamma, dbeta, workspace;

  explicit LayerNormCase(Shape shape)
      : s(shape),
        x(random_q(s.rows, s.cols, 300 + std::uint64_t(s.cols), -2, 2)),
        dy(random_q(s.rows, s.cols, 600 + std::uint64_t(s.rows), -3, 0)),
        gamma(std::size_t(s.cols)),
        beta(std::size_t(s.cols)),
        xd(testing::upload(x)),
        dyd(testing::upload(dy)),
        y(s.rows, s.cols),
        dx(s.rows, s.cols),
        gamma_d(gamma.size() * 4),
        beta_d(beta.size() * 4),
        mean(std::size_t(s.rows) * 4),
        rstd(std::size_t(s.rows) * 4),
        dgamma(gamma.size() * 4),
        dbeta(beta.size() * 4),
        workspace(layernorm_backward_workspace_bytes(s.rows, s.cols)) {
    for (std::size_t c = 0; c < gamma.size(); ++c) gamma[c] = 0.5f + 0.01f * float(c % 97), beta[c] = 0.1f * float(int(c % 13) - 6);
    gamma_d.upload(gamma.data(), gamma.size() * 4);
    beta_d.upload(beta.data(), beta.size() * 4);
    y_exact = ref::layernorm_forward_exact(x, gamma, beta, 1e-5, &stats);
    grads = ref::layernorm_backward_exact(dy, x, stats, gamma);
  }
  void poison() {
    testing::poison(y);
    testing::poison(dx);
    for (DeviceBuffer* b : {&mean, &rstd, &dgamma, &dbeta}) b->fill_bytes(testing::kNanBytes);
  }
  void upload_stats() {
    mean.upload(stats.mean.data(), stats.mean.size() * 4);
    rstd.upload(stats.rstd.data(), stats.rstd.size() * 4);
  }
  void check_forward() {
    std::vector<float> got_mean(std::size_t(s.rows)), got_rstd(std::size_t(s.rows));
    mean.download(got_mean.data(), got_mean.size() * 4);
    rstd.download(got_rstd.data(), got_rstd.size() * 4);
    std::size_t bad_stats = 0;
    for (std::size_t r = 0; r < got_mean.size(); ++r)
      bad_stats += !(std::fabs(got_mean[r] - stats.mean[r]) <= 1e-5 / stats.rstd[r] && std::fabs(got_rstd[r] / stats.rstd[r] - 1) <= 1e-4);
    CHECK(bad_stats == 0);
    const double worst = worst_steps(testing::download(y), y_exact);
    MESSAGE("layernorm forward worst error " << worst << " steps");
    CHECK(worst <= 0.6);
  }
  // Returns dgamma (for the determinism check).
  std::vector<float> check_backward() {
    const double worst = worst_steps(testing::download(dx), grads.dx);
    MESSAGE("layernorm backward worst error " << worst << " steps");
    CHECK(worst <= 1.1);
    std::vector<float> dg(gamma.size()), db(gamma.size());
    dgamma.download(dg.data(), dg.size() * 4);
    dbeta.download(db.data(), db.size() * 4);
    std::size_t bad = 0;
    for (std::size_t c = 0; c < gamma.size(); ++c) {
      // FP32 sums of `rows` terms of order 1: allow 1e-4 of the value plus of sqrt(rows), the sums' typical size.
      const double scale_g = std::fabs(grads.dgamma[c]) + std::sqrt(double(s.rows)), scale_b = std::fabs(grads.dbeta[c]) + std::sqrt(double(s.rows));
      bad += !(std::fabs(dg[c] - grads.dgamma[c]) <= 1e-4 * scale_g) + !(std::fabs(db[c] - grads.dbeta[c]) <= 1e-4 * scale_b);
    }
    CHECK(bad == 0);
    return dg;
  }
};

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
        const auto y_got = testing::download(y), dx_got = testing::download(dx);
        const double fwd = worst_steps(y_got, ref::gelu_forward_exact(x, kind)), bwd = worst_steps(dx_got, ref::gelu_backward_exact(dy, x, kind));
        CHECK(loose_blocks(y_got) == 0);
        CHECK(loose_blocks(dx_got) == 0);
        MESSAGE("gelu worst error: forward " << fwd << ", backward " << bwd << " steps");
        // The tanh forward's value is rounded to FP16 (2^-11 relative: up to 127 * 2^-11 = 0.06 of a step at the block
        // maximum) and its tanh approximated to about as much, on top of the half step of nearest rounding (its codes are
        // rounded in FP16 too, exactly: against the FP16 inverse whose reciprocal is the stored scale).
        CHECK(fwd <= (form == GeluForm::tanh ? 0.65 : 0.6));
        CHECK(bwd <= 1.1);
        // Other tiles give the same bits: values, block maxima and noise depend on the element, not on the tile that
        // holds it. (The tanh forward finds its block maxima by warp partials on 1 x 1 / 64 and 2 x 2 / 128, the latter
        // with two block rows per thread, and by shared-memory atomics on 2 x 1 / 128, whose warps hold one block each.)
        for (gen::BlockTile tile : {gen::BlockTile{1, 1, 64}, gen::BlockTile{2, 1, 128}, gen::BlockTile{2, 2, 128}}) {
          const auto fwd_kind = form == GeluForm::tanh ? gen::Elementwise::gelu_tanh : gen::Elementwise::gelu_erf;
          const auto bwd_kind = form == GeluForm::tanh ? gen::Elementwise::gelu_tanh_grad : gen::Elementwise::gelu_erf_grad;
          if (s.rows % (32 * tile.rows) != 0 || s.cols % (32 * tile.cols) != 0) continue;
          testing::poison(y);
          testing::poison(dx);
          gelu_forward(ctx, xd.ref(), y.ref(), form, nullptr, gen::ElementwiseSpec{fwd_kind, gen::Rounding::nearest, tile});
          gelu_backward(ctx, dyd.ref(), xd.ref(), dx.ref(), form, seed, nullptr, gen::ElementwiseSpec{bwd_kind, gen::Rounding::stochastic, tile});
          ctx.device().synchronize();
          const auto y_small = testing::download(y), dx_small = testing::download(dx);
          CHECK((y_small.codes == y_got.codes && y_small.scales == y_got.scales));
          CHECK((dx_small.codes == dx_got.codes && dx_small.scales == dx_got.scales));
        }
      }
  }

  TEST_CASE("dropout forward and backward are exact: the reference's codes and scales, bit for bit, mask regenerated") {
    Context& ctx = testing::gpu();
    for (const Shape s : kShapes) {
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      const double p = 0.1;
      const auto x = random_q(s.rows, s.cols, 77 + std::uint64_t(s.rows), -1, 1), dy = random_q(s.rows, s.cols, 78 + std::uint64_t(s.rows), -3, 1);
      BlockTensor xd = testing::upload(x), dyd = testing::upload(dy), y(s.rows, s.cols), dx(s.rows, s.cols);
      testing::poison(y);
      testing::poison(dx);
      dropout_forward(ctx, xd.ref(), y.ref(), float(p), 1234, nullptr);
      dropout_backward(ctx, dyd.ref(), dx.ref(), float(p), 1234, nullptr);
      ctx.device().synchronize();
      const auto yh = testing::download(y), dxh = testing::download(dx), want_y = ref::dropout(x, p, 1234), want_dx = ref::dropout(dy, p, 1234);
      CHECK(yh.codes == want_y.codes);
      CHECK(yh.scales == want_y.scales);
      CHECK(dxh.codes == want_dx.codes);
      CHECK(dxh.scales == want_dx.scales);
      CHECK(worst_steps(yh, ref::dropout_exact(x, p, 1234)) <= 1e-4);  // x * keep / (1 - p) up to the FP32 scale's rounding (127 x 2^-24 steps)
      size_t dropped = 0;  // the reference draws the mask from dropout_keep (forward and backward alike)
      for (size_t i = 0; i < yh.codes.size(); ++i) dropped += !dropout_keep(seed_key(1234), i, float(p));
      CHECK(dropped > 0);
      CHECK(dropped < yh.codes.size() / 4);
    }
  }

  TEST_CASE("LayerNorm forward and backward match the FP64 references; dgamma and dbeta are deterministic") {
    Context& ctx = testing::gpu();
    for (const Shape s : kShapes) {
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      LayerNormCase c(s);
      for (auto pass : {gen::LayerNormPass::forward, gen::LayerNormPass::backward})
        MESSAGE(gen::canonical_key(gen::LayerNormSpec::fit(pass, s.cols, ctx.limits())));
      c.poison();
      layernorm_forward(ctx, c.xd.ref(), c.gamma_d.get(), c.beta_d.get(), c.y.ref(), c.mean.get(), c.rstd.get(), 1e-5f, nullptr);
      c.check_forward();
      // Given the statistics the forward wrote, the streaming apply kernel reproduces its output bit for bit.
      const auto y_forward = testing::download(c.y);
      testing::poison(c.y);
      layernorm_apply(ctx, c.xd.ref(), c.gamma_d.get(), c.beta_d.get(), c.mean.get(), c.rstd.get(), c.y.ref(), nullptr);
      const auto y_applied = testing::download(c.y);
      CHECK((y_applied.codes == y_forward.codes && y_applied.scales == y_forward.scales));
      std::vector<float> first_dgamma;
      for (int run = 0; run < 2; ++run) {
        c.poison();
        c.upload_stats();  // the backward reads the FP64 statistics, so that its error is its own
        layernorm_backward(ctx, c.dyd.ref(), c.xd.ref(), c.mean.get(), c.rstd.get(), c.gamma_d.get(), c.dx.ref(), c.dgamma.get(), c.dbeta.get(), 11,
                           c.workspace.get(), nullptr);
        const auto dgamma = c.check_backward();
        if (run == 0) first_dgamma = dgamma;
        else CHECK(dgamma == first_dgamma);  // deterministic reduction
      }
    }
  }

  TEST_CASE("every LayerNorm kernel variant (clusters, streamed rows, sub-tiles, threads) matches the FP64 references") {
    Context& ctx = testing::gpu();
    for (const Shape s : {Shape{64, 1024}, Shape{96, 192}}) {
      LayerNormCase c(s);
      for (auto pass : {gen::LayerNormPass::forward, gen::LayerNormPass::backward})
        for (const auto& spec : gen::LayerNormSpec::variants(pass, s.cols, ctx.limits())) {
          CAPTURE(gen::canonical_key(spec));
          CAPTURE(s.cols);
          c.poison();
          c.upload_stats();
          if (pass == gen::LayerNormPass::forward) {
            layernorm_forward(ctx, c.xd.ref(), c.gamma_d.get(), c.beta_d.get(), c.y.ref(), c.mean.get(), c.rstd.get(), 1e-5f, nullptr, spec);
            c.check_forward();
            continue;
          }
          layernorm_backward(ctx, c.dyd.ref(), c.xd.ref(), c.mean.get(), c.rstd.get(), c.gamma_d.get(), c.dx.ref(), c.dgamma.get(), c.dbeta.get(), 11,
                             c.workspace.get(), nullptr, spec);
          c.check_backward();
        }
    }
  }

  TEST_CASE("residual add: FP32 stream updated, INT8 copy within a step, LayerNorm statistics of the new stream; LayerNorm applied with them") {
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
      DeviceBuffer mean(size_t(s.rows) * 4), rstd(size_t(s.rows) * 4), row_sums(residual_stats_workspace_bytes(s.rows, s.cols));
      testing::poison(copy);
      testing::poison(gcopy);
      mean.fill_bytes(testing::kNanBytes);
      rstd.fill_bytes(testing::kNanBytes);
      row_sums.fill_bytes(testing::kNanBytes);
      const LayerNormStatsOut stats{mean.get(), rstd.get(), row_sums.get(), 1e-5f};
      residual_add(ctx, stream.ref(), xd.ref(), copy.ref(), &stats, nullptr);
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
      const auto got_copy = testing::download(copy);
      CHECK(worst_steps(got_copy, exact) <= 0.6);
      CHECK(worst_steps(testing::download(gcopy), exact) <= 1.1);

      // The next LayerNorm with these statistics: against (copy - mean) * rstd * gamma + beta with the FP64 statistics.
      const auto gamma = testing::random_vector(size_t(s.cols), 31, 1.0f), beta = testing::random_vector(size_t(s.cols), 32, 0.5f);
      DeviceBuffer gamma_d(gamma.size() * 4), beta_d(beta.size() * 4);
      gamma_d.upload(gamma.data(), gamma.size() * 4), beta_d.upload(beta.data(), beta.size() * 4);
      BlockTensor y(s.rows, s.cols);
      testing::poison(y);
      layernorm_apply(ctx, copy.ref(), gamma_d.get(), beta_d.get(), mean.get(), rstd.get(), y.ref(), nullptr);
      std::vector<double> y_exact(r.size());
      for (std::int64_t row = 0; row < s.rows; ++row)
        for (std::int64_t c = 0; c < s.cols; ++c)
          y_exact[size_t(row * s.cols + c)] =
              (got_copy.value(row, c) - want.stats.mean[size_t(row)]) * want.stats.rstd[size_t(row)] * gamma[size_t(c)] + beta[size_t(c)];
      const double worst = worst_steps(testing::download(y), y_exact);
      MESSAGE("layernorm with the residual's statistics: worst error " << worst << " steps");
      CHECK(worst <= 0.6);
    }
  }

  TEST_CASE("elementwise operators reject mismatched shapes, bad probabilities and LayerNorm kernels that do not fit") {
    Context& ctx = testing::gpu();
    BlockTensor a(64, 64), b(64, 32);
    CHECK_THROWS_WITH_AS(gelu_forward(ctx, a.ref(), b.ref(), GeluForm::tanh, nullptr), doctest::Contains("the output is 64x32, expected 64x64"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(dropout_forward(ctx, a.ref(), a.ref(), 1.0f, 1, nullptr), doctest::Contains("p=1.000000 must be in [0, 1)"),
                         std::invalid_argument);
    DeviceBuffer v(64 * 4);
    const gen::LayerNormSpec half{gen::LayerNormPass::forward, 32, 32, 1, 256};
    CHECK_THROWS_WITH_AS(layernorm_forward(ctx, a.ref(), v.get(), v.get(), a.ref(), v.get(), v.get(), 1e-5f, nullptr, half),
                         doctest::Contains("does not cover rows of 64 columns"), std::invalid_argument);
    // A grid has at most 65535 rows of CTAs: one tile row more is refused before any launch, the output untouched.
    BlockTensor tall(65536 * 32, 32), tall_out(65536 * 32, 32);
    testing::poison(tall_out);
    const gen::ElementwiseSpec one_block{gen::Elementwise::gelu_tanh, gen::Rounding::nearest, {1, 1, 64}};  // a tile row per block row
    CHECK_THROWS_WITH_AS(gelu_forward(ctx, tall.ref(), tall_out.ref(), GeluForm::tanh, nullptr, one_block), doctest::Contains("more than a grid's 65535"),
                         std::invalid_argument);
    std::vector<std::int8_t> first(64);
    tall_out.codes().download(first.data(), first.size());
    CHECK(std::all_of(first.begin(), first.end(), [](std::int8_t c) { return c == std::int8_t(-128); }));
  }
}

TEST_SUITE("gpu") {
  TEST_CASE("column sums (bias gradients) match the FP64 reference, accumulate, and repeat bit for bit, in one launch or two") {
    Context& ctx = testing::gpu();
    // Beyond kShapes: fewer block rows than the 8 parts of a slice, block rows that 8 parts split unevenly, and a
    // last slice of columns that is not whole (1184 columns in slices of 64 with an H100's 132 SMs).
    std::vector<Shape> shapes(std::begin(kShapes), std::end(kShapes));
    shapes.push_back({32 * 13, 65536}), shapes.push_back({32 * 257, 8192}), shapes.push_back({32 * 3, 32 * 37});
    // What GPUs without clusters run, with the threads of ours: the same lanes sum the same block rows.
    const gen::ColumnSumSpec two_launches{gen::ColumnSumKernel::partials, gen::ColumnSumSpec::codes(ctx.limits()).cta_threads};
    for (const Shape s : shapes) {
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
      // The partials and their reduce add in the cluster's order: the same bits.
      std::vector<float> parted(base.size());
      out.fill_bytes(testing::kNanBytes);
      column_sum(ctx, x.ref(), out.get(), /*accumulate=*/false, workspace.get(), nullptr, two_launches);
      out.download(parted.data(), parted.size() * 4);
      CHECK(parted == got[1]);
    }
  }
}
