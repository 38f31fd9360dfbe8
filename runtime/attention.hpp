// The BF16 attention core, softmax(Q K^T / sqrt(d)) V per (batch, head), forward and backward (kernels in
// templates/attention.cuh, CPU reference in runtime/reference_attention.hpp).
#pragma once
#include <cuda.h>

#include <string>
#include <variant>
#include <vector>

#include "generator/families.hpp"
#include "runtime/kernels.hpp"
#include "templates/attention.cuh"
#include "templates/attention_reference.cuh"

namespace jetforge {

// Where the BF16 tensors live: element (b, h, t, d) of Q, K, V and of their gradients at
// b * qkv.batch + h * qkv.head + t * qkv.token + d (elements from each tensor's base pointer), of O and dO alike
// with the o strides.
struct AttentionLayout {
  int batch = 0, heads = 0, tokens = 0, head_dim = 0;
  AttentionStrides qkv{}, o{};
  // Q, K, V and O each [batch, heads, T, d].
  static AttentionLayout separate(int batch, int heads, int tokens, int head_dim);
  // Q, K, V interleaved as a fused QKV projection writes them, [batch, T, 3, heads, d] (so K = Q + heads * d and
  // V = Q + 2 * heads * d elements), and O as [batch, T, heads, d], the input of the output projection.
  static AttentionLayout packed_qkv(int batch, int heads, int tokens, int head_dim);
  // In a packed_qkv tensor (or its gradient), the bytes from Q's base pointer to K's (which = 1) or V's (which = 2).
  CUdeviceptr packed_offset(int which) const { return CUdeviceptr(which) * CUdeviceptr(heads) * CUdeviceptr(head_dim) * 2; }
};

// Which kernels run: the Hopper ones (TMA, wgmma) where the GPU is sm_90, else the portable ones; or the portable
// ones everywhere (tests and benchmarks compare the two on the same GPU).
enum class AttentionPath { automatic, portable };

// O (BF16) and lse (FP32, [batch, heads, T]: the log-sum-exp of each row, which the backward pass needs).
// Requires head_dim 64 or 128, T a multiple of 64 up to 16384, 16-byte aligned rows.
void attention_forward(Context& ctx, const AttentionLayout& layout, bool causal, CUdeviceptr q, CUdeviceptr k, CUdeviceptr v, CUdeviceptr o,
                       CUdeviceptr lse, CUstream stream, AttentionPath path = AttentionPath::automatic);

// dQ, dK, dV (BF16, the qkv layout) from dO and the forward's O and lse. delta: FP32 scratch of batch * heads * T.
// Deterministic: no atomics, every gradient element is summed in a fixed order by one thread.
void attention_backward(Context& ctx, const AttentionLayout& layout, bool causal, CUdeviceptr q, CUdeviceptr k, CUdeviceptr v, CUdeviceptr o,
                        CUdeviceptr lse, CUdeviceptr d_o, CUdeviceptr delta, CUdeviceptr dq, CUdeviceptr dk, CUdeviceptr dv, CUstream stream,
                        AttentionPath path = AttentionPath::automatic);

// The FP32 reference on the GPU (templates/attention_reference.cuh), for tests on shapes too large for the CPU one:
// from the same BF16 inputs and layout, O, lse, delta and the gradients in FP32, [batch * heads][T][head_dim]
// ([batch * heads][T] for lse and delta).
struct AttentionReferenceOut {
  CUdeviceptr o, lse, delta, dq, dk, dv;
};
void attention_reference(Context& ctx, const AttentionLayout& layout, bool causal, CUdeviceptr q, CUdeviceptr k, CUdeviceptr v, CUdeviceptr d_o,
                         const AttentionReferenceOut& out, CUstream stream);

// The canonical keys of the kernels attention_forward and attention_backward launch untuned on `target` by the automatic
// path (what a kernel cache built ahead of time must hold for them).
std::vector<std::string> attention_kernel_keys(const gen::TargetLimits& target, int head_dim, bool causal);

// Tuning (`jetforge tune`): each of the forward, backward_kv and backward_q kernels is a problem of its own, the call's
// shape, e.g. "attention_forward:head_dim=64,causal=1,batch=8,heads=12,tokens=1024" or "attention_backward_q:...";
// its candidates vary the Hopper kernel's stages (the forward's keys per tile and schedule too) or the portable
// kernel's tile. The operators take the stored winner for each kernel where the winner is of the path they run, or a
// choice pinned for its signature (Context::pin, as the tuner times candidates).
using AttentionChoice = std::variant<gen::AttentionSpec, gen::AttentionSm90Spec>;
AttentionChoice attention_choice(const std::string& spec_key);  // by the key's family
std::string attention_problem_key(gen::AttentionKernel kernel, const AttentionLayout& layout, bool causal);
gen::Signature attention_problem_signature(gen::AttentionKernel kernel, const AttentionLayout& layout, bool causal);

}  // namespace jetforge
