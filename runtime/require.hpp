// Argument checks of the operator API. They sit on the hot path of every operator call, so the message is built
// by `describe` only when the check fails: a valid call pays one comparison, not string formatting.
#pragma once
#include <stdexcept>
#include <string>

namespace jetforge {

template <class Describe> void require(bool ok, const Describe& describe) {
  if (!ok) throw std::invalid_argument(std::string(describe()));
}

}  // namespace jetforge
