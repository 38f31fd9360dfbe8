#include "runtime/kernels.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <thread>

#include "generator/families.hpp"
#include "jetforge/sm90.cuh"

namespace jetforge {

namespace {
int function_attribute(CUfunction f, CUfunction_attribute a) {
  int v = 0;
  check(driver().cuFuncGetAttribute(&v, a, f), "cuFuncGetAttribute");
  return v;
}
}  // namespace

void encode_tensor_map_sw128(TensorMap& out, CUtensorMapDataType type, int rank, CUdeviceptr base, const cuuint64_t* dims, const cuuint64_t* strides,
                             const cuuint32_t* box) {
  CUtensorMap map;
  const cuuint32_t element_strides[5] = {1, 1, 1, 1, 1};
  check(driver().cuTensorMapEncodeTiled(&map, type, cuuint32_t(rank), reinterpret_cast<void*>(base), dims, strides, box, element_strides,
                                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
        "cuTensorMapEncodeTiled");
  static_assert(sizeof(TensorMap) == sizeof(CUtensorMap));
  std::memcpy(&out, &map, sizeof map);
}

Kernel::Kernel(const CompiledKernel& compiled) : threads_(compiled.threads), key_(compiled.key) {
  check(driver().cuModuleLoadData(&module_, compiled.cubin.data()), ("cuModuleLoadData for " + compiled.key).c_str());
  check(driver().cuModuleGetFunction(&function_, module_, compiled.lowered_name.c_str()), "cuModuleGetFunction");
  registers_ = function_attribute(function_, CU_FUNC_ATTRIBUTE_NUM_REGS);
  static_smem_ = function_attribute(function_, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES);
  dynamic_smem_opt_in_ = unsigned(std::max(0, 48 * 1024 - static_smem_));
}

int Kernel::local_bytes() const { return function_attribute(function_, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES); }

Kernel::~Kernel() {
  if (module_) driver().cuModuleUnload(module_);
}

void Kernel::launch_raw(unsigned grid_x, unsigned grid_y, void** args, CUstream stream, unsigned dynamic_smem, unsigned cluster) const {
  if (grid_x == 0 || grid_y == 0) return;  // an empty problem launches nothing
  // Per launch only what differs from the last one: the opt-in above 48 KiB is set once per size, and messages
  // are built only on failure (this is the hot path of every operator call).
  if (dynamic_smem > dynamic_smem_opt_in_.load(std::memory_order_acquire)) {
    std::lock_guard lock(opt_in_mutex_);  // raises only: concurrent launches never lower it under each other
    if (dynamic_smem > dynamic_smem_opt_in_.load(std::memory_order_relaxed)) {
      check(driver().cuFuncSetAttribute(function_, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, int(dynamic_smem)), "cuFuncSetAttribute");
      dynamic_smem_opt_in_.store(dynamic_smem, std::memory_order_release);
    }
  }
  CUresult r;
  if (cluster <= 1) {
    r = driver().cuLaunchKernel(function_, grid_x, grid_y, 1, unsigned(threads_), 1, 1, dynamic_smem, stream, args, nullptr);
  } else {
    CUlaunchAttribute attribute{};
    attribute.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attribute.value.clusterDim.x = cluster, attribute.value.clusterDim.y = 1, attribute.value.clusterDim.z = 1;
    CUlaunchConfig config{};
    config.gridDimX = grid_x, config.gridDimY = grid_y, config.gridDimZ = 1;
    config.blockDimX = unsigned(threads_), config.blockDimY = 1, config.blockDimZ = 1;
    config.sharedMemBytes = dynamic_smem;
    config.hStream = stream;
    config.attrs = &attribute;
    config.numAttrs = 1;
    r = driver().cuLaunchKernelEx(&config, function_, args, nullptr);
  }
  if (r != CUDA_SUCCESS)
    check(r, (cluster <= 1 ? "cuLaunchKernel for " + key_ : "cuLaunchKernelEx (cluster of " + std::to_string(cluster) + ") for " + key_).c_str());
}

CompiledKernel compile_or_load(const gen::KernelSource& source, const std::string& arch, cache::KernelCache* cache, bool* compiled,
                               OnCacheMiss on_miss) {
  std::string options;
  for (const auto& o : compile_options(arch)) options += (options.empty() ? "" : " ") + o;
  // The cache only saves time: when it cannot be read or written (a lock held too long, a full disk), the kernel
  // is compiled and the operator runs anyway.
  if (cache) {
    try {
      if (auto hit = cache->find(source, arch, nvrtc_version(), options)) {
        if (compiled) *compiled = false;
        return CompiledKernel{source.key, arch, hit->lowered_name, std::move(hit->cubin), "", 0.0, hit->threads};
      }
    } catch (const cache::CacheError& e) {
      std::cerr << "jetforge: warning: kernel cache lookup failed, compiling instead: " << e.what() << "\n";
    }
  }
  if (on_miss == OnCacheMiss::fail)
    throw std::runtime_error("kernel " + source.key + " for " + arch + " is not in the kernel cache" + (cache ? " " + cache->path().string() : std::string()) +
                             " and this context does not compile on a miss; fill the cache with `jetforge cache build --model FILE --arch " + arch +
                             "` (no GPU needed) or `jetforge tune --model FILE`");
  CompiledKernel k = compile(source, arch);
  if (cache) {
    try {
      cache->store(source, arch, nvrtc_version(), options, cache::CachedCubin{k.lowered_name, k.threads, k.cubin}, k.compile_ms);
    } catch (const cache::CacheError& e) {
      std::cerr << "jetforge: warning: could not store " << source.key << " in the kernel cache: " << e.what() << "\n";
    }
  }
  if (compiled) *compiled = true;
  return k;
}

const Kernel& KernelTable::get(const std::string& key, const std::function<gen::KernelSource()>& emit) {
  std::lock_guard lock(mutex_);
  auto& slot = kernels_[key];
  if (!slot) {
    std::unique_ptr<Kernel> loaded = std::make_unique<Kernel>(compile_or_load(emit(), arch_, cache_.get(), nullptr, on_miss_));
    slot = std::move(loaded);  // only a kernel that compiled and loaded enters the table
  }
  return *slot;
}

const Kernel* KernelTable::find(const gen::Signature& signature) {
  std::lock_guard lock(mutex_);
  auto it = by_signature_.find(signature);
  return it == by_signature_.end() ? nullptr : it->second;
}

void KernelTable::remember(const gen::Signature& signature, const Kernel& kernel) {
  std::lock_guard lock(mutex_);
  by_signature_.emplace(signature, &kernel);
}

std::vector<CompileOutcome> compile_keys(const std::vector<std::string>& keys, const std::string& arch, cache::KernelCache* cache, int jobs,
                                         const std::function<void(const CompileOutcome&)>& each) {
  const auto target = gen::TargetLimits::for_arch(arch);
  std::vector<CompileOutcome> outcomes(keys.size());
  std::atomic<size_t> next{0};
  std::mutex report;
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < keys.size();) {
      CompileOutcome& o = outcomes[i];
      o.key = keys[i];
      try {
        compile_or_load(gen::emit_key(keys[i], target), arch, cache, &o.compiled);
      } catch (const std::exception& e) {
        o.error = e.what();
      }
      if (each) {
        std::lock_guard lock(report);
        each(o);
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, std::min<int>(jobs, int(keys.size()))); ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  return outcomes;
}

std::string Context::gpu_key() const {
  const auto& d = device_.info();
  return d.name + "|" + std::to_string(d.sm_count) + "|" + std::to_string(d.driver_version);
}

Context::SplitKFlags Context::split_k_flags(CUstream stream, std::size_t tiles, int splits) {
  std::lock_guard lock(split_k_mutex_);
  StreamSplitKFlags& f = split_k_flags_[stream];
  if (f.flags.bytes() < tiles * 4) {
    // Calls already queued on the stream may use the old array: they finish before it is freed. The new one starts
    // at zero, below every wait.
    if (f.flags.get()) check(driver().cuStreamSynchronize(stream), "cuStreamSynchronize (growing the split-K flags)");
    f.flags = DeviceBuffer(std::max<std::size_t>(tiles, 4096) * 4);
    f.flags.fill_bytes(0, stream);
  }
  const SplitKFlags out{f.flags.get(), f.next};
  f.next += std::uint32_t(splits);
  return out;
}

std::optional<std::string> Context::tuned(const std::string& problem) {
  std::lock_guard lock(tuned_mutex_);
  return tuned_locked(problem);
}

void Context::store_winner(const std::string& problem, const std::string& spec, double time_us, int candidates) {
  if (!cache()) throw std::runtime_error("store_winner: this context has no kernel cache to store tuning winners in");
  std::lock_guard lock(tuned_mutex_);
  cache()->store_winner(problem, gpu_key(), spec, time_us, candidates);
  tuned_[problem] = spec;
}

std::optional<std::string> Context::tuned_locked(const std::string& problem) {
  if (!cache()) return std::nullopt;
  auto it = tuned_.find(problem);
  if (it != tuned_.end()) return it->second;
  std::optional<std::string> winner;
  try {
    winner = cache()->find_winner(problem, gpu_key());
  } catch (const cache::CacheError& e) {
    std::cerr << "jetforge: warning: kernel cache lookup of tuning winners failed: " << e.what() << "\n";
  }
  return tuned_.emplace(problem, winner).first->second;
}

}  // namespace jetforge
