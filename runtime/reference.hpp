// CPU references of the kernels: the definition each GPU kernel is tested against. They share the
// rounding rule and RNG with the kernels (templates/jetforge/common.cuh), so nearest and stochastic
// quantization must agree bit for bit.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "generator/spec.hpp"

namespace jetforge::ref {

struct HostBlockTensor {
  std::int64_t rows = 0, cols = 0;
  int block = 32;
  std::vector<std::int8_t> codes;  // rows x cols
  std::vector<float> scales;       // (rows / block) x (cols / block)
  float scale_at(std::int64_t r, std::int64_t c) const { return scales[size_t(r / block * (cols / block) + c / block)]; }
};

HostBlockTensor quantize(std::span<const float> x, std::int64_t rows, std::int64_t cols, int block, gen::Rounding rounding, std::uint64_t seed);
std::vector<float> dequantize(const HostBlockTensor& q);
HostBlockTensor transpose(const HostBlockTensor& q);

// BF16 helpers for tests and benchmarks: round-to-nearest-even and back.
std::vector<std::uint16_t> to_bf16(std::span<const float> x);
std::vector<float> from_bf16(std::span<const std::uint16_t> x);

}  // namespace jetforge::ref
