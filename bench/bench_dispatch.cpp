// Host-side cost of an operator call whose kernel is already loaded (and, for the GEMM, whose tuned choice is
// memoized): wall time of enqueueing 1000 calls, before the GPU is waited for, so the GPU's own time is not
// counted (1000 launches fit in the launch queue). Median of 9 trials.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "runtime/gemm.hpp"
#include "runtime/ops.hpp"

using namespace jetforge;

int main() {
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
  std::printf("%-28s %12s\n", "call", "host us/call");
  for (const auto& r : rows) {
    for (int i = 0; i < 20; ++i) r.call();  // load kernels, memoize winners
    stream.synchronize();
    std::vector<double> us;
    for (int trial = 0; trial < 9; ++trial) {
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < 1000; ++i) r.call();
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / 1000);
      stream.synchronize();
    }
    std::nth_element(us.begin(), us.begin() + 4, us.end());
    std::printf("%-28s %12.2f\n", r.name, us[4]);
  }
  return 0;
}
