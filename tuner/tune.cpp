#include "tuner/tune.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "bench/timing.hpp"
#include "generator/families.hpp"
#include "runtime/ops.hpp"
#include "tuner/yaml_file.hpp"

namespace jetforge::tuner {

namespace {

using Clock = std::chrono::steady_clock;

std::vector<char> download(std::initializer_list<const DeviceBuffer*> buffers, CUstream stream) {
  check(driver().cuStreamSynchronize(stream), "cuStreamSynchronize");
  std::vector<char> bytes;
  for (const DeviceBuffer* b : buffers) {
    const std::size_t at = bytes.size();
    bytes.resize(at + b->bytes());
    b->download(bytes.data() + at, b->bytes());
  }
  return bytes;
}

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
  std::vector<char> output(CUstream stream) override {
    return s_.out == gen::GemmOut::i8 ? download({&c8_.codes(), &c8_.scales()}, stream) : download({&cd_.buffer()}, stream);
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
  std::vector<char> output(CUstream stream) override {
    return s_.transpose ? download({&q_.codes(), &q_.scales(), &qt_.codes(), &qt_.scales()}, stream) : download({&q_.codes(), &q_.scales()}, stream);
  }

 private:
  Context& ctx_;
  QuantizeShape s_;
  DenseTensor x_;
  BlockTensor q_, qt_;
};

// Keys in order, the first kept first, duplicates dropped.
void add_unique(std::vector<std::string>& keys, std::string key) {
  for (const auto& k : keys)
    if (k == key) return;
  keys.push_back(std::move(key));
}

std::vector<std::string> quantize_candidates(const QuantizeShape& q, const gen::TargetLimits& target, const QuantizeSpace& space) {
  const auto base = gen::QuantizeSpec::fit(q.in, q.rows, q.cols, 32, q.rounding, q.transpose);
  std::vector<std::string> keys{gen::canonical_key(base)};
  for (int threads : space.threads)
    for (int stages : space.stages)
      for (int unit : q.transpose ? space.transpose_unit : std::vector<int>{base.transpose_unit}) {
        gen::QuantizeSpec s = base;
        s.tile.threads = threads, s.stages = stages, s.transpose_unit = unit;
        try {
          s.validate(target);  // static limits: no compile for what cannot run
        } catch (const gen::SpecError&) {
          continue;
        }
        add_unique(keys, gen::canonical_key(s));
      }
  return keys;
}

std::vector<int> int_list(const YAML::Node& v, const std::function<void(const std::string&)>& fail) {
  if (!v.IsSequence() || v.size() == 0) fail("expected a non-empty list of values");
  return v.as<std::vector<int>>();
}

}  // namespace

std::vector<GemmKernelChoice> gemm_search_space(const gen::TargetLimits& target, const GemmSpace& space) {
  std::vector<GemmKernelChoice> out;
  const bool hopper = gen::GemmSm90Spec::supports(target);
  for (auto fold : space.fold) {
    if (hopper)
      for (int bn : space.bn)
        for (int stages : space.stages)
          for (int cluster : space.cluster)
            for (int overlap : space.overlap) out.push_back(GemmKernelChoice{false, bn, stages, fold, cluster, overlap});
    if (space.portable || !hopper) out.push_back(GemmKernelChoice{true, 128, 3, fold, 1});
  }
  return out;
}

TuneSpace load_space(const std::filesystem::path& file) {
  const YAML::Node root = load_yaml_file(file, "tuning space");
  TuneSpace space;
  for (const auto& section : root) {
    const std::string family = section.first.as<std::string>();
    if (family != "gemm" && family != "quantize")
      throw ConfigError(file.string() + ":" + std::to_string(section.first.Mark().line + 1) + ": key '" + family + "': unknown family (known: gemm, quantize)");
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
        } else if (key == "fold") {
          if (!v.IsSequence() || v.size() == 0) fail("expected a non-empty list of values");
          space.gemm.fold.clear();
          for (const auto& f : v) {
            const auto name = f.as<std::string>();
            bool found = false;
            std::string known;
            for (const auto& [fold, fold_name] : gen::EnumNames<gen::GemmFold>::table) {
              if (fold_name == name) space.gemm.fold.push_back(fold), found = true;
              known += (known.empty() ? "" : ", ") + std::string(fold_name);
            }
            if (!found) fail("'" + name + "' is not a fold (" + known + ")");
          }
        } else {
          fail("unknown key (known: bn, stages, cluster, overlap, fold, portable)");
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
    std::vector<std::string> keys{gemm_kernel_key(s.out, s.group, s.rounding, GemmKernelChoice{}, target)};
    for (const auto& c : choices) add_unique(keys, gemm_kernel_key(s.out, s.group, s.rounding, c, target));
    out.push_back({"gemm", s.name + " " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k), s.key(), std::move(keys),
                   [s](Context& ctx) { return std::make_unique<GemmTrial>(ctx, s); }});
  }
  for (const auto& q : quantize_shapes(config))
    out.push_back({"quantize", q.name + (q.transpose ? " quantize+transpose " : " quantize ") + std::to_string(q.rows) + "x" + std::to_string(q.cols),
                   q.key(), quantize_candidates(q, target, space.quantize), [q](Context& ctx) { return std::make_unique<QuantizeTrial>(ctx, q); }});
  return out;
}

namespace {

std::vector<CompileOutcome> compile_problems(const std::vector<TuneProblem>& problems, const std::string& arch, cache::KernelCache& cache, int jobs) {
  std::set<std::string> keys;
  for (const auto& p : problems) keys.insert(p.candidates.begin(), p.candidates.end());
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
  DeviceBuffer flush(std::size_t(ctx.device().info().l2_bytes) * 2);
  std::vector<ProblemResult> results;
  for (auto& problem : problems) {
    ProblemResult r{problem, {}, -1};
    const auto trial = problem.prepare(ctx);
    trial->runner(problem.candidates.front())(stream.get());  // the default kernel: what every candidate must reproduce
    const auto reference = trial->output(stream.get());
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
        if (trial->output(stream.get()) != reference) {
          cand.verdict = "wrong result";
        } else {
          cand.time_us = 1e3 * bench::median_ms(stream.get(), [&](int) { run(stream.get()); }, 2, o.reps,
                                                [&](int) { flush.fill_bytes(0x5a, stream.get()); });
          if (r.winner < 0 || cand.time_us < r.candidates[size_t(r.winner)].time_us) r.winner = int(r.candidates.size());
        }
      }
      r.candidates.push_back(cand);
    }
    if (r.winner >= 0) {
      const auto& w = r.candidates[size_t(r.winner)];
      ctx.cache()->store_winner(problem.key, ctx.gpu_key(), w.spec, w.time_us, int(r.candidates.size()));
      say(problem.family + " " + problem.name + ": best " + w.spec + " " + std::to_string(w.time_us) + " us; " + std::to_string(elapsed()) + " s elapsed");
    }
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace jetforge::tuner
