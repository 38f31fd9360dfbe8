// First-run tuning of the kernels of a model's training step, family by family (the per-block GEMMs, the quantize
// and block-tile kernels, the attention kernels): for every problem of a step, every candidate kernel of the
// family's search space is compiled (in parallel, into the kernel cache), run on random operands, checked against the
// family's default kernel -- bit for bit where every candidate computes the same values in the same order, so any
// difference is a bug; within a tolerance where candidates sum in different orders (attention) -- timed (median of
// `reps` runs, L2 flushed before each), and the fastest is stored as the winner the operator then uses for that
// problem on this GPU.
#pragma once
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cache/kernel_cache.hpp"
#include "runtime/gemm.hpp"
#include "tuner/model_config.hpp"

namespace jetforge::tuner {

// The values each kernel-choice dimension of a family takes in the search. Defaults in code; a YAML file can
// override any of them (configs/tuning.yaml shows the format).
struct GemmSpace {
  // Multicast pairs (cluster 2: 3-6% slower at 8192^3 since run 101, 3x before) and the FP32-adder fold never won a
  // sweep on the H100 (bench/NOTES.md, sessions 4 and 9):
  // left out by default, a YAML space can add them.
  std::vector<int> bn{64, 128}, stages{3, 4, 6}, cluster{1}, overlap{0, 1, 2}, persistent{1};
  std::vector<gen::GemmFold> fold{gen::GemmFold::convert};
  std::vector<gen::GemmEpilogue> epilogue{gen::GemmEpilogue::consumers, gen::GemmEpilogue::staged};
  std::vector<int> split_k{0};  // FP32 output: 0 = the shape's default (gemm_default_split_k); e.g. {0, 1, 2, 4, 8}
  bool portable = true;  // also try the portable path (always, off Hopper)
};
struct QuantizeSpace {
  std::vector<int> threads{256, 512, 1024}, stages{2, 3, 4}, transpose_unit{4, 8, 16};  // the tile is the operator's fit
};
// The block-tile families (transpose, dequantize, elementwise, residual): tiles in blocks and threads per CTA; only
// tiles that divide a problem's matrix and pass the family's static limits become its candidates.
struct TileSpace {
  std::vector<int> tile_rows{1, 2, 4}, tile_cols{1, 2, 4}, threads{128, 256, 512};
};
// The attention kernels: on sm_90a the Hopper kernels' stages (and the forward's keys per tile and schedule), elsewhere
// the portable kernels' streamed tile.
struct AttentionSpace {
  std::vector<int> keys{64, 128}, stages{2, 3};
  std::vector<gen::AttentionSchedule> schedule{gen::AttentionSchedule::plain, gen::AttentionSchedule::pingpong};
  std::vector<int> tile{32, 64};
};
struct TuneSpace {
  GemmSpace gemm;
  QuantizeSpace quantize;
  TileSpace tile;
  AttentionSpace attention;
};

// Reads the `gemm:`, `quantize:`, `tile:` and `attention:` sections of a tuning YAML over the defaults; errors name the file, line
// and key.
TuneSpace load_space(const std::filesystem::path& file);

// The variants of one attention kernel (forward, backward_kv or backward_q) in a space for a target (the Hopper ones
// on sm_90a, the portable ones elsewhere), as spec keys, the operator's untuned kernel first: what the tuner times, the
// tests check and bench_attention --variants times.
std::vector<std::string> attention_candidates(gen::AttentionKernel kernel, int head_dim, bool causal, const gen::TargetLimits& target,
                                              const AttentionSpace& space = {});

// The GEMM choices of a space for a target: the Hopper grid where the target has the Hopper path, and the portable
// path with each fold.
std::vector<GemmKernelChoice> gemm_search_space(const gen::TargetLimits& target, const GemmSpace& space = {});

// Where a family's candidates sum in different orders, how close their outputs must come to the default kernel's:
// each buffer, read as its type, within `relative` of its largest magnitude; NaN (a poisoned, unwritten element)
// never is.
struct Tolerance {
  double relative;
  std::vector<gen::DType> types;  // one per output buffer
};

// A problem's operands on the GPU: `runner(spec)` makes a launch of that candidate on them, `outputs()` are the
// buffers every candidate must reproduce -- bit for bit (compared on the GPU), or within tolerance() where it has
// one (compared on the host) --, `poison()` overwrites them first.
class Trial {
 public:
  virtual ~Trial() = default;
  virtual std::function<void(CUstream)> runner(const std::string& spec) = 0;
  virtual void poison(CUstream stream) = 0;
  virtual std::vector<const DeviceBuffer*> outputs() = 0;
  virtual std::optional<Tolerance> tolerance() const { return std::nullopt; }
};

// The largest |got - want| over the largest |want| of `count` elements of `type` (infinite where got or want holds
// a NaN or an infinity).
double max_relative_difference(const void* got, const void* want, std::size_t count, gen::DType type);

// One problem of a training step a family can tune: the key its winner is stored by (the operator's problem key),
// a name for people, the spec keys of its candidates, pruned by the target's static limits (shared memory,
// threads, divisibility) before anything is compiled -- the first is the operator's default kernel -- and how to
// set up its operands.
struct TuneProblem {
  std::string family;  // "gemm", "quantize", a block-tile family ("transpose", "elementwise", ...) or "attention"
  std::string name;    // e.g. "fc1 forward 8192x3072x768"
  std::string key;
  std::vector<std::string> candidates;
  std::function<std::unique_ptr<Trial>(Context&)> prepare;
};

// Every tunable problem of the model's step on `target`, GEMMs first.
std::vector<TuneProblem> tune_problems(const ModelConfig& config, const gen::TargetLimits& target, const TuneSpace& space = {});

struct Candidate {
  std::string spec;
  std::string verdict;  // "ok", or why it cannot win: "compile error: ...", "wrong result", "over budget"
  double time_us = 0;   // median of the full repetitions (budgeted search: of the brief ones unless a finalist)
  bool finalist = false;  // budgeted search: timed again in full
};

struct ProblemResult {
  TuneProblem problem;
  std::vector<Candidate> candidates;
  int winner = -1;  // index into candidates
};

struct TuneOptions {
  TuneSpace space;
  double budget_s = 120;  // after this, remaining candidates are skipped (reported "over budget")
  int jobs = 8;            // compile threads
  int reps = 20;
  // Budgeted search for large spaces: every candidate timed briefly (`brief_reps` runs), then the `finalists`
  // fastest timed again with `reps` and the winner chosen among them. 0 finalists: exhaustive, every candidate
  // timed with `reps`.
  int finalists = 0;
  int brief_reps = 5;
  std::function<void(const std::string&)> progress;  // one line per event
};

// The distinct candidate spec keys of some problems.
std::set<std::string> candidate_keys(const std::vector<TuneProblem>& problems);

// Compiles every candidate spec for `arch` into the cache (no GPU needed).
std::vector<CompileOutcome> compile_candidates(const ModelConfig& config, const std::string& arch, cache::KernelCache& cache, int jobs,
                                               const TuneSpace& space = {});

// Tunes on the context's GPU and stores the winners in the context's cache (which must be set).
std::vector<ProblemResult> tune(Context& ctx, const ModelConfig& config, const TuneOptions& options);

}  // namespace jetforge::tuner
