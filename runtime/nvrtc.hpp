// NVRTC: generated translation unit -> cubin for one architecture. The embedded templates are handed to
// NVRTC as in-memory headers, so no include path (and no CUDA toolkit header) is involved.
#pragma once
#include <atomic>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "generator/kernel_source.hpp"

namespace jetforge {

struct CompiledKernel {
  std::string key;           // canonical spec key
  std::string arch;          // "sm_90a", ...
  std::string lowered_name;  // mangled name of the __global__ function inside the cubin
  std::vector<char> cubin;
  std::string log;           // NVRTC's log (warnings), possibly empty
  double compile_ms = 0;
  int threads = 0;
};

struct CompileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Compiles for `arch` ("sm_90a", "sm_80", ...). Throws CompileError carrying the source's name and
// NVRTC's log. Thread-safe: each call owns its own NVRTC program. With `resource_report`, ptxas adds
// registers, stack frame and spills per kernel to the log (the cubin is the same).
CompiledKernel compile(const gen::KernelSource& source, const std::string& arch, bool resource_report = false);

// The exact options a compile for `arch` uses; part of what identifies a cubin.
std::vector<std::string> compile_options(const std::string& arch);

// "major.minor" of the NVRTC library in use.
std::string nvrtc_version();

// Number of NVRTC compilations this process has run (a warm start must leave it at 0).
std::uint64_t compile_count();

// SASS instructions of `kernel` (its lowered name) in a cubin for sm_70 or newer, where every instruction is 16
// bytes: the size of its .text section / 16, read from the ELF section headers. Counts without cuobjdump or a GPU;
// nullopt when the bytes are not a 64-bit ELF or hold no such section.
std::optional<std::size_t> cubin_instruction_count(const std::vector<char>& cubin, const std::string& kernel);

}  // namespace jetforge
