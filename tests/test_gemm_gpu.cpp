// Per-block INT8 GEMM against the FP64 reference over the dequantized operands, on fresh random operands whose
// block magnitudes span 1e-4 .. 1e4, outputs poisoned before each run. Large shapes are checked on a random
// sample of elements (plus the last row and column, where tail tiles are).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "runtime/gemm.hpp"
#include "testing.hpp"

using namespace jetforge;
using gen::Rounding;

namespace {

struct Problem {
  std::int64_t m, n, k;
};

struct Operands {
  ref::HostBlockTensor a, b;
};

Operands make_operands(const Problem& p, int group, std::uint64_t seed) {
  const auto xa = testing::random_blocks(p.m, p.k, 32, seed);
  const auto xb = testing::random_blocks(p.n, p.k, 32, seed + 1);
  return {ref::quantize(xa, p.m, p.k, 32, Rounding::nearest, 0, group), ref::quantize(xb, p.n, p.k, 32, Rounding::nearest, 0, group)};
}

// The (i, j) pairs checked: every element of small outputs, else a random sample plus the last row and column.
std::vector<std::pair<std::int64_t, std::int64_t>> checked_elements(const Problem& p, std::uint64_t seed) {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  if (p.m * p.n * p.k <= (std::int64_t(1) << 27)) {
    for (std::int64_t i = 0; i < p.m; ++i)
      for (std::int64_t j = 0; j < p.n; ++j) out.emplace_back(i, j);
    return out;
  }
  std::mt19937_64 rng(seed);
  for (int s = 0; s < 1500; ++s) out.emplace_back(std::int64_t(rng() % std::uint64_t(p.m)), std::int64_t(rng() % std::uint64_t(p.n)));
  for (std::int64_t j = 0; j < p.n; j += 7) out.emplace_back(p.m - 1, j);
  for (std::int64_t i = 0; i < p.m; i += 7) out.emplace_back(i, p.n - 1);
  return out;
}

bool is_large(const Problem& p) { return p.m * p.n * p.k > (std::int64_t(1) << 33); }

const Problem kProblems[] = {{32, 32, 32}, {128, 128, 128}, {96, 160, 224}, {544, 800, 1056}, {256, 384, 2048}, {4096, 4096, 4096}, {8192, 8192, 8192}};

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("gemm FP32/BF16 output matches the FP64 reference (both code paths, every K-group, bias, accumulate)") {
    Context& ctx = testing::gpu();
    std::uint64_t seed = 500;
    for (const bool portable : {false, true})
    for (const Problem p : kProblems)
      for (int group : {32, 64, 128}) {
        if (p.k % group != 0 || (is_large(p) && group == 64)) continue;  // large shapes: K-groups 32 and 128 only
        CAPTURE(p.m);
        CAPTURE(p.n);
        CAPTURE(p.k);
        CAPTURE(group);
        CAPTURE(portable);
        GemmKernelChoice path;
        path.portable = portable;
        const auto ops = make_operands(p, group, seed += 2);
        BlockTensor a = testing::upload(ops.a), b = testing::upload(ops.b);
        const auto elements = checked_elements(p, seed);
        std::vector<double> want(elements.size());
        for (size_t e = 0; e < elements.size(); ++e) want[e] = ref::gemm_element(ops.a, ops.b, elements[e].first, elements[e].second);

        // FP32 out, accumulated onto random values, plus a bias.
        std::vector<float> c0(size_t(p.m * p.n)), bias(size_t(p.n));
        std::mt19937 rng{static_cast<unsigned>(seed)};
        std::normal_distribution<float> normal(0, 1);
        for (auto& v : c0) v = normal(rng);
        for (auto& v : bias) v = normal(rng);
        DenseTensor c(p.m, p.n, DType::f32);
        DeviceBuffer bias_d(bias.size() * 4);
        bias_d.upload(bias.data(), bias.size() * 4);
        c.buffer().upload(c0.data(), c0.size() * 4);
        gemm(ctx, a.ref(), b.ref(), c.ref(), GemmOptions{Rounding::nearest, 0, bias_d.get(), true, path}, nullptr);
        std::vector<float> got(c0.size());
        c.buffer().download(got.data(), got.size() * 4);
        double err2 = 0, ref2 = 0;
        for (size_t e = 0; e < elements.size(); ++e) {
          const auto [i, j] = elements[e];
          const double r = want[e] + c0[size_t(i * p.n + j)] + bias[size_t(j)];
          err2 += (got[size_t(i * p.n + j)] - r) * (got[size_t(i * p.n + j)] - r);
          ref2 += r * r;
        }
        CHECK(std::sqrt(err2 / ref2) <= 1e-5);

        // BF16 out, poisoned first.
        DenseTensor cb(p.m, p.n, DType::bf16);
        cb.buffer().fill_bytes(testing::kNanBytes);
        gemm(ctx, a.ref(), b.ref(), cb.ref(), GemmOptions{Rounding::nearest, 0, 0, false, path}, nullptr);
        std::vector<std::uint16_t> gotb(size_t(p.m * p.n));
        cb.buffer().download(gotb.data(), gotb.size() * 2);
        // Within BF16's rounding (half an ulp: 2^-9 relative) of the exact value, plus the FP32 accumulation error
        // that the FP32 check allows (1e-5 of the RMS), which dominates where the dot product cancels.
        double want2 = 0;
        for (const double w : want) want2 += w * w;
        const double accumulation_tol = 1e-5 * std::sqrt(want2 / double(want.size()));
        size_t bad = 0;
        for (size_t e = 0; e < elements.size(); ++e) {
          const auto [i, j] = elements[e];
          const double v = ref::from_bf16(std::span(&gotb[size_t(i * p.n + j)], 1))[0];
          bad += !(std::fabs(v - want[e]) <= std::fabs(want[e]) * (1.0 / 256) * (1 + 1e-6) + accumulation_tol);
        }
        CHECK(bad == 0);
      }
  }

  TEST_CASE("gemm INT8 output is within one quantization step of the FP64 reference (both code paths, every K-group, nearest with a bias, stochastic)") {
    Context& ctx = testing::gpu();
    std::uint64_t seed = 900;
    for (const bool portable : {false, true})
    for (const Problem p : kProblems)
      for (int group : {32, 64, 128})
        for (Rounding rounding : {Rounding::nearest, Rounding::stochastic}) {
          if (p.k % group != 0 || (is_large(p) && group != 32)) continue;  // large shapes: K-group 32 only
          CAPTURE(p.m);
          CAPTURE(p.n);
          CAPTURE(p.k);
          CAPTURE(group);
          CAPTURE(gen::enum_name(rounding));
          CAPTURE(portable);
          GemmKernelChoice path;
          path.portable = portable;
          if (group == 64) path.overlap = 2;  // the Hopper path's two-scratch fold (its default at 64, overlap 0, is the FP32 test's)
          const auto ops = make_operands(p, group, seed += 2);
          BlockTensor a = testing::upload(ops.a), b = testing::upload(ops.b), c(p.m, p.n);
          // The bias joins the values before their block scales: on the nearest-rounding runs, N(0, 10) per column.
          const bool with_bias = rounding == Rounding::nearest;
          const auto bias = testing::random_vector(std::size_t(p.n), unsigned(seed), 10.0f);
          DeviceBuffer bias_d(bias.size() * 4);
          bias_d.upload(bias.data(), bias.size() * 4);
          testing::poison(c);
          gemm(ctx, a.ref(), b.ref(), c.ref(), GemmOptions{rounding, seed, with_bias ? bias_d.get() : 0, false, path}, nullptr);
          const auto got = testing::download(c);
          const auto elements = checked_elements(p, seed);
          size_t bad = 0;
          double worst = 0;
          for (const auto& [i, j] : elements) {
            const double r = ref::gemm_element(ops.a, ops.b, i, j) + (with_bias ? bias[std::size_t(j)] : 0.0), s = got.scale_at(i, j);
            const double steps = std::fabs(got.value(i, j) - r) / s;  // NaN (poison) fails below
            worst = std::max(worst, steps);
            bad += !(steps <= (rounding == Rounding::nearest ? 0.5 + 1e-3 : 1.0 + 1e-3));
          }
          MESSAGE("worst error " << worst << " steps over " << elements.size() << " elements");
          CHECK(bad == 0);
          for (float s : got.scales) CHECK((s > 0 && std::isfinite(s)));
        }
  }

  TEST_CASE("Hopper kernel variants give bit-identical results: multicast pairs, a CTA per tile, folds overlapped (column halves, two scratches) or not, bn 64, staged epilogues (INT8 and FP32 out, tails)") {
    Context& ctx = testing::gpu();
    // Each variant against the default choice: the per-element sequence of folds is the same in all of them.
    std::vector<std::pair<std::string, GemmKernelChoice>> variants;
    for (int bn : {128, 64})
      for (int overlap : {0, 1, 2}) {
        GemmKernelChoice c;
        c.bn = bn, c.overlap = overlap;
        variants.emplace_back("bn=" + std::to_string(bn) + ",overlap=" + std::to_string(overlap), c);
      }
    variants.emplace_back("cluster=2", GemmKernelChoice{});
    variants.back().second.cluster = 2;
    // The default walks its tiles in a persistent loop; a CTA per tile, with and without a cluster, must agree.
    for (int cluster : {1, 2}) {
      variants.emplace_back("persistent=0,cluster=" + std::to_string(cluster), GemmKernelChoice{});
      variants.back().second.persistent = 0, variants.back().second.cluster = cluster;
    }
    // The epilogue warps store what the consumers would have: with each tile size, with a cluster, a CTA per tile.
    for (int bn : {128, 64})
      for (int cluster : {1, 2})
        for (int persistent : {1, 0}) {
          GemmKernelChoice c;
          c.bn = bn, c.cluster = cluster, c.persistent = persistent, c.epilogue = gen::GemmEpilogue::staged;
          variants.emplace_back("epilogue=staged,bn=" + std::to_string(bn) + ",cluster=" + std::to_string(cluster) + ",persistent=" + std::to_string(persistent), c);
        }
    for (const Problem p : {Problem{544, 800, 1024}, Problem{384, 256, 512}, Problem{4096, 4096, 4096}, Problem{4128, 4160, 512}})  // the last: many tiles per CTA, with tails
      for (int group : {32, 128}) {
        CAPTURE(p.m);
        CAPTURE(group);
        const auto ops = make_operands(p, group, 1500 + std::uint64_t(group));
        BlockTensor a = testing::upload(ops.a), b = testing::upload(ops.b);
        const auto bias = testing::random_vector(std::size_t(p.n), 7u, 10.0f), c0 = testing::random_vector(std::size_t(p.m * p.n), 8u, 1.0f);
        DeviceBuffer bias_d(bias.size() * 4);
        bias_d.upload(bias.data(), bias.size() * 4);
        // Every epilogue: FP32 out, FP32 accumulated onto c0 with the bias, BF16 with the bias, INT8 nearest with the bias
        // and INT8 stochastic.
        struct Result {
          std::vector<float> dense, accumulated;
          std::vector<std::uint16_t> bf16;
          ref::HostBlockTensor nearest, stochastic;
        };
        auto run = [&](GemmKernelChoice choice) {
          choice.split_k = 1;  // the default splits K of some FP32 problems here; splitting has its own test below
          Result r;
          auto dense = [&](DType type, bool with_bias, bool accumulate, auto& host) {
            DenseTensor c(p.m, p.n, type);
            if (accumulate) c.buffer().upload(c0.data(), c0.size() * 4);
            else c.buffer().fill_bytes(testing::kNanBytes);
            gemm(ctx, a.ref(), b.ref(), c.ref(), GemmOptions{Rounding::nearest, 0, with_bias ? bias_d.get() : 0, accumulate, choice}, nullptr);
            host.resize(size_t(p.m * p.n));
            c.buffer().download(host.data(), host.size() * sizeof(host[0]));
          };
          dense(DType::f32, false, false, r.dense);
          dense(DType::f32, true, true, r.accumulated);
          dense(DType::bf16, true, false, r.bf16);
          auto codes = [&](Rounding rounding, bool with_bias) {
            BlockTensor q(p.m, p.n);
            testing::poison(q);
            gemm(ctx, a.ref(), b.ref(), q.ref(), GemmOptions{rounding, 3, with_bias ? bias_d.get() : 0, false, choice}, nullptr);
            return testing::download(q);
          };
          r.nearest = codes(Rounding::nearest, true);
          r.stochastic = codes(Rounding::stochastic, false);
          return r;
        };
        const auto same_bits = [](const auto& x, const auto& y) { return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(x[0])) == 0; };
        const Result base = run(GemmKernelChoice{});
        CHECK(std::isfinite(base.dense[0]));
        CHECK(std::isfinite(base.accumulated[0]));
        for (const auto& [name, choice] : variants) {
          if (choice.overlap == 2 && group > 64) continue;  // two scratches need two K-groups per slice
          CAPTURE(name);
          const Result r = run(choice);
          CHECK(same_bits(base.dense, r.dense));
          CHECK(same_bits(base.accumulated, r.accumulated));
          CHECK(same_bits(base.bf16, r.bf16));
          for (auto [want, got] : {std::pair{&base.nearest, &r.nearest}, std::pair{&base.stochastic, &r.stochastic}}) {
            CHECK(want->codes == got->codes);
            CHECK(same_bits(want->scales, got->scales));
          }
        }
      }
  }

  TEST_CASE("split-K (Hopper, FP32 output): within the FP32 bound of the FP64 reference with a bias and accumulation, the same bits on every run, empty K ranges") {
    Context& ctx = testing::gpu();
    std::uint64_t seed = 1700;
    // K slices of 128: 9 with a tail, 16, 64 and 1 (split 8 leaves seven ranges empty); few tiles, as in a weight gradient.
    for (const Problem p : {Problem{544, 800, 1056}, Problem{256, 384, 2048}, Problem{768, 768, 8192}, Problem{128, 160, 128}})
      for (int group : {32, 128})
        for (int split : {2, 3, 4, 8}) {
          if (p.k % group != 0) continue;
          CAPTURE(p.m);
          CAPTURE(p.n);
          CAPTURE(p.k);
          CAPTURE(group);
          CAPTURE(split);
          const auto ops = make_operands(p, group, seed += 2);
          BlockTensor a = testing::upload(ops.a), b = testing::upload(ops.b);
          const auto elements = checked_elements(p, seed);
          const auto bias = testing::random_vector(std::size_t(p.n), unsigned(seed), 1.0f), c0 = testing::random_vector(std::size_t(p.m * p.n), unsigned(seed) + 1, 1.0f);
          DeviceBuffer bias_d(bias.size() * 4);
          bias_d.upload(bias.data(), bias.size() * 4);
          GemmKernelChoice choice;
          choice.split_k = split;
          std::vector<float> got[2];
          for (auto& out : got) {
            DenseTensor c(p.m, p.n, DType::f32);
            c.buffer().upload(c0.data(), c0.size() * 4);
            gemm(ctx, a.ref(), b.ref(), c.ref(), GemmOptions{Rounding::nearest, 0, bias_d.get(), true, choice}, nullptr);
            out.resize(c0.size());
            c.buffer().download(out.data(), out.size() * 4);
          }
          CHECK(std::memcmp(got[0].data(), got[1].data(), got[0].size() * 4) == 0);
          double err2 = 0, ref2 = 0;
          for (const auto& [i, j] : elements) {
            const double r = ref::gemm_element(ops.a, ops.b, i, j) + c0[size_t(i * p.n + j)] + bias[size_t(j)], e = got[0][size_t(i * p.n + j)] - r;
            err2 += e * e, ref2 += r * r;
          }
          CHECK(std::sqrt(err2 / ref2) <= 1e-5);
        }
  }

  TEST_CASE("the FP32-adder fold gives bit-identical results to the converter fold (both paths)") {
    Context& ctx = testing::gpu();
    const Problem p{544, 800, 1024};
    for (const bool portable : {false, true})
      for (int group : {32, 128}) {
        CAPTURE(portable);
        CAPTURE(group);
        const auto ops = make_operands(p, group, 1300 + std::uint64_t(group));
        BlockTensor a = testing::upload(ops.a), b = testing::upload(ops.b);
        std::vector<float> out[2];
        for (int f = 0; f < 2; ++f) {
          GemmOptions o;
          o.kernel.portable = portable;
          o.kernel.fold = f == 0 ? gen::GemmFold::convert : gen::GemmFold::magic;
          DenseTensor c(p.m, p.n, DType::f32);
          c.buffer().fill_bytes(testing::kNanBytes);
          gemm(ctx, a.ref(), b.ref(), c.ref(), o, nullptr);
          out[f].resize(size_t(p.m * p.n));
          c.buffer().download(out[f].data(), out[f].size() * 4);
        }
        CHECK(std::memcmp(out[0].data(), out[1].data(), out[0].size() * 4) == 0);
        CHECK(std::isfinite(out[0][0]));
      }
  }

  TEST_CASE("linear layer: forward, backward data and backward weight agree with their GEMM definitions") {
    Context& ctx = testing::gpu();
    const std::int64_t tokens = 256, in = 384, out = 160;
    const auto x = ref::quantize(testing::random_blocks(tokens, in, 32, 11), tokens, in, 32, Rounding::nearest, 0);
    const auto w = ref::quantize(testing::random_blocks(out, in, 32, 12), out, in, 32, Rounding::nearest, 0);
    const auto dy = ref::quantize(testing::random_blocks(tokens, out, 32, 13), tokens, out, 32, Rounding::nearest, 0);
    BlockTensor xd = testing::upload(x), wd = testing::upload(w), dyd = testing::upload(dy);
    BlockTensor wt = testing::upload(ref::transpose(w)), dyt = testing::upload(ref::transpose(dy)), xt = testing::upload(ref::transpose(x));

    DenseTensor y(tokens, out, DType::f32);
    y.buffer().fill_bytes(testing::kNanBytes);
    linear_forward(ctx, xd.ref(), wd.ref(), y.ref(), GemmOptions{}, nullptr);
    BlockTensor dx(tokens, in);
    testing::poison(dx);
    linear_backward_data(ctx, dyd.ref(), wt.ref(), dx.ref(), 77, nullptr);
    DenseTensor dw(out, in, DType::f32);
    dw.buffer().fill_bytes(testing::kNanBytes);
    linear_backward_weight(ctx, dyt.ref(), xt.ref(), dw.ref(), false, nullptr);

    std::vector<float> yh(size_t(tokens * out)), dwh(size_t(out * in));
    y.buffer().download(yh.data(), yh.size() * 4);
    dw.buffer().download(dwh.data(), dwh.size() * 4);
    const auto dxh = testing::download(dx);
    double e_y = 0, n_y = 0, e_w = 0, n_w = 0;
    size_t bad_dx = 0;
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t o = 0; o < out; ++o) {
        double r = 0;
        for (std::int64_t i = 0; i < in; ++i) r += x.value(t, i) * w.value(o, i);
        e_y += std::pow(yh[size_t(t * out + o)] - r, 2), n_y += r * r;
      }
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t i = 0; i < in; ++i) {
        double r = 0;  // dX = dY W
        for (std::int64_t o = 0; o < out; ++o) r += dy.value(t, o) * w.value(o, i);
        bad_dx += !(std::fabs(dxh.value(t, i) - r) <= dxh.scale_at(t, i) * (1 + 1e-3));
      }
    for (std::int64_t o = 0; o < out; ++o)
      for (std::int64_t i = 0; i < in; ++i) {
        double r = 0;  // dW = dY^T X
        for (std::int64_t t = 0; t < tokens; ++t) r += dy.value(t, o) * x.value(t, i);
        e_w += std::pow(dwh[size_t(o * in + i)] - r, 2), n_w += r * r;
      }
    CHECK(std::sqrt(e_y / n_y) <= 1e-5);
    CHECK(bad_dx == 0);
    CHECK(std::sqrt(e_w / n_w) <= 1e-5);
  }

  TEST_CASE("gemm rejects mismatched operands with clear messages") {
    Context& ctx = testing::gpu();
    BlockTensor a(64, 96), b(32, 64), c(64, 32), b2(32, 96, 32, 96);
    CHECK_THROWS_WITH_AS(gemm(ctx, a.ref(), b.ref(), c.ref(), {}, nullptr), doctest::Contains("both must have the same K"), std::invalid_argument);
    BlockTensor b3(32, 96);
    DenseTensor wrong(64, 64, DType::f32);
    CHECK_THROWS_WITH_AS(gemm(ctx, a.ref(), b3.ref(), wrong.ref(), {}, nullptr), doctest::Contains("C must be 64x32"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(gemm(ctx, a.ref(), b2.ref(), c.ref(), {}, nullptr), doctest::Contains("K-groups 32 and 96"), std::invalid_argument);
    DenseTensor cb(64, 32, DType::bf16);
    CHECK_THROWS_WITH_AS(gemm(ctx, a.ref(), b3.ref(), cb.ref(), GemmOptions{Rounding::nearest, 0, 0, true, {}}, nullptr),
                         doctest::Contains("accumulate needs FP32 output"), std::invalid_argument);
  }
}
