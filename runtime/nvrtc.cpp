#include "runtime/nvrtc.hpp"

#include <nvrtc.h>

#include <chrono>
#include <string_view>

namespace jetforge {

namespace {

std::atomic<std::uint64_t> compiles{0};

void check_nvrtc(nvrtcResult r, const char* what, const gen::KernelSource& source) {
  if (r != NVRTC_SUCCESS) throw CompileError(std::string(what) + " failed for " + source.name + ": " + nvrtcGetErrorString(r));
}

// Owns one nvrtcProgram.
struct Program {
  nvrtcProgram handle = nullptr;
  ~Program() {
    if (handle) nvrtcDestroyProgram(&handle);
  }
};

std::string program_log(nvrtcProgram prog) {
  size_t size = 0;
  if (nvrtcGetProgramLogSize(prog, &size) != NVRTC_SUCCESS || size <= 1) return {};
  std::string log(size, '\0');
  nvrtcGetProgramLog(prog, log.data());
  log.resize(size - 1);
  return log;
}

}  // namespace

std::vector<std::string> compile_options(const std::string& arch) {
  return {"--gpu-architecture=" + arch, "-std=c++17"};
}

std::string nvrtc_version() {
  int major = 0, minor = 0;
  nvrtcVersion(&major, &minor);
  return std::to_string(major) + "." + std::to_string(minor);
}

std::uint64_t compile_count() { return compiles.load(); }

CompiledKernel compile(const gen::KernelSource& source, const std::string& arch, bool resource_report) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<const char*> header_texts, header_names;
  std::vector<std::string> owned_texts;  // NVRTC wants NUL-terminated strings
  for (const auto& t : gen::embedded_templates()) {
    owned_texts.emplace_back(t.text);
    header_names.push_back(t.name.data());
  }
  for (const auto& s : owned_texts) header_texts.push_back(s.c_str());

  Program prog;
  check_nvrtc(nvrtcCreateProgram(&prog.handle, source.text.c_str(), source.name.c_str(), int(header_texts.size()), header_texts.data(),
                                 header_names.data()),
              "nvrtcCreateProgram", source);
  check_nvrtc(nvrtcAddNameExpression(prog.handle, source.kernel_expr.c_str()), "nvrtcAddNameExpression", source);

  std::vector<std::string> options = compile_options(arch);
  if (resource_report) options.push_back("--ptxas-options=-v");
  std::vector<const char*> option_ptrs;
  for (const auto& o : options) option_ptrs.push_back(o.c_str());
  compiles.fetch_add(1);
  const nvrtcResult result = nvrtcCompileProgram(prog.handle, int(option_ptrs.size()), option_ptrs.data());

  CompiledKernel out;
  out.key = source.key;
  out.arch = arch;
  out.threads = source.threads;
  out.log = program_log(prog.handle);
  if (result != NVRTC_SUCCESS)
    throw CompileError("NVRTC could not compile " + source.name + " (" + source.key + ") for " + arch + ": " + nvrtcGetErrorString(result) +
                       "\n" + out.log);

  const char* lowered = nullptr;
  check_nvrtc(nvrtcGetLoweredName(prog.handle, source.kernel_expr.c_str(), &lowered), "nvrtcGetLoweredName", source);
  out.lowered_name = lowered;
  size_t size = 0;
  check_nvrtc(nvrtcGetCUBINSize(prog.handle, &size), "nvrtcGetCUBINSize", source);
  out.cubin.resize(size);
  check_nvrtc(nvrtcGetCUBIN(prog.handle, out.cubin.data()), "nvrtcGetCUBIN", source);
  out.compile_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return out;
}

std::optional<std::size_t> cubin_instruction_count(const std::vector<char>& cubin, const std::string& kernel) {
  // Little-endian fields of the ELF64 header and section headers (the cubin's byte order).
  auto field = [&](std::size_t offset, int bytes) -> std::optional<std::uint64_t> {
    if (offset > cubin.size() || std::size_t(bytes) > cubin.size() - offset) return std::nullopt;
    std::uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = v << 8 | std::uint8_t(cubin[offset + std::size_t(i)]);
    return v;
  };
  if (cubin.size() < 64 || std::string(cubin.data(), 4) != "\x7f" "ELF" || cubin[4] != 2) return std::nullopt;
  const auto shoff = field(0x28, 8), shentsize = field(0x3A, 2), shnum = field(0x3C, 2), shstrndx = field(0x3E, 2);
  if (!shoff || !shentsize || !shnum || !shstrndx || *shentsize < 0x28 || *shstrndx >= *shnum) return std::nullopt;
  auto section = [&](std::uint64_t i, std::size_t at, int bytes) { return field(std::size_t(*shoff + i * *shentsize + at), bytes); };
  const auto names = section(*shstrndx, 0x18, 8);  // the section-name table's file offset
  if (!names) return std::nullopt;
  const std::string wanted = ".text." + kernel;
  for (std::uint64_t i = 0; i < *shnum; ++i) {
    const auto name = section(i, 0, 4), size = section(i, 0x20, 8);
    if (!name || !size) return std::nullopt;
    const std::size_t at = std::size_t(*names + *name);
    if (at >= cubin.size() || cubin.size() - at <= wanted.size()) continue;
    if (std::string_view(cubin.data() + at, wanted.size()) == wanted && cubin[at + wanted.size()] == '\0') return *size / 16;
  }
  return std::nullopt;
}

}  // namespace jetforge
