// Tensors as the operators see them: non-owning views (Ref) over device memory, and owning tensors that
// allocate their buffers. BlockTensor is the format every INT8 kernel shares (DESIGN.md §3).
#pragma once
#include <cuda.h>

#include <cstdint>
#include <string>

#include "generator/spec.hpp"
#include "runtime/device.hpp"

namespace jetforge {

using gen::DType;

struct DenseRef {
  CUdeviceptr data = 0;
  std::int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;
  std::int64_t bytes() const { return rows * cols * gen::dtype_size(dtype); }
};

// INT8 codes (rows x cols, row-major) + FP32 scales ((rows/B) x (cols/G), row-major). B x B blocks (G = B) are
// the method's format; a GEMM operand quantized with a coarser K-group has G = 64 or 128 along its columns.
struct BlockTensorRef {
  CUdeviceptr codes = 0, scales = 0;
  std::int64_t rows = 0, cols = 0;
  int block = 32;
  int group = 32;  // columns per scale
  std::int64_t scale_rows() const { return rows / block; }
  std::int64_t scale_cols() const { return cols / group; }
  std::int64_t code_bytes() const { return rows * cols; }
  std::int64_t scale_bytes() const { return scale_rows() * scale_cols() * 4; }
};

// Throws std::invalid_argument ("<what>: rows=1000 is not a multiple of the block size 32") unless both
// dimensions are positive multiples of `block`.
void check_block_shape(const std::string& what, std::int64_t rows, std::int64_t cols, int block);

class DenseTensor {
 public:
  DenseTensor(std::int64_t rows, std::int64_t cols, DType dtype)
      : buffer_(size_t(rows * cols * gen::dtype_size(dtype))), ref_{buffer_.get(), rows, cols, dtype} {}
  const DenseRef& ref() const { return ref_; }
  DeviceBuffer& buffer() { return buffer_; }

 private:
  DeviceBuffer buffer_;
  DenseRef ref_;
};

class BlockTensor {
 public:
  BlockTensor(std::int64_t rows, std::int64_t cols, int block = 32, int group = 0);  // group 0: square blocks
  const BlockTensorRef& ref() const { return ref_; }
  DeviceBuffer& codes() { return codes_; }
  DeviceBuffer& scales() { return scales_; }

 private:
  DeviceBuffer codes_, scales_;
  BlockTensorRef ref_;
};

// Fresh random contents for benchmarks and tuning, never all zeros: codes uniform in [-127, 127], scales uniform in
// [1e-3, 1e-2); dense values N(0, 1) in the tensor's dtype (BF16 rounded to nearest even).
void fill_random(BlockTensor& t, std::uint64_t seed);
void fill_random(DenseTensor& t, std::uint64_t seed);

}  // namespace jetforge
