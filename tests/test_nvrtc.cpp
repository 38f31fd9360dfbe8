#include <doctest/doctest.h>

#include <chrono>

#include "generator/families.hpp"
#include "runtime/nvrtc.hpp"

using namespace jetforge;

TEST_SUITE("nvrtc") {
  TEST_CASE("every default spec of every family compiles to a cubin for sm_80 and sm_90a (where the family targets it)") {
    for (const std::string arch : {"sm_80", "sm_90a"}) {
      const auto target = gen::TargetLimits::for_arch(arch);
      for (const auto& f : gen::families()) {
        if (!f.supports(target)) continue;
        for (const auto& key : f.default_keys()) {
          CAPTURE(arch);
          CAPTURE(key);
          const auto k = compile(f.emit_key(key, target), arch);
          REQUIRE(k.cubin.size() > 4);
          CHECK(std::string(k.cubin.data() + 1, 3) == "ELF");
          CHECK(k.lowered_name.starts_with("_Z"));
          CHECK(k.arch == arch);
        }
      }
    }
  }

  TEST_CASE("LayerNorm's cluster kernels (sm_90 fits of wide rows) compile for sm_90a and are refused for sm_80") {
    const auto sm90 = gen::TargetLimits::for_arch("sm_90a"), sm80 = gen::TargetLimits::for_arch("sm_80");
    for (auto pass : {gen::LayerNormPass::forward, gen::LayerNormPass::backward}) {
      const auto spec = gen::LayerNormSpec::fit(pass, 8192, sm90);
      CAPTURE(gen::canonical_key(spec));
      CHECK(spec.cluster == 8);
      const auto k = compile(gen::emit_checked(spec, sm90), "sm_90a");
      CHECK(std::string(k.cubin.data() + 1, 3) == "ELF");
      CHECK_THROWS_WITH_AS(spec.validate(sm80), doctest::Contains("clusters of CTAs need sm_90"), gen::SpecError);
      CHECK(gen::LayerNormSpec::fit(pass, 8192, sm80).cluster == 1);  // sm_80 streams rows this wide
    }
  }

  TEST_CASE("column sums in one launch (a cluster per slice of columns) compile for sm_90a and are refused for sm_80") {
    const auto sm90 = gen::TargetLimits::for_arch("sm_90a"), sm80 = gen::TargetLimits::for_arch("sm_80");
    const auto spec = gen::ColumnSumSpec::codes(sm90);
    CHECK(spec.kernel == gen::ColumnSumKernel::sums);
    const auto k = compile(gen::emit_checked(spec, sm90), "sm_90a");
    CHECK(std::string(k.cubin.data() + 1, 3) == "ELF");
    CHECK_THROWS_WITH_AS(spec.validate(sm80), doctest::Contains("use kernel=partials there"), gen::SpecError);
    CHECK(gen::ColumnSumSpec::codes(sm80).kernel == gen::ColumnSumKernel::partials);
    CHECK_THROWS_WITH_AS(gen::ColumnSumSpec(gen::ColumnSumKernel::partials, 1024).validate(sm90), doctest::Contains("at most 512"), gen::SpecError);
  }

  TEST_CASE("a cubin's SASS instruction count comes from its kernel's .text section; bad bytes give none") {
    const auto k = compile(gen::emit(gen::QuantizeSpec{}), "sm_90a");
    const auto count = cubin_instruction_count(k.cubin, k.lowered_name);
    REQUIRE(count.has_value());
    CHECK(*count > 100);  // a quantize kernel: loads, block maxima, rounding, stores
    CHECK(*count * 16 < k.cubin.size());
    CHECK_FALSE(cubin_instruction_count(k.cubin, k.lowered_name + "x").has_value());  // no such kernel
    CHECK_FALSE(cubin_instruction_count(std::vector<char>(k.cubin.begin(), k.cubin.begin() + 100), k.lowered_name).has_value());  // truncated
    auto not_elf = k.cubin;
    not_elf[1] = 'X';
    CHECK_FALSE(cubin_instruction_count(not_elf, k.lowered_name).has_value());
    CHECK_FALSE(cubin_instruction_count({}, k.lowered_name).has_value());
  }

  TEST_CASE("a failed compile reports the source name and NVRTC's log") {
    auto source = gen::emit(gen::QuantizeSpec{});
    source.text += "this is not C++;\n";
    try {
      compile(source, "sm_80");
      FAIL("compile of a broken source succeeded");
    } catch (const CompileError& e) {
      const std::string what = e.what();
      CHECK(what.find(source.name) != std::string::npos);
      CHECK(what.find("error") != std::string::npos);
    }
  }

  TEST_CASE("a warm compile of one quantize kernel takes at most 1 s") {
    const auto source = gen::emit(gen::QuantizeSpec{});
    compile(source, "sm_90a");  // warm: NVRTC's own one-time start-up is out of the measurement
    const auto before = compile_count();
    const auto k = compile(source, "sm_90a");
    CHECK(compile_count() == before + 1);
    MESSAGE("warm NVRTC compile of " << k.key << ": " << k.compile_ms << " ms");
    CHECK(k.compile_ms <= 1000.0);
  }
}
