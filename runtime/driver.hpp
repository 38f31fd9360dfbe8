// The CUDA Driver API, loaded at run time: dlopen("libcuda.so.1") + dlsym of each entry point. No binary of the
// project links libcuda, so each starts on a machine without a GPU driver and says so when a GPU is needed.
#pragma once
#include <cuda.h>

#include <stdexcept>
#include <string>

namespace jetforge {

// Every driver entry point the project uses. Adding one here is all it takes to call driver().name(...).
#define JETFORGE_DRIVER_FUNCTIONS(X) \
  X(cuInit)                          \
  X(cuDriverGetVersion)              \
  X(cuGetErrorName)                  \
  X(cuGetErrorString)                \
  X(cuDeviceGetCount)                \
  X(cuDeviceGet)                     \
  X(cuDeviceGetName)                 \
  X(cuDeviceGetAttribute)            \
  X(cuDeviceTotalMem)                \
  X(cuDevicePrimaryCtxRetain)        \
  X(cuDevicePrimaryCtxRelease)       \
  X(cuCtxSetCurrent)                 \
  X(cuCtxSynchronize)                \
  X(cuModuleLoadData)                \
  X(cuModuleUnload)                  \
  X(cuModuleGetFunction)             \
  X(cuFuncGetAttribute)              \
  X(cuFuncSetAttribute)              \
  X(cuLaunchKernel)                  \
  X(cuLaunchKernelEx)                \
  X(cuMemAlloc)                      \
  X(cuMemFree)                       \
  X(cuMemcpyHtoD)                    \
  X(cuMemcpyDtoH)                    \
  X(cuMemcpyHtoDAsync)               \
  X(cuMemcpyDtoDAsync)               \
  X(cuMemsetD8Async)                 \
  X(cuMemsetD32Async)                \
  X(cuMemGetInfo)                    \
  X(cuStreamCreate)                  \
  X(cuStreamDestroy)                 \
  X(cuStreamSynchronize)             \
  X(cuEventCreate)                   \
  X(cuEventDestroy)                  \
  X(cuEventRecord)                   \
  X(cuEventSynchronize)              \
  X(cuEventElapsedTime)              \
  X(cuTensorMapEncodeTiled)

struct Driver {
#define JETFORGE_DRIVER_MEMBER(name) decltype(&::name) name = nullptr;
  JETFORGE_DRIVER_FUNCTIONS(JETFORGE_DRIVER_MEMBER)
#undef JETFORGE_DRIVER_MEMBER
};

// Thrown when no usable driver is there; the message says what was tried and what to do.
struct NoDriverError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct CudaError : std::runtime_error {
  CudaError(CUresult code, const std::string& what) : std::runtime_error(what), code(code) {}
  CUresult code;
};

// Loads and initializes the driver on first use (thread-safe); throws NoDriverError when there is none.
const Driver& driver();

// True when driver() would succeed; otherwise *why (if given) says why not. Never throws.
bool driver_available(std::string* why = nullptr);

// Throws CudaError naming the failed call and the driver's own description of the error.
void check(CUresult result, const char* what);

}  // namespace jetforge
