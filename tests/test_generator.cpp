#include <doctest/doctest.h>

#include <set>

#include "generator/families.hpp"

using namespace jetforge::gen;

TEST_SUITE("generator") {
  TEST_CASE("every default spec's canonical key parses back to the same key") {
    for (const auto& f : families()) {
      const auto keys = f.default_keys();
      CHECK(!keys.empty());
      for (const auto& key : keys) {
        CAPTURE(key);
        CHECK(key.starts_with(std::string(f.name) + ":"));
        CHECK(f.emit_key(key, TargetLimits::for_arch("sm_90a")).key == key);
      }
    }
  }

  TEST_CASE("keys accept fields in any order and fill in defaults") {
    const auto a = parse_key<QuantizeSpec>("quantize:warps=4,in=f32");
    CHECK(a.in == DType::f32);
    CHECK(a.warps == 4);
    CHECK(a.block == 32);
    CHECK(canonical_key(a) == "quantize:in=f32,block=32,round=nearest,transpose=0,warps=4");
  }

  TEST_CASE("malformed keys fail with messages that say what is wrong") {
    CHECK_THROWS_WITH_AS(parse_key<QuantizeSpec>("quantize:colour=red"), doctest::Contains("unknown field 'colour'"), SpecError);
    CHECK_THROWS_WITH_AS(parse_key<QuantizeSpec>("quantize:in=f64"), doctest::Contains("expected f32|bf16|i8"), SpecError);
    CHECK_THROWS_WITH_AS(parse_key<QuantizeSpec>("quantize:warps=eight"), doctest::Contains("expected an integer"), SpecError);
    CHECK_THROWS_WITH_AS(parse_key<QuantizeSpec>("quantize:warps"), doctest::Contains("expected name=value"), SpecError);
    CHECK_THROWS_WITH_AS(parse_key<QuantizeSpec>("dequantize:out=f32"), doctest::Contains("is not of family quantize"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("gemm2:x=1", TargetLimits::for_arch("sm_80")), doctest::Contains("unknown kernel family 'gemm2'"), SpecError);
    CHECK_THROWS_WITH_AS(TargetLimits::for_arch("sm_75"), doctest::Contains("unsupported architecture 'sm_75'"), SpecError);
  }

  TEST_CASE("validation rejects specs the target cannot run, before compiling") {
    const auto sm90 = TargetLimits::for_arch("sm_90a");
    CHECK_THROWS_WITH_AS(emit_key("quantize:block=48", sm90), doctest::Contains("block=48 is not supported"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("quantize:warps=33", sm90), doctest::Contains("warps=33 must be in 1..32"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("quantize:in=i8", sm90), doctest::Contains("in must be f32 or bf16"), SpecError);
    // 16 warps x a padded 64x68 byte tile each = 69632 bytes of static shared memory > 48 KiB.
    CHECK_THROWS_WITH_AS(emit_key("quantize:block=64,transpose=1,warps=16", sm90), doctest::Contains("static shared memory"), SpecError);
    CHECK_NOTHROW(emit_key("quantize:block=64,transpose=0,warps=16", sm90));
  }

  TEST_CASE("the emitted source includes the template and instantiates the kernel") {
    const auto k = emit(QuantizeSpec{DType::f32, 32, Rounding::stochastic, true, 4});
    CHECK(k.kernel_expr == "jetforge::quantize_kernel<float, 32, jetforge::kRoundStochastic, true, 4>");
    CHECK(k.text.find("#include \"quantize.cuh\"") != std::string::npos);
    CHECK(k.text.find("template __global__ void " + k.kernel_expr + "(jetforge::QuantizeParams);") != std::string::npos);
    CHECK(k.threads == 128);
    CHECK(k.name == "quantize-" + hex64(k.hash) + ".cu");
  }

  TEST_CASE("hashes are stable, distinct per spec, and cover every included template") {
    const auto a = emit(QuantizeSpec{});
    CHECK(emit(QuantizeSpec{}).hash == a.hash);
    std::set<std::uint64_t> hashes;
    size_t n = 0;
    for (const auto& f : families())
      for (const auto& key : f.default_keys()) {
        hashes.insert(f.emit_key(key, TargetLimits::for_arch("sm_80")).hash);
        ++n;
      }
    CHECK(hashes.size() == n);

    std::set<std::string> closure;
    for (const auto& t : template_closure("quantize.cuh")) closure.insert(std::string(t.name));
    CHECK(closure == std::set<std::string>{"jetforge/common.cuh", "jetforge/warp_tile.cuh", "quantize.cuh"});
    // Same spec fields, other template: the template hash differs, so the kernel hash does too.
    CHECK(hash_templates("quantize.cuh") != hash_templates("dequantize.cuh"));
    CHECK(Fnv1a64().add("ab").add("c").value() != Fnv1a64().add("a").add("bc").value());
  }

  TEST_CASE("templates are embedded and unknown names are reported") {
    CHECK(template_text("quantize.cuh").find("quantize_kernel") != std::string_view::npos);
    CHECK_THROWS_WITH_AS(template_text("nope.cuh"), doctest::Contains("no kernel template named 'nope.cuh'"), std::invalid_argument);
  }
}
