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

namespace jetforge::bench {

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
