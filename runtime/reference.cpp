#include "runtime/reference.hpp"

#include <cmath>

#include "templates/jetforge/common.cuh"

namespace jetforge::ref {

HostBlockTensor quantize(std::span<const float> x, std::int64_t rows, std::int64_t cols, int block, gen::Rounding rounding, std::uint64_t seed,
                         int group) {
  if (group == 0) group = block;
  HostBlockTensor q{rows, cols, block, std::vector<std::int8_t>(size_t(rows * cols)), std::vector<float>(size_t(rows / block * (cols / group))), group};
  const std::uint32_t key = seed_key(seed);  // stochastic rounding's draws
  for (std::int64_t br = 0; br < rows / block; ++br)
    for (std::int64_t bc = 0; bc < cols / group; ++bc) {
      float amax = 0;
      for (std::int64_t r = br * block; r < (br + 1) * block; ++r)
        for (std::int64_t c = bc * group; c < (bc + 1) * group; ++c) amax = std::max(amax, std::fabs(x[size_t(r * cols + c)]));
      const float s = block_scale(amax), inv = inverse_scale(s);
      q.scales[size_t(br * (cols / group) + bc)] = s;
      for (std::int64_t r = br * block; r < (br + 1) * block; ++r)
        for (std::int64_t c = bc * group; c < (bc + 1) * group; ++c) {
          const size_t i = size_t(r * cols + c);
          q.codes[i] = rounding == gen::Rounding::nearest ? quantize_nearest(x[i], inv) : quantize_stochastic(x[i], inv, draw16(key, i));
        }
    }
  return q;
}

std::vector<float> dequantize(const HostBlockTensor& q) {
  std::vector<float> y(q.codes.size());
  for (std::int64_t r = 0; r < q.rows; ++r)
    for (std::int64_t c = 0; c < q.cols; ++c) y[size_t(r * q.cols + c)] = float(q.codes[size_t(r * q.cols + c)]) * q.scale_at(r, c);
  return y;
}

HostBlockTensor transpose(const HostBlockTensor& q) {
  HostBlockTensor t{q.cols, q.rows, q.block, std::vector<std::int8_t>(q.codes.size()), std::vector<float>(q.scales.size()), q.block};
  for (std::int64_t r = 0; r < q.rows; ++r)
    for (std::int64_t c = 0; c < q.cols; ++c) t.codes[size_t(c * q.rows + r)] = q.codes[size_t(r * q.cols + c)];
  const std::int64_t sr = q.rows / q.block, sc = q.cols / q.block;
  for (std::int64_t r = 0; r < sr; ++r)
    for (std::int64_t c = 0; c < sc; ++c) t.scales[size_t(c * sr + r)] = q.scales[size_t(r * sc + c)];
  return t;
}

double gemm_element(const HostBlockTensor& a, const HostBlockTensor& b, std::int64_t i, std::int64_t j) {
  double sum = 0;
  for (std::int64_t k = 0; k < a.cols; ++k) sum += a.value(i, k) * b.value(j, k);
  return sum;
}

std::vector<std::uint16_t> to_bf16(std::span<const float> x) {
  std::vector<std::uint16_t> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = float_to_bf16(x[i]).bits;
  return out;
}

std::vector<float> from_bf16(std::span<const std::uint16_t> x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = bf16_to_float(bf16{x[i]});
  return out;
}

}  // namespace jetforge::ref
