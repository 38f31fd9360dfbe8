// A program of another CMake project: find_package(jetforge) after `cmake --install`, linking jetforge::runtime.
// It must start and report on a machine without a GPU driver as well as with one.
#include <iostream>

#include "generator/families.hpp"
#include "runtime/ops.hpp"

int main() {
  std::string why;
  const bool gpu = jetforge::driver_available(&why);
  std::cout << "jetforge families: " << jetforge::gen::families().size() << ", driver: " << (gpu ? "yes" : why) << "\n";
  return jetforge::gen::families().empty() ? 1 : 0;
}
