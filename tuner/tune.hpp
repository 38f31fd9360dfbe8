// First-run tuning of the per-block GEMMs of a model: for every GEMM shape of a training step, every kernel
// choice of the search space is compiled (in parallel, into the kernel cache), run on random operands, checked
// bit for bit against the default kernel (every choice accumulates in the same order, so any difference is a
// bug), timed (median of `reps` runs, L2 flushed before each), and the fastest is stored as the winner that
// gemm() then uses for that shape on this GPU.
#pragma once
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "cache/kernel_cache.hpp"
#include "runtime/gemm.hpp"
#include "tuner/model_config.hpp"

namespace jetforge::tuner {

// The values each GEMM kernel-choice dimension takes in the search. Defaults in code; a YAML file can override
// any of them (configs/tuning.yaml shows the format).
struct GemmSpace {
  std::vector<int> bn{64, 128}, stages{3, 4, 6}, cluster{1, 2};
  std::vector<gen::GemmFold> fold{gen::GemmFold::convert, gen::GemmFold::magic};
  bool portable = true;  // also try the portable path (always, off Hopper)
};

// Reads the `gemm:` section of a tuning YAML over the defaults; errors name the file, line and key.
GemmSpace load_gemm_space(const std::filesystem::path& file);

// The choices of a space for a target: the Hopper grid where the target has the Hopper path, and the portable
// path with each fold.
std::vector<GemmKernelChoice> gemm_search_space(const gen::TargetLimits& target, const GemmSpace& space = {});

struct Candidate {
  GemmKernelChoice choice;
  std::string spec;
  std::string verdict;  // "ok", or why it cannot win: "compile error: ...", "wrong result", "over budget"
  double time_us = 0;
};

struct ShapeResult {
  GemmShape shape;
  std::vector<Candidate> candidates;
  int winner = -1;  // index into candidates
};

struct TuneOptions {
  GemmSpace space;
  double budget_s = 120;  // after this, remaining candidates are skipped (reported "over budget")
  int jobs = 8;            // compile threads
  int reps = 20;
  std::function<void(const std::string&)> progress;  // one line per event
};

// Compiles every candidate spec for `arch` into the cache (no GPU needed).
std::vector<CompileOutcome> compile_candidates(const ModelConfig& config, const std::string& arch, cache::KernelCache& cache, int jobs,
                                               const GemmSpace& space = {});

// Tunes on the context's GPU and stores the winners in the context's cache (which must be set).
std::vector<ShapeResult> tune_gemms(Context& ctx, const ModelConfig& config, const TuneOptions& options);

}  // namespace jetforge::tuner
