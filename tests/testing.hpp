// Helpers shared by the tests: random data that is never all zeros, with per-block magnitudes spanning
// many decades, and one lazily created GPU context.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "runtime/kernels.hpp"
#include "runtime/reference.hpp"
#include "runtime/tensor.hpp"

namespace jetforge::testing {

// rows x cols values, each block x block block scaled by 10^U(lo_exp, hi_exp); block (0, 0) is all zeros when
// with_zero_block is set, to exercise the zero-scale guard.
inline std::vector<float> random_blocks(std::int64_t rows, std::int64_t cols, int block, std::uint64_t seed, double lo_exp = -4, double hi_exp = 4,
                                        bool with_zero_block = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<double> exponent(lo_exp, hi_exp);
  std::vector<double> block_scale(size_t((rows / block) * (cols / block)));
  for (auto& s : block_scale) s = std::pow(10.0, exponent(rng));
  std::vector<float> x(size_t(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) x[size_t(r * cols + c)] = float(normal(rng) * block_scale[size_t(r / block * (cols / block) + c / block)]);
  if (with_zero_block)
    for (int r = 0; r < block; ++r)
      for (int c = 0; c < block; ++c) x[size_t(r * cols + c)] = 0.0f;
  return x;
}

// n values drawn from N(0, sigma^2), reproducible from the seed.
inline std::vector<float> random_vector(size_t n, unsigned seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, sigma);
  std::vector<float> v(n);
  for (auto& e : v) e = normal(rng);
  return v;
}

// The values a kernel reads from `dtype` storage: BF16 is rounded to nearest even, FP32 is unchanged. A CPU
// reference given these sees exactly what the GPU reads.
inline std::vector<float> as_stored(const std::vector<float>& x, DType dtype) { return dtype == DType::f32 ? x : ref::from_bf16(ref::to_bf16(x)); }

// A rows x cols tensor of `dtype` holding x (rounded as as_stored rounds).
inline DenseTensor upload_dense(const std::vector<float>& x, std::int64_t rows, std::int64_t cols, DType dtype) {
  DenseTensor t(rows, cols, dtype);
  if (dtype == DType::f32) t.buffer().upload(x.data(), x.size() * 4);
  else t.buffer().upload(ref::to_bf16(x).data(), x.size() * 2);
  return t;
}

// A dense tensor's contents as FP32 (exact for both storage types).
inline std::vector<float> download_dense(DenseTensor& t) {
  const auto n = size_t(t.ref().rows * t.ref().cols);
  if (t.ref().dtype == DType::f32) {
    std::vector<float> x(n);
    t.buffer().download(x.data(), n * 4);
    return x;
  }
  std::vector<std::uint16_t> bits(n);
  t.buffer().download(bits.data(), n * 2);
  return ref::from_bf16(bits);
}

// Output poison: as a code, -128 is outside [-127, 127]; 0xff bytes are NaN as FP32 and BF16.
constexpr unsigned char kPoisonCode = 0x80;
constexpr unsigned char kNanBytes = 0xff;

inline void poison(BlockTensor& q) {
  q.codes().fill_bytes(kPoisonCode);
  q.scales().fill_bytes(kNanBytes);
}

inline BlockTensor upload(const ref::HostBlockTensor& h) {
  BlockTensor q(h.rows, h.cols, h.block, h.group);
  q.codes().upload(h.codes.data(), h.codes.size());
  q.scales().upload(h.scales.data(), h.scales.size() * 4);
  return q;
}

inline ref::HostBlockTensor download(BlockTensor& q) {
  const auto& r = q.ref();
  ref::HostBlockTensor h{r.rows, r.cols, r.block, std::vector<std::int8_t>(size_t(r.code_bytes())), std::vector<float>(size_t(r.scale_bytes() / 4)), r.group};
  q.codes().download(h.codes.data(), h.codes.size());
  q.scales().download(h.scales.data(), h.scales.size() * 4);
  return h;
}

inline Context& gpu() {
  static Context ctx(0);
  return ctx;
}

}  // namespace jetforge::testing
