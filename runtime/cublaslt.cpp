#include "runtime/cublaslt.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <vector>

namespace jetforge {

namespace {

struct Loaded {
  CublasLt table;
  std::string error;
};

Loaded load() {
  Loaded out;
  std::vector<std::string> candidates{"libcublasLt.so.13", "libcublasLt.so.12"};
  for (const char* dir : {static_cast<const char*>(std::getenv("CUDA_HOME")), "/usr/local/cuda"})
    if (dir)
      for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12"}) candidates.push_back(std::string(dir) + "/lib64/" + name);
  void* lib = nullptr;
  std::string tried;
  for (const auto& c : candidates) {
    if ((lib = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL))) break;
    tried += (tried.empty() ? "" : ", ") + c;
  }
  if (!lib) {
    out.error = "no cuBLASLt found (tried " + tried + "); install the CUDA toolkit's cuBLAS or set CUDA_HOME";
    return out;
  }
#define JETFORGE_CUBLASLT_LOAD(name)                                                                  \
  out.table.name = reinterpret_cast<decltype(out.table.name)>(dlsym(lib, #name));                     \
  if (!out.table.name) {                                                                              \
    out.error = "cuBLASLt too old: it lacks " #name;                                                  \
    return out;                                                                                       \
  }
  JETFORGE_CUBLASLT_FUNCTIONS(JETFORGE_CUBLASLT_LOAD)
#undef JETFORGE_CUBLASLT_LOAD
  if (cublasStatus_t s = out.table.cublasLtCreate(&out.table.handle); s != CUBLAS_STATUS_SUCCESS)
    out.error = "cublasLtCreate failed (cuBLAS status " + std::to_string(int(s)) + ")";
  return out;
}

}  // namespace

const CublasLt& CublasLt::instance() {
  static const Loaded l = load();
  if (!l.error.empty()) throw std::runtime_error(l.error);
  return l.table;
}

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + " failed: cuBLAS status " + std::to_string(int(s)));
}

LtMatmul::LtMatmul(std::int64_t rows, std::int64_t cols, std::int64_t depth, bool l_transposed, bool r_transposed, cudaDataType_t in, cudaDataType_t out,
                   cublasComputeType_t compute, cudaDataType_t scale, bool with_bias, CUdeviceptr workspace)
    : lt_(CublasLt::instance()), own_workspace_(workspace ? 0 : kWorkspace), workspace_(workspace ? workspace : own_workspace_.get()), with_bias_(with_bias) {
  // Row-major D = L R is column-major D^T = R^T L^T: the library's A is R, its B is L.
  check_cublas(lt_.cublasLtMatmulDescCreate(&desc_, compute, scale), "cublasLtMatmulDescCreate");
  const cublasOperation_t op_a = r_transposed ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = l_transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  check_cublas(lt_.cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a), "TRANSA");
  check_cublas(lt_.cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b), "TRANSB");
  if (with_bias) {
    // One value per column of row-major D = per row of D^T. Its elements have D's type: cuBLASLt takes an FP32 bias
    // with BF16 output only for FP8 kernels (the heuristic answers CUBLAS_STATUS_INVALID_VALUE otherwise).
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    check_cublas(lt_.cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue), "EPILOGUE");
  }
  // Column-major shapes: R^T is cols x depth (stored depth x cols row-major = cols x depth col-major, or transposed).
  check_cublas(lt_.cublasLtMatrixLayoutCreate(&a_, in, r_transposed ? depth : cols, r_transposed ? cols : depth, r_transposed ? depth : cols), "layout A");
  check_cublas(lt_.cublasLtMatrixLayoutCreate(&b_, in, l_transposed ? rows : depth, l_transposed ? depth : rows, l_transposed ? rows : depth), "layout B");
  check_cublas(lt_.cublasLtMatrixLayoutCreate(&d_, out, cols, rows, cols), "layout D");
  cublasLtMatmulPreference_t pref;
  check_cublas(lt_.cublasLtMatmulPreferenceCreate(&pref), "preference");
  const std::size_t ws = kWorkspace;
  check_cublas(lt_.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws), "workspace");
  int found = 0;
  check_cublas(lt_.cublasLtMatmulAlgoGetHeuristic(lt_.handle, desc_, a_, b_, d_, d_, pref, 1, &heuristic_, &found), "heuristic");
  lt_.cublasLtMatmulPreferenceDestroy(pref);
  if (found == 0) throw std::runtime_error("cuBLASLt has no algorithm for a " + std::to_string(rows) + "x" + std::to_string(cols) + "x" + std::to_string(depth) + " matmul");
}

LtMatmul::~LtMatmul() {
  lt_.cublasLtMatrixLayoutDestroy(a_);
  lt_.cublasLtMatrixLayoutDestroy(b_);
  lt_.cublasLtMatrixLayoutDestroy(d_);
  lt_.cublasLtMatmulDescDestroy(desc_);
}

void LtMatmul::run(CUdeviceptr l, CUdeviceptr r, CUdeviceptr d, const void* alpha, const void* beta, CUstream stream, CUdeviceptr bias) const {
  if (with_bias_) {
    void* pointer = reinterpret_cast<void*>(bias);
    check_cublas(lt_.cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &pointer, sizeof pointer), "BIAS_POINTER");
  }
  check_cublas(lt_.cublasLtMatmul(lt_.handle, desc_, alpha, reinterpret_cast<void*>(r), a_, reinterpret_cast<void*>(l), b_, beta, reinterpret_cast<void*>(d), d_,
                                  reinterpret_cast<void*>(d), d_, &heuristic_.algo, reinterpret_cast<void*>(workspace_), kWorkspace,
                                  reinterpret_cast<cudaStream_t>(stream)),
               "cublasLtMatmul");
}

}  // namespace jetforge
