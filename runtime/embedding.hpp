// GPT-2's token + position embedding (kernels in templates/embedding.cuh), FP32 weights and output.
#pragma once
#include <cuda.h>

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/kernels.hpp"

namespace jetforge {

struct EmbeddingShape {
  std::int64_t batch, tokens, channels;  // tokens per sequence; channels a multiple of 4
  std::int64_t vocab, max_positions;     // rows of wte and wpe
};

// The batch's rows grouped by token, for the deterministic dwte sum: distinct tokens (ascending), and for each the
// rows where it occurs (ascending), in CSR form. Built on the host, where the data loader has the tokens anyway.
struct TokenGroups {
  std::vector<int> tokens, offsets, rows;
  static TokenGroups of(std::span<const int> batch_tokens);
};

// The same, uploaded once per step.
struct DeviceTokenGroups {
  DeviceBuffer tokens, offsets, rows;
  std::int64_t groups = 0;
  explicit DeviceTokenGroups(const TokenGroups& g);
};

// The first LayerNorm's statistics of the embedding, taken in its pass: FP32 mean and 1 / sqrt(var + eps) per row.
struct EmbeddingStatsOut {
  CUdeviceptr mean = 0, rstd = 0;
  float eps = 1e-5f;
};

// out (batch * tokens x channels) = wte[token] + wpe[position]. tokens: device int32, batch * tokens ids < vocab.
// `stats` (if not null; channels a multiple of 32): the LayerNorm statistics of out, so that the first LayerNorm is
// a layernorm_apply like the others (whose statistics residual_add takes).
void embedding_forward(Context& ctx, const EmbeddingShape& s, CUdeviceptr tokens, CUdeviceptr wte, CUdeviceptr wpe, CUdeviceptr out, CUstream stream,
                       const EmbeddingStatsOut* stats = nullptr);

// d_wte += sum over each token's rows of d_out, d_wpe += sum over the batch of d_out (both in a fixed order).
void embedding_backward(Context& ctx, const EmbeddingShape& s, const DeviceTokenGroups& groups, CUdeviceptr d_out, CUdeviceptr d_wte, CUdeviceptr d_wpe,
                        CUstream stream);

namespace ref {
// FP64 references on host arrays (row-major, as above).
std::vector<double> embedding_forward(const EmbeddingShape& s, std::span<const int> tokens, std::span<const float> wte, std::span<const float> wpe);
void embedding_backward(const EmbeddingShape& s, std::span<const int> tokens, std::span<const double> d_out, std::vector<double>& d_wte,
                        std::vector<double>& d_wpe);
}  // namespace ref

}  // namespace jetforge
