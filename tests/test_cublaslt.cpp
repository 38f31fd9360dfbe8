// cuBLASLt loaded at run time: BF16 GEMMs of the BF16 training mode against an FP64 reference (skipped without a GPU).
#include <doctest/doctest.h>

#include <cmath>

#include "runtime/cublaslt.hpp"
#include "testing.hpp"

using namespace jetforge;

TEST_SUITE("gpu") {
  TEST_CASE("cuBLASLt BF16 linear layer: Y = X W^T + b (BF16) and dW += dY^T X (FP32) match FP64") {
    testing::gpu();
    const std::int64_t tokens = 96, in = 64, out = 160;
    const auto x = testing::as_stored(testing::random_vector(std::size_t(tokens * in), 1), DType::bf16),
               w = testing::as_stored(testing::random_vector(std::size_t(out * in), 2), DType::bf16);
    const auto bias = testing::as_stored(testing::random_vector(std::size_t(out), 3), DType::bf16), dy = testing::as_stored(testing::random_vector(std::size_t(tokens * out), 4), DType::bf16);
    const auto dw0 = testing::random_vector(std::size_t(out * in), 5);
    DenseTensor xd = testing::upload_dense(x, tokens, in, DType::bf16), wd = testing::upload_dense(w, out, in, DType::bf16),
                dyd = testing::upload_dense(dy, tokens, out, DType::bf16), dw = testing::upload_dense(dw0, out, in, DType::f32), y(tokens, out, DType::bf16);
    DenseTensor dbias = testing::upload_dense(bias, 1, out, DType::bf16);  // BF16, D's type
    y.buffer().fill_bytes(testing::kNanBytes);
    const float one = 1.0f, zero = 0.0f;
    LtMatmul forward(tokens, out, in, false, true, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F, /*with_bias=*/true);
    forward.run(xd.ref().data, wd.ref().data, y.ref().data, &one, &zero, nullptr, dbias.ref().data);
    LtMatmul weight_grad(out, in, tokens, true, false, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    weight_grad.run(dyd.ref().data, xd.ref().data, dw.ref().data, &one, &one, nullptr);  // accumulate onto dw0

    const auto got_y = testing::download_dense(y), got_dw = testing::download_dense(dw);
    std::size_t bad = 0;
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t o = 0; o < out; ++o) {
        double want = bias[std::size_t(o)], magnitude = std::fabs(want);
        for (std::int64_t i = 0; i < in; ++i) want += double(x[std::size_t(t * in + i)]) * w[std::size_t(o * in + i)], magnitude += std::fabs(double(x[std::size_t(t * in + i)]) * w[std::size_t(o * in + i)]);
        bad += !(std::fabs(got_y[std::size_t(t * out + o)] - want) <= std::fabs(want) / 256 + 1e-5 * magnitude);
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
