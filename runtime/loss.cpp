#include "runtime/loss.hpp"

#include <string>

#include "generator/families.hpp"
#include "runtime/require.hpp"
#include "templates/cross_entropy.cuh"

namespace jetforge {

void cross_entropy(Context& ctx, const DenseRef& logits, std::int64_t vocab, CUdeviceptr targets, CUdeviceptr losses, float grad_scale, CUstream stream,
                   const std::optional<gen::CrossEntropySpec>& spec) {
  require(logits.dtype == DType::bf16 || logits.dtype == DType::f32,
          [&] { return "cross_entropy: logits must be bf16 or f32, got " + std::string(gen::enum_name(logits.dtype)); });
  require(logits.cols % 8 == 0, [&] { return "cross_entropy: the padded vocabulary (" + std::to_string(logits.cols) + " columns) must be a multiple of 8"; });
  require(vocab > 0 && vocab <= logits.cols,
          [&] { return "cross_entropy: vocab=" + std::to_string(vocab) + " must be in 1.." + std::to_string(logits.cols) + " (the logits' columns)"; });
  require(targets != 0 && losses != 0, [] { return "cross_entropy: targets and losses must be given"; });
  const gen::CrossEntropySpec kernel = spec ? *spec : gen::CrossEntropySpec{logits.dtype};
  require(kernel.in == logits.dtype, [&] { return "cross_entropy: kernel override " + gen::canonical_key(kernel) + " is for other logits"; });
  const CrossEntropyParams p{reinterpret_cast<void*>(logits.data), reinterpret_cast<const int*>(targets), reinterpret_cast<float*>(losses), logits.rows,
                             logits.cols, vocab, grad_scale};
  ctx.kernel(kernel).launch(unsigned(logits.rows), p, stream);
}

}  // namespace jetforge
