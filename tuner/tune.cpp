#include "tuner/tune.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include "bench/timing.hpp"
#include "generator/families.hpp"
#include "runtime/attention.hpp"
#include "runtime/ops.hpp"
#include "tuner/yaml_file.hpp"

namespace jetforge::tuner {

namespace {

using Clock = std::chrono::steady_clock;

class GemmTrial : public Trial {
 public:
  GemmTrial(Context& ctx, const GemmShape& s)
      : ctx_(ctx), s_(s), a_(s.m, s.k, 32, s.group), b_(s.n, s.k, 32, s.group), c8_(s.m, s.n), cd_(s.m, s.n, s.out == gen::GemmOut::bf16 ? DType::bf16 : DType::f32) {
    fill_random(a_, 1), fill_random(b_, 3);
  }
  std::function<void(CUstream)> runner(const std::string& spec) override {
    const GemmOptions o{s_.rounding, 1, 0, false, choice_from_spec(spec), false};
    if (s_.out == gen::GemmOut::i8) return [this, o](CUstream st) { gemm(ctx_, a_.ref(), b_.ref(), c8_.ref(), o, st); };
    return [this, o](CUstream st) { gemm(ctx_, a_.ref(), b_.ref(), cd_.ref(), o, st); };
  }
  void poison(CUstream stream) override { (s_.out == gen::GemmOut::i8 ? c8_.codes() : cd_.buffer()).fill_bytes(0xff, stream); }
  std::vector<const DeviceBuffer*> outputs() override {
    if (s_.out == gen::GemmOut::i8) return {&c8_.codes(), &c8_.scales()};
    return {&cd_.buffer()};
  }
  // FP32 output: candidates that split K (or not, where the default does) add in another order, about 1e-7 of the
  // largest value apart; a wrong tile is O(1) off. The others must give the default's bits.
  std::optional<Tolerance> tolerance() const override {
    if (s_.out == gen::GemmOut::f32) return Tolerance{1e-5, {DType::f32}};
    return std::nullopt;
  }

 private:
  Context& ctx_;
  GemmShape s_;
  BlockTensor a_, b_, c8_;
  DenseTensor cd_;
};

class QuantizeTrial : public Trial {
 public:
  QuantizeTrial(Context& ctx, const QuantizeShape& s)
      : ctx_(ctx), s_(s), x_(s.rows, s.cols, s.in), q_(s.rows, s.cols), qt_(s.transpose ? s.cols : 32, s.transpose ? s.rows : 32) {
    // N(0, 1) values: a random strip of up to 256 rows, copied down the matrix (host RNG for the largest problem,
    // the logits' gradient, would take seconds).
    DenseTensor strip(std::min<std::int64_t>(s.rows, 256), s.cols, s.in);
    fill_random(strip, 5);
    const std::size_t bytes = x_.buffer().bytes(), part = strip.buffer().bytes();
    for (std::size_t at = 0; at < bytes; at += part)
      check(driver().cuMemcpyDtoDAsync(x_.buffer().get() + at, strip.buffer().get(), std::min(part, bytes - at), nullptr), "cuMemcpyDtoDAsync (random strip)");
    check(driver().cuStreamSynchronize(nullptr), "cuStreamSynchronize");
  }
  std::function<void(CUstream)> runner(const std::string& spec) override {
    const QuantizeOptions o{s_.rounding, 7, gen::parse_key<gen::QuantizeSpec>(spec), false};
    if (s_.transpose) return [this, o](CUstream st) { quantize_transpose(ctx_, x_.ref(), q_.ref(), qt_.ref(), o, st); };
    return [this, o](CUstream st) { quantize(ctx_, x_.ref(), q_.ref(), o, st); };
  }
  void poison(CUstream stream) override { q_.codes().fill_bytes(0xff, stream), qt_.codes().fill_bytes(0xff, stream); }
  std::vector<const DeviceBuffer*> outputs() override {
    if (s_.transpose) return {&q_.codes(), &q_.scales(), &qt_.codes(), &qt_.scales()};
    return {&q_.codes(), &q_.scales()};
  }

 private:
  Context& ctx_;
  QuantizeShape s_;
  DenseTensor x_;
  BlockTensor q_, qt_;
};

// A block-tile operator of the step, run through the operator itself with the candidate pinned as its problem's
// choice (Context::pin), so that what is timed is what training calls.
class TileOpTrial : public Trial {
 public:
  TileOpTrial(Context& ctx, const TileOpShape& s)
      : ctx_(ctx), s_(s), problem_(std::visit([&](const auto& fitted) { return gen::block_tile_problem_signature(fitted, s.rows, s.cols); }, s.fitted)) {
    std::visit([&](const auto& spec) { setup(spec); }, s.fitted);
  }
  ~TileOpTrial() override { ctx_.unpin(problem_); }  // from now on the operator takes the stored winner
  std::function<void(CUstream)> runner(const std::string& key) override {
    return std::visit(
        [&](const auto& fitted) -> std::function<void(CUstream)> {
          const auto spec = gen::parse_key<std::decay_t<decltype(fitted)>>(key);
          return [this, spec](CUstream st) {
            ctx_.pin(problem_, spec);
            launch_(st);
          };
        },
        s_.fitted);
  }
  void poison(CUstream stream) override {
    for (DeviceBuffer* b : outputs_) b->fill_bytes(0xff, stream);
    // The residual stream is read and written: after the fill, it gets its first value back.
    if (stream_initial_) check(driver().cuMemcpyDtoDAsync(stream_->buffer().get(), stream_initial_->buffer().get(), stream_->buffer().bytes(), stream),
                               "cuMemcpyDtoDAsync (residual stream)");
  }
  std::vector<const DeviceBuffer*> outputs() override { return {outputs_.begin(), outputs_.end()}; }

 private:
  BlockTensor& block(std::int64_t rows, std::int64_t cols, bool random) {
    blocks_.push_back(std::make_unique<BlockTensor>(rows, cols));
    if (random) fill_random(*blocks_.back(), 11 + blocks_.size());
    return *blocks_.back();
  }
  DenseTensor& dense(std::int64_t rows, std::int64_t cols, gen::DType dtype, bool random) {
    denses_.push_back(std::make_unique<DenseTensor>(rows, cols, dtype));
    if (random) fill_random(*denses_.back(), 17 + denses_.size());
    return *denses_.back();
  }
  void output_block(BlockTensor& t) { outputs_.push_back(&t.codes()), outputs_.push_back(&t.scales()); }

  void setup(const gen::TransposeSpec&) {
    BlockTensor &q = block(s_.rows, s_.cols, true), &qt = block(s_.cols, s_.rows, false);
    output_block(qt);
    launch_ = [this, &q, &qt](CUstream st) { transpose(ctx_, q.ref(), qt.ref(), st); };
  }
  void setup(const gen::DequantizeSpec& spec) {
    const BlockTensor& q = block(s_.rows, s_.cols, true);
    DenseTensor& y = dense(s_.rows, s_.cols, spec.out, false);
    outputs_.push_back(&y.buffer());
    launch_ = [this, &q, &y](CUstream st) { dequantize(ctx_, q.ref(), y.ref(), st); };
  }
  void setup(const gen::ElementwiseSpec& spec) {
    using gen::Elementwise;
    const std::int64_t R = s_.rows, C = s_.cols;
    BlockTensor &x = block(R, C, true), &out = block(R, C, false);
    output_block(out);
    // The gradient input, only for the operators that read one (random codes are drawn on the host).
    const bool reads_dy = spec.op == Elementwise::gelu_tanh_grad || spec.op == Elementwise::gelu_erf_grad;
    BlockTensor& dy = reads_dy ? block(R, C, true) : x;
    const GeluForm form = spec.op == Elementwise::gelu_erf || spec.op == Elementwise::gelu_erf_grad ? GeluForm::erf : GeluForm::tanh;
    switch (spec.op) {
      case Elementwise::gelu_tanh:
      case Elementwise::gelu_erf: launch_ = [this, &x, &out, form](CUstream st) { gelu_forward(ctx_, x.ref(), out.ref(), form, st); }; return;
      case Elementwise::gelu_tanh_grad:
      case Elementwise::gelu_erf_grad:
        launch_ = [this, &x, &dy, &out, form](CUstream st) { gelu_backward(ctx_, dy.ref(), x.ref(), out.ref(), form, 5, st); };
        return;
      case Elementwise::dropout: launch_ = [this, &x, &out](CUstream st) { dropout_forward(ctx_, x.ref(), out.ref(), 0.1f, 3, st); }; return;
    }
  }
  void setup(const gen::ResidualSpec& spec) {
    // The stream is updated in place: poison() puts its first value back before every checked run (the first,
    // reference run starts from it too).
    stream_ = &dense(s_.rows, s_.cols, spec.stream, true);
    stream_initial_ = &dense(s_.rows, s_.cols, spec.stream, false);
    check(driver().cuMemcpyDtoDAsync(stream_initial_->buffer().get(), stream_->buffer().get(), stream_->buffer().bytes(), nullptr),
          "cuMemcpyDtoDAsync (residual stream)");
    check(driver().cuStreamSynchronize(nullptr), "cuStreamSynchronize");  // the tuner's stream does not wait for this one
    const BlockTensor& x = block(s_.rows, s_.cols, true);
    BlockTensor& copy = block(s_.rows, s_.cols, false);
    outputs_.push_back(&stream_->buffer());
    output_block(copy);
    if (spec.round == gen::Rounding::nearest) {
      // As the model runs it: with the next LayerNorm's statistics when the spec takes them.
      DenseTensor &mean = dense(1, s_.rows, gen::DType::f32, false), &rstd = dense(1, s_.rows, gen::DType::f32, false);
      DenseTensor& sums = dense(1, std::int64_t(residual_stats_workspace_bytes(s_.rows, s_.cols) / 4), gen::DType::f32, false);
      if (spec.stats) outputs_.push_back(&mean.buffer()), outputs_.push_back(&rstd.buffer());
      stats_ = LayerNormStatsOut{mean.ref().data, rstd.ref().data, sums.ref().data, 1e-5f};
      launch_ = [this, &x, &copy, stats = spec.stats](CUstream st) { residual_add(ctx_, stream_->ref(), x.ref(), copy.ref(), stats ? &stats_ : nullptr, st); };
    } else
      launch_ = [this, &x, &copy](CUstream st) { residual_add_backward(ctx_, stream_->ref(), x.ref(), copy.ref(), 5, st); };
  }

  void setup(const gen::LayerNormApplySpec&) {
    const BlockTensor& x = block(s_.rows, s_.cols, true);
    BlockTensor& y = block(s_.rows, s_.cols, false);
    output_block(y);
    // Any finite statistics and affine parameters do for timing and the bit-for-bit check.
    const DenseTensor &gamma = dense(1, s_.cols, gen::DType::f32, true), &beta = dense(1, s_.cols, gen::DType::f32, true);
    const DenseTensor &mean = dense(1, s_.rows, gen::DType::f32, true), &rstd = dense(1, s_.rows, gen::DType::f32, true);
    launch_ = [this, &x, &y, &gamma, &beta, &mean, &rstd](CUstream st) {
      layernorm_apply(ctx_, x.ref(), gamma.ref().data, beta.ref().data, mean.ref().data, rstd.ref().data, y.ref(), st);
    };
  }

  Context& ctx_;
  TileOpShape s_;
  gen::Signature problem_;
  LayerNormStatsOut stats_;
  std::vector<std::unique_ptr<BlockTensor>> blocks_;
  std::vector<std::unique_ptr<DenseTensor>> denses_;
  DenseTensor *stream_ = nullptr, *stream_initial_ = nullptr;
  std::vector<DeviceBuffer*> outputs_;
  std::function<void(CUstream)> launch_;
};

// One attention kernel, the candidate (a Hopper or a portable kernel) pinned as its problem's choice (as TileOpTrial
// does), run through the operator: the forward, or the whole backward (its delta kernel and the other backward kernel
// add the same time to every candidate) from a forward's O and lse. The candidates' tiles change the order of sums, so
// their outputs agree to rounding, not bit for bit.
class AttentionTrial : public Trial {
 public:
  AttentionTrial(Context& ctx, const AttentionShape& s, gen::AttentionKernel kernel)
      : ctx_(ctx),
        kernel_(kernel),
        layout_(AttentionLayout::packed_qkv(s.batch, s.heads, s.tokens, s.head_dim)),
        problem_(attention_problem_signature(kernel, layout_, true)),
        qkv_(std::int64_t(s.batch) * s.tokens, 3 * std::int64_t(s.heads) * s.head_dim, DType::bf16),
        grads_(std::int64_t(s.batch) * s.tokens, 3 * std::int64_t(s.heads) * s.head_dim, DType::bf16),
        o_(std::int64_t(s.batch) * s.tokens, std::int64_t(s.heads) * s.head_dim, DType::bf16),
        d_o_(std::int64_t(s.batch) * s.tokens, std::int64_t(s.heads) * s.head_dim, DType::bf16),
        lse_(std::size_t(s.batch) * s.heads * s.tokens * 4),
        delta_(std::size_t(s.batch) * s.heads * s.tokens * 4) {
    fill_random(qkv_, 23), fill_random(d_o_, 24);
    if (kernel_ != gen::AttentionKernel::forward) attention_forward(ctx_, layout_, true, q(qkv_), k(qkv_), v(qkv_), o_.ref().data, lse_.get(), nullptr);
  }
  ~AttentionTrial() override { ctx_.unpin(problem_); }
  std::function<void(CUstream)> runner(const std::string& key) override {
    const AttentionChoice choice = attention_choice(key);
    return [this, choice](CUstream st) {
      ctx_.pin(problem_, choice);
      if (kernel_ == gen::AttentionKernel::forward) attention_forward(ctx_, layout_, true, q(qkv_), k(qkv_), v(qkv_), o_.ref().data, lse_.get(), st);
      else
        attention_backward(ctx_, layout_, true, q(qkv_), k(qkv_), v(qkv_), o_.ref().data, lse_.get(), d_o_.ref().data, delta_.get(), q(grads_),
                           k(grads_), v(grads_), st);
    };
  }
  void poison(CUstream stream) override {
    if (kernel_ == gen::AttentionKernel::forward) o_.buffer().fill_bytes(0xff, stream), lse_.fill_bytes(0xff, stream);
    else grads_.buffer().fill_bytes(0xff, stream);
  }
  std::vector<const DeviceBuffer*> outputs() override {
    if (kernel_ == gen::AttentionKernel::forward) return {&o_.buffer(), &lse_};
    return {&grads_.buffer()};
  }
  // Two BF16 kernels that round P (or dS) differently differ by about a unit of the last place; a wrong tile by O(1).
  std::optional<Tolerance> tolerance() const override {
    if (kernel_ == gen::AttentionKernel::forward) return Tolerance{1e-2, {DType::bf16, DType::f32}};
    return Tolerance{1e-2, {DType::bf16}};
  }

 private:
  // Q, K and V of a packed [batch, T, 3, heads, d] tensor (the layout a fused QKV projection writes).
  CUdeviceptr q(const DenseTensor& t) const { return t.ref().data; }
  CUdeviceptr k(const DenseTensor& t) const { return q(t) + layout_.packed_offset(1); }
  CUdeviceptr v(const DenseTensor& t) const { return q(t) + layout_.packed_offset(2); }

  Context& ctx_;
  gen::AttentionKernel kernel_;
  AttentionLayout layout_;
  gen::Signature problem_;
  DenseTensor qkv_, grads_, o_, d_o_;
  DeviceBuffer lse_, delta_;
};

// Keys in order, the first kept first, duplicates dropped.
void add_unique(std::vector<std::string>& keys, std::string key) {
  for (const auto& k : keys)
    if (k == key) return;
  keys.push_back(std::move(key));
}

// A candidate joins only if it passes its family's static limits on the target (`validate` throws SpecError if
// not): nothing is compiled that cannot run.
template <class Validate> void add_if_valid(std::vector<std::string>& keys, std::string key, const Validate& validate) {
  try {
    validate();
  } catch (const gen::SpecError&) {
    return;
  }
  add_unique(keys, std::move(key));
}
template <class Spec> void add_if_valid(std::vector<std::string>& keys, const Spec& spec, const gen::TargetLimits& target) {
  add_if_valid(keys, gen::canonical_key(spec), [&] { spec.validate(target); });
}

std::vector<std::string> quantize_candidates(const QuantizeShape& q, const gen::TargetLimits& target, const QuantizeSpace& space) {
  const auto base = gen::QuantizeSpec::fit(q.in, q.rows, q.cols, 32, q.rounding, q.transpose);
  std::vector<std::string> keys{gen::canonical_key(base)};
  for (int threads : space.threads)
    for (int stages : space.stages)
      for (int unit : q.transpose ? space.transpose_unit : std::vector<int>{base.transpose_unit}) {
        gen::QuantizeSpec s = base;
        s.tile.threads = threads, s.stages = stages, s.transpose_unit = unit;
        add_if_valid(keys, s, target);
      }
  return keys;
}

std::vector<std::string> tile_candidates(const TileOpShape& t, const gen::TargetLimits& target, const TileSpace& space) {
  return std::visit(
      [&](const auto& fitted) {
        std::vector<std::string> keys{gen::canonical_key(fitted)};
        for (int rows : space.tile_rows)
          for (int cols : space.tile_cols)
            for (int threads : space.threads) {
              auto s = fitted;
              s.tile = {rows, cols, threads};
              if (t.rows % (rows * 32) == 0 && t.cols % (cols * 32) == 0) add_if_valid(keys, s, target);  // whole tiles only
            }
        return keys;
      },
      t.fitted);
}

}  // namespace

std::vector<std::string> attention_candidates(gen::AttentionKernel kernel, int head_dim, bool causal, const gen::TargetLimits& target,
                                              const AttentionSpace& space) {
  if (!gen::AttentionSm90Spec::supports(target)) {
    const auto base = gen::AttentionSpec::fit(kernel, head_dim, causal);
    std::vector<std::string> keys{gen::canonical_key(base)};
    for (int tile : space.tile) {
      auto s = base;
      s.tile = tile;
      add_if_valid(keys, s, target);
    }
    return keys;
  }
  const bool forward = kernel == gen::AttentionKernel::forward;
  const auto base = gen::AttentionSm90Spec::fit(kernel, head_dim, causal);
  std::vector<std::string> keys{gen::canonical_key(base)};
  for (int k : forward ? space.keys : std::vector<int>{base.keys})
    for (int stages : space.stages)
      for (auto schedule : forward ? space.schedule : std::vector<gen::AttentionSchedule>{base.schedule}) {
        auto s = base;
        s.keys = k, s.stages = stages, s.schedule = schedule;
        add_if_valid(keys, s, target);
      }
  return keys;
}

namespace {

std::vector<int> int_list(const YAML::Node& v, const std::function<void(const std::string&)>& fail) {
  if (!v.IsSequence() || v.size() == 0) fail("expected a non-empty list of values");
  return v.as<std::vector<int>>();
}

// A list of an enum's names (`what` names one in the error: "a fold").
template <class E> std::vector<E> enum_list(const YAML::Node& v, const char* what, const std::function<void(const std::string&)>& fail) {
  if (!v.IsSequence() || v.size() == 0) fail("expected a non-empty list of values");
  std::vector<E> out;
  for (const auto& item : v) {
    const auto name = item.as<std::string>();
    bool found = false;
    std::string known;
    for (const auto& [value, value_name] : gen::EnumNames<E>::table) {
      if (value_name == name) out.push_back(value), found = true;
      known += (known.empty() ? "" : ", ") + std::string(value_name);
    }
    if (!found) fail("'" + name + "' is not " + what + " (" + known + ")");
  }
  return out;
}

}  // namespace

double max_relative_difference(const void* got, const void* want, std::size_t count, gen::DType type) {
  const auto value = [type](const void* base, std::size_t i) -> double {
    switch (type) {
      case gen::DType::f32: return static_cast<const float*>(base)[i];
      case gen::DType::bf16: return bf16_to_float(static_cast<const bf16*>(base)[i]);
      default: throw std::invalid_argument("max_relative_difference: FP32 or BF16 values only");
    }
  };
  double largest = 0, worst = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const double g = value(got, i), w = value(want, i);
    if (!std::isfinite(g) || !std::isfinite(w)) return INFINITY;
    largest = std::max(largest, std::abs(w)), worst = std::max(worst, std::abs(g - w));
  }
  return worst == 0 ? 0 : worst / largest;
}

std::vector<GemmKernelChoice> gemm_search_space(const gen::TargetLimits& target, const GemmSpace& space) {
  std::vector<GemmKernelChoice> out;
  const bool hopper = gen::GemmSm90Spec::supports(target);
  for (auto fold : space.fold) {
    if (hopper)
      for (int bn : space.bn)
        for (int stages : space.stages)
          for (int cluster : space.cluster)
            for (int overlap : space.overlap)
              for (int persistent : space.persistent)
                for (auto epilogue : space.epilogue)
                  for (int split_k : space.split_k) out.push_back(GemmKernelChoice{false, bn, stages, fold, cluster, overlap, persistent, epilogue, split_k});
    if (space.portable || !hopper) out.push_back(GemmKernelChoice{true, 128, 3, fold, 1});
  }
  return out;
}

TuneSpace load_space(const std::filesystem::path& file) {
  const YAML::Node root = load_yaml_file(file, "tuning space");
  TuneSpace space;
  for (const auto& section : root) {
    const std::string family = section.first.as<std::string>();
    if (family != "gemm" && family != "quantize" && family != "tile" && family != "attention")
      throw ConfigError(file.string() + ":" + std::to_string(section.first.Mark().line + 1) + ": key '" + family +
                        "': unknown family (known: gemm, quantize, tile, attention)");
    for (const auto& kv : section.second) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      auto fail = [&](const std::string& what) {
        throw ConfigError(file.string() + ":" + std::to_string(v.Mark().line + 1) + ": key '" + family + "." + key + "': " + what);
      };
      try {
        if (family == "quantize") {
          if (key == "threads") space.quantize.threads = int_list(v, fail);
          else if (key == "stages") space.quantize.stages = int_list(v, fail);
          else if (key == "transpose_unit") space.quantize.transpose_unit = int_list(v, fail);
          else fail("unknown key (known: threads, stages, transpose_unit)");
        } else if (family == "tile") {
          if (key == "tile_rows") space.tile.tile_rows = int_list(v, fail);
          else if (key == "tile_cols") space.tile.tile_cols = int_list(v, fail);
          else if (key == "threads") space.tile.threads = int_list(v, fail);
          else fail("unknown key (known: tile_rows, tile_cols, threads)");
        } else if (family == "attention") {
          if (key == "keys") space.attention.keys = int_list(v, fail);
          else if (key == "stages") space.attention.stages = int_list(v, fail);
          else if (key == "schedule") space.attention.schedule = enum_list<gen::AttentionSchedule>(v, "a schedule", fail);
          else if (key == "tile") space.attention.tile = int_list(v, fail);
          else fail("unknown key (known: keys, stages, schedule, tile)");
        } else if (key == "portable") {
          space.gemm.portable = v.as<bool>();
        } else if (key == "bn") {
          space.gemm.bn = int_list(v, fail);
        } else if (key == "stages") {
          space.gemm.stages = int_list(v, fail);
        } else if (key == "cluster") {
          space.gemm.cluster = int_list(v, fail);
        } else if (key == "overlap") {
          space.gemm.overlap = int_list(v, fail);
        } else if (key == "persistent") {
          space.gemm.persistent = int_list(v, fail);
        } else if (key == "fold") {
          space.gemm.fold = enum_list<gen::GemmFold>(v, "a fold", fail);
        } else if (key == "epilogue") {
          space.gemm.epilogue = enum_list<gen::GemmEpilogue>(v, "an epilogue", fail);
        } else if (key == "split_k") {
          space.gemm.split_k = int_list(v, fail);
        } else {
          fail("unknown key (known: bn, stages, cluster, overlap, persistent, fold, epilogue, split_k, portable)");
        }
      } catch (const YAML::BadConversion&) {
        fail("values of the wrong type");
      }
    }
  }
  return space;
}

std::vector<TuneProblem> tune_problems(const ModelConfig& config, const gen::TargetLimits& target, const TuneSpace& space) {
  std::vector<TuneProblem> out;
  const auto choices = gemm_search_space(target, space.gemm);
  for (const auto& s : gemm_shapes(config)) {
    std::vector<std::string> keys{gemm_kernel_key(s.out, s.group, s.rounding, s.m, s.n, s.k, GemmKernelChoice{}, target)};
    for (const auto& c : choices) {
      const auto key = gemm_kernel_key(s.out, s.group, s.rounding, s.m, s.n, s.k, c, target);
      add_if_valid(keys, key, [&] { gen::emit_key(key, target); });
    }
    out.push_back({"gemm", s.name + " " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k), s.key(), std::move(keys),
                   [s](Context& ctx) { return std::make_unique<GemmTrial>(ctx, s); }});
  }
  for (const auto& q : quantize_shapes(config))
    out.push_back({"quantize", q.name + (q.transpose ? " quantize+transpose " : " quantize ") + std::to_string(q.rows) + "x" + std::to_string(q.cols),
                   q.key(), quantize_candidates(q, target, space.quantize), [q](Context& ctx) { return std::make_unique<QuantizeTrial>(ctx, q); }});
  for (const auto& t : tile_op_shapes(config))
    out.push_back({std::visit([](const auto& s) { return std::string(std::decay_t<decltype(s)>::family); }, t.fitted),
                   t.name + " " + std::to_string(t.rows) + "x" + std::to_string(t.cols), t.key(), tile_candidates(t, target, space.tile),
                   [t](Context& ctx) { return std::make_unique<TileOpTrial>(ctx, t); }});
  const auto a = attention_shape(config);
  for (auto kernel : {gen::AttentionKernel::forward, gen::AttentionKernel::backward_kv, gen::AttentionKernel::backward_q})
    out.push_back({"attention",
                   "attention " + std::string(gen::enum_name(kernel)) + " " + std::to_string(a.batch) + "x" + std::to_string(a.heads) + "x" +
                       std::to_string(a.tokens) + "x" + std::to_string(a.head_dim),
                   a.key(kernel), attention_candidates(kernel, a.head_dim, true, target, space.attention),
                   [a, kernel](Context& ctx) { return std::make_unique<AttentionTrial>(ctx, a, kernel); }});
  return out;
}

std::set<std::string> candidate_keys(const std::vector<TuneProblem>& problems) {
  std::set<std::string> keys;
  for (const auto& p : problems) keys.insert(p.candidates.begin(), p.candidates.end());
  return keys;
}

namespace {

std::vector<CompileOutcome> compile_problems(const std::vector<TuneProblem>& problems, const std::string& arch, cache::KernelCache& cache, int jobs) {
  const auto keys = candidate_keys(problems);
  return compile_keys(std::vector<std::string>(keys.begin(), keys.end()), arch, &cache, jobs);
}

}  // namespace

std::vector<CompileOutcome> compile_candidates(const ModelConfig& config, const std::string& arch, cache::KernelCache& cache, int jobs,
                                               const TuneSpace& space) {
  return compile_problems(tune_problems(config, gen::TargetLimits::for_arch(arch), space), arch, cache, jobs);
}

std::vector<ProblemResult> tune(Context& ctx, const ModelConfig& config, const TuneOptions& o) {
  if (!ctx.cache()) throw std::invalid_argument("tune: the context needs a kernel cache to store winners in");
  const auto start = Clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  auto say = [&](const std::string& line) {
    if (o.progress) o.progress(line);
  };
  auto problems = tune_problems(config, ctx.limits(), o.space);
  const auto compiled = compile_problems(problems, ctx.limits().arch, *ctx.cache(), o.jobs);
  std::map<std::string, std::string> compile_errors;
  int compiled_now = 0;
  for (const auto& c : compiled) {
    if (!c.error.empty()) compile_errors[c.key] = c.error;
    else compiled_now += c.compiled;
  }
  say(std::to_string(compiled.size()) + " candidate kernels ready (" + std::to_string(compiled_now) + " compiled now, " +
      std::to_string(int(compiled.size()) - compiled_now - int(compile_errors.size())) + " from the cache, " + std::to_string(compile_errors.size()) +
      " failed to compile) after " + std::to_string(elapsed()) + " s");

  Stream stream;
  const bench::L2Flush flush(ctx, stream.get());
  std::vector<ProblemResult> results;
  for (auto& problem : problems) {
    ProblemResult r{problem, {}, -1};
    const auto trial = problem.prepare(ctx);
    // The default kernel's outputs: what every candidate must reproduce, bit for bit on the GPU, or, where the trial
    // gives a tolerance, within it on the host (the reference goes there once and each candidate's outputs follow).
    trial->runner(problem.candidates.front())(stream.get());
    const auto outputs = trial->outputs();
    const auto tolerance = trial->tolerance();
    std::vector<std::size_t> offsets;
    std::size_t total = 0;
    for (const DeviceBuffer* b : outputs) offsets.push_back(total), total += (b->bytes() + 255) / 256 * 256;
    DeviceBuffer reference(tolerance ? 0 : total), differences(sizeof(std::uint64_t));
    if (!tolerance)
      for (std::size_t i = 0; i < outputs.size(); ++i)
        check(driver().cuMemcpyDtoDAsync(reference.get() + offsets[i], outputs[i]->get(), outputs[i]->bytes(), stream.get()),
              "cuMemcpyDtoDAsync (reference)");
    auto download = [&](const DeviceBuffer& b) {
      std::vector<char> host(b.bytes());
      b.download(host.data(), host.size());
      return host;
    };
    std::vector<std::vector<char>> host_reference;
    if (tolerance) {
      check(driver().cuStreamSynchronize(stream.get()), "cuStreamSynchronize");
      for (const DeviceBuffer* b : outputs) host_reference.push_back(download(*b));
    }
    auto reproduces_reference = [&] {
      if (tolerance) {
        check(driver().cuStreamSynchronize(stream.get()), "cuStreamSynchronize");
        for (std::size_t i = 0; i < outputs.size(); ++i) {
          const auto got = download(*outputs[i]);
          const gen::DType type = tolerance->types.at(i);
          if (!(max_relative_difference(got.data(), host_reference[i].data(), got.size() / gen::dtype_size(type), type) <= tolerance->relative))
            return false;
        }
        return true;
      }
      differences.fill_bytes(0, stream.get());
      for (std::size_t i = 0; i < outputs.size(); ++i)
        count_differences(ctx, outputs[i]->get(), reference.get() + offsets[i], outputs[i]->bytes(), differences.get(), stream.get());
      check(driver().cuStreamSynchronize(stream.get()), "cuStreamSynchronize");
      std::uint64_t n = 0;
      differences.download(&n, sizeof n);
      return n == 0;
    };
    auto time_us = [&](const std::function<void(CUstream)>& run, int reps) {
      return 1e3 * bench::median_ms(stream.get(), [&](int) { run(stream.get()); }, 2, reps, std::cref(flush));
    };
    const bool budgeted = o.finalists > 0;
    for (const auto& spec : problem.candidates) {
      Candidate cand{spec, "ok", 0};
      if (auto e = compile_errors.find(spec); e != compile_errors.end()) {
        cand.verdict = "compile error: " + e->second.substr(0, 200);
      } else if (elapsed() > o.budget_s) {
        cand.verdict = "over budget";
      } else {
        const auto run = trial->runner(spec);
        trial->poison(stream.get());
        run(stream.get());
        if (!reproduces_reference()) {
          cand.verdict = "wrong result";
        } else {
          cand.time_us = time_us(run, budgeted ? o.brief_reps : o.reps);
          if (r.winner < 0 || cand.time_us < r.candidates[size_t(r.winner)].time_us) r.winner = int(r.candidates.size());
        }
      }
      r.candidates.push_back(cand);
    }
    if (budgeted && r.winner >= 0) {
      std::vector<std::size_t> timed;
      for (std::size_t i = 0; i < r.candidates.size(); ++i)
        if (r.candidates[i].verdict == "ok") timed.push_back(i);
      std::sort(timed.begin(), timed.end(), [&](std::size_t a, std::size_t b) { return r.candidates[a].time_us < r.candidates[b].time_us; });
      timed.resize(std::min(timed.size(), std::size_t(o.finalists)));
      r.winner = -1;
      for (const std::size_t i : timed) {
        auto& c = r.candidates[i];
        c.time_us = time_us(trial->runner(c.spec), o.reps), c.finalist = true;
        if (r.winner < 0 || c.time_us < r.candidates[size_t(r.winner)].time_us) r.winner = int(i);
      }
    }
    if (r.winner >= 0) {
      const auto& w = r.candidates[size_t(r.winner)];
      ctx.store_winner(problem.key, w.spec, w.time_us, int(r.candidates.size()));
      say(problem.family + " " + problem.name + ": best " + w.spec + " " + std::to_string(w.time_us) + " us; " + std::to_string(elapsed()) + " s elapsed");
    }
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace jetforge::tuner
