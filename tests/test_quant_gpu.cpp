// GPU quantization kernels against the CPU reference: bit-exact codes and scales, on fresh random data
// with outputs poisoned before each run (code -128 and NaN scales are never valid results).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "runtime/ops.hpp"
#include "runtime/reference.hpp"
#include "testing.hpp"

using namespace jetforge;
using gen::Rounding;

namespace {

using testing::kNanBytes;
using testing::poison;
using testing::download;
using testing::upload_dense;

size_t count_mismatches(const ref::HostBlockTensor& got, const ref::HostBlockTensor& want) {
  size_t bad = 0;
  for (size_t i = 0; i < want.codes.size(); ++i) bad += got.codes[i] != want.codes[i];
  for (size_t i = 0; i < want.scales.size(); ++i) bad += std::memcmp(&got.scales[i], &want.scales[i], 4) != 0;
  return bad;
}

struct Shape {
  std::int64_t rows, cols;
};
const Shape kShapes[] = {{32, 32}, {64, 96}, {160, 32}, {32, 4096}, {1024, 4096}, {4096, 1024}, {16384, 8192}};

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("quantize and quantize_transpose match the CPU reference bit for bit") {
    Context& ctx = testing::gpu();
    std::uint64_t seed = 100;
    for (const Shape s : kShapes)
      for (DType dtype : {DType::f32, DType::bf16})
        for (Rounding rounding : {Rounding::nearest, Rounding::stochastic}) {
          CAPTURE(s.rows);
          CAPTURE(s.cols);
          CAPTURE(gen::enum_name(dtype));
          CAPTURE(gen::enum_name(rounding));
          const auto x = testing::random_blocks(s.rows, s.cols, 32, ++seed, -4, 4, /*with_zero_block=*/true);
          const auto input = upload_dense(x, s.rows, s.cols, dtype);
          const QuantizeOptions options{rounding, seed * 7919, {}};
          const auto want = ref::quantize(testing::as_stored(x, dtype), s.rows, s.cols, 32, rounding, options.seed);

          BlockTensor q(s.rows, s.cols), qt(s.cols, s.rows);
          poison(q);
          poison(qt);
          quantize_transpose(ctx, input.ref(), q.ref(), qt.ref(), options, nullptr);
          ctx.device().synchronize();
          CHECK(count_mismatches(download(q), want) == 0);
          CHECK(count_mismatches(download(qt), ref::transpose(want)) == 0);

          poison(q);
          quantize(ctx, input.ref(), q.ref(), options, nullptr);
          ctx.device().synchronize();
          CHECK(count_mismatches(download(q), want) == 0);

          if (s.rows % 128 == 0 && s.cols % 128 == 0) {  // another tile policy computes the same codes
            QuantizeOptions alt = options;
            alt.kernel = gen::QuantizeSpec{dtype, 32, rounding, true, gen::BlockTile{4, 4, 512}, dtype == DType::f32 ? 2 : 3};
            poison(q);
            poison(qt);
            quantize_transpose(ctx, input.ref(), q.ref(), qt.ref(), alt, nullptr);
            ctx.device().synchronize();
            CHECK(count_mismatches(download(q), want) == 0);
            CHECK(count_mismatches(download(qt), ref::transpose(want)) == 0);
          }
        }
  }

  TEST_CASE("GPU stochastic rounding is unbiased over many seeds") {
    Context& ctx = testing::gpu();
    const std::int64_t rows = 64, cols = 64;
    const auto x = testing::random_blocks(rows, cols, 32, 9, 0, 0);
    const auto input = upload_dense(x, rows, cols, DType::f32);
    BlockTensor q(rows, cols);
    const int draws = 2000;
    std::vector<double> sum(x.size(), 0.0);
    ref::HostBlockTensor h;
    for (int seed = 0; seed < draws; ++seed) {
      poison(q);
      quantize(ctx, input.ref(), q.ref(), {Rounding::stochastic, std::uint64_t(seed), {}}, nullptr);
      h = download(q);
      for (size_t i = 0; i < x.size(); ++i) sum[i] += double(h.codes[i]) * h.scale_at(std::int64_t(i) / cols, std::int64_t(i) % cols);
    }
    double total_bias = 0, worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double s = h.scale_at(std::int64_t(i) / cols, std::int64_t(i) % cols);
      const double bias = (sum[i] / draws - x[i]) / s;  // in quantization steps
      total_bias += bias;
      worst = std::max(worst, std::fabs(bias));
    }
    CHECK(worst < 6 * 0.5 / std::sqrt(double(draws)));
    CHECK(std::fabs(total_bias / double(x.size())) < 6 * 0.5 / std::sqrt(double(draws) * double(x.size())));
  }

  TEST_CASE("dequantize matches the CPU reference exactly, for FP32 and BF16 output") {
    Context& ctx = testing::gpu();
    for (const Shape s : kShapes)
      for (DType dtype : {DType::f32, DType::bf16}) {
        CAPTURE(s.rows);
        CAPTURE(s.cols);
        CAPTURE(gen::enum_name(dtype));
        const auto x = testing::random_blocks(s.rows, s.cols, 32, 1000 + std::uint64_t(s.rows + s.cols));
        const auto want_q = ref::quantize(x, s.rows, s.cols, 32, Rounding::nearest, 0);
        BlockTensor q = testing::upload(want_q);
        DenseTensor y(s.rows, s.cols, dtype);
        y.buffer().fill_bytes(kNanBytes);
        dequantize(ctx, q.ref(), y.ref(), nullptr);
        ctx.device().synchronize();
        const auto want = ref::dequantize(want_q);
        size_t bad = 0;
        if (dtype == DType::f32) {
          std::vector<float> got(want.size());
          y.buffer().download(got.data(), got.size() * 4);
          for (size_t i = 0; i < got.size(); ++i) bad += std::memcmp(&got[i], &want[i], 4) != 0;
        } else {
          std::vector<std::uint16_t> got(want.size());
          y.buffer().download(got.data(), got.size() * 2);
          const auto want_bf16 = ref::to_bf16(want);
          for (size_t i = 0; i < got.size(); ++i) bad += got[i] != want_bf16[i];
        }
        CHECK(bad == 0);
      }
  }

  TEST_CASE("transpose of a BlockTensor is exact, and transposing twice is the identity") {
    Context& ctx = testing::gpu();
    for (const Shape s : kShapes) {
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      const auto x = testing::random_blocks(s.rows, s.cols, 32, 2000 + std::uint64_t(s.rows * 3 + s.cols));
      const auto want_q = ref::quantize(x, s.rows, s.cols, 32, Rounding::nearest, 0);
      BlockTensor q = testing::upload(want_q), qt(s.cols, s.rows), qtt(s.rows, s.cols);
      poison(qt);
      poison(qtt);
      transpose(ctx, q.ref(), qt.ref(), nullptr);
      transpose(ctx, qt.ref(), qtt.ref(), nullptr);
      ctx.device().synchronize();
      CHECK(count_mismatches(download(qt), ref::transpose(want_q)) == 0);
      CHECK(count_mismatches(download(qtt), want_q) == 0);
    }
  }

  TEST_CASE("operators reject bad shapes with clear messages") {
    Context& ctx = testing::gpu();
    DenseTensor x(64, 64, DType::f32);
    BlockTensor q(64, 64), wrong(32, 64), qt(64, 64);
    CHECK_THROWS_WITH_AS(quantize(ctx, x.ref(), wrong.ref(), {}, nullptr), doctest::Contains("dense tensor is 64x64 but the BlockTensor is 32x64"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(transpose(ctx, wrong.ref(), q.ref(), nullptr), doctest::Contains("transposed output must be 64x32"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(BlockTensor(1000, 64), doctest::Contains("rows=1000 is not a multiple of the block size 32"), std::invalid_argument);
    DenseRef bad = x.ref();
    bad.dtype = DType::i8;
    CHECK_THROWS_WITH_AS(quantize(ctx, bad, q.ref(), {}, nullptr), doctest::Contains("must be f32 or bf16"), std::invalid_argument);
    CHECK_NOTHROW(quantize_transpose(ctx, x.ref(), q.ref(), qt.ref(), {}, nullptr));
    QuantizeOptions wrong_kernel;
    wrong_kernel.kernel = gen::QuantizeSpec{DType::bf16, 32, Rounding::nearest, false, gen::BlockTile{2, 2, 256}, 2};
    CHECK_THROWS_WITH_AS(quantize(ctx, x.ref(), q.ref(), wrong_kernel, nullptr), doctest::Contains("does not match the call"), std::invalid_argument);
  }
}
