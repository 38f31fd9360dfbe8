// Stable 64-bit FNV-1a: the same bytes give the same hash on every machine and build, so it can key
// on-disk caches. Not a cryptographic hash; it only has to tell versions apart.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace jetforge::gen {

class Fnv1a64 {
 public:
  Fnv1a64& add(std::string_view bytes) {
    for (unsigned char c : bytes) state_ = (state_ ^ c) * 0x100000001b3ull;
    // A separator after each field keeps ("ab","c") and ("a","bc") apart.
    state_ = (state_ ^ 0xffu) * 0x100000001b3ull;
    return *this;
  }
  std::uint64_t value() const { return state_; }

 private:
  std::uint64_t state_ = 0xcbf29ce484222325ull;
};

std::string hex64(std::uint64_t v);

}  // namespace jetforge::gen
