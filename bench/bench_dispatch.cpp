// Host-side cost of an operator call whose kernel is already loaded (and, for the GEMM, whose tuned choice is
// memoized): wall time of enqueueing a burst of 16 calls onto an idle stream, before the GPU is waited for, so
// neither the GPU's time nor a full launch queue is counted. The GPU's time for the burst (events) is printed
// beside it. Median of 51 bursts.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "bench/timing.hpp"
#include "runtime/gemm.hpp"
#include "runtime/ops.hpp"

using namespace jetforge;

int main() {
  return bench::guarded_main("jetforge_bench_dispatch", [] {
    auto cache = std::make_shared<cache::KernelCache>(cache::KernelCache::default_path());
    Context ctx(0, cache);
    Stream stream;
    DenseTensor x(128, 128, DType::bf16);
    x.buffer().fill_bytes(0x3c);
    BlockTensor q(128, 128), a(128, 128), b(128, 128), c(128, 128);
    for (BlockTensor* t : {&a, &b}) t->codes().fill_bytes(3), t->scales().fill_bytes(0x3c);
    struct Row {
      const char* name;
      std::function<void()> call;
    };
    const Row rows[] = {
        {"quantize (bf16 128x128)", [&] { quantize(ctx, x.ref(), q.ref(), {}, stream.get()); }},
        {"gemm 128x128x128 INT8 out", [&] { gemm(ctx, a.ref(), b.ref(), c.ref(), {}, stream.get()); }},
        {"gelu forward 128x128", [&] { gelu_forward(ctx, a.ref(), c.ref(), GeluForm::tanh, stream.get()); }},
    };
    constexpr int kCalls = 16, kBursts = 51;
    std::printf("%-28s %12s %12s\n", "call", "host us/call", "GPU us/call");
    Event start, stop;
    for (const auto& r : rows) {
      for (int i = 0; i < 20; ++i) r.call();  // load kernels, memoize winners
      stream.synchronize();
      std::vector<double> host_us, gpu_us;
      for (int burst = 0; burst < kBursts; ++burst) {  // since() below waits, so each burst starts on an idle stream
        start.record(stream.get());
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < kCalls; ++i) r.call();
        host_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / kCalls);
        stop.record(stream.get());
        gpu_us.push_back(double(stop.since(start)) * 1e3 / kCalls);
      }
      std::nth_element(host_us.begin(), host_us.begin() + kBursts / 2, host_us.end());
      std::nth_element(gpu_us.begin(), gpu_us.begin() + kBursts / 2, gpu_us.end());
      std::printf("%-28s %12.2f %12.2f\n", r.name, host_us[kBursts / 2], gpu_us[kBursts / 2]);
    }
    return 0;
  });
}
