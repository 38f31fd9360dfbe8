// CPU references of the nonlinear operators between the GEMMs (DESIGN.md §1): INT8 BlockTensors in and out,
// arithmetic in FP64 on the dequantized inputs, outputs quantized per block (nearest in the forward pass,
// stochastic for gradients). The *_exact functions return the unquantized FP64 results that finite-difference
// tests check and that GPU results are compared with (within one quantization step).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/reference.hpp"

namespace jetforge::ref {

enum class GeluKind { tanh, erf };
double gelu(double x, GeluKind kind);
double gelu_grad(double x, GeluKind kind);  // d gelu / dx

std::vector<double> gelu_forward_exact(const HostBlockTensor& x, GeluKind kind);
std::vector<double> gelu_backward_exact(const HostBlockTensor& dy, const HostBlockTensor& x, GeluKind kind);  // dy * gelu'(x)
HostBlockTensor gelu_forward(const HostBlockTensor& x, GeluKind kind);
HostBlockTensor gelu_backward(const HostBlockTensor& dy, const HostBlockTensor& x, GeluKind kind, std::uint64_t seed);

// Per-row statistics of LayerNorm, saved by the forward pass for the backward pass.
struct RowStats {
  std::vector<float> mean, rstd;  // rstd = 1 / sqrt(var + eps), var the biased variance
};
RowStats row_stats(std::span<const double> x, std::int64_t rows, std::int64_t cols, double eps);

// y = (x - mean) * rstd * gamma + beta, row by row.
std::vector<double> layernorm_forward_exact(const HostBlockTensor& x, std::span<const float> gamma, std::span<const float> beta, double eps,
                                            RowStats* stats);
HostBlockTensor layernorm_forward(const HostBlockTensor& x, std::span<const float> gamma, std::span<const float> beta, double eps, RowStats* stats);

struct LayerNormGrads {
  std::vector<double> dx, dgamma, dbeta;
};
LayerNormGrads layernorm_backward_exact(const HostBlockTensor& dy, const HostBlockTensor& x, const RowStats& stats, std::span<const float> gamma);

// Residual stream r (FP32, rows x cols) += dequantize(x); returns the INT8 copy of the new stream (nearest) and
// the LayerNorm statistics of its rows, computed in the same pass.
struct ResidualOut {
  HostBlockTensor q;
  RowStats stats;
};
ResidualOut residual_add(std::vector<float>& r, const HostBlockTensor& x, double eps);

// Dropout: y = x * keep / (1 - p), keep = dropout_keep(seed_key(seed), element index, p).
std::vector<double> dropout_exact(const HostBlockTensor& x, double p, std::uint64_t seed);
// The INT8 operator, forward and backward alike: dropped codes 0, kept codes unchanged, block scales / (1 - p): exact.
HostBlockTensor dropout(const HostBlockTensor& x, double p, std::uint64_t seed);

// Quantizes FP64 results per block (as FP32, the precision kernels compute in).
HostBlockTensor quantize_exact(std::span<const double> y, std::int64_t rows, std::int64_t cols, gen::Rounding rounding, std::uint64_t seed);

// Softmax cross-entropy of rows x padded_vocab logits over their first `vocab` columns: per-row losses and the
// gradient of grad_scale * sum(losses) (0 in the padding columns and in rows whose target is negative).
struct CrossEntropy {
  std::vector<double> losses, grads;
};
CrossEntropy cross_entropy(std::span<const float> logits, std::int64_t rows, std::int64_t padded_vocab, std::int64_t vocab, std::span<const int> targets,
                           double grad_scale);

}  // namespace jetforge::ref
