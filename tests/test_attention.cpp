// Attention core: the FP64 reference's gradients against finite differences of its forward (CPU), and the GPU
// kernels against the reference on random BF16 data, both layouts, causal or not (skipped without a GPU).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <variant>

#include "generator/families.hpp"
#include "runtime/attention.hpp"
#include "runtime/reference_attention.hpp"
#include "runtime/tensor.hpp"
#include "testing.hpp"
#include "tuner/tune.hpp"

using namespace jetforge;

namespace {

// Values drawn from N(0, 1), rounded to BF16 so that the reference sees exactly what the GPU reads.
std::vector<double> random_bf16_values(std::size_t n, unsigned seed) {
  const auto v = testing::as_stored(testing::random_vector(n, seed), DType::bf16);
  return {v.begin(), v.end()};
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// max |got - want| / max |want|; infinite where either has a value that is not finite (a poisoned output left
// unwritten, by the kernel under test or by the GPU reference).
double relative_max_error(const std::vector<double>& got, const std::vector<double>& want) {
  double e = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(want[i])) return INFINITY;
    e = std::max(e, std::fabs(got[i] - want[i]));
  }
  return e / max_abs(want);
}

}  // namespace

TEST_SUITE("reference") {
  TEST_CASE("attention reference: gradients match finite differences of the forward pass, causal or not") {
    for (const bool causal : {true, false}) {
      CAPTURE(causal);
      const ref::AttentionShape s{1, 2, 5, 4, causal};
      const auto q = random_bf16_values(s.elements(), 1), k = random_bf16_values(s.elements(), 2), v = random_bf16_values(s.elements(), 3);
      const auto w = random_bf16_values(s.elements(), 4);  // L = sum(O * w), so dO = w
      auto loss = [&](const std::vector<double>& qq, const std::vector<double>& kk, const std::vector<double>& vv) {
        const auto o = ref::attention_forward(s, qq, kk, vv).o;
        double l = 0;
        for (std::size_t i = 0; i < o.size(); ++i) l += o[i] * w[i];
        return l;
      };
      const auto g = ref::attention_backward(s, q, k, v, w);
      const double h = 1e-6;
      for (int which = 0; which < 3; ++which) {
        const auto& grad = which == 0 ? g.dq : which == 1 ? g.dk : g.dv;
        double worst = 0;
        for (std::size_t i = 0; i < s.elements(); ++i) {
          auto plus = std::vector<std::vector<double>>{q, k, v}, minus = plus;
          plus[std::size_t(which)][i] += h, minus[std::size_t(which)][i] -= h;
          const double fd = (loss(plus[0], plus[1], plus[2]) - loss(minus[0], minus[1], minus[2])) / (2 * h);
          worst = std::max(worst, std::fabs(fd - grad[i]));
        }
        CAPTURE(which);
        CHECK(worst < 1e-7 * std::max(1.0, max_abs(grad)));
      }
      // A causal first row sees only its own key: O_0 = V_0.
      if (causal) {
        const auto o = ref::attention_forward(s, q, k, v).o;
        for (int e = 0; e < s.head_dim; ++e) CHECK(o[std::size_t(e)] == doctest::Approx(v[std::size_t(e)]).epsilon(1e-12));
      }
    }
  }
}

namespace {

// One attention problem on the GPU in a given layout: Q, K, V (and their gradients) placed by the layout's
// qkv strides, O and dO by its o strides.
struct DeviceAttention {
  AttentionLayout layout;
  bool packed;
  DeviceBuffer qkv, grads, o, d_o, lse, delta;
  CUdeviceptr q() const { return qkv.get(); }
  CUdeviceptr k() const { return qkv.get() + offset(1); }
  CUdeviceptr v() const { return qkv.get() + offset(2); }
  CUdeviceptr grad(int which) const { return grads.get() + offset(which); }
  // Byte offset of tensor `which` (0 Q, 1 K, 2 V) in the shared buffers.
  std::size_t offset(int which) const {
    const std::size_t n = std::size_t(layout.batch) * layout.heads * layout.tokens * layout.head_dim;
    return 2 * std::size_t(which) * (packed ? std::size_t(layout.heads) * layout.head_dim : n);
  }
  std::size_t index(const AttentionStrides& s, int bh, int t, int d) const {
    return std::size_t(bh / layout.heads * s.batch + bh % layout.heads * s.head + i64(t) * s.token + d);
  }
  // Canonical [batch, heads, T, d] values <-> the layout's BF16 storage.
  void put(DeviceBuffer& buf, std::size_t byte_offset, const AttentionStrides& s, const std::vector<double>& x, std::size_t total) {
    std::vector<bf16> host(total);
    if (byte_offset) buf.download(host.data(), total * 2);  // keep the other tensors of a shared buffer
    for_each([&](std::size_t canonical, std::size_t at) { host[at + byte_offset / 2] = float_to_bf16(float(x[canonical])); }, s);
    buf.upload(host.data(), total * 2);
  }
  std::vector<double> get(const DeviceBuffer& buf, std::size_t byte_offset, const AttentionStrides& s, std::size_t total) const {
    std::vector<bf16> host(total);
    buf.download(host.data(), total * 2);
    std::vector<double> x(std::size_t(layout.batch) * layout.heads * layout.tokens * layout.head_dim);
    for_each([&](std::size_t canonical, std::size_t at) { x[canonical] = bf16_to_float(host[at + byte_offset / 2]); }, s);
    return x;
  }
  template <class F> void for_each(const F& f, const AttentionStrides& s) const {
    std::size_t canonical = 0;
    for (int bh = 0; bh < layout.batch * layout.heads; ++bh)
      for (int t = 0; t < layout.tokens; ++t)
        for (int d = 0; d < layout.head_dim; ++d) f(canonical++, index(s, bh, t, d));
  }
};

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("attention forward and backward (every tunable kernel) match the FP64 reference (both layouts, causal or not, head_dim 64 and 128)") {
    Context& ctx = testing::gpu();
    struct Case {
      int batch, heads, tokens, head_dim;
    };
    unsigned seed = 100;
    for (const Case c : {Case{2, 3, 128, 64}, Case{1, 2, 192, 128}, Case{1, 1, 64, 64}, Case{1, 2, 512, 64}, Case{1, 1, 448, 128}, Case{1, 2, 1024, 128}})
      for (const bool packed : {false, true})
        for (const bool causal : {true, false}) {
          CAPTURE(c.batch);
          CAPTURE(c.heads);
          CAPTURE(c.tokens);
          CAPTURE(c.head_dim);
          CAPTURE(packed);
          CAPTURE(causal);
          const ref::AttentionShape s{c.batch, c.heads, c.tokens, c.head_dim, causal};
          const auto q = random_bf16_values(s.elements(), seed++), k = random_bf16_values(s.elements(), seed++);
          const auto v = random_bf16_values(s.elements(), seed++), d_o = random_bf16_values(s.elements(), seed++);
          const auto layout = packed ? AttentionLayout::packed_qkv(c.batch, c.heads, c.tokens, c.head_dim)
                                     : AttentionLayout::separate(c.batch, c.heads, c.tokens, c.head_dim);
          const std::size_t n = s.elements(), qkv_total = 3 * n;
          DeviceAttention a{layout, packed, DeviceBuffer(qkv_total * 2), DeviceBuffer(qkv_total * 2), DeviceBuffer(n * 2), DeviceBuffer(n * 2),
                            DeviceBuffer(s.rows() * 4), DeviceBuffer(s.rows() * 4)};
          a.qkv.fill_bytes(0);
          a.put(a.qkv, a.offset(0), layout.qkv, q, qkv_total);
          a.put(a.qkv, a.offset(1), layout.qkv, k, qkv_total);
          a.put(a.qkv, a.offset(2), layout.qkv, v, qkv_total);
          a.put(a.d_o, 0, layout.o, d_o, n);
          a.grads.fill_bytes(testing::kNanBytes);

          // Every kernel the tuner may pick (pinned as its problem's choice): the portable ones, and the Hopper ones
          // where the GPU has them.
          const auto candidates = [&](gen::AttentionKernel kernel) {
            std::vector<std::string> keys = tuner::attention_candidates(kernel, c.head_dim, causal, gen::TargetLimits::for_arch("sm_80"));
            if (gen::AttentionSm90Spec::supports(ctx.limits())) {
              const auto hopper = tuner::attention_candidates(kernel, c.head_dim, causal, ctx.limits());
              keys.insert(keys.end(), hopper.begin(), hopper.end());
            }
            return keys;
          };
          const auto path_of = [](const AttentionChoice& choice) {
            return std::holds_alternative<gen::AttentionSpec>(choice) ? AttentionPath::portable : AttentionPath::automatic;
          };

          // The forward: each candidate, then the default; the backward below starts from its O.
          const auto want = ref::attention_forward(s, q, k, v);
          std::vector<std::optional<AttentionChoice>> choices;
          for (const auto& key : candidates(gen::AttentionKernel::forward)) choices.emplace_back(attention_choice(key));
          choices.emplace_back();  // the default
          const auto problem = attention_problem_signature(gen::AttentionKernel::forward, layout, causal);
          for (const auto& choice : choices) {
            if (choice) ctx.pin(problem, *choice);
            else ctx.unpin(problem);
            a.o.fill_bytes(testing::kNanBytes), a.lse.fill_bytes(testing::kNanBytes);
            attention_forward(ctx, layout, causal, a.q(), a.k(), a.v(), a.o.get(), a.lse.get(), nullptr, choice ? path_of(*choice) : AttentionPath::automatic);
            const double o_error = relative_max_error(a.get(a.o, 0, layout.o, n), want.o);
            std::vector<float> lse(s.rows());
            a.lse.download(lse.data(), lse.size() * 4);
            double lse_error = 0;
            for (std::size_t i = 0; i < lse.size(); ++i) lse_error = std::max(lse_error, std::fabs(lse[i] - want.lse[i]));
            const std::string name = choice ? std::visit([](const auto& spec) { return gen::canonical_key(spec); }, *choice) : "default";
            MESSAGE("forward (" << name << "): O max error " << o_error << " of max |O|, lse max error " << lse_error);
            CHECK(o_error <= 2e-2);
            CHECK(lse_error <= 1e-3);
          }

          // The backward from the GPU's own O (as training uses it): each pair of candidates (the i-th of the dK/dV and
          // of the dQ kernel's lists vary the same parameter), then the default of each path twice: the bits must repeat.
          const auto grads = ref::attention_backward(s, q, k, v, d_o);
          const std::vector<double>* want_grads[3] = {&grads.dq, &grads.dk, &grads.dv};
          const auto backward = [&](AttentionPath path) {
            a.grads.fill_bytes(testing::kNanBytes);
            attention_backward(ctx, layout, causal, a.q(), a.k(), a.v(), a.o.get(), a.lse.get(), a.d_o.get(), a.delta.get(), a.grad(0), a.grad(1), a.grad(2),
                               nullptr, path);
            std::vector<std::vector<double>> got;
            for (int which = 0; which < 3; ++which) got.push_back(a.get(a.grads, a.offset(which), layout.qkv, qkv_total));
            for (int which = 0; which < 3; ++which) {
              const double e = relative_max_error(got[std::size_t(which)], *want_grads[which]);
              MESSAGE("backward (" << std::string(path == AttentionPath::portable ? "portable" : "default") << "): d" << std::string(1, "qkv"[which])
                                   << " max error " << e << " of its max");
              CHECK(e <= 5e-2);
            }
            return got;
          };
          const auto kv_keys = candidates(gen::AttentionKernel::backward_kv), q_keys = candidates(gen::AttentionKernel::backward_q);
          REQUIRE(kv_keys.size() == q_keys.size());
          const auto kv_problem = attention_problem_signature(gen::AttentionKernel::backward_kv, layout, causal);
          const auto q_problem = attention_problem_signature(gen::AttentionKernel::backward_q, layout, causal);
          for (std::size_t i = 0; i < kv_keys.size(); ++i) {
            CAPTURE(kv_keys[i]);
            CAPTURE(q_keys[i]);
            const auto kv = attention_choice(kv_keys[i]);
            ctx.pin(kv_problem, kv), ctx.pin(q_problem, attention_choice(q_keys[i]));
            backward(path_of(kv));
          }
          ctx.unpin(kv_problem), ctx.unpin(q_problem);
          for (const AttentionPath path : {AttentionPath::portable, AttentionPath::automatic}) CHECK(backward(path) == backward(path));
        }
  }

  TEST_CASE("attention at T = 2048 and 4096 matches the FP32 GPU reference (both paths, both layouts, causal or not)") {
    Context& ctx = testing::gpu();
    struct Case {
      int batch, heads, tokens, head_dim;
      bool packed;
    };
    unsigned seed = 300;
    for (const Case c : {Case{2, 3, 2048, 64, true}, Case{1, 2, 4096, 128, false}})
      for (const bool causal : {true, false}) {
        CAPTURE(c.tokens);
        CAPTURE(c.head_dim);
        CAPTURE(causal);
        const auto layout = c.packed ? AttentionLayout::packed_qkv(c.batch, c.heads, c.tokens, c.head_dim)
                                     : AttentionLayout::separate(c.batch, c.heads, c.tokens, c.head_dim);
        const std::size_t rows = std::size_t(c.batch) * c.heads * c.tokens, n = rows * c.head_dim;
        DeviceAttention a{layout, c.packed, DeviceBuffer(3 * n * 2), DeviceBuffer(3 * n * 2), DeviceBuffer(n * 2), DeviceBuffer(n * 2),
                          DeviceBuffer(rows * 4), DeviceBuffer(rows * 4)};
        for (int which = 0; which < 3; ++which) a.put(a.qkv, a.offset(which), layout.qkv, random_bf16_values(n, seed++), 3 * n);
        a.put(a.d_o, 0, layout.o, random_bf16_values(n, seed++), n);
        DeviceBuffer ref_o(n * 4), ref_lse(rows * 4), ref_delta(rows * 4), ref_dq(n * 4), ref_dk(n * 4), ref_dv(n * 4);
        for (DeviceBuffer* b : {&ref_o, &ref_lse, &ref_delta, &ref_dq, &ref_dk, &ref_dv}) b->fill_bytes(testing::kNanBytes);
        attention_reference(ctx, layout, causal, a.q(), a.k(), a.v(), a.d_o.get(),
                            AttentionReferenceOut{ref_o.get(), ref_lse.get(), ref_delta.get(), ref_dq.get(), ref_dk.get(), ref_dv.get()}, nullptr);
        const auto fp32 = [](const DeviceBuffer& b, std::size_t count) {
          std::vector<float> f(count);
          b.download(f.data(), count * 4);
          return std::vector<double>(f.begin(), f.end());
        };
        const std::vector<double> want[4] = {fp32(ref_o, n), fp32(ref_dq, n), fp32(ref_dk, n), fp32(ref_dv, n)}, want_lse = fp32(ref_lse, rows);
        for (const AttentionPath path : {AttentionPath::portable, AttentionPath::automatic}) {
          a.o.fill_bytes(testing::kNanBytes), a.lse.fill_bytes(testing::kNanBytes), a.grads.fill_bytes(testing::kNanBytes);
          attention_forward(ctx, layout, causal, a.q(), a.k(), a.v(), a.o.get(), a.lse.get(), nullptr, path);
          attention_backward(ctx, layout, causal, a.q(), a.k(), a.v(), a.o.get(), a.lse.get(), a.d_o.get(), a.delta.get(), a.grad(0), a.grad(1),
                             a.grad(2), nullptr, path);
          const std::vector<double> got[4] = {a.get(a.o, 0, layout.o, n), a.get(a.grads, a.offset(0), layout.qkv, 3 * n),
                                              a.get(a.grads, a.offset(1), layout.qkv, 3 * n), a.get(a.grads, a.offset(2), layout.qkv, 3 * n)};
          const auto lse = fp32(a.lse, rows);
          double lse_error = 0;
          for (std::size_t i = 0; i < rows; ++i) lse_error = std::max(lse_error, std::fabs(lse[i] - want_lse[i]));
          CHECK(lse_error <= 1e-3);
          for (int i = 0; i < 4; ++i) {
            const double e = relative_max_error(got[i], want[i]);
            MESSAGE("T=" << c.tokens << " vs FP32 reference (" << std::string(path == AttentionPath::portable ? "portable" : "default") << "): "
                         << std::string(i == 0 ? "O" : i == 1 ? "dQ" : i == 2 ? "dK" : "dV") << " max error " << e << " of its max, lse " << lse_error);
            CHECK(e <= (i == 0 ? 2e-2 : 5e-2));
          }
        }
      }
  }

  TEST_CASE("attention at T = 16384: the Hopper and the portable kernels agree (forward and gradients)") {
    Context& ctx = testing::gpu();
    if (!gen::AttentionSm90Spec::supports(ctx.limits())) {
      MESSAGE("skipped: " << ctx.device().info().name << " has no Hopper attention kernels to compare with the portable ones");
      return;
    }
    for (const int head_dim : {64, 128}) {
      CAPTURE(head_dim);
      const auto layout = AttentionLayout::separate(1, 1, 16384, head_dim);
      const std::size_t n = std::size_t(layout.tokens) * head_dim;
      DeviceAttention a{layout, false, DeviceBuffer(3 * n * 2), DeviceBuffer(3 * n * 2), DeviceBuffer(n * 2), DeviceBuffer(n * 2),
                        DeviceBuffer(std::size_t(layout.tokens) * 4), DeviceBuffer(std::size_t(layout.tokens) * 4)};
      a.put(a.qkv, a.offset(0), layout.qkv, random_bf16_values(n, 7), 3 * n);
      a.put(a.qkv, a.offset(1), layout.qkv, random_bf16_values(n, 8), 3 * n);
      a.put(a.qkv, a.offset(2), layout.qkv, random_bf16_values(n, 9), 3 * n);
      a.put(a.d_o, 0, layout.o, random_bf16_values(n, 10), n);
      std::vector<double> out[2][4];  // per path: O, dQ, dK, dV
      for (const AttentionPath path : {AttentionPath::portable, AttentionPath::automatic}) {
        auto& got = out[path == AttentionPath::automatic];
        a.o.fill_bytes(testing::kNanBytes), a.lse.fill_bytes(testing::kNanBytes), a.grads.fill_bytes(testing::kNanBytes);
        attention_forward(ctx, layout, true, a.q(), a.k(), a.v(), a.o.get(), a.lse.get(), nullptr, path);
        got[0] = a.get(a.o, 0, layout.o, n);
        // Both backward passes from the portable O and lse, so that they differ only in their own kernels.
        attention_forward(ctx, layout, true, a.q(), a.k(), a.v(), a.o.get(), a.lse.get(), nullptr, AttentionPath::portable);
        attention_backward(ctx, layout, true, a.q(), a.k(), a.v(), a.o.get(), a.lse.get(), a.d_o.get(), a.delta.get(), a.grad(0), a.grad(1), a.grad(2),
                           nullptr, path);
        for (int which = 0; which < 3; ++which) got[1 + which] = a.get(a.grads, a.offset(which), layout.qkv, 3 * n);
      }
      for (int i = 0; i < 4; ++i) {
        const double e = relative_max_error(out[1][i], out[0][i]);
        MESSAGE("T=16384 Hopper vs portable: " << std::string(i == 0 ? "O" : i == 1 ? "dQ" : i == 2 ? "dK" : "dV") << " max difference " << e
                                                 << " of its max");
        CHECK(e <= (i == 0 ? 2e-2 : 5e-2));
      }
    }
  }

  TEST_CASE("attention rejects shapes it cannot run, with messages that say why") {
    Context& ctx = testing::gpu();
    DeviceBuffer buf(1 << 20);
    const CUdeviceptr p = buf.get();
    CHECK_THROWS_WITH_AS(attention_forward(ctx, AttentionLayout::separate(1, 1, 100, 64), true, p, p, p, p, p, nullptr),
                         doctest::Contains("T=100 must be a positive multiple of 64"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(attention_forward(ctx, AttentionLayout::separate(1, 1, 64, 96), true, p, p, p, p, p, nullptr),
                         doctest::Contains("head_dim=96 is not supported"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(attention_forward(ctx, AttentionLayout::separate(1, 1, 64, 64), true, p, p, p + 2, p, p, nullptr),
                         doctest::Contains("16-byte aligned"), std::invalid_argument);
  }
}
