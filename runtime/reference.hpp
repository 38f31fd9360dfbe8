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
  std::vector<float> scales;       // (rows / block) x (cols / group)
  int group = 32;                  // columns per scale (= block for the method's square blocks)
  float scale_at(std::int64_t r, std::int64_t c) const { return scales[size_t(r / block * (cols / group) + c / group)]; }
  double value(std::int64_t r, std::int64_t c) const { return double(codes[size_t(r * cols + c)]) * scale_at(r, c); }
};

// Blocks of block x group (group 0: square blocks).
HostBlockTensor quantize(std::span<const float> x, std::int64_t rows, std::int64_t cols, int block, gen::Rounding rounding, std::uint64_t seed,
                         int group = 0);
std::vector<float> dequantize(const HostBlockTensor& q);
HostBlockTensor transpose(const HostBlockTensor& q);

// Element (i, j) of A B^T over the dequantized operands, accumulated in FP64: the GEMM reference.
double gemm_element(const HostBlockTensor& a, const HostBlockTensor& b, std::int64_t i, std::int64_t j);

// BF16 helpers for tests and benchmarks: round-to-nearest-even and back.
std::vector<std::uint16_t> to_bf16(std::span<const float> x);
std::vector<float> from_bf16(std::span<const std::uint16_t> x);

}  // namespace jetforge::ref
