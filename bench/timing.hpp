// Benchmark timing: warm-up, then the median of many individually event-timed runs. `run(i)` gets the
// iteration number so callers can rotate among input sets; `prepare(i)`, if given, runs before each timed run,
// outside the timed region (e.g. an L2 flush).
#pragma once
#include <algorithm>
#include <cstdio>
#include <exception>
#include <functional>
#include <vector>

#include "runtime/device.hpp"
#include "runtime/kernels.hpp"
#include "runtime/ops.hpp"

namespace jetforge::bench {

// Evicts the L2 before a timed run (a `prepare` for median_ms). Clean: reads a buffer of four times the L2's size,
// written once here, so the lines left behind need no write-back. Dirty (the benchmarks' flush until session 9):
// writes that buffer before each run, leaving the L2 full of modified lines that the timed kernel's misses may have
// to write back (bench/NOTES.md, session 9, run 107: GEMM times within 1% either way, a copy 13% faster after clean).
class L2Flush {
 public:
  enum class Kind { clean, dirty };
  L2Flush(Context& ctx, CUstream stream, Kind kind = Kind::clean)
      : ctx_(ctx), stream_(stream), kind_(kind), half_(std::size_t(ctx.device().info().l2_bytes) * 2), buffer_(2 * half_), counter_(8) {
    buffer_.fill_bytes(0x5a, stream);
  }
  void operator()(int) const {
    if (kind_ == Kind::dirty) buffer_.fill_bytes(0x5a, stream_);
    else count_differences(ctx_, buffer_.get(), buffer_.get() + half_, half_, counter_.get(), stream_);
  }

 private:
  Context& ctx_;
  CUstream stream_;
  Kind kind_;
  std::size_t half_;
  mutable DeviceBuffer buffer_;
  DeviceBuffer counter_;
};

inline double median_ms(CUstream stream, const std::function<void(int)>& run, int warmup = 5, int reps = 50,
                        const std::function<void(int)>& prepare = nullptr) {
  for (int i = 0; i < warmup; ++i) run(i);
  std::vector<double> ms;
  Event start, stop;
  for (int i = 0; i < reps; ++i) {
    if (prepare) prepare(i);
    start.record(stream);
    run(i);
    stop.record(stream);
    ms.push_back(stop.since(start));
  }
  std::nth_element(ms.begin(), ms.begin() + reps / 2, ms.end());
  return ms[size_t(reps / 2)];
}

// Runs a benchmark's body; an error (no GPU, no driver, a failed launch) is printed as one line and exit status 1.
inline int guarded_main(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace jetforge::bench
