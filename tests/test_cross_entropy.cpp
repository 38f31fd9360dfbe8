// Fused softmax + cross-entropy: the FP64 reference against finite differences of its loss (CPU) and the GPU
// kernel against the reference on random logits over a padded GPT-2 vocabulary (skipped without a GPU).
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "runtime/loss.hpp"
#include "runtime/reference_ops.hpp"
#include "testing.hpp"

using namespace jetforge;

TEST_SUITE("reference") {
  TEST_CASE("cross-entropy reference: gradient matches finite differences; padding and ignored rows get none") {
    const std::int64_t rows = 3, padded = 8, vocab = 6;
    auto logits = testing::random_vector(std::size_t(rows * padded), 7, 2.0f);
    const std::vector<int> targets{2, -1, 5};
    const auto ce = ref::cross_entropy(logits, rows, padded, vocab, targets, 0.5);
    CHECK(ce.losses[1] == 0.0);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < padded; ++j) {
        const std::size_t i = std::size_t(r * padded + j);
        if (j >= vocab || targets[std::size_t(r)] < 0) {
          CHECK(ce.grads[i] == 0.0);
          continue;
        }
        const float h = 1e-2f, x = logits[i];
        logits[i] = x + h;
        const auto plus = ref::cross_entropy(logits, rows, padded, vocab, targets, 0.5);
        logits[i] = x - h;
        const auto minus = ref::cross_entropy(logits, rows, padded, vocab, targets, 0.5);
        logits[i] = x;
        double lp = 0, lm = 0;
        for (std::int64_t k = 0; k < rows; ++k) lp += 0.5 * plus.losses[std::size_t(k)], lm += 0.5 * minus.losses[std::size_t(k)];
        CHECK(ce.grads[i] == doctest::Approx((lp - lm) / (2.0 * h)).epsilon(1e-3));
      }
  }
}

TEST_SUITE("gpu") {
  TEST_CASE("cross-entropy on the GPU matches the FP64 reference (BF16 and FP32 logits, padded vocabulary, ignored rows)") {
    Context& ctx = testing::gpu();
    const std::int64_t rows = 64, padded = 50304, vocab = 50257;  // GPT-2's vocabulary padded to a multiple of 128
    std::mt19937 rng(3);
    std::uniform_int_distribution<int> token(0, int(vocab) - 1);
    std::vector<int> targets(static_cast<std::size_t>(rows));
    for (auto& t : targets) t = token(rng);
    targets[5] = -1;
    targets[6] = int(vocab) - 1;  // the last real column
    for (const DType dtype : {DType::bf16, DType::f32}) {
      CAPTURE(gen::enum_name(dtype));
      const auto logits = testing::as_stored(testing::random_vector(std::size_t(rows * padded), 11, 3.0f), dtype);
      DenseTensor d_logits = testing::upload_dense(logits, rows, padded, dtype);
      DeviceBuffer d_targets(targets.size() * 4), d_losses(targets.size() * 4);
      d_targets.upload(targets.data(), targets.size() * 4);
      d_losses.fill_bytes(testing::kNanBytes);
      cross_entropy(ctx, d_logits.ref(), vocab, d_targets.get(), d_losses.get(), 1.0f / float(rows), nullptr);
      const auto want = ref::cross_entropy(logits, rows, padded, vocab, targets, 1.0 / double(rows));

      std::vector<float> losses(static_cast<std::size_t>(rows));
      d_losses.download(losses.data(), losses.size() * 4);
      double worst_loss = 0;
      for (std::size_t r = 0; r < losses.size(); ++r) worst_loss = std::max(worst_loss, std::fabs(losses[r] - want.losses[r]) / std::max(1.0, want.losses[r]));
      const auto grads = testing::download_dense(d_logits);
      // Gradient: within the output format's rounding (BF16: 2^-8 relative) plus FP32 exp/sum error, relative to
      // the largest gradient of the row (1 / rows at the target).
      const double rel = dtype == DType::bf16 ? 1.0 / 256 : 1e-5, floor = 1e-5 / double(rows);
      std::size_t bad = 0;
      for (std::size_t i = 0; i < grads.size(); ++i) bad += !(std::fabs(grads[i] - want.grads[i]) <= rel * std::fabs(want.grads[i]) + floor);
      MESSAGE("worst loss error " << worst_loss << ", gradient elements off: " << bad);
      CHECK(worst_loss <= 1e-5);
      CHECK(bad == 0);
    }
  }
}
