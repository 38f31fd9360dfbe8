// Helpers shared by the tests: random data that is never all zeros, with per-block magnitudes spanning
// many decades, and one lazily created GPU context.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "runtime/kernels.hpp"

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

inline Context& gpu() {
  static Context ctx(0);
  return ctx;
}

}  // namespace jetforge::testing
