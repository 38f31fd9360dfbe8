// Loaded kernels and the in-process table that maps a spec key to one. A miss compiles the generated
// source with NVRTC and loads the cubin into the current context.
#pragma once
#include <any>
#include <atomic>
#include <cuda.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/kernel_cache.hpp"
#include "generator/kernel_source.hpp"
#include "runtime/device.hpp"
#include "runtime/nvrtc.hpp"

namespace jetforge {

struct TensorMap;  // templates/jetforge/sm90.cuh: a CUtensorMap as kernel parameters carry it

// Encodes `map`, a TMA map with the 128-byte swizzle over a `rank`-D tensor at `base`: dims innermost first, byte
// strides of dims 1 .. rank - 1, boxes of `box` elements per dimension (the innermost 128 bytes wide); elements past
// a dim read as 0.
void encode_tensor_map_sw128(TensorMap& map, CUtensorMapDataType type, int rank, CUdeviceptr base, const cuuint64_t* dims, const cuuint64_t* strides,
                             const cuuint32_t* box);

class Kernel {
 public:
  Kernel(const CompiledKernel& compiled);
  ~Kernel();
  Kernel(const Kernel&) = delete;
  Kernel& operator=(const Kernel&) = delete;

  // Launches with one kernel parameter, the family's params struct, passed by value; `cluster` CTAs per
  // thread-block cluster (grid must be a multiple of it).
  template <class Params> void launch(unsigned grid, const Params& params, CUstream stream, unsigned dynamic_smem = 0, unsigned cluster = 1) const {
    void* args[] = {const_cast<Params*>(&params)};
    launch_raw(grid, 1, args, stream, dynamic_smem, cluster);
  }
  // A 2-D grid (grid_x x grid_y CTAs), no cluster.
  template <class Params> void launch_2d(unsigned grid_x, unsigned grid_y, const Params& params, CUstream stream, unsigned dynamic_smem = 0) const {
    void* args[] = {const_cast<Params*>(&params)};
    launch_raw(grid_x, grid_y, args, stream, dynamic_smem, 1);
  }
  int threads() const { return threads_; }
  // ptxas's figures: the two the launch path needs read once at load time, the rest on request.
  int registers() const { return registers_; }
  int static_smem() const { return static_smem_; }
  int local_bytes() const;

 private:
  void launch_raw(unsigned grid_x, unsigned grid_y, void** args, CUstream stream, unsigned dynamic_smem, unsigned cluster) const;
  CUmodule module_ = nullptr;
  CUfunction function_ = nullptr;
  int threads_ = 0, registers_ = 0, static_smem_ = 0;
  // The largest dynamic shared memory enabled so far; without opt-in, static and dynamic together get 48 KiB.
  mutable std::atomic<unsigned> dynamic_smem_opt_in_{0};
  mutable std::mutex opt_in_mutex_;
  std::string key_;
};

// What an operator does when its kernel is not in the kernel cache: compile it with NVRTC now (and store it), or
// fail with a message naming the commands that fill the cache (for nodes that must start warm). Tuning winners
// missing from the cache fall back to the operator's default kernel either way; `jetforge tune` or a first
// `jetforge train` fills them.
enum class OnCacheMiss { compile, fail };

class KernelTable {
 public:
  KernelTable(const DeviceInfo& device, std::shared_ptr<cache::KernelCache> cache, OnCacheMiss on_miss)
      : arch_(device.arch()), cache_(std::move(cache)), on_miss_(on_miss) {}
  const std::string& arch() const { return arch_; }
  cache::KernelCache* cache() const { return cache_.get(); }
  // The loaded kernel for a canonical spec key; on the first use of a key, `emit` makes its source, which is
  // loaded from the kernel cache if it holds it, else compiled (and stored there). A hit costs one hash-map
  // lookup: no emission, no hashing of template text. Thread-safe.
  const Kernel& get(const std::string& key, const std::function<gen::KernelSource()>& emit);
  // The same kernel by its spec's signature, once get() has loaded it: a hit builds no key string.
  const Kernel* find(const gen::Signature& signature);
  void remember(const gen::Signature& signature, const Kernel& kernel);

 private:
  std::string arch_;
  std::shared_ptr<cache::KernelCache> cache_;
  OnCacheMiss on_miss_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::unique_ptr<Kernel>> kernels_;
  std::unordered_map<gen::Signature, const Kernel*, gen::SignatureHash> by_signature_;
};

// The compiled kernel a cache holds for this source, or a fresh compile that is then stored there: the one path
// both the runtime and `jetforge cache build` take. `compiled` says which happened.
CompiledKernel compile_or_load(const gen::KernelSource& source, const std::string& arch, cache::KernelCache* cache, bool* compiled = nullptr,
                               OnCacheMiss on_miss = OnCacheMiss::compile);

struct CompileOutcome {
  std::string key;
  bool compiled = false;  // false: found in the cache (or failed)
  std::string error;      // empty when the kernel is ready
};

// Makes every spec key ready for `arch` on `jobs` threads (NVRTC is thread-safe per program): emitted, validated,
// loaded from the cache or compiled and stored there. `each`, if given, sees every outcome as it completes, one call
// at a time. No GPU needed.
std::vector<CompileOutcome> compile_keys(const std::vector<std::string>& keys, const std::string& arch, cache::KernelCache* cache, int jobs,
                                         const std::function<void(const CompileOutcome&)>& each = nullptr);

// What operators run in: one device, its current context, and the kernels loaded into it. With a kernel cache,
// kernels compiled before (here or offline with `jetforge cache build`) start without NVRTC.
class Context {
 public:
  explicit Context(int ordinal = 0, std::shared_ptr<cache::KernelCache> cache = nullptr, OnCacheMiss on_miss = OnCacheMiss::compile)
      : device_(ordinal), kernels_(device_.info(), std::move(cache), on_miss), limits_(gen::TargetLimits::for_arch(device_.info().arch())) {}
  const Device& device() const { return device_; }
  const gen::TargetLimits& limits() const { return limits_; }

  // The loaded kernel of a spec; a spec used for the first time is validated for this device and built.
  template <class Spec> const Kernel& kernel(const Spec& spec) {
    const gen::Signature signature = gen::spec_signature(spec);
    if (const Kernel* hit = kernels_.find(signature)) return *hit;
    const Kernel& loaded = kernels_.get(gen::canonical_key(spec), [&] { return gen::emit_checked(spec, limits_); });
    kernels_.remember(signature, loaded);
    return loaded;
  }

  // The tuned spec key for a problem on this GPU (from the kernel cache's winners), memoized per process;
  // empty without a cache or a winner.
  std::optional<std::string> tuned(const std::string& problem);
  // Stores a problem's winner in the kernel cache and in the memo, which may already hold "no winner" for it: an
  // operator timed for one problem can look up another's (the attention backward runs both its kernels).
  void store_winner(const std::string& problem, const std::string& spec, double time_us, int candidates);
  // The same on an operator's per-call path: the problem given by its signature, its key made by `key()` and the
  // winner parsed by `parse(spec_key)` into a T only on the first call for that signature.
  template <class T, class MakeKey, class Parse> std::optional<T> tuned(const gen::Signature& problem, const MakeKey& key, const Parse& parse) {
    std::lock_guard lock(tuned_mutex_);
    auto it = tuned_parsed_.find(problem);
    if (it == tuned_parsed_.end()) {
      std::any parsed;
      if (const auto winner = tuned_locked(key())) parsed = T(parse(*winner));
      it = tuned_parsed_.emplace(problem, std::move(parsed)).first;
    }
    if (!it->second.has_value()) return std::nullopt;
    return std::any_cast<const T&>(it->second);
  }
  // Makes `spec` this process's choice for a problem, as a stored winner would be: the tuner times its candidates
  // through the operators themselves this way.
  template <class T> void pin(const gen::Signature& problem, T spec) {
    std::lock_guard lock(tuned_mutex_);
    tuned_parsed_[problem] = std::move(spec);
  }
  // Drops a pinned (or memoized) choice: the next call looks in the cache again.
  void unpin(const gen::Signature& problem) {
    std::lock_guard lock(tuned_mutex_);
    tuned_parsed_.erase(problem);
  }
  // Split-K GEMMs add their K ranges into each output tile in turn through a flag per tile (templates/gemm_sm90.cuh).
  // The flags are this context's, one array per stream (calls on one stream run in turn), zeroed once and grown as
  // needed; each call takes `splits` values of a counter that only grows, so flags left by earlier calls never
  // match a later call's waits and nothing is reset between calls.
  struct SplitKFlags {
    CUdeviceptr flags;
    std::uint32_t base;
  };
  SplitKFlags split_k_flags(CUstream stream, std::size_t tiles, int splits);
  // "name|SMs|driver": what tuning winners are keyed by.
  std::string gpu_key() const;
  cache::KernelCache* cache() const { return kernels_.cache(); }

 private:
  Device device_;
  KernelTable kernels_;
  gen::TargetLimits limits_;
  std::optional<std::string> tuned_locked(const std::string& problem);
  std::mutex tuned_mutex_;
  std::unordered_map<std::string, std::optional<std::string>> tuned_;
  std::unordered_map<gen::Signature, std::any, gen::SignatureHash> tuned_parsed_;
  struct StreamSplitKFlags {
    DeviceBuffer flags;
    std::uint32_t next = 0;
  };
  std::mutex split_k_mutex_;
  std::unordered_map<CUstream, StreamSplitKFlags> split_k_flags_;
};

}  // namespace jetforge
