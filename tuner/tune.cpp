#include "tuner/tune.hpp"

#include <chrono>
#include <map>
#include <set>

#include "bench/timing.hpp"
#include "generator/families.hpp"
#include "tuner/yaml_file.hpp"

namespace jetforge::tuner {

namespace {

using Clock = std::chrono::steady_clock;

// Every spec key a shape's candidates compile to.
std::string candidate_spec(const GemmShape& s, const GemmKernelChoice& c, const gen::TargetLimits& target) {
  return gemm_kernel_key(s.out, s.group, s.rounding, c, target);
}

}  // namespace

std::vector<GemmKernelChoice> gemm_search_space(const gen::TargetLimits& target, const GemmSpace& space) {
  std::vector<GemmKernelChoice> out;
  const bool hopper = gen::GemmSm90Spec::supports(target);
  for (auto fold : space.fold) {
    if (hopper)
      for (int bn : space.bn)
        for (int stages : space.stages)
          for (int cluster : space.cluster) out.push_back(GemmKernelChoice{false, bn, stages, fold, cluster});
    if (space.portable || !hopper) out.push_back(GemmKernelChoice{true, 128, 3, fold, 1});
  }
  return out;
}

GemmSpace load_gemm_space(const std::filesystem::path& file) {
  const YAML::Node root = load_yaml_file(file, "tuning space");
  GemmSpace space;
  const YAML::Node gemm = root["gemm"];
  if (!gemm) return space;
  auto fail = [&](const YAML::Node& n, const std::string& key, const std::string& what) {
    throw ConfigError(file.string() + ":" + std::to_string(n.Mark().line + 1) + ": key 'gemm." + key + "': " + what);
  };
  for (const auto& kv : gemm) {
    const std::string key = kv.first.as<std::string>();
    const YAML::Node& v = kv.second;
    try {
      if (key == "portable") {
        space.portable = v.as<bool>();
        continue;
      }
      if (!v.IsSequence() || v.size() == 0) fail(v, key, "expected a non-empty list of values");
      if (key == "bn") space.bn = v.as<std::vector<int>>();
      else if (key == "stages") space.stages = v.as<std::vector<int>>();
      else if (key == "cluster") space.cluster = v.as<std::vector<int>>();
      else if (key == "fold") {
        space.fold.clear();
        for (const auto& f : v) {
          const auto name = f.as<std::string>();
          bool found = false;
          std::string known;
          for (const auto& [fold, fold_name] : gen::EnumNames<gen::GemmFold>::table) {
            if (fold_name == name) space.fold.push_back(fold), found = true;
            known += (known.empty() ? "" : ", ") + std::string(fold_name);
          }
          if (!found) fail(f, key, "'" + name + "' is not a fold (" + known + ")");
        }
      } else {
        fail(kv.first, key, "unknown key (known: bn, stages, cluster, fold, portable)");
      }
    } catch (const YAML::BadConversion&) {
      fail(v, key, "values of the wrong type");
    }
  }
  return space;
}

std::vector<CompileOutcome> compile_candidates(const ModelConfig& config, const std::string& arch, cache::KernelCache& cache, int jobs,
                                               const GemmSpace& space) {
  const auto target = gen::TargetLimits::for_arch(arch);
  std::set<std::string> keys;
  for (const auto& s : gemm_shapes(config))
    for (const auto& c : gemm_search_space(target, space)) keys.insert(candidate_spec(s, c, target));
  return compile_keys(std::vector<std::string>(keys.begin(), keys.end()), arch, &cache, jobs);
}

std::vector<ShapeResult> tune_gemms(Context& ctx, const ModelConfig& config, const TuneOptions& o) {
  if (!ctx.cache()) throw std::invalid_argument("tune_gemms: the context needs a kernel cache to store winners in");
  const auto start = Clock::now();
  auto say = [&](const std::string& line) {
    if (o.progress) o.progress(line);
  };
  const auto compiled = compile_candidates(config, ctx.limits().arch, *ctx.cache(), o.jobs, o.space);
  std::map<std::string, std::string> compile_errors;
  int compiled_now = 0;
  for (const auto& c : compiled) {
    if (!c.error.empty()) compile_errors[c.key] = c.error;
    else compiled_now += c.compiled;
  }
  say(std::to_string(compiled.size()) + " candidate kernels ready (" + std::to_string(compiled_now) + " compiled now, " +
      std::to_string(int(compiled.size()) - compiled_now - int(compile_errors.size())) + " from the cache, " + std::to_string(compile_errors.size()) +
      " failed to compile) after " + std::to_string(std::chrono::duration<double>(Clock::now() - start).count()) + " s");

  Stream stream;
  DeviceBuffer flush(std::size_t(ctx.device().info().l2_bytes) * 2);
  const auto space = gemm_search_space(ctx.limits(), o.space);
  std::vector<ShapeResult> results;
  for (const auto& shape : gemm_shapes(config)) {
    ShapeResult r{shape, {}, -1};
    BlockTensor a(shape.m, shape.k, 32, shape.group), b(shape.n, shape.k, 32, shape.group);
    fill_random(a, 1), fill_random(b, 3);
    const bool int8_out = shape.out == gen::GemmOut::i8;
    BlockTensor c8(shape.m, shape.n);
    DenseTensor cd(shape.m, shape.n, shape.out == gen::GemmOut::bf16 ? DType::bf16 : DType::f32);
    auto run = [&](const GemmKernelChoice& choice) {
      GemmOptions opts{shape.rounding, 1, 0, false, choice, false};
      if (int8_out) gemm(ctx, a.ref(), b.ref(), c8.ref(), opts, stream.get());
      else gemm(ctx, a.ref(), b.ref(), cd.ref(), opts, stream.get());
    };
    auto output = [&] {
      stream.synchronize();
      std::vector<char> bytes(int8_out ? c8.codes().bytes() + c8.scales().bytes() : cd.buffer().bytes());
      if (int8_out) {
        c8.codes().download(bytes.data(), c8.codes().bytes());
        c8.scales().download(bytes.data() + c8.codes().bytes(), c8.scales().bytes());
      } else {
        cd.buffer().download(bytes.data(), bytes.size());
      }
      return bytes;
    };
    run(GemmKernelChoice{});
    const auto reference = output();
    for (const auto& choice : space) {
      Candidate cand{choice, candidate_spec(shape, choice, ctx.limits()), "ok", 0};
      if (auto e = compile_errors.find(cand.spec); e != compile_errors.end()) {
        cand.verdict = "compile error: " + e->second.substr(0, 200);
      } else if (std::chrono::duration<double>(Clock::now() - start).count() > o.budget_s) {
        cand.verdict = "over budget";
      } else {
        (int8_out ? c8.codes() : cd.buffer()).fill_bytes(0xff, stream.get());  // poison
        run(choice);
        if (output() != reference) {
          cand.verdict = "wrong result";
        } else {
          cand.time_us = 1e3 * bench::median_ms(stream.get(), [&](int) { run(choice); }, 2, o.reps,
                                                [&](int) { flush.fill_bytes(0x5a, stream.get()); });
          if (r.winner < 0 || cand.time_us < r.candidates[size_t(r.winner)].time_us) r.winner = int(r.candidates.size());
        }
      }
      r.candidates.push_back(cand);
    }
    if (r.winner >= 0) {
      const auto& w = r.candidates[size_t(r.winner)];
      ctx.cache()->store_winner(shape.key(), ctx.gpu_key(), w.spec, w.time_us, int(r.candidates.size()));
      say(shape.name + " " + std::to_string(shape.m) + "x" + std::to_string(shape.n) + "x" + std::to_string(shape.k) + ": best " + w.spec + " " +
          std::to_string(w.time_us) + " us; " + std::to_string(std::chrono::duration<double>(Clock::now() - start).count()) + " s elapsed");
    }
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace jetforge::tuner
