// Operator API over BlockTensors. Every call checks shapes and dtypes first and fails with a message that
// says what was wrong; kernels are looked up (and built on first use) in the context.
#pragma once
#include <cuda.h>

#include <cstdint>
#include <optional>

#include "generator/families.hpp"
#include "runtime/kernels.hpp"
#include "runtime/tensor.hpp"

namespace jetforge {

struct QuantizeOptions {
  gen::Rounding rounding = gen::Rounding::nearest;
  std::uint64_t seed = 0;  // stochastic rounding: same seed, same codes
  // Kernel override for tuners and benchmarks: tile, threads and ring depth are taken from it; its dtype,
  // rounding and transposition must match the call.
  std::optional<gen::QuantizeSpec> kernel;
};

// x (FP32/BF16) -> out (INT8 + scales).
void quantize(Context& ctx, const DenseRef& x, const BlockTensorRef& out, const QuantizeOptions& options, CUstream stream);

// x -> out and out_t (the BlockTensor of x^T), in one pass over x.
void quantize_transpose(Context& ctx, const DenseRef& x, const BlockTensorRef& out, const BlockTensorRef& out_t,
                        const QuantizeOptions& options, CUstream stream);

// q -> y (FP32/BF16).
void dequantize(Context& ctx, const BlockTensorRef& q, const DenseRef& y, CUstream stream);

// q -> q_t, exactly (no re-quantization).
void transpose(Context& ctx, const BlockTensorRef& q, const BlockTensorRef& q_t, CUstream stream);

}  // namespace jetforge
