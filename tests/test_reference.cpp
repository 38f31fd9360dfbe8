#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "runtime/reference.hpp"
#include "templates/jetforge/common.cuh"
#include "testing.hpp"

using namespace jetforge;
using gen::Rounding;

TEST_SUITE("reference") {
  TEST_CASE("nearest quantization: codes in range, each block reaches 127, error at most half a step") {
    const std::int64_t rows = 96, cols = 64;
    const auto x = testing::random_blocks(rows, cols, 32, 1, -4, 4, /*with_zero_block=*/true);
    const auto q = ref::quantize(x, rows, cols, 32, Rounding::nearest, 0);
    const auto y = ref::dequantize(q);
    std::vector<int> block_max(q.scales.size(), 0);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) {
        const size_t i = size_t(r * cols + c);
        const int code = q.codes[i];
        REQUIRE(std::abs(code) <= 127);
        const double s = q.scale_at(r, c);
        CHECK(std::fabs(double(y[i]) - double(x[i])) <= 0.5 * s * (1 + 1e-6));
        auto& m = block_max[size_t(r / 32 * (cols / 32) + c / 32)];
        m = std::max(m, std::abs(code));
      }
    CHECK(q.scales[0] == kMinScale);  // the zero block: tiny positive scale, all codes 0
    CHECK(block_max[0] == 0);
    for (size_t b = 1; b < block_max.size(); ++b) CHECK(block_max[b] == 127);
  }

  TEST_CASE("the format is transpose-invariant: quantize(X^T) == transpose(quantize(X))") {
    const std::int64_t rows = 64, cols = 160;
    const auto x = testing::random_blocks(rows, cols, 32, 2);
    std::vector<float> xt(x.size());
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) xt[size_t(c * rows + r)] = x[size_t(r * cols + c)];
    const auto direct = ref::quantize(xt, cols, rows, 32, Rounding::nearest, 0);
    const auto transposed = ref::transpose(ref::quantize(x, rows, cols, 32, Rounding::nearest, 0));
    CHECK(direct.codes == transposed.codes);
    CHECK(direct.scales == transposed.scales);
    CHECK(ref::transpose(transposed).codes == ref::quantize(x, rows, cols, 32, Rounding::nearest, 0).codes);
  }

  TEST_CASE("stochastic rounding is unbiased and lands on the two neighbouring codes") {
    const std::int64_t rows = 32, cols = 32;
    const auto x = testing::random_blocks(rows, cols, 32, 3, 0, 0);
    const int draws = 4000;
    std::vector<double> sum(x.size(), 0.0);
    float scale = 0;
    for (int seed = 0; seed < draws; ++seed) {
      const auto q = ref::quantize(x, rows, cols, 32, Rounding::stochastic, std::uint64_t(seed));
      scale = q.scales[0];
      for (size_t i = 0; i < x.size(); ++i) {
        const double t = double(x[i]) / scale;
        CHECK_MESSAGE((q.codes[i] == std::floor(t) || q.codes[i] == std::ceil(t)), "code ", int(q.codes[i]), " for x/s=", t);
        sum[i] += q.codes[i];
      }
    }
    // Per element the mean of `draws` Bernoulli steps has standard deviation <= 0.5/sqrt(draws); over the
    // whole block the average bias must vanish at 1/sqrt(draws * n).
    double worst = 0, total_bias = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double bias = sum[i] / draws - double(x[i]) / scale;
      worst = std::max(worst, std::fabs(bias));
      total_bias += bias;
    }
    CHECK(worst < 6 * 0.5 / std::sqrt(double(draws)));
    CHECK(std::fabs(total_bias / double(x.size())) < 6 * 0.5 / std::sqrt(double(draws) * double(x.size())));
  }

  TEST_CASE("stochastic rounding is reproducible from its seed and differs between seeds") {
    const auto x = testing::random_blocks(64, 64, 32, 4);
    const auto a = ref::quantize(x, 64, 64, 32, Rounding::stochastic, 7);
    CHECK(a.codes == ref::quantize(x, 64, 64, 32, Rounding::stochastic, 7).codes);
    CHECK(a.codes != ref::quantize(x, 64, 64, 32, Rounding::stochastic, 8).codes);
  }

  TEST_CASE("random draws are uniform over their 16 bits in each element of a quad, and neighbours are uncorrelated") {
    const int n = 1 << 17;
    const std::uint32_t key = seed_key(42);
    std::vector<int> bins(4 * 16, 0);  // element of the quad x 16 bins
    double products[4] = {};           // of the centred draws of elements 1 to 4 apart (within a quad and across)
    auto centred = [&](int i) { return double(draw16(key, std::uint64_t(i))) / 65536 - 0.5; };
    for (int i = 0; i < n; ++i) {
      const std::uint32_t d = draw16(key, std::uint64_t(i));
      REQUIRE(d < (1u << 16));
      ++bins[size_t(i % 4 * 16 + int(d >> 12))];
      for (int lag = 1; lag <= 4; ++lag) products[lag - 1] += centred(i) * centred(i + lag);
    }
    for (int b : bins) CHECK(std::abs(b - n / 64) < 6 * std::sqrt(n / 64.0));
    for (int lag = 1; lag <= 4; ++lag) {
      CAPTURE(lag);
      CHECK(std::fabs(products[lag - 1] / n) < 6 * (1.0 / 12) / std::sqrt(double(n)));  // correlation within 6 sigma of 0
    }
    CHECK(draw16(seed_key(43), 0) != draw16(key, 0));
  }

  TEST_CASE("a run of draws (DrawRun) gives every pair's draw_pair, also where the quad index passes 2^32") {
    for (const std::uint32_t key : {seed_key(1), seed_key(2), 0u})
      for (const std::uint64_t first : {std::uint64_t(0), std::uint64_t(16), std::uint64_t(65536) * 48, (std::uint64_t(1) << 34) - 16, std::uint64_t(1) << 34,
                                         (std::uint64_t(7) << 40) + 4096}) {
        CAPTURE(first);
        const DrawRun run(key, first);
        for (std::uint32_t j = 0; j < 4; ++j) {
          std::uint32_t d0 = 0, d1 = 0;
          run.quad(j, d0, d1);
          CHECK(d0 == draw_pair(key, first / 2 + 2 * j));
          CHECK(d1 == draw_pair(key, first / 2 + 2 * j + 1));
        }
      }
  }

  TEST_CASE("stochastic rounding of a block's largest magnitude stays within [-127, 127] for the extreme noises") {
    // |x| = amax gives x / s = 127 (1 + at most 2^-23) through the two roundings of s and 1 / s; no clamp is needed.
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
    std::uniform_int_distribution<int> exponent(-140, 120);
    int worst_high = 0, worst_low = 0;
    for (int trial = 0; trial < 200000; ++trial) {
      const float amax = std::ldexp(mantissa(rng), exponent(rng)), inv = inverse_scale(block_scale(amax));
      for (std::uint32_t r : {0u, 1u, (1u << 16) - 1}) {
        worst_high = std::max(worst_high, int(quantize_stochastic(amax, inv, r)));
        worst_low = std::min(worst_low, int(quantize_stochastic(-amax, inv, r)));
      }
    }
    CHECK(worst_high == 127);
    CHECK(worst_low == -127);
  }

  TEST_CASE("a row factor folded into the block maximum and the quantization factor keeps the largest code at 127") {
    // LayerNorm backward quantizes r y holding y: amax = mul_round_up(r, max|y|), factor = mul_round_down(1 / s, r).
    // With both products rounded to nearest instead, the same draws push some blocks' largest value to +128, i.e. a
    // wrapped code: the check below would catch a return to nearest rounding.
    std::mt19937 rng(12);
    std::uniform_real_distribution<float> mantissa(1.0f, 2.0f), factor(0.01f, 100.0f);
    std::uniform_int_distribution<int> exponent(-30, 30);
    int worst_high = 0, worst_low = 0, nearest_wrapped = 0;
    for (int trial = 0; trial < 200000; ++trial) {
      const float m = std::ldexp(mantissa(rng), exponent(rng)), r = factor(rng);
      const float inv = inverse_scale(block_scale(mul_round_up(m, r))), folded = mul_round_down(inv, r);
      const float inv_nearest = inverse_scale(block_scale(m * r)), folded_nearest = inv_nearest * r;
      for (std::uint32_t d : {0u, (1u << 16) - 1}) {
        worst_high = std::max(worst_high, int(quantize_stochastic(m, folded, d)));
        worst_low = std::min(worst_low, int(quantize_stochastic(-m, folded, d)));
        nearest_wrapped += quantize_stochastic(m, folded_nearest, d) < 0 || quantize_stochastic(-m, folded_nearest, d) > 0;
      }
    }
    CHECK(worst_high == 127);
    CHECK(worst_low == -127);
    CHECK(nearest_wrapped > 0);
  }

  TEST_CASE("bf16 conversion rounds to nearest even and round-trips") {
    CHECK(float_to_bf16(1.0f).bits == 0x3f80);
    CHECK(float_to_bf16(bits_float(0x3f808000u)).bits == 0x3f80);  // tie -> even
    CHECK(float_to_bf16(bits_float(0x3f818000u)).bits == 0x3f82);  // tie -> even (up)
    CHECK(float_to_bf16(bits_float(0x3f808001u)).bits == 0x3f81);  // above the tie -> up
    CHECK(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
    const auto x = testing::random_blocks(32, 32, 32, 5);
    const auto b = ref::to_bf16(x);
    const auto y = ref::from_bf16(b);
    for (size_t i = 0; i < x.size(); ++i) CHECK(std::fabs(y[i] - x[i]) <= std::fabs(x[i]) * (1.0f / 256));
    CHECK(ref::to_bf16(y) == b);
  }
}
