#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

struct Result {
  int status;
  std::string out;
};

Result run(const std::string& args) {
  const std::string cmd = std::string(JETFORGE_CLI) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace

TEST_SUITE("cli") {
  TEST_CASE("info works with or without a GPU") {
    const auto r = run("info");
    CHECK(r.status == 0);
    CHECK(r.out.find("NVRTC: ") != std::string::npos);
    CHECK(r.out.find("GPU") != std::string::npos);
  }

  TEST_CASE("every verb has --help, and unknown verbs and options are usage errors") {
    for (const char* verb : {"info", "specs", "compile", "cache", "data", "tune", "train"}) {
      const auto r = run(std::string(verb) + " --help");
      CHECK(r.status == 0);
      CHECK(r.out.find(std::string("usage: jetforge ") + verb) != std::string::npos);
    }
    CHECK(run("--help").status == 0);
    CHECK(run("frobnicate").status == 2);
    const auto r = run("compile quantize --arch sm_90a --frob");
    CHECK(r.status == 2);
    CHECK(r.out.find("unknown option --frob") != std::string::npos);
  }

  TEST_CASE("train explains what is missing or wrong before it needs a GPU") {
    auto r = run("train --data x.tok");
    CHECK(r.status == 2);
    CHECK(r.out.find("train needs --model FILE and --data FILE") != std::string::npos);
    r = run("train --model configs/gpt2-124m.yaml --data x.tok --steps ten");
    CHECK(r.status == 2);
    CHECK(r.out.find("--steps needs a number, got 'ten'") != std::string::npos);
    r = run("train --model configs/gpt2-124m.yaml --data x.tok --precision fp8");
    CHECK(r.status == 2);
    CHECK(r.out.find("--precision fp8: int8 or bf16") != std::string::npos);
    r = run("train --model " JETFORGE_SOURCE_DIR "/configs/gpt2-124m.yaml --data /nonexistent/brown.tok");
    CHECK(r.status == 1);
    CHECK(r.out.find("cannot read token file /nonexistent/brown.tok") != std::string::npos);
  }

  TEST_CASE("specs lists canonical keys") {
    const auto r = run("specs quantize");
    CHECK(r.status == 0);
    CHECK(r.out.find("quantize:in=bf16,block=32,round=nearest,transpose=1,tile_rows=4,tile_cols=4,threads=1024,stages=2") != std::string::npos);
    CHECK(run("specs nosuchfamily").status == 2);
  }

  TEST_CASE("compile writes a cubin, prints the source, and explains bad specs") {
    const auto path = std::filesystem::temp_directory_path() / "jetforge_test_quantize.cubin";
    std::filesystem::remove(path);
    const auto r = run("compile quantize:in=f32,transpose=1,stages=2 --arch sm_90a -o " + path.string());
    CHECK(r.status == 0);
    REQUIRE(std::filesystem::exists(path));
    std::ifstream f(path, std::ios::binary);
    char magic[4] = {};
    f.read(magic, 4);
    CHECK(std::string(magic + 1, 3) == "ELF");
    std::filesystem::remove(path);

    const auto src = run("compile quantize:round=stochastic --arch sm_80 --source");
    CHECK(src.status == 0);
    CHECK(src.out.find("jetforge::kRoundStochastic") != std::string::npos);

    const auto bad = run("compile quantize:block=7 --arch sm_90a");
    CHECK(bad.status == 1);
    CHECK(bad.out.find("block=7 is not supported") != std::string::npos);
    CHECK(run("compile quantize").status == 2);  // no --arch
  }
}
