#include "runtime/embedding.hpp"

#include <algorithm>
#include <numeric>
#include <string>

#include "generator/families.hpp"
#include "runtime/require.hpp"
#include "templates/embedding.cuh"

namespace jetforge {

TokenGroups TokenGroups::of(std::span<const int> batch_tokens) {
  TokenGroups g;
  g.rows.resize(batch_tokens.size());
  std::iota(g.rows.begin(), g.rows.end(), 0);
  std::stable_sort(g.rows.begin(), g.rows.end(), [&](int a, int b) { return batch_tokens[std::size_t(a)] < batch_tokens[std::size_t(b)]; });
  for (std::size_t i = 0; i < g.rows.size(); ++i) {
    const int token = batch_tokens[std::size_t(g.rows[i])];
    if (g.tokens.empty() || g.tokens.back() != token) g.tokens.push_back(token), g.offsets.push_back(int(i));
  }
  g.offsets.push_back(int(g.rows.size()));
  return g;
}

namespace {
DeviceBuffer upload_ints(const std::vector<int>& v) {
  DeviceBuffer b(std::max<std::size_t>(v.size(), 1) * 4);
  if (!v.empty()) b.upload(v.data(), v.size() * 4);
  return b;
}

void check_shape(const char* op, const EmbeddingShape& s) {
  require(s.batch > 0 && s.tokens > 0 && s.channels > 0, [&] { return std::string(op) + ": batch, tokens and channels must be positive"; });
  require(s.channels % 4 == 0, [&] { return std::string(op) + ": channels=" + std::to_string(s.channels) + " must be a multiple of 4"; });
  require(s.tokens <= s.max_positions,
          [&] { return std::string(op) + ": " + std::to_string(s.tokens) + " tokens per sequence exceed the " + std::to_string(s.max_positions) + " positions of wpe"; });
}
}  // namespace

DeviceTokenGroups::DeviceTokenGroups(const TokenGroups& g)
    : tokens(upload_ints(g.tokens)), offsets(upload_ints(g.offsets)), rows(upload_ints(g.rows)), groups(std::int64_t(g.tokens.size())) {}

void embedding_forward(Context& ctx, const EmbeddingShape& s, CUdeviceptr tokens, CUdeviceptr wte, CUdeviceptr wpe, CUdeviceptr out, CUstream stream,
                       const EmbeddingStatsOut* stats) {
  const char* op = "embedding_forward";
  check_shape(op, s);
  EmbeddingParams p{};
  if (stats) {
    require(stats->mean && stats->rstd, [&] { return std::string(op) + ": the statistics need mean and rstd"; });
    require(stats->eps > 0.0f, [&] { return std::string(op) + ": eps must be positive"; });
    require(s.channels % 32 == 0, [&] {
      return std::string(op) + ": the LayerNorm statistics are summed over 32-column blocks; channels=" + std::to_string(s.channels) + " is not a multiple of 32";
    });
    p.mean = reinterpret_cast<float*>(stats->mean), p.rstd = reinterpret_cast<float*>(stats->rstd), p.eps = stats->eps;
  }
  p.tokens = reinterpret_cast<const int*>(tokens), p.wte = reinterpret_cast<const float*>(wte), p.wpe = reinterpret_cast<const float*>(wpe);
  p.out = reinterpret_cast<float*>(out);
  p.rows = s.batch * s.tokens, p.tokens_per_sequence = s.tokens, p.channels = s.channels;
  const gen::EmbeddingSpec spec{gen::EmbeddingKernel::forward, 256};
  const std::int64_t rows_per_cta = spec.threads() / 32;  // a warp per row
  ctx.kernel(spec).launch(unsigned((p.rows + rows_per_cta - 1) / rows_per_cta), p, stream);
}

void embedding_backward(Context& ctx, const EmbeddingShape& s, const DeviceTokenGroups& groups, CUdeviceptr d_out, CUdeviceptr d_wte, CUdeviceptr d_wpe,
                        CUstream stream) {
  check_shape("embedding_backward", s);
  EmbeddingParams p{};
  p.d_out = reinterpret_cast<const float*>(d_out), p.d_wte = reinterpret_cast<float*>(d_wte), p.d_wpe = reinterpret_cast<float*>(d_wpe);
  p.group_tokens = reinterpret_cast<const int*>(groups.tokens.get()), p.group_offsets = reinterpret_cast<const int*>(groups.offsets.get());
  p.group_rows = reinterpret_cast<const int*>(groups.rows.get());
  p.rows = s.batch * s.tokens, p.tokens_per_sequence = s.tokens, p.channels = s.channels, p.groups = groups.groups;
  ctx.kernel(gen::EmbeddingSpec{gen::EmbeddingKernel::backward_tokens, 256}).launch(unsigned(groups.groups), p, stream);
  ctx.kernel(gen::EmbeddingSpec{gen::EmbeddingKernel::backward_positions, 256}).launch(unsigned(s.tokens), p, stream);
}

namespace ref {

std::vector<double> embedding_forward(const EmbeddingShape& s, std::span<const int> tokens, std::span<const float> wte, std::span<const float> wpe) {
  std::vector<double> out(std::size_t(s.batch * s.tokens * s.channels));
  for (std::int64_t r = 0; r < s.batch * s.tokens; ++r)
    for (std::int64_t c = 0; c < s.channels; ++c)
      out[std::size_t(r * s.channels + c)] =
          double(wte[std::size_t(tokens[std::size_t(r)] * s.channels + c)]) + double(wpe[std::size_t(r % s.tokens * s.channels + c)]);
  return out;
}

void embedding_backward(const EmbeddingShape& s, std::span<const int> tokens, std::span<const double> d_out, std::vector<double>& d_wte,
                        std::vector<double>& d_wpe) {
  for (std::int64_t r = 0; r < s.batch * s.tokens; ++r)
    for (std::int64_t c = 0; c < s.channels; ++c) {
      const double g = d_out[std::size_t(r * s.channels + c)];
      d_wte[std::size_t(tokens[std::size_t(r)] * s.channels + c)] += g;
      d_wpe[std::size_t(r % s.tokens * s.channels + c)] += g;
    }
}

}  // namespace ref

}  // namespace jetforge
