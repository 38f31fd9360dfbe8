// Learning-rate schedule and AdamW: the CPU reference against hand-computed values; the GPU kernels against the
// reference on random data (skipped without a GPU).
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "runtime/optim.hpp"
#include "runtime/tensor.hpp"
#include "testing.hpp"

using namespace jetforge;

using testing::random_vector;

TEST_SUITE("reference") {
  TEST_CASE("cosine learning rate with linear warm-up") {
    CHECK(cosine_lr(0, 10, 110, 1e-3, 1e-4) == doctest::Approx(1e-4));        // warm-up: (0 + 1) / 10 of the peak
    CHECK(cosine_lr(9, 10, 110, 1e-3, 1e-4) == doctest::Approx(1e-3));        // end of warm-up
    CHECK(cosine_lr(10, 10, 110, 1e-3, 1e-4) == doctest::Approx(1e-3));       // decay starts at the peak
    CHECK(cosine_lr(60, 10, 110, 1e-3, 1e-4) == doctest::Approx(5.5e-4));     // half way: the mean of peak and floor
    CHECK(cosine_lr(110, 10, 110, 1e-3, 1e-4) == doctest::Approx(1e-4));      // the floor, and after
    CHECK(cosine_lr(500, 10, 110, 1e-3, 1e-4) == doctest::Approx(1e-4));
  }

  TEST_CASE("AdamW reference: the first step moves each weight by about lr against its gradient's sign") {
    std::vector<float> w{1.0f, -2.0f, 0.5f}, g{0.3f, -0.1f, 0.0f}, m(3, 0.0f), v(3, 0.0f);
    const AdamWConfig c{0.9f, 0.95f, 1e-8f, 0.0f};
    ref::adamw_step(w, g, m, v, 1, 0.01f, c, 1.0f);
    // Step 1: m_hat = g, v_hat = g^2, update = g / (|g| + eps) = sign(g).
    CHECK(w[0] == doctest::Approx(0.99f));
    CHECK(w[1] == doctest::Approx(-1.99f));
    CHECK(w[2] == doctest::Approx(0.5f));
    std::vector<float> w2{1.0f}, g2{0.3f}, m2{0.0f}, v2{0.0f};
    ref::adamw_step(w2, g2, m2, v2, 1, 0.01f, AdamWConfig{0.9f, 0.95f, 1e-8f, 0.1f}, 0.5f);  // decay, clipped gradient
    CHECK(w2[0] == doctest::Approx(1.0f - 0.01f * (1.0f + 0.1f)));
    CHECK(m2[0] == doctest::Approx(0.1f * 0.15f));
  }
}

TEST_SUITE("gpu") {
  TEST_CASE("AdamW and global-norm clipping on the GPU match the reference, deterministically") {
    Context& ctx = testing::gpu();
    const std::vector<std::int64_t> sizes{1000, 768 * 768, 3 * 768 * 768 + 5};
    std::vector<std::vector<float>> grads;
    std::vector<DeviceBuffer> dgrads;
    std::vector<GradientBuffer> list;
    for (size_t i = 0; i < sizes.size(); ++i) {
      grads.push_back(random_vector(size_t(sizes[i]), unsigned(10 + i), 0.01f));
      dgrads.emplace_back(size_t(sizes[i]) * 4);
      dgrads.back().upload(grads.back().data(), grads.back().size() * 4);
      list.push_back({dgrads.back().get(), sizes[i]});
    }
    DeviceBuffer workspace(clip_workspace_bytes(list)), norm(4), factor(4);
    float got_norm[2], got_factor = 0;
    for (int run = 0; run < 2; ++run) {
      norm.fill_bytes(testing::kNanBytes);
      clip_gradients(ctx, list, 1.0f, workspace.get(), norm.get(), factor.get(), nullptr);
      norm.download(&got_norm[run], 4);
    }
    factor.download(&got_factor, 4);
    const double want_norm = ref::global_norm(grads);
    CHECK(got_norm[0] == got_norm[1]);
    CHECK(got_norm[0] == doctest::Approx(want_norm).epsilon(1e-5));
    CHECK(got_factor == doctest::Approx(std::min(1.0, 1.0 / want_norm)).epsilon(1e-5));

    const std::int64_t n = sizes[1];
    auto w = random_vector(size_t(n), 20, 0.02f), m = random_vector(size_t(n), 21, 0.001f), v = random_vector(size_t(n), 22, 0.001f);
    const auto m0 = m;
    for (auto& e : v) e = e * e;
    DeviceBuffer dw(size_t(n) * 4), dm(size_t(n) * 4), dv(size_t(n) * 4);
    dw.upload(w.data(), w.size() * 4), dm.upload(m.data(), m.size() * 4), dv.upload(v.data(), v.size() * 4);
    const AdamWConfig c;
    const float lr = 3e-4f;
    adamw_step(ctx, dw.get(), dgrads[1].get(), dm.get(), dv.get(), n, 7, lr, c, factor.get(), nullptr);
    ref::adamw_step(w, grads[1], m, v, 7, lr, c, got_factor);
    std::vector<float> gw(w.size()), gm(m.size());
    dw.download(gw.data(), gw.size() * 4);
    dm.download(gm.data(), gm.size() * 4);
    size_t bad = 0;
    // FP32 rounding error scales with the terms, not with the result: m = b1 m0 + (1 - b1) g cancels, and the
    // update (about lr in size) is exact to a few ulps of itself.
    for (size_t i = 0; i < w.size(); ++i) {
      const double m_tol = 1e-6 * (std::fabs(m0[i]) + std::fabs(grads[1][i] * got_factor));
      const double w_tol = 1e-6 * std::fabs(w[i]) + 1e-5 * lr;
      bad += !(std::fabs(gw[i] - w[i]) <= w_tol) + !(std::fabs(gm[i] - m[i]) <= m_tol);
    }
    CHECK(bad == 0);
  }
}
