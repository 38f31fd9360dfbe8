// The GPT-2 training step on the GPU, INT8 data flow and BF16 mode, against the FP64 reference of the same step on a
// tiny model: the loss within the precision's noise, every parameter's gradient pointing the same way, and a
// repeated step giving the same bits (skipped without a GPU).
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "runtime/gpt2_model.hpp"
#include "runtime/reference_gpt2.hpp"
#include "testing.hpp"

using namespace jetforge;

TEST_SUITE("gpu") {
  TEST_CASE("GPT-2 step, INT8 and BF16: loss and gradients agree with the FP64 reference; a repeated step repeats bit for bit") {
    Context& ctx = testing::gpu();
    const Gpt2Shape shape{2, 128, 2, 64, 200, 4};  // head_dim 64, vocabulary padded to 256
    const int batch = 2;
    // Per precision: loss tolerance (relative), smallest gradient cosine, largest norm-ratio deviation.
    struct Expect {
      const char* precision;
      double loss, cosine, norm;
    };
    for (const Expect e : {Expect{"int8", 0.01, 0.95, 0.1}, Expect{"bf16", 0.005, 0.99, 0.05}}) {
      CAPTURE(e.precision);
      const auto model_ptr = make_gpt2(ctx, shape, batch, e.precision);
      Gpt2Model& model = *model_ptr;
      const auto& layout = model.layout();
      const auto params = gpt2_initial_parameters(layout, shape.layers, 1);
      std::mt19937 rng(1);
      std::vector<int> inputs(static_cast<std::size_t>(batch * shape.sequence)), targets(inputs.size());
      std::uniform_int_distribution<int> token(0, shape.vocab - 1);
      for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = token(rng), targets[i] = token(rng);

      DeviceBuffer d_params(params.size() * 4), d_grads(params.size() * 4);
      d_params.upload(params.data(), params.size() * 4);
      std::vector<float> grads[2];
      double loss[2];
      for (int run = 0; run < 2; ++run) {
        d_grads.fill_bytes(testing::kNanBytes);
        loss[run] = model.step(d_params.get(), d_grads.get(), inputs, targets, 7, nullptr);
        grads[run].resize(params.size());
        d_grads.download(grads[run].data(), grads[run].size() * 4);
      }
      MESSAGE("arena " << model.arena_bytes() << " bytes, loss " << loss[0]);
      CHECK(loss[0] == loss[1]);
      CHECK(grads[0] == grads[1]);

      const std::vector<double> p64(params.begin(), params.end());
      const auto want = ref::gpt2_step(shape, p64, inputs, targets, batch);
      MESSAGE("reference loss " << want.loss);
      CHECK(std::fabs(loss[0] - want.loss) <= e.loss * want.loss);
      for (const auto& t : layout.tensors) {
        double dot = 0, got2 = 0, want2 = 0;
        for (std::int64_t i = 0; i < t.size(); ++i) {
          if (t.name == "wte" && i / t.cols >= shape.vocab) continue;  // padding rows
          const double g = grads[0][std::size_t(t.offset + i)], w = want.grads[std::size_t(t.offset + i)];
          dot += g * w, got2 += g * g, want2 += w * w;
        }
        const double cosine = dot / std::sqrt(got2 * want2 + 1e-300), norm_ratio = std::sqrt(got2 / (want2 + 1e-300));
        CAPTURE(t.name);
        MESSAGE(t.name << ": cosine " << cosine << ", norm ratio " << norm_ratio);
        CHECK(std::isfinite(got2));
        CHECK(cosine >= e.cosine);
        CHECK(std::fabs(norm_ratio - 1.0) <= e.norm);
      }
    }
  }
}
