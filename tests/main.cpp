// Test entry point. GPU suites are skipped as a whole, with the reason, where no GPU can be used: the
// process exits 77, which CTest reports as "Skipped".
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstring>
#include <iostream>

#include "runtime/device.hpp"

int main(int argc, char** argv) {
  bool gpu_suite = false;
  for (int i = 1; i < argc; ++i) gpu_suite |= std::strncmp(argv[i], "--test-suite=gpu", 16) == 0;
  if (gpu_suite) {
    std::string why;
    if (!jetforge::driver_available(&why) || jetforge::Device::count() == 0) {
      std::cout << "SKIPPED: GPU tests need a CUDA GPU: " << (why.empty() ? "the driver reports no CUDA device" : why) << "\n";
      return 77;
    }
  }
  doctest::Context context(argc, argv);
  return context.run();
}
