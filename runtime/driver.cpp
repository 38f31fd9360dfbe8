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
  // Each entry point is looked up under the name cuda.h maps it to (cuMemAlloc -> cuMemAlloc_v2, ...), which is
  // exactly the symbol a program linked against libcuda would bind, with the signature the headers declare.
  // (cuGetProcAddress by base name would hand out the newest ABI instead, e.g. CUDA 13's cuCtxSynchronize(ctx).)
#define JETFORGE_STRINGIFY_EXPANDED(x) JETFORGE_STRINGIFY(x)
#define JETFORGE_STRINGIFY(x) #x
#define JETFORGE_DRIVER_LOAD(name)                                                                   \
  out.table.name = reinterpret_cast<decltype(out.table.name)>(dlsym(lib, JETFORGE_STRINGIFY_EXPANDED(name))); \
  if (!out.table.name) {                                                                             \
    out.error = "CUDA driver too old: libcuda.so.1 lacks " JETFORGE_STRINGIFY_EXPANDED(name) "; update the NVIDIA driver"; \
    return out;                                                                                      \
  }
  JETFORGE_DRIVER_FUNCTIONS(JETFORGE_DRIVER_LOAD)
#undef JETFORGE_DRIVER_LOAD
#undef JETFORGE_STRINGIFY
#undef JETFORGE_STRINGIFY_EXPANDED
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
