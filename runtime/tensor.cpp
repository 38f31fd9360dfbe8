#include "runtime/tensor.hpp"

#include <stdexcept>

namespace jetforge {

void check_block_shape(const std::string& what, std::int64_t rows, std::int64_t cols, int block) {
  for (auto [name, v] : {std::pair{"rows", rows}, std::pair{"cols", cols}}) {
    if (v <= 0) throw std::invalid_argument(what + ": " + name + "=" + std::to_string(v) + " must be positive");
    if (v % block != 0)
      throw std::invalid_argument(what + ": " + name + "=" + std::to_string(v) + " is not a multiple of the block size " + std::to_string(block) +
                                  " (pad the tensor to a multiple of " + std::to_string(block) + ")");
  }
}

BlockTensor::BlockTensor(std::int64_t rows, std::int64_t cols, int block) {
  check_block_shape("BlockTensor", rows, cols, block);
  codes_ = DeviceBuffer(size_t(rows * cols));
  scales_ = DeviceBuffer(size_t(rows / block * (cols / block) * 4));
  ref_ = BlockTensorRef{codes_.get(), scales_.get(), rows, cols, block};
}

}  // namespace jetforge
