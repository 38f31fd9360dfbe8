#include "runtime/reference_attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace jetforge::ref {

namespace {

// Row i of head (b, h) of a [batch, heads, T, d] tensor.
const double* row(const std::vector<double>& x, const AttentionShape& s, int bh, int i) {
  return x.data() + (std::size_t(bh) * s.tokens + i) * s.head_dim;
}
double* row(std::vector<double>& x, const AttentionShape& s, int bh, int i) { return x.data() + (std::size_t(bh) * s.tokens + i) * s.head_dim; }

double dot(const double* a, const double* b, int n) {
  double sum = 0;
  for (int e = 0; e < n; ++e) sum += a[e] * b[e];
  return sum;
}

// Softmax probabilities of one head (T x T, zero where masked) and each row's log-sum-exp.
void probabilities(const AttentionShape& s, const std::vector<double>& q, const std::vector<double>& k, int bh, std::vector<double>& p,
                   double* lse) {
  const double scale = 1.0 / std::sqrt(double(s.head_dim));
  p.assign(std::size_t(s.tokens) * s.tokens, 0.0);
  for (int i = 0; i < s.tokens; ++i) {
    const int keys = s.causal ? i + 1 : s.tokens;
    double m = -std::numeric_limits<double>::infinity();
    for (int j = 0; j < keys; ++j) m = std::max(m, p[std::size_t(i) * s.tokens + j] = dot(row(q, s, bh, i), row(k, s, bh, j), s.head_dim) * scale);
    double sum = 0;
    for (int j = 0; j < keys; ++j) sum += std::exp(p[std::size_t(i) * s.tokens + j] - m);
    for (int j = 0; j < keys; ++j) p[std::size_t(i) * s.tokens + j] = std::exp(p[std::size_t(i) * s.tokens + j] - m) / sum;
    if (lse) lse[i] = m + std::log(sum);
  }
}

}  // namespace

AttentionForward attention_forward(const AttentionShape& s, const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v) {
  AttentionForward out{std::vector<double>(s.elements(), 0.0), std::vector<double>(s.rows())};
  std::vector<double> p;
  for (int bh = 0; bh < s.batch * s.heads; ++bh) {
    probabilities(s, q, k, bh, p, out.lse.data() + std::size_t(bh) * s.tokens);
    for (int i = 0; i < s.tokens; ++i)
      for (int j = 0; j < s.tokens; ++j)
        for (int e = 0; e < s.head_dim; ++e) row(out.o, s, bh, i)[e] += p[std::size_t(i) * s.tokens + j] * row(v, s, bh, j)[e];
  }
  return out;
}

AttentionGrads attention_backward(const AttentionShape& s, const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
                                  const std::vector<double>& d_o) {
  const double scale = 1.0 / std::sqrt(double(s.head_dim));
  AttentionGrads g{std::vector<double>(s.elements(), 0.0), std::vector<double>(s.elements(), 0.0), std::vector<double>(s.elements(), 0.0)};
  std::vector<double> p;
  for (int bh = 0; bh < s.batch * s.heads; ++bh) {
    probabilities(s, q, k, bh, p, nullptr);
    for (int i = 0; i < s.tokens; ++i) {
      // dS_ij = P_ij (dP_ij - sum_l P_il dP_il), dP_ij = dO_i . V_j: the softmax Jacobian applied to dP.
      std::vector<double> dp(std::size_t(s.tokens));
      double weighted = 0;
      for (int j = 0; j < s.tokens; ++j) {
        dp[std::size_t(j)] = dot(row(d_o, s, bh, i), row(v, s, bh, j), s.head_dim);
        weighted += p[std::size_t(i) * s.tokens + j] * dp[std::size_t(j)];
      }
      for (int j = 0; j < s.tokens; ++j) {
        const double pij = p[std::size_t(i) * s.tokens + j], ds = pij * (dp[std::size_t(j)] - weighted) * scale;
        for (int e = 0; e < s.head_dim; ++e) {
          row(g.dv, s, bh, j)[e] += pij * row(d_o, s, bh, i)[e];
          row(g.dq, s, bh, i)[e] += ds * row(k, s, bh, j)[e];
          row(g.dk, s, bh, j)[e] += ds * row(q, s, bh, i)[e];
        }
      }
    }
  }
  return g;
}

}  // namespace jetforge::ref
