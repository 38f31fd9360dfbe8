// cuBLASLt loaded at run time: BF16 GEMMs of the BF16 training mode against an FP64 reference (skipped without a GPU).
#include <doctest/doctest.h>

#include <cmath>

#include "runtime/cublaslt.hpp"
#include "templates/jetforge/common.cuh"
#include "testing.hpp"

using namespace jetforge;

TEST_SUITE("gpu") {
  TEST_CASE("cuBLASLt BF16 linear layer: Y = X W^T + b (BF16) and dW += dY^T X (FP32) match FP64") {
    testing::gpu();
    const std::int64_t tokens = 96, in = 64, out = 160;
    auto as_bf16 = [](std::vector<float> v) {
      for (auto& x : v) x = bf16_to_float(float_to_bf16(x));
      return v;
    };
    const auto x = as_bf16(testing::random_vector(std::size_t(tokens * in), 1)), w = as_bf16(testing::random_vector(std::size_t(out * in), 2));
    const auto bias = testing::random_vector(std::size_t(out), 3), dy = as_bf16(testing::random_vector(std::size_t(tokens * out), 4));
    const auto dw0 = testing::random_vector(std::size_t(out * in), 5);
    auto upload_bf16 = [](const std::vector<float>& v) {
      DeviceBuffer b(v.size() * 2);
      std::vector<bf16> h(v.size());
      for (std::size_t i = 0; i < v.size(); ++i) h[i] = float_to_bf16(v[i]);
      b.upload(h.data(), h.size() * 2);
      return b;
    };
    DeviceBuffer dx_ = upload_bf16(x), dw_ = upload_bf16(w), ddy = upload_bf16(dy), y(std::size_t(tokens * out) * 2),
                 dw(dw0.size() * 4), dbias(bias.size() * 4);
    y.fill_bytes(testing::kNanBytes);
    dw.upload(dw0.data(), dw0.size() * 4);
    dbias.upload(bias.data(), bias.size() * 4);  // FP32, as the master biases
    const float one = 1.0f, zero = 0.0f;
    LtMatmul forward(tokens, out, in, false, true, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F, /*with_bias=*/true);
    forward.run(dx_.get(), dw_.get(), y.get(), &one, &zero, nullptr, dbias.get());
    LtMatmul weight_grad(out, in, tokens, true, false, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    weight_grad.run(ddy.get(), dx_.get(), dw.get(), &one, &one, nullptr);  // accumulate onto dw0

    std::vector<bf16> got_y(std::size_t(tokens * out));
    std::vector<float> got_dw(dw0.size());
    y.download(got_y.data(), got_y.size() * 2);
    dw.download(got_dw.data(), got_dw.size() * 4);
    std::size_t bad = 0;
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t o = 0; o < out; ++o) {
        double want = bias[std::size_t(o)], magnitude = std::fabs(want);
        for (std::int64_t i = 0; i < in; ++i) want += double(x[std::size_t(t * in + i)]) * w[std::size_t(o * in + i)], magnitude += std::fabs(double(x[std::size_t(t * in + i)]) * w[std::size_t(o * in + i)]);
        bad += !(std::fabs(bf16_to_float(got_y[std::size_t(t * out + o)]) - want) <= std::fabs(want) / 256 + 1e-5 * magnitude);
      }
    CHECK(bad == 0);
    bad = 0;
    for (std::int64_t o = 0; o < out; ++o)
      for (std::int64_t i = 0; i < in; ++i) {
        double want = dw0[std::size_t(o * in + i)], magnitude = std::fabs(want);
        for (std::int64_t t = 0; t < tokens; ++t)
          want += double(dy[std::size_t(t * out + o)]) * x[std::size_t(t * in + i)], magnitude += std::fabs(double(dy[std::size_t(t * out + o)]) * x[std::size_t(t * in + i)]);
        bad += !(std::fabs(got_dw[std::size_t(o * in + i)] - want) <= 1e-5 * magnitude);
      }
    CHECK(bad == 0);
  }
}
