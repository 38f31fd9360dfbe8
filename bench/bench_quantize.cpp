// Quantization kernels: GB/s of minimal traffic (each input byte read once, each output byte written
// once) next to a device-to-device copy measured in the same run. Inputs rotate among sets whose total
// exceeds L2, so no kernel is timed out of cache.
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/timing.hpp"
#include "runtime/ops.hpp"
#include "runtime/reference.hpp"

using namespace jetforge;

namespace {

struct Set {
  std::unique_ptr<DenseTensor> x_bf16, x_f32, y_bf16;
  std::unique_ptr<BlockTensor> q, qt;
};

}  // namespace

int main(int argc, char** argv) {
  const bool sweep = argc > 1 && std::string(argv[1]) == "--sweep";  // also every kernel choice at the large shapes
  return bench::guarded_main("jetforge_bench_quantize", [&] {
    Context ctx(0);
    const auto& dev = ctx.device().info();
    std::printf("device: %s, %d SMs, L2 %d MiB\n", dev.name.c_str(), dev.sm_count, dev.l2_bytes >> 20);
    Stream stream;
    struct Shape {
      std::int64_t rows, cols;
    };
    std::printf("\n%-34s %-12s %10s %10s %9s\n", "kernel", "shape", "time us", "GB/s", "vs copy");
    for (Shape s : {Shape{8192, 768}, Shape{8192, 4096}, Shape{16384, 8192}}) {
      const std::int64_t n = s.rows * s.cols;
      const double scale_bytes = double(n) / (32 * 32) * 4;
      // Enough sets that one pass over all of them streams at least 4x the L2 size.
      const int sets = int(std::max<std::int64_t>(2, (4LL * dev.l2_bytes) / (n * 2) + 1));
      std::vector<Set> set(static_cast<size_t>(sets));
      std::mt19937 rng(1);
      std::normal_distribution<float> normal(0, 1);
      std::vector<float> host(static_cast<size_t>(n));
      for (auto& v : host) v = normal(rng);
      const auto host_bf16 = ref::to_bf16(host);
      for (auto& st : set) {
        st.x_bf16 = std::make_unique<DenseTensor>(s.rows, s.cols, DType::bf16);
        st.x_f32 = std::make_unique<DenseTensor>(s.rows, s.cols, DType::f32);
        st.y_bf16 = std::make_unique<DenseTensor>(s.rows, s.cols, DType::bf16);
        st.q = std::make_unique<BlockTensor>(s.rows, s.cols);
        st.qt = std::make_unique<BlockTensor>(s.cols, s.rows);
        st.x_bf16->buffer().upload(host_bf16.data(), size_t(n) * 2);
        st.x_f32->buffer().upload(host.data(), size_t(n) * 4);
        quantize(ctx, st.x_f32->ref(), st.q->ref(), {}, stream.get());
      }
      auto at = [&](int i) -> Set& { return set[size_t(i % sets)]; };
      const QuantizeOptions sr{gen::Rounding::stochastic, 1, {}};
      auto with_kernel = [&](QuantizeOptions o, bool transpose) {
        o.kernel = gen::QuantizeSpec{DType::bf16, 32, o.rounding, transpose, gen::BlockTile{4, 4, 512}, 3};
        if (s.rows % 128 || s.cols % 128) o.kernel.reset();
        return o;
      };
      struct Row {
        std::string name;
        double bytes;
        std::function<void(int)> run;
      };
      const Row rows[] = {
          {"copy (device to device, bf16 size)", 4.0 * n,
           [&](int i) { check(driver().cuMemcpyDtoDAsync(at(i).y_bf16->buffer().get(), at(i).x_bf16->buffer().get(), size_t(n) * 2, stream.get()), "copy"); }},
          {"quantize bf16 nearest", 3.0 * n + scale_bytes, [&](int i) { quantize(ctx, at(i).x_bf16->ref(), at(i).q->ref(), {}, stream.get()); }},
          {"quantize bf16 stochastic", 3.0 * n + scale_bytes, [&](int i) { quantize(ctx, at(i).x_bf16->ref(), at(i).q->ref(), sr, stream.get()); }},
          {"quantize f32 nearest", 5.0 * n + scale_bytes, [&](int i) { quantize(ctx, at(i).x_f32->ref(), at(i).q->ref(), {}, stream.get()); }},
          {"quantize+transpose bf16 nearest", 4.0 * n + 2 * scale_bytes,
           [&](int i) { quantize_transpose(ctx, at(i).x_bf16->ref(), at(i).q->ref(), at(i).qt->ref(), {}, stream.get()); }},
          {"quantize+transpose bf16 stochastic", 4.0 * n + 2 * scale_bytes,
           [&](int i) { quantize_transpose(ctx, at(i).x_bf16->ref(), at(i).q->ref(), at(i).qt->ref(), sr, stream.get()); }},
          // The same kernels as two 512-thread CTAs per SM with 3-tile rings (the alternative tile policy).
          {"  quantize bf16 nearest, 2x512thr", 3.0 * n + scale_bytes,
           [&](int i) { quantize(ctx, at(i).x_bf16->ref(), at(i).q->ref(), with_kernel({}, false), stream.get()); }},
          {"  quantize+transpose bf16, 2x512thr", 4.0 * n + 2 * scale_bytes,
           [&](int i) { quantize_transpose(ctx, at(i).x_bf16->ref(), at(i).q->ref(), at(i).qt->ref(), with_kernel({}, true), stream.get()); }},
          {"dequantize -> bf16", 3.0 * n + scale_bytes, [&](int i) { dequantize(ctx, at(i).q->ref(), at(i).y_bf16->ref(), stream.get()); }},
          {"transpose (BlockTensor)", 2.0 * n + 2 * scale_bytes, [&](int i) { transpose(ctx, at(i).q->ref(), at(i).qt->ref(), stream.get()); }},
      };
      double copy_gbs = 0;
      const std::string shape = std::to_string(s.rows) + "x" + std::to_string(s.cols);
      auto report = [&](const std::string& name, double bytes, const std::function<void(int)>& run) {
        const double ms = bench::median_ms(stream.get(), run);
        const double gbs = bytes / (ms * 1e-3) / 1e9;
        if (copy_gbs == 0) copy_gbs = gbs;
        std::printf("%-34s %-12s %10.1f %10.0f %8.0f%%\n", name.c_str(), shape.c_str(), ms * 1e3, gbs, 100 * gbs / copy_gbs);
      };
      for (const auto& r : rows) report(r.name, r.bytes, r.run);
      if (!sweep || n < 8192LL * 4096) continue;
      // --sweep: the BF16 nearest kernels over the tuner's quantize space (threads x ring stages x store unit).
      for (const bool transposed : {false, true})
        for (int threads : {256, 512, 1024})
          for (int stages : {2, 3, 4})
            for (int unit : transposed ? std::vector<int>{4, 8, 16} : std::vector<int>{4}) {
              QuantizeOptions o;
              o.kernel = gen::QuantizeSpec::fit(DType::bf16, s.rows, s.cols, 32, gen::Rounding::nearest, transposed);
              o.kernel->tile.threads = threads, o.kernel->stages = stages, o.kernel->transpose_unit = unit;
              try {
                o.kernel->validate(ctx.limits());
              } catch (const gen::SpecError&) {
                continue;
              }
              const std::string name = std::string(transposed ? "  q+t" : "  q") + " t" + std::to_string(threads) + " s" + std::to_string(stages) +
                                       (transposed ? " u" + std::to_string(unit) : "");
              if (transposed)
                report(name, 4.0 * n + 2 * scale_bytes, [&](int i) { quantize_transpose(ctx, at(i).x_bf16->ref(), at(i).q->ref(), at(i).qt->ref(), o, stream.get()); });
              else
                report(name, 3.0 * n + scale_bytes, [&](int i) { quantize(ctx, at(i).x_bf16->ref(), at(i).q->ref(), o, stream.get()); });
            }
    }
    return 0;
  });
}
