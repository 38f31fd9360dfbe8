// A device arena: one allocation handed out in 256-byte aligned pieces, sized by a first pass that only measures
// (the models run their layout twice: once with no memory, once on the allocation).
#pragma once
#include <cuda.h>

#include <cstddef>
#include <cstdint>

#include "runtime/device.hpp"
#include "runtime/tensor.hpp"

namespace jetforge {

class Arena {
 public:
  explicit Arena(CUdeviceptr base = 0) : base_(base) {}
  CUdeviceptr take(std::size_t bytes) {
    const std::size_t at = used_;
    used_ += (bytes + 255) / 256 * 256;
    return base_ ? base_ + at : 0;
  }
  BlockTensorRef block(std::int64_t rows, std::int64_t cols) {
    BlockTensorRef t;
    t.rows = rows, t.cols = cols, t.block = 32, t.group = 32;
    t.codes = take(std::size_t(t.code_bytes())), t.scales = take(std::size_t(t.scale_bytes()));
    return t;
  }
  DenseRef dense(std::int64_t rows, std::int64_t cols, DType dtype) {
    DenseRef d{0, rows, cols, dtype};
    d.data = take(std::size_t(d.bytes()));
    return d;
  }
  std::size_t used() const { return used_; }

 private:
  CUdeviceptr base_;
  std::size_t used_ = 0;
};

// Runs lay_out(arena) once to measure, then on an allocation of exactly that size, which it returns.
template <class LayOut> DeviceBuffer allocate_arena(const LayOut& lay_out) {
  Arena measure;
  lay_out(measure);
  DeviceBuffer memory(measure.used());
  Arena real(memory.get());
  lay_out(real);
  return memory;
}

}  // namespace jetforge
