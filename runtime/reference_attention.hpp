// CPU reference of the attention core (templates/attention.cuh) in FP64, on tensors in the canonical
// [batch, heads, T, d] layout: the GPU tests compare with it, and its backward is checked against finite
// differences of its forward.
#pragma once
#include <vector>

namespace jetforge::ref {

struct AttentionShape {
  int batch, heads, tokens, head_dim;
  bool causal;
  std::size_t elements() const { return std::size_t(batch) * heads * tokens * head_dim; }
  std::size_t rows() const { return std::size_t(batch) * heads * tokens; }
};

struct AttentionForward {
  std::vector<double> o;    // [batch, heads, T, d]
  std::vector<double> lse;  // [batch, heads, T]: log of each row's softmax denominator
};
// O = softmax(Q K^T / sqrt(d)) V, keys after the query masked out when causal.
AttentionForward attention_forward(const AttentionShape& s, const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v);

struct AttentionGrads {
  std::vector<double> dq, dk, dv;
};
AttentionGrads attention_backward(const AttentionShape& s, const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
                                  const std::vector<double>& d_o);

}  // namespace jetforge::ref
