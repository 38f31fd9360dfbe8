#include "runtime/driver.hpp"

#include <dlfcn.h>

#include <mutex>

namespace jetforge {

namespace {

struct Loaded {
  Driver table;
  std::string error;  // empty when the driver loaded and cuInit succeeded
};

Loaded load_driver() {
  Loaded out;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    out.error = std::string("no CUDA driver found: dlopen(libcuda.so.1) failed (") + dlerror() +
                "); install the NVIDIA driver, or run on a machine with an NVIDIA GPU";
    return out;
  }
  using GetProcAddress = CUresult (*)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
  auto get_proc = reinterpret_cast<GetProcAddress>(dlsym(lib, "cuGetProcAddress_v2"));
  if (!get_proc) {
    out.error = "no usable CUDA driver: libcuda.so.1 has no cuGetProcAddress_v2 (driver older than CUDA 12); update the NVIDIA driver";
    return out;
  }
  // Asking by base name with the toolkit's CUDA_VERSION returns the entry point matching the headers'
  // signatures (e.g. cuMemAlloc -> cuMemAlloc_v2).
#define JETFORGE_DRIVER_LOAD(name)                                                                              \
  {                                                                                                             \
    void* fn = nullptr;                                                                                         \
    CUdriverProcAddressQueryResult status{};                                                                    \
    if (get_proc(#name, &fn, CUDA_VERSION, CU_GET_PROC_ADDRESS_DEFAULT, &status) != CUDA_SUCCESS || !fn) {     \
      out.error = "CUDA driver too old: it lacks " #name " for CUDA " + std::to_string(CUDA_VERSION / 1000) + \
                  "." + std::to_string(CUDA_VERSION % 1000 / 10) + "; update the NVIDIA driver";               \
      return out;                                                                                               \
    }                                                                                                           \
    out.table.name = reinterpret_cast<decltype(out.table.name)>(fn);                                            \
  }
  JETFORGE_DRIVER_FUNCTIONS(JETFORGE_DRIVER_LOAD)
#undef JETFORGE_DRIVER_LOAD
  if (CUresult r = out.table.cuInit(0); r != CUDA_SUCCESS) {
    const char* name = "?";
    out.table.cuGetErrorName(r, &name);
    out.error = std::string("CUDA driver found but cuInit failed (") + name + "): no usable GPU on this machine";
  }
  return out;
}

const Loaded& loaded() {
  static const Loaded l = load_driver();  // thread-safe one-time initialization
  return l;
}

}  // namespace

const Driver& driver() {
  if (!loaded().error.empty()) throw NoDriverError(loaded().error);
  return loaded().table;
}

bool driver_available(std::string* why) {
  if (why) *why = loaded().error;
  return loaded().error.empty();
}

void check(CUresult result, const char* what) {
  if (result == CUDA_SUCCESS) return;
  const char* name = "unknown";
  const char* text = "";
  driver().cuGetErrorName(result, &name);
  driver().cuGetErrorString(result, &text);
  throw CudaError(result, std::string(what) + " failed: " + name + " (" + text + ")");
}

}  // namespace jetforge
