// cuBLASLt baselines for the GEMM benchmark: row-major C = op(A) op(B) through the column-major library,
// with the heuristic's first algorithm and a 64 MiB workspace. Benchmarks only.
#pragma once
#include <cublasLt.h>

#include <stdexcept>
#include <string>

#include "runtime/device.hpp"

namespace jetforge::bench {

inline void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + " failed: cuBLAS status " + std::to_string(int(s)));
}

// One prepared matmul: D (rows x cols, row-major) = sum over depth of L (rows x depth) * R (depth x cols), where
// each operand is stored row-major either as written (false) or transposed (true).
class LtMatmul {
 public:
  LtMatmul(cublasLtHandle_t handle, std::int64_t rows, std::int64_t cols, std::int64_t depth, bool l_transposed, bool r_transposed,
           cudaDataType_t in, cudaDataType_t out, cublasComputeType_t compute, cudaDataType_t scale)
      : handle_(handle), workspace_(kWorkspace) {
    // Row-major D = L R is column-major D^T = R^T L^T: the library's A is R, its B is L.
    check_cublas(cublasLtMatmulDescCreate(&desc_, compute, scale), "cublasLtMatmulDescCreate");
    const cublasOperation_t op_a = r_transposed ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = l_transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
    check_cublas(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a), "TRANSA");
    check_cublas(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b), "TRANSB");
    // Column-major shapes: R^T is cols x depth (stored depth x cols row-major = cols x depth col-major, or transposed).
    check_cublas(cublasLtMatrixLayoutCreate(&a_, in, r_transposed ? depth : cols, r_transposed ? cols : depth, r_transposed ? depth : cols), "layout A");
    check_cublas(cublasLtMatrixLayoutCreate(&b_, in, l_transposed ? rows : depth, l_transposed ? depth : rows, l_transposed ? rows : depth), "layout B");
    check_cublas(cublasLtMatrixLayoutCreate(&d_, out, cols, rows, cols), "layout D");
    cublasLtMatmulPreference_t pref;
    check_cublas(cublasLtMatmulPreferenceCreate(&pref), "preference");
    const size_t ws = kWorkspace;
    check_cublas(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws), "workspace");
    int found = 0;
    check_cublas(cublasLtMatmulAlgoGetHeuristic(handle_, desc_, a_, b_, d_, d_, pref, 1, &heuristic_, &found), "heuristic");
    cublasLtMatmulPreferenceDestroy(pref);
    if (found == 0) throw std::runtime_error("cuBLASLt has no algorithm for this matmul");
  }
  ~LtMatmul() {
    cublasLtMatrixLayoutDestroy(a_);
    cublasLtMatrixLayoutDestroy(b_);
    cublasLtMatrixLayoutDestroy(d_);
    cublasLtMatmulDescDestroy(desc_);
  }
  // alpha/beta point to values of the scale type.
  void run(CUdeviceptr l, CUdeviceptr r, CUdeviceptr d, const void* alpha, const void* beta, CUstream stream) const {
    check_cublas(cublasLtMatmul(handle_, desc_, alpha, reinterpret_cast<void*>(r), a_, reinterpret_cast<void*>(l), b_, beta, reinterpret_cast<void*>(d), d_,
                                reinterpret_cast<void*>(d), d_, &heuristic_.algo, reinterpret_cast<void*>(workspace_.get()), kWorkspace,
                                reinterpret_cast<cudaStream_t>(stream)),
                 "cublasLtMatmul");
  }

 private:
  static constexpr size_t kWorkspace = 64 << 20;
  cublasLtHandle_t handle_;
  DeviceBuffer workspace_;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, d_ = nullptr;
  cublasLtMatmulHeuristicResult_t heuristic_{};
};

}  // namespace jetforge::bench
