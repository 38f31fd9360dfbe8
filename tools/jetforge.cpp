// jetforge: the command line. Verbs: info, specs, compile (tune, cache and bench grow here).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "generator/families.hpp"
#include "runtime/device.hpp"
#include "runtime/nvrtc.hpp"

namespace {

using Args = std::vector<std::string>;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr const char* kMainHelp = R"(jetforge: INT8 transformer training kernels (per-block 32x32 quantization), generated and JIT-compiled.

usage: jetforge <verb> [options]    (jetforge <verb> --help for details)

verbs:
  info                         GPU, driver and NVRTC versions (works without a GPU)
  specs [FAMILY]               the default kernel specs of each family, by canonical key
  compile SPEC --arch ARCH     generate and compile one kernel; write its cubin or print its source
)";

constexpr const char* kInfoHelp = R"(usage: jetforge info

Prints the NVRTC version, the CUDA driver version and every GPU (name, compute capability, the NVRTC
target jetforge compiles for, multiprocessors, memory). On a machine without a GPU or driver it says so
and still exits 0.
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
Without -o or --source it compiles and reports the cubin's size, lowered name and compile time.
)";

bool wants_help(const Args& args) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") return true;
  return false;
}

int cmd_info(const Args& args) {
  if (!args.empty()) throw UsageError("info takes no arguments");
  std::cout << "jetforge " << "0.1.0" << "\n";
  std::cout << "NVRTC: " << jetforge::nvrtc_version() << "\n";
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
    auto value = [&](const char* flag) {
      if (i + 1 >= args.size()) throw UsageError(std::string(flag) + " needs a value");
      return args[++i];
    };
    if (args[i] == "--arch") arch = value("--arch");
    else if (args[i] == "-o") output = value("-o");
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
  std::cout << compiled.key << "\n  arch " << arch << ", cubin " << compiled.cubin.size() << " bytes" << (output.empty() ? "" : " -> " + output)
            << ", kernel " << compiled.lowered_name << ", " << compiled.compile_ms << " ms\n";
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
  const Verb verbs[] = {{"info", kInfoHelp, cmd_info}, {"specs", kSpecsHelp, cmd_specs}, {"compile", kCompileHelp, cmd_compile}};
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
