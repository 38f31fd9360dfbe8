// Host-side cost of an operator call whose kernel is already loaded (and, for the GEMM, whose tuned choice is
// memoized): wall time of enqueueing 200 calls, before the GPU is waited for. The GPU's own time for the same
// calls (events) is printed beside it: while it is longer, the host never waited for a full launch queue, so the
// host figure is the call's own cost. Median of 9 trials.
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
    constexpr int kCalls = 200;
    std::printf("%-28s %12s %12s\n", "call", "host us/call", "GPU us/call");
    Event start, stop;
    for (const auto& r : rows) {
      for (int i = 0; i < 20; ++i) r.call();  // load kernels, memoize winners
      stream.synchronize();
      std::vector<double> host_us, gpu_us;
      for (int trial = 0; trial < 9; ++trial) {
        start.record(stream.get());
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < kCalls; ++i) r.call();
        host_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / kCalls);
        stop.record(stream.get());
        gpu_us.push_back(double(stop.since(start)) * 1e3 / kCalls);
      }
      std::nth_element(host_us.begin(), host_us.begin() + 4, host_us.end());
      std::nth_element(gpu_us.begin(), gpu_us.begin() + 4, gpu_us.end());
      std::printf("%-28s %12.2f %12.2f\n", r.name, host_us[4], gpu_us[4]);
    }
    return 0;
  });
}
