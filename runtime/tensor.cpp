#include "runtime/tensor.hpp"

#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "templates/jetforge/common.cuh"

namespace jetforge {

void check_block_shape(const std::string& what, std::int64_t rows, std::int64_t cols, int block) {
  for (auto [name, v] : {std::pair{"rows", rows}, std::pair{"cols", cols}}) {
    if (v <= 0) throw std::invalid_argument(what + ": " + name + "=" + std::to_string(v) + " must be positive");
    if (v % block != 0)
      throw std::invalid_argument(what + ": " + name + "=" + std::to_string(v) + " is not a multiple of the block size " + std::to_string(block) +
                                  " (pad the tensor to a multiple of " + std::to_string(block) + ")");
  }
}

BlockTensor::BlockTensor(std::int64_t rows, std::int64_t cols, int block, int group) {
  if (group == 0) group = block;
  check_block_shape("BlockTensor", rows, cols, block);
  if (cols % group != 0)
    throw std::invalid_argument("BlockTensor: cols=" + std::to_string(cols) + " is not a multiple of the K-group " + std::to_string(group));
  codes_ = DeviceBuffer(size_t(rows * cols));
  scales_ = DeviceBuffer(size_t(rows / block * (cols / group) * 4));
  ref_ = BlockTensorRef{codes_.get(), scales_.get(), rows, cols, block, group};
}

void fill_random(BlockTensor& t, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int8_t> codes(t.codes().bytes());
  for (auto& c : codes) c = static_cast<std::int8_t>(int(rng() % 255) - 127);
  std::uniform_real_distribution<float> u(1e-3f, 1e-2f);
  std::vector<float> scales(t.scales().bytes() / 4);
  for (auto& s : scales) s = u(rng);
  t.codes().upload(codes.data(), codes.size());
  t.scales().upload(scales.data(), scales.size() * 4);
}

void fill_random(DenseTensor& t, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  const auto n = std::size_t(t.ref().rows * t.ref().cols);
  if (t.ref().dtype == DType::f32) {
    std::vector<float> v(n);
    for (auto& x : v) x = normal(rng);
    t.buffer().upload(v.data(), n * 4);
  } else if (t.ref().dtype == DType::bf16) {
    std::vector<std::uint16_t> v(n);
    for (auto& x : v) x = float_to_bf16(normal(rng)).bits;
    t.buffer().upload(v.data(), n * 2);
  } else {
    throw std::invalid_argument("fill_random: a dense tensor is f32 or bf16");
  }
}

}  // namespace jetforge
