#include "runtime/attention.hpp"

#include <cmath>
#include <string>

#include "generator/families.hpp"
#include "runtime/require.hpp"
#include "templates/attention_sm90.cuh"

namespace jetforge {

AttentionLayout AttentionLayout::separate(int batch, int heads, int tokens, int head_dim) {
  const AttentionStrides s{i64(heads) * tokens * head_dim, i64(tokens) * head_dim, head_dim};
  return AttentionLayout{batch, heads, tokens, head_dim, s, s};
}

AttentionLayout AttentionLayout::packed_qkv(int batch, int heads, int tokens, int head_dim) {
  const i64 hd = i64(heads) * head_dim;
  return AttentionLayout{batch, heads, tokens, head_dim, AttentionStrides{i64(tokens) * 3 * hd, head_dim, 3 * hd},
                         AttentionStrides{i64(tokens) * hd, head_dim, hd}};
}

namespace {

constexpr int kTile = gen::AttentionSpec::kBlock;

void check_layout(const char* op, const AttentionLayout& l) {
  require(l.batch > 0 && l.heads > 0, [&] { return std::string(op) + ": batch and heads must be positive"; });
  require(l.head_dim == 64 || l.head_dim == 128, [&] { return std::string(op) + ": head_dim=" + std::to_string(l.head_dim) + " is not supported (64 or 128)"; });
  require(l.tokens > 0 && l.tokens % kTile == 0 && l.tokens <= 16384,
          [&] { return std::string(op) + ": T=" + std::to_string(l.tokens) + " must be a positive multiple of 64, at most 16384"; });
  for (const AttentionStrides* s : {&l.qkv, &l.o})
    require(s->token % 8 == 0 && s->head % 8 == 0 && s->batch % 8 == 0,
            [&] { return std::string(op) + ": strides must be multiples of 8 elements (16-byte rows)"; });
}

void check_pointers(const char* op, std::initializer_list<CUdeviceptr> ptrs) {
  for (CUdeviceptr p : ptrs) {
    require(p != 0, [&] { return std::string(op) + ": a tensor pointer is null"; });
    require(p % 16 == 0, [&] { return std::string(op) + ": tensor pointers must be 16-byte aligned"; });
  }
}

AttentionParams params_of(const AttentionLayout& l) {
  AttentionParams p{};
  p.qkv_strides = l.qkv, p.o_strides = l.o;
  p.heads = l.heads, p.tokens = l.tokens;
  p.scale = float(1.0 / std::sqrt(double(l.head_dim)));
  return p;
}

void launch(Context& ctx, const gen::AttentionSpec& spec, const AttentionLayout& l, const AttentionParams& p, CUstream stream) {
  const Kernel& kernel = ctx.kernel(spec);
  if (spec.kernel == gen::AttentionKernel::delta) {
    kernel.launch(unsigned(i64(l.batch) * l.heads * l.tokens / (spec.kThreads / 32)), p, stream);
    return;
  }
  const int rows = spec.rows_per_cta();
  kernel.launch_2d(unsigned((l.tokens + rows - 1) / rows), unsigned(l.batch * l.heads), p, stream, unsigned(spec.smem_bytes()));
}

// A 4-D TMA map (head_dim, T, heads, batch) over one BF16 tensor of the layout: boxes of 64 head-dim columns (128
// bytes, the swizzle width) by `rows` tokens. Tokens past T read as zeros.
TensorMap attention_map(CUdeviceptr base, const AttentionLayout& l, const AttentionStrides& s, int rows) {
  const cuuint64_t dims[4] = {cuuint64_t(l.head_dim), cuuint64_t(l.tokens), cuuint64_t(l.heads), cuuint64_t(l.batch)};
  const cuuint64_t strides[3] = {cuuint64_t(s.token) * 2, cuuint64_t(s.head) * 2, cuuint64_t(s.batch) * 2};
  const cuuint32_t box[4] = {64, cuuint32_t(rows), 1, 1};
  TensorMap map;
  encode_tensor_map_sw128(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, base, dims, strides, box);
  return map;
}

// The Hopper kernel `spec`: the resident 128-token tiles and the streamed ones get maps with their own box heights.
void launch_sm90(Context& ctx, const gen::AttentionSm90Spec& spec, const AttentionLayout& l, const AttentionParams& p, CUdeviceptr q, CUdeviceptr k,
                 CUdeviceptr v, CUdeviceptr d_o, CUstream stream) {
  const bool keys_resident = spec.kernel == gen::AttentionKernel::backward_kv;
  const int queries = keys_resident ? spec.streamed_rows() : spec.kRows, keys = keys_resident ? spec.kRows : spec.streamed_rows();
  AttentionSm90Params params;
  params.q = attention_map(q, l, l.qkv, queries);
  params.k = attention_map(k, l, l.qkv, keys);
  params.v = attention_map(v, l, l.qkv, keys);
  if (d_o) params.d_o = attention_map(d_o, l, l.o, queries);
  params.p = p;
  const unsigned tiles = unsigned((l.tokens + spec.kRows - 1) / spec.kRows);
  ctx.kernel(spec).launch_2d(tiles, unsigned(l.batch * l.heads), params, stream, unsigned(spec.smem_bytes()));
}

bool uses_sm90(const gen::TargetLimits& target, AttentionPath path) { return path == AttentionPath::automatic && gen::AttentionSm90Spec::supports(target); }
bool uses_sm90(Context& ctx, AttentionPath path) { return uses_sm90(ctx.limits(), path); }

// The kernel of family Spec to launch for `kernel`: the tuned (or pinned) choice where it is of that family, else the
// untuned fit.
template <class Spec> Spec chosen(Context& ctx, gen::AttentionKernel kernel, const AttentionLayout& layout, bool causal) {
  const auto tuned = ctx.tuned<AttentionChoice>(
      attention_problem_signature(kernel, layout, causal), [&] { return attention_problem_key(kernel, layout, causal); }, attention_choice);
  return tuned && std::holds_alternative<Spec>(*tuned) ? std::get<Spec>(*tuned) : Spec::fit(kernel, layout.head_dim, causal);
}

}  // namespace

void attention_forward(Context& ctx, const AttentionLayout& layout, bool causal, CUdeviceptr q, CUdeviceptr k, CUdeviceptr v, CUdeviceptr o,
                       CUdeviceptr lse, CUstream stream, AttentionPath path) {
  check_layout("attention_forward", layout);
  check_pointers("attention_forward", {q, k, v, o, lse});
  AttentionParams p = params_of(layout);
  p.q = reinterpret_cast<const bf16*>(q), p.k = reinterpret_cast<const bf16*>(k), p.v = reinterpret_cast<const bf16*>(v);
  p.o = reinterpret_cast<bf16*>(o), p.lse = reinterpret_cast<float*>(lse);
  if (uses_sm90(ctx, path)) launch_sm90(ctx, chosen<gen::AttentionSm90Spec>(ctx, gen::AttentionKernel::forward, layout, causal), layout, p, q, k, v, 0, stream);
  else launch(ctx, chosen<gen::AttentionSpec>(ctx, gen::AttentionKernel::forward, layout, causal), layout, p, stream);
}

void attention_backward(Context& ctx, const AttentionLayout& layout, bool causal, CUdeviceptr q, CUdeviceptr k, CUdeviceptr v, CUdeviceptr o,
                        CUdeviceptr lse, CUdeviceptr d_o, CUdeviceptr delta, CUdeviceptr dq, CUdeviceptr dk, CUdeviceptr dv, CUstream stream,
                        AttentionPath path) {
  check_layout("attention_backward", layout);
  check_pointers("attention_backward", {q, k, v, o, lse, d_o, delta, dq, dk, dv});
  AttentionParams p = params_of(layout);
  p.q = reinterpret_cast<const bf16*>(q), p.k = reinterpret_cast<const bf16*>(k), p.v = reinterpret_cast<const bf16*>(v);
  p.o = reinterpret_cast<bf16*>(o), p.lse = reinterpret_cast<float*>(lse), p.d_o = reinterpret_cast<const bf16*>(d_o);
  p.delta = reinterpret_cast<float*>(delta);
  p.dq = reinterpret_cast<bf16*>(dq), p.dk = reinterpret_cast<bf16*>(dk), p.dv = reinterpret_cast<bf16*>(dv);
  launch(ctx, gen::AttentionSpec::fit(gen::AttentionKernel::delta, layout.head_dim, true), layout, p, stream);
  for (auto kernel : {gen::AttentionKernel::backward_kv, gen::AttentionKernel::backward_q}) {
    if (uses_sm90(ctx, path)) launch_sm90(ctx, chosen<gen::AttentionSm90Spec>(ctx, kernel, layout, causal), layout, p, q, k, v, d_o, stream);
    else launch(ctx, chosen<gen::AttentionSpec>(ctx, kernel, layout, causal), layout, p, stream);
  }
}

void attention_reference(Context& ctx, const AttentionLayout& layout, bool causal, CUdeviceptr q, CUdeviceptr k, CUdeviceptr v, CUdeviceptr d_o,
                         const AttentionReferenceOut& out, CUstream stream) {
  check_layout("attention_reference", layout);
  check_pointers("attention_reference", {q, k, v, d_o, out.o, out.lse, out.delta, out.dq, out.dk, out.dv});
  AttentionReferenceParams p{};
  p.q = reinterpret_cast<const bf16*>(q), p.k = reinterpret_cast<const bf16*>(k), p.v = reinterpret_cast<const bf16*>(v);
  p.d_o = reinterpret_cast<const bf16*>(d_o);
  p.qkv_strides = layout.qkv, p.o_strides = layout.o;
  p.heads = layout.heads, p.tokens = layout.tokens, p.rows = i64(layout.batch) * layout.heads * layout.tokens;
  p.causal = causal, p.scale = float(1.0 / std::sqrt(double(layout.head_dim)));
  p.o = reinterpret_cast<float*>(out.o), p.lse = reinterpret_cast<float*>(out.lse), p.delta = reinterpret_cast<float*>(out.delta);
  p.dq = reinterpret_cast<float*>(out.dq), p.dk = reinterpret_cast<float*>(out.dk), p.dv = reinterpret_cast<float*>(out.dv);
  const auto ctas = unsigned((p.rows + gen::AttentionReferenceSpec::kRowsPerCta - 1) / gen::AttentionReferenceSpec::kRowsPerCta);
  for (auto kernel : {gen::AttentionKernel::forward, gen::AttentionKernel::backward_q, gen::AttentionKernel::backward_kv})
    ctx.kernel(gen::AttentionReferenceSpec{kernel, layout.head_dim}).launch(ctas, p, stream);
}

AttentionChoice attention_choice(const std::string& spec_key) {
  if (spec_key.starts_with(std::string(gen::AttentionSm90Spec::family) + ":")) return gen::parse_key<gen::AttentionSm90Spec>(spec_key);
  return gen::parse_key<gen::AttentionSpec>(spec_key);  // throws SpecError for any other family
}

std::string attention_problem_key(gen::AttentionKernel kernel, const AttentionLayout& l, bool causal) {
  return "attention_" + std::string(gen::enum_name(kernel)) + ":head_dim=" + std::to_string(l.head_dim) + ",causal=" + (causal ? "1" : "0") +
         ",batch=" + std::to_string(l.batch) + ",heads=" + std::to_string(l.heads) + ",tokens=" + std::to_string(l.tokens);
}

gen::Signature attention_problem_signature(gen::AttentionKernel kernel, const AttentionLayout& l, bool causal) {
  return gen::Signature{gen::signature_tag("attention"), std::int64_t(kernel), l.head_dim, causal, l.batch, l.heads, l.tokens};
}

std::vector<std::string> attention_kernel_keys(const gen::TargetLimits& target, int head_dim, bool causal) {
  std::vector<std::string> keys{gen::canonical_key(gen::AttentionSpec::fit(gen::AttentionKernel::delta, head_dim, true))};
  for (auto kernel : {gen::AttentionKernel::forward, gen::AttentionKernel::backward_kv, gen::AttentionKernel::backward_q})
    keys.push_back(uses_sm90(target, AttentionPath::automatic) ? gen::canonical_key(gen::AttentionSm90Spec::fit(kernel, head_dim, causal))
                                                               : gen::canonical_key(gen::AttentionSpec::fit(kernel, head_dim, causal)));
  return keys;
}

}  // namespace jetforge
