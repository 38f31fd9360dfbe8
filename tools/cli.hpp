// Pieces every verb of the jetforge command line shares: argument lists, usage errors, flag values, the cache
// option; and the verbs implemented in their own files.
#pragma once
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "cache/kernel_cache.hpp"

namespace jetforge::cli {

using Args = std::vector<std::string>;

// A mistake in the command line: reported with the verb's usage text and exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads the value after the flag at args[i] (advancing i), or throws a usage error naming the flag.
inline const std::string& flag_value(const Args& args, size_t& i) {
  if (i + 1 >= args.size()) throw UsageError(args[i] + " needs a value");
  return args[++i];
}

// Removes "--cache FILE" from args; returns FILE or the default path.
inline std::filesystem::path take_cache_option(Args& args) {
  std::filesystem::path path = jetforge::cache::KernelCache::default_path();
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] != "--cache") continue;
    size_t at = i;
    path = flag_value(args, at);
    args.erase(args.begin() + long(i), args.begin() + long(i) + 2);
    break;
  }
  return path;
}

extern const char* const kTrainHelp;
int cmd_train(const Args& args);  // tools/train.cpp

}  // namespace jetforge::cli
