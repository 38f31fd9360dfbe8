// cuBLASLt, loaded at run time like the driver (the library links no CUDA library but NVRTC): the BF16 GEMMs of the
// BF16 training mode and the cuBLAS anchors of the benchmarks. Row-major matrices throughout.
#pragma once
#include <cublasLt.h>
#include <cuda.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "runtime/device.hpp"

namespace jetforge {

#define JETFORGE_CUBLASLT_FUNCTIONS(X)                                                                                  \
  X(cublasLtCreate) X(cublasLtDestroy) X(cublasLtMatmulDescCreate) X(cublasLtMatmulDescDestroy)                      \
  X(cublasLtMatmulDescSetAttribute) X(cublasLtMatrixLayoutCreate) X(cublasLtMatrixLayoutDestroy)                     \
  X(cublasLtMatmulPreferenceCreate) X(cublasLtMatmulPreferenceDestroy) X(cublasLtMatmulPreferenceSetAttribute)       \
  X(cublasLtMatmulAlgoGetHeuristic) X(cublasLtMatmul)

// The entry points and one handle, from libcublasLt.so.13 (or .12) found by the loader or under $CUDA_HOME/lib64,
// /usr/local/cuda/lib64. `instance()` throws std::runtime_error ("no cuBLASLt found: ...") when it is missing.
struct CublasLt {
#define JETFORGE_CUBLASLT_MEMBER(name) decltype(&::name) name = nullptr;
  JETFORGE_CUBLASLT_FUNCTIONS(JETFORGE_CUBLASLT_MEMBER)
#undef JETFORGE_CUBLASLT_MEMBER
  cublasLtHandle_t handle = nullptr;
  static const CublasLt& instance();
};

void check_cublas(cublasStatus_t status, const char* what);

// One prepared matmul: D (rows x cols, row-major) = alpha * sum over depth of L (rows x depth) * R (depth x cols) +
// beta * D, each operand stored row-major either as written (false) or transposed (true); optionally a bias
// (cols values of D's type) added to every row. The heuristic's first algorithm and a 64 MiB workspace: its own, or the
// caller's `workspace` (kWorkspace bytes) shared by matmuls that run on one stream.
class LtMatmul {
 public:
  static constexpr std::size_t kWorkspace = 64 << 20;
  LtMatmul(std::int64_t rows, std::int64_t cols, std::int64_t depth, bool l_transposed, bool r_transposed, cudaDataType_t in, cudaDataType_t out,
           cublasComputeType_t compute, cudaDataType_t scale, bool with_bias = false, CUdeviceptr workspace = 0);
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;
  // alpha/beta point to values of the scale type; bias is used only by a matmul made with_bias.
  void run(CUdeviceptr l, CUdeviceptr r, CUdeviceptr d, const void* alpha, const void* beta, CUstream stream, CUdeviceptr bias = 0) const;

 private:
  const CublasLt& lt_;
  DeviceBuffer own_workspace_;
  CUdeviceptr workspace_;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, d_ = nullptr;
  cublasLtMatmulHeuristicResult_t heuristic_{};
  bool with_bias_;
};

}  // namespace jetforge
