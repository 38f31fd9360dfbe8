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
    const auto a = parse_key<QuantizeSpec>("quantize:threads=128,in=f32");
    CHECK(a.in == DType::f32);
    CHECK(a.tile.threads == 128);
    CHECK(a.block == 32);
    CHECK(canonical_key(a) == "quantize:in=f32,block=32,round=nearest,transpose=0,tile_rows=4,tile_cols=4,threads=128,stages=4,transpose_unit=4");
  }

  TEST_CASE("malformed keys fail with messages that say what is wrong") {
    CHECK_THROWS_WITH_AS(parse_key<QuantizeSpec>("quantize:colour=red"), doctest::Contains("unknown field 'colour'"), SpecError);
    CHECK_THROWS_WITH_AS(parse_key<QuantizeSpec>("quantize:in=f64"), doctest::Contains("expected f32|bf16|i8"), SpecError);
    CHECK_THROWS_WITH_AS(parse_key<QuantizeSpec>("quantize:threads=eight"), doctest::Contains("expected an integer"), SpecError);
    CHECK_THROWS_WITH_AS(parse_key<QuantizeSpec>("quantize:threads"), doctest::Contains("expected name=value"), SpecError);
    CHECK_THROWS_WITH_AS(parse_key<QuantizeSpec>("dequantize:out=f32"), doctest::Contains("is not of family quantize"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("gemm2:x=1", TargetLimits::for_arch("sm_80")), doctest::Contains("unknown kernel family 'gemm2'"), SpecError);
    CHECK_THROWS_WITH_AS(TargetLimits::for_arch("sm_75"), doctest::Contains("unsupported architecture 'sm_75'"), SpecError);
  }

  TEST_CASE("validation rejects specs the target cannot run, before compiling") {
    const auto sm90 = TargetLimits::for_arch("sm_90a");
    CHECK_THROWS_WITH_AS(emit_key("quantize:block=48", sm90), doctest::Contains("block=48 is not supported"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("quantize:threads=48", sm90), doctest::Contains("threads=48 must be a multiple of 32"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("quantize:threads=2048", sm90), doctest::Contains("must be a multiple of 32 in 32..1024"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("quantize:tile_rows=3", sm90), doctest::Contains("must be 1, 2, 4 or 8 blocks"), SpecError);
    // A 1x1 tile of 32x32 BF16 values is 32 rows of 4 chunks: 256 threads would need 64 rows.
    CHECK_THROWS_WITH_AS(emit_key("quantize:tile_rows=1,tile_cols=1,threads=256", sm90), doctest::Contains("does not split a 32x32 tile"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("quantize:in=i8", sm90), doctest::Contains("in must be f32 or bf16"), SpecError);
    // A 4x4 tile of 64x64 blocks staged for the transpose is 64 KiB of shared memory > 48 KiB.
    CHECK_THROWS_WITH_AS(emit_key("quantize:block=64,transpose=1,threads=512", sm90), doctest::Contains("static shared memory"), SpecError);
    CHECK_NOTHROW(emit_key("quantize:block=64,transpose=0,tile_rows=2,tile_cols=2,threads=512,stages=2", sm90));
    CHECK_THROWS_WITH_AS(emit_key("quantize:in=f32,stages=4", sm90), doctest::Contains("input ring of 4 tiles"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("gemm_sm90:bn=128", TargetLimits::for_arch("sm_80")), doctest::Contains("needs sm_90a"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("gemm_sm90:group=48", sm90), doctest::Contains("group=48 is not supported"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("gemm_sm90:stages=8", sm90), doctest::Contains("shared memory"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("gemm_sm90:out=f32,round=stochastic", sm90), doctest::Contains("INT8 output only"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("gemm_sm90:group=128,overlap=2", sm90), doctest::Contains("overlap=2 needs two K-groups"), SpecError);
    CHECK_NOTHROW(emit_key("gemm_sm90:group=64,overlap=2", sm90));
    // Dequantize stores 16-byte vectors of values: a BF16 thread needs at least 8 codes, an FP32 one 4.
    CHECK_THROWS_WITH_AS(emit_key("dequantize:out=bf16,tile_rows=1,tile_cols=1,threads=256", sm90), doctest::Contains("leaves 4 codes per thread"), SpecError);
    CHECK_NOTHROW(emit_key("dequantize:out=f32,tile_rows=1,tile_cols=1,threads=256", sm90));
    CHECK_NOTHROW(emit_key("dequantize:out=bf16,block=16,tile_rows=1,tile_cols=1,threads=32", sm90));
    CHECK_THROWS_WITH_AS(emit_key("layernorm_apply:tile_rows=3", sm90), doctest::Contains("layernorm_apply"), SpecError);
    CHECK(emit_key("residual:stats=1", sm90).kernel_expr.find("residual_kernel<float, jetforge::kRoundNearest, 1,") != std::string::npos);
    CHECK_THROWS_WITH_AS(emit_key("residual_stats:threads=48", sm90), doctest::Contains("threads=48 must be a multiple of 32"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("attention_sm90:kernel=forward", TargetLimits::for_arch("sm_80")), doctest::Contains("use the portable attention kernels"),
                         SpecError);
    CHECK_THROWS_WITH_AS(emit_key("attention_sm90:kernel=delta", sm90), doctest::Contains("kernel=delta has no Hopper version"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("attention_sm90:kernel=backward_q,keys=64", sm90), doctest::Contains("apply to the forward kernel only"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("attention_sm90:kernel=backward_kv,schedule=pingpong", sm90), doctest::Contains("apply to the forward kernel only"),
                         SpecError);
    CHECK_THROWS_WITH_AS(emit_key("attention_sm90:stages=4", sm90), doctest::Contains("stages=4 is not supported"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("attention_sm90:head_dim=96", sm90), doctest::Contains("head_dim=96 is not supported"), SpecError);
    CHECK(emit_key("attention_sm90:kernel=backward_kv,head_dim=128,causal=0", sm90).kernel_expr ==
          "jetforge::attention_backward_kv_sm90_kernel<128, false, 2>");
    CHECK(emit_key("attention_sm90:kernel=backward_q,stages=3", sm90).kernel_expr == "jetforge::attention_backward_q_sm90_kernel<64, true, 3>");
    CHECK(emit_key("attention_sm90:keys=64", sm90).kernel_expr == "jetforge::attention_forward_sm90_kernel<64, true, 64, 2, false>");
    CHECK(emit_key("attention:kernel=backward_q,head_dim=128,tile=32", sm90).kernel_expr == "jetforge::attention_backward_q_kernel<128, true, 32>");
    CHECK_THROWS_WITH_AS(emit_key("attention:tile=48", sm90), doctest::Contains("tile=48 is not supported (32 or 64)"), SpecError);
    CHECK_THROWS_WITH_AS(emit_key("attention:kernel=delta,tile=32", sm90), doctest::Contains("tile does not apply to kernel=delta"), SpecError);
    CHECK(AttentionSpec::fit(AttentionKernel::forward, 128, true).tile == 32);
    CHECK(emit_key("attention_sm90:head_dim=128,stages=3,schedule=pingpong", sm90).kernel_expr ==
          "jetforge::attention_forward_sm90_kernel<128, true, 128, 3, true>");
  }

  TEST_CASE("the emitted source includes the template and instantiates the kernel") {
    const auto k = emit(QuantizeSpec{DType::f32, 32, Rounding::stochastic, true, BlockTile{2, 4, 128}, 3});
    CHECK(k.kernel_expr == "jetforge::quantize_kernel<float, 32, 2, 4, jetforge::kRoundStochastic, true, 128, 3, 4>");
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
        hashes.insert(f.emit_key(key, TargetLimits::for_arch("sm_90a")).hash);
        ++n;
      }
    CHECK(hashes.size() == n);

    std::set<std::string> closure;
    for (const auto& t : template_closure("quantize.cuh")) closure.insert(std::string(t.name));
    CHECK(closure == std::set<std::string>{"jetforge/common.cuh", "jetforge/cta_tile.cuh", "quantize.cuh"});
    // Same spec fields, other template: the template hash differs, so the kernel hash does too.
    CHECK(hash_templates("quantize.cuh") != hash_templates("dequantize.cuh"));
    CHECK(Fnv1a64().add("ab").add("c").value() != Fnv1a64().add("a").add("bc").value());
  }

  TEST_CASE("the tile fits the matrix: the largest dividing tile, threads that split every chunk count") {
    const auto big = BlockTile::fit(8192, 4096, 32, 2);
    CHECK(big.rows == 4);
    CHECK(big.cols == 4);
    CHECK(big.threads == 512);  // 2048 chunks of 16 bytes, 4 per thread
    const auto odd = BlockTile::fit(160, 32, 32, 4);  // 5 x 1 blocks
    CHECK(odd.rows == 1);
    CHECK(odd.cols == 1);
    for (int elem : {1, 2, 4})
      for (std::int64_t rows : {32, 64, 96, 128, 4096})
        for (std::int64_t cols : {32, 64, 160, 4096}) {
          CAPTURE(rows);
          CAPTURE(cols);
          CAPTURE(elem);
          const auto tile = BlockTile::fit(rows, cols, 32, elem);
          CHECK(rows % (tile.rows * 32) == 0);
          CHECK(cols % (tile.cols * 32) == 0);
          if (elem > 1)
            CHECK_NOTHROW(QuantizeSpec::fit(elem == 4 ? DType::f32 : DType::bf16, rows, cols, 32, Rounding::nearest, true).validate(TargetLimits::for_arch("sm_80")));
          else CHECK_NOTHROW(TransposeSpec{32, tile}.validate(TargetLimits::for_arch("sm_80")));
        }
  }

  TEST_CASE("LayerNorm variants: each valid and covering the row, none twice, streamed rows everywhere, clusters on sm_90 only") {
    for (const std::string arch : {"sm_80", "sm_90a"}) {
      const auto target = TargetLimits::for_arch(arch);
      for (auto pass : {LayerNormPass::forward, LayerNormPass::backward})
        for (std::int64_t cols : {32, 96, 192, 768, 1024, 4096, 8192}) {
          CAPTURE(arch);
          CAPTURE(cols);
          const auto variants = LayerNormSpec::variants(pass, cols, target);
          std::set<std::string> keys;
          for (const auto& v : variants) {
            CAPTURE(canonical_key(v));
            CHECK_NOTHROW(v.validate(target));
            CHECK((v.slice > 0 ? std::int64_t(v.slice) * v.cluster == cols : cols % v.sub == 0));
            CHECK(v.pass == pass);
            keys.insert(canonical_key(v));
          }
          CHECK(keys.size() == variants.size());
          if (cols == 1024) CHECK(keys.count(canonical_key(LayerNormSpec{pass, 0, 128, 1, 256})) == 1);  // streamed rows are among them
          if (cols == 1024) CHECK(keys.count(canonical_key(LayerNormSpec{pass, 128, 128, 8, 128})) == (arch == "sm_90a" ? 1u : 0u));  // clusters: sm_90 only
        }
    }
  }

  TEST_CASE("templates are embedded and unknown names are reported") {
    CHECK(template_text("quantize.cuh").find("quantize_kernel") != std::string_view::npos);
    CHECK_THROWS_WITH_AS(template_text("nope.cuh"), doctest::Contains("no kernel template named 'nope.cuh'"), std::invalid_argument);
  }
}
