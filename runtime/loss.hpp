// The LM head's loss: fused softmax + cross-entropy over (padded) vocabulary rows (templates/cross_entropy.cuh).
#pragma once
#include <cuda.h>

#include <cstdint>
#include <optional>

#include "generator/families.hpp"
#include "runtime/kernels.hpp"
#include "runtime/tensor.hpp"

namespace jetforge {

// logits: rows x padded_vocab (BF16 or FP32, padded_vocab a multiple of 8), overwritten by
// d(sum of row losses * grad_scale) / d(logits); columns from `vocab` on are padding (gradient 0). targets: rows
// int32 token ids in [0, vocab), or negative to ignore the row (loss 0, gradient 0). losses: rows FP32. `spec`
// overrides the kernel (its CTA size; the logits' type must match).
void cross_entropy(Context& ctx, const DenseRef& logits, std::int64_t vocab, CUdeviceptr targets, CUdeviceptr losses, float grad_scale, CUstream stream,
                   const std::optional<gen::CrossEntropySpec>& spec = std::nullopt);

}  // namespace jetforge
