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

BlockTensor::BlockTensor(std::int64_t rows, std::int64_t cols, int block, int group) {
  if (group == 0) group = block;
  check_block_shape("BlockTensor", rows, cols, block);
  if (cols % group != 0)
    throw std::invalid_argument("BlockTensor: cols=" + std::to_string(cols) + " is not a multiple of the K-group " + std::to_string(group));
  codes_ = DeviceBuffer(size_t(rows * cols));
  scales_ = DeviceBuffer(size_t(rows / block * (cols / group) * 4));
  ref_ = BlockTensorRef{codes_.get(), scales_.get(), rows, cols, block, group};
}

}  // namespace jetforge
