// Token + position embedding: the host grouping and the FP64 reference (backward is the adjoint of forward), and
// the GPU kernels against the reference, deterministic (skipped without a GPU).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "runtime/embedding.hpp"
#include "runtime/reference_ops.hpp"
#include "testing.hpp"

using namespace jetforge;

namespace {
std::vector<int> random_tokens(std::size_t n, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> token(0, vocab - 1);
  std::vector<int> t(n);
  for (auto& x : t) x = token(rng);
  return t;
}
}  // namespace

TEST_SUITE("reference") {
  TEST_CASE("token groups: distinct tokens ascending, each with its rows ascending, every row once") {
    const std::vector<int> tokens{5, 2, 5, 9, 2, 5};
    const auto g = TokenGroups::of(tokens);
    CHECK(g.tokens == std::vector<int>{2, 5, 9});
    CHECK(g.offsets == std::vector<int>{0, 2, 5, 6});
    CHECK(g.rows == std::vector<int>{1, 4, 0, 2, 5, 3});
  }

  TEST_CASE("embedding reference: the backward pass is the adjoint of the forward pass") {
    const EmbeddingShape s{2, 5, 8, 7, 6};
    const auto tokens = random_tokens(std::size_t(s.batch * s.tokens), int(s.vocab), 1);
    const auto wte = testing::random_vector(std::size_t(s.vocab * s.channels), 2), wpe = testing::random_vector(std::size_t(s.max_positions * s.channels), 3);
    const auto d_out_f = testing::random_vector(std::size_t(s.batch * s.tokens * s.channels), 4);
    const std::vector<double> d_out(d_out_f.begin(), d_out_f.end());
    const auto out = ref::embedding_forward(s, tokens, wte, wpe);
    std::vector<double> d_wte(wte.size(), 0.0), d_wpe(wpe.size(), 0.0);
    ref::embedding_backward(s, tokens, d_out, d_wte, d_wpe);
    double lhs = 0, rhs = 0;
    for (std::size_t i = 0; i < out.size(); ++i) lhs += out[i] * d_out[i];
    for (std::size_t i = 0; i < wte.size(); ++i) rhs += d_wte[i] * wte[i];
    for (std::size_t i = 0; i < wpe.size(); ++i) rhs += d_wpe[i] * wpe[i];
    CHECK(lhs == doctest::Approx(rhs).epsilon(1e-12));
  }
}

TEST_SUITE("gpu") {
  TEST_CASE("embedding forward and backward on the GPU match the FP64 reference, accumulate, and repeat bit for bit") {
    Context& ctx = testing::gpu();
    const EmbeddingShape s{4, 64, 768, 1000, 1024};
    const auto tokens = random_tokens(std::size_t(s.batch * s.tokens), 50, 5);  // few distinct tokens: long groups
    const auto wte = testing::random_vector(std::size_t(s.vocab * s.channels), 6), wpe = testing::random_vector(std::size_t(s.max_positions * s.channels), 7);
    const auto d_out = testing::random_vector(std::size_t(s.batch * s.tokens * s.channels), 8);
    const auto d_wte0 = testing::random_vector(wte.size(), 9), d_wpe0 = testing::random_vector(wpe.size(), 10);
    DeviceBuffer d_tokens(tokens.size() * 4), d_wte_w(wte.size() * 4), d_wpe_w(wpe.size() * 4), d_outb(d_out.size() * 4), out(d_out.size() * 4);
    DeviceBuffer g_wte(wte.size() * 4), g_wpe(wpe.size() * 4);
    d_tokens.upload(tokens.data(), tokens.size() * 4), d_wte_w.upload(wte.data(), wte.size() * 4), d_wpe_w.upload(wpe.data(), wpe.size() * 4);
    d_outb.upload(d_out.data(), d_out.size() * 4);
    out.fill_bytes(testing::kNanBytes);

    embedding_forward(ctx, s, d_tokens.get(), d_wte_w.get(), d_wpe_w.get(), out.get(), nullptr);
    std::vector<float> got(d_out.size());
    out.download(got.data(), got.size() * 4);
    const auto want = ref::embedding_forward(s, tokens, wte, wpe);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i) bad += float(want[i]) != got[i];  // one FP32 addition: exactly rounded
    CHECK(bad == 0);

    const DeviceTokenGroups groups(TokenGroups::of(tokens));
    std::vector<float> runs[2][2];
    for (int run = 0; run < 2; ++run) {
      g_wte.upload(d_wte0.data(), d_wte0.size() * 4), g_wpe.upload(d_wpe0.data(), d_wpe0.size() * 4);
      embedding_backward(ctx, s, groups, d_outb.get(), g_wte.get(), g_wpe.get(), nullptr);
      runs[run][0].resize(wte.size()), runs[run][1].resize(wpe.size());
      g_wte.download(runs[run][0].data(), wte.size() * 4), g_wpe.download(runs[run][1].data(), wpe.size() * 4);
    }
    CHECK(runs[0][0] == runs[1][0]);
    CHECK(runs[0][1] == runs[1][1]);
    std::vector<double> want_wte(d_wte0.begin(), d_wte0.end()), want_wpe(d_wpe0.begin(), d_wpe0.end());
    const std::vector<double> d_out_d(d_out.begin(), d_out.end());
    ref::embedding_backward(s, tokens, d_out_d, want_wte, want_wpe);
    // FP32 sums of up to batch * T terms of magnitude ~1: error well below 1e-5 absolute.
    bad = 0;
    for (std::size_t i = 0; i < wte.size(); ++i) bad += !(std::fabs(runs[0][0][i] - want_wte[i]) <= 1e-5 * (1 + std::fabs(want_wte[i])));
    for (std::size_t i = 0; i < wpe.size(); ++i) bad += !(std::fabs(runs[0][1][i] - want_wpe[i]) <= 1e-5 * (1 + std::fabs(want_wpe[i])));
    CHECK(bad == 0);
  }

  TEST_CASE("embedding forward with the first LayerNorm's statistics: the same output, mean and rstd against FP64") {
    Context& ctx = testing::gpu();
    // 768 channels: whole warps of quads; 96: a warp's last 8 lanes idle on every row.
    for (const EmbeddingShape s : {EmbeddingShape{4, 64, 768, 1000, 1024}, EmbeddingShape{3, 32, 96, 500, 64}}) {
      CAPTURE(s.channels);
      const std::int64_t rows = s.batch * s.tokens;
      const auto tokens = random_tokens(std::size_t(rows), int(s.vocab), 11);
      const auto wte = testing::random_vector(std::size_t(s.vocab * s.channels), 12), wpe = testing::random_vector(std::size_t(s.max_positions * s.channels), 13);
      DeviceBuffer d_tokens(tokens.size() * 4), d_wte(wte.size() * 4), d_wpe(wpe.size() * 4), out(std::size_t(rows * s.channels) * 4);
      DeviceBuffer mean(std::size_t(rows) * 4), rstd(std::size_t(rows) * 4);
      d_tokens.upload(tokens.data(), tokens.size() * 4), d_wte.upload(wte.data(), wte.size() * 4), d_wpe.upload(wpe.data(), wpe.size() * 4);
      out.fill_bytes(testing::kNanBytes), mean.fill_bytes(testing::kNanBytes), rstd.fill_bytes(testing::kNanBytes);
      const float eps = 1e-5f;
      const EmbeddingStatsOut stats{mean.get(), rstd.get(), eps};
      embedding_forward(ctx, s, d_tokens.get(), d_wte.get(), d_wpe.get(), out.get(), nullptr, &stats);
      std::vector<float> got(std::size_t(rows * s.channels)), got_mean(static_cast<std::size_t>(rows)), got_rstd(static_cast<std::size_t>(rows));
      out.download(got.data(), got.size() * 4), mean.download(got_mean.data(), got_mean.size() * 4), rstd.download(got_rstd.data(), got_rstd.size() * 4);
      const auto want = ref::embedding_forward(s, tokens, wte, wpe);
      std::size_t bad = 0, unwritten = 0;
      for (std::size_t i = 0; i < got.size(); ++i) bad += float(want[i]) != got[i];
      CHECK(bad == 0);
      // FP32 sums of 32 values per block, added in FP64: relative errors ~1e-7 against the FP64 statistics.
      const ref::RowStats want_stats = ref::row_stats(want, rows, s.channels, eps);
      double worst_mean = 0, worst_rstd = 0;
      for (std::size_t r = 0; r < std::size_t(rows); ++r) {
        const double sd = 1.0 / double(want_stats.rstd[r]);
        unwritten += !(std::isfinite(got_mean[r]) && std::isfinite(got_rstd[r]));
        worst_mean = std::max(worst_mean, std::fabs(double(got_mean[r]) - double(want_stats.mean[r])) / sd);
        worst_rstd = std::max(worst_rstd, std::fabs(double(got_rstd[r]) / double(want_stats.rstd[r]) - 1.0));
      }
      MESSAGE("embedding statistics, " << s.channels << " channels: worst mean error " << worst_mean << " standard deviations, worst rstd " << worst_rstd
                                       << " relative");
      CHECK(unwritten == 0);
      CHECK(worst_mean < 1e-6);
      CHECK(worst_rstd < 1e-6);
    }
  }

  TEST_CASE("embedding forward refuses statistics it cannot take, before launching") {
    Context& ctx = testing::gpu();
    DeviceBuffer mean(4), rstd(4);
    const EmbeddingStatsOut no_rstd{mean.get(), 0, 1e-5f}, stats{mean.get(), rstd.get(), 1e-5f}, no_eps{mean.get(), rstd.get(), 0.0f};
    const EmbeddingShape s{1, 1, 768, 1, 1}, narrow{1, 1, 36, 1, 1};
    CHECK_THROWS_WITH_AS(embedding_forward(ctx, s, 1, 1, 1, 1, nullptr, &no_rstd), doctest::Contains("embedding_forward: the statistics need mean and rstd"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(embedding_forward(ctx, s, 1, 1, 1, 1, nullptr, &no_eps), doctest::Contains("embedding_forward: eps must be positive"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(embedding_forward(ctx, narrow, 1, 1, 1, 1, nullptr, &stats), doctest::Contains("channels=36 is not a multiple of 32"),
                         std::invalid_argument);
  }
}
