// FP32 master-weight optimization: cosine learning rate with linear warm-up, gradient clipping by global norm and
// a fused AdamW step (kernels in templates/optim.cuh), with CPU references.
#pragma once
#include <cuda.h>

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/kernels.hpp"

namespace jetforge {

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
};

// Linear warm-up from 0 to max_lr over `warmup` steps, then cosine decay to min_lr at step `total` (and after).
double cosine_lr(std::int64_t step, std::int64_t warmup, std::int64_t total, double max_lr, double min_lr);

// A list of FP32 gradient buffers clipped together.
struct GradientBuffer {
  CUdeviceptr data;
  std::int64_t n;
};

// Device scratch of clip_gradients for these buffers (bytes).
std::size_t clip_workspace_bytes(std::span<const GradientBuffer> grads);

// Global L2 norm of all gradients -> device scalars norm and factor = min(1, max_norm / norm), deterministic.
// Nothing is rescaled here: adamw_step multiplies by factor as it reads each gradient.
void clip_gradients(Context& ctx, std::span<const GradientBuffer> grads, float max_norm, CUdeviceptr workspace, CUdeviceptr norm, CUdeviceptr factor,
                    CUstream stream);

// One AdamW step (step counts from 1) on n parameters; clip_factor: device scalar or 0.
void adamw_step(Context& ctx, CUdeviceptr w, CUdeviceptr g, CUdeviceptr m, CUdeviceptr v, std::int64_t n, std::int64_t step, float lr,
                const AdamWConfig& config, CUdeviceptr clip_factor, CUstream stream);

// FP32 master weights, their gradients and AdamW moments on the GPU (n floats each), with the scratch and device
// scalars of clip_gradients: the whole optimizer state of one training run. Gradients start zeroed (the gaps between
// a layout's tensors are never written, yet enter the global norm); moments start from the given values (a resumed
// run) or zero.
class OptimizerState {
 public:
  explicit OptimizerState(std::span<const float> params, std::span<const float> m = {}, std::span<const float> v = {});

  // clip_gradients over all n gradients: the clip factor that adamw_step then applies.
  void clip(Context& ctx, float max_norm, CUstream stream);
  // adamw_step on floats [first, first + count), with the factor of the last clip.
  void adamw_step(Context& ctx, std::int64_t first, std::int64_t count, std::int64_t step, float lr, const AdamWConfig& config, CUstream stream);

  std::int64_t n;
  DeviceBuffer params, grads, m, v;

 private:
  DeviceBuffer workspace_, norm_, factor_;
};

namespace ref {
void adamw_step(std::span<float> w, std::span<const float> g, std::span<float> m, std::span<float> v, std::int64_t step, float lr, const AdamWConfig& c,
                float clip_factor);
double global_norm(std::span<const std::vector<float>> grads);
}  // namespace ref

}  // namespace jetforge
