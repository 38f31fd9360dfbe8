// The tuner: problems and search spaces of the GEMM and quantize families (everywhere), offline compilation of every
// candidate, and (on a GPU) a tuning run on a small model whose winners gemm() and quantize() then pick up.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <set>
#include <fstream>

#include "generator/families.hpp"
#include "runtime/ops.hpp"
#include "testing.hpp"
#include "tuner/tune.hpp"

using namespace jetforge;
namespace fs = std::filesystem;

namespace {

fs::path small_model() {
  const fs::path p = fs::temp_directory_path() / ("jetforge-small-" + std::to_string(getpid()) + ".yaml");
  std::ofstream(p) << "name: small\nlayers: 1\nhidden: 256\nheads: 4\nsequence: 128\nmicro_batch: 2\nvocab: 1000\n";
  return p;
}

}  // namespace

TEST_SUITE("cache") {
  TEST_CASE("tuning problems and search space") {
    const auto config = tuner::load_model_config(std::string(JETFORGE_SOURCE_DIR) + "/configs/gpt2-124m.yaml");
    const auto shapes = tuner::gemm_shapes(config);
    CHECK(shapes.size() == 15);  // 5 linears (4 per block, the LM head) x (forward, backward data, backward weight), all distinct
    for (const auto& s : shapes) {
      CAPTURE(s.name);
      CHECK(s.m % 32 == 0);
      CHECK(s.key().starts_with("gemm:out="));
    }
    CHECK(tuner::gemm_search_space(gen::TargetLimits::for_arch("sm_90a")).size() == 13);  // 2 bn x 3 stages x 2 overlap + portable
    CHECK(tuner::gemm_search_space(gen::TargetLimits::for_arch("sm_80")).size() == 1);
    const auto target = gen::TargetLimits::for_arch("sm_90a");
    const auto problems = tuner::tune_problems(config, target);
    const auto quantize = tuner::quantize_shapes(config);
    CHECK(quantize.size() == 9);  // 5 weights, attention output, QKV gradient, embedding output, logits gradient
    REQUIRE(problems.size() == shapes.size() + quantize.size());
    for (std::size_t i = 0; i < problems.size(); ++i) {
      const auto& p = problems[i];
      CAPTURE(p.name);
      CHECK(p.family == (i < shapes.size() ? "gemm" : "quantize"));
      CHECK(p.key == (i < shapes.size() ? shapes[i].key() : quantize[i - shapes.size()].key()));
      CHECK(std::set<std::string>(p.candidates.begin(), p.candidates.end()).size() == p.candidates.size());
      if (p.family == "quantize") {
        const auto& q = quantize[i - shapes.size()];
        CHECK(p.candidates.front() == gen::canonical_key(gen::QuantizeSpec::fit(q.in, q.rows, q.cols, 32, q.rounding, q.transpose)));
        CHECK(p.candidates.size() >= (q.transpose ? 9u : 3u));
        for (const auto& key : p.candidates) CHECK_NOTHROW(gen::parse_key<gen::QuantizeSpec>(key).validate(target));  // pruned before compiling
      }
    }
    CHECK(choice_from_spec("gemm_sm90:bn=64,group=32,stages=6,out=i8,round=nearest,fold=magic,cluster=2").cluster == 2);
    CHECK(choice_from_spec("gemm_sm80:group=32,stages=3,out=f32,round=nearest,fold=convert").portable);
    CHECK_THROWS_AS(choice_from_spec("quantize:in=f32"), gen::SpecError);
  }

  TEST_CASE("tuning spaces from YAML: the shipped file is the default, overrides narrow it, errors name file, line and key") {
    const auto shipped = tuner::load_space(std::string(JETFORGE_SOURCE_DIR) + "/configs/tuning.yaml");
    const auto target = gen::TargetLimits::for_arch("sm_90a");
    CHECK(tuner::gemm_search_space(target, shipped.gemm).size() == tuner::gemm_search_space(target).size());
    CHECK(shipped.quantize.threads == tuner::QuantizeSpace{}.threads);
    CHECK(shipped.quantize.stages == tuner::QuantizeSpace{}.stages);
    CHECK(shipped.quantize.transpose_unit == tuner::QuantizeSpace{}.transpose_unit);
    const fs::path p = fs::temp_directory_path() / ("jetforge-space-" + std::to_string(getpid()) + ".yaml");
    std::ofstream(p) << "gemm:\n  bn: [128]\n  stages: [4]\n  cluster: [1, 2]\n  overlap: [1]\n  fold: [magic]\n  portable: false\nquantize:\n"
                        "  threads: [1024]\n  stages: [4]\n";
    const auto narrow_space = tuner::load_space(p);
    const auto narrow = tuner::gemm_search_space(target, narrow_space.gemm);
    REQUIRE(narrow.size() == 2);  // cluster 1 and 2
    CHECK(narrow[0].fold == gen::GemmFold::magic);
    CHECK(narrow[1].cluster == 2);
    CHECK(narrow[1].overlap == 1);
    CHECK(tuner::gemm_search_space(gen::TargetLimits::for_arch("sm_80"), narrow_space.gemm).size() == 1);  // off Hopper: portable
    CHECK(narrow_space.quantize.threads == std::vector<int>{1024});
    CHECK(narrow_space.quantize.transpose_unit == tuner::QuantizeSpace{}.transpose_unit);  // not given: the default
    std::ofstream(p, std::ios::trunc) << "gemm:\n  bn: [128]\n  tiles: [1]\n";
    CHECK_THROWS_WITH_AS(tuner::load_space(p), doctest::Contains(":3: key 'gemm.tiles': unknown key"), tuner::ConfigError);
    std::ofstream(p, std::ios::trunc) << "gemm:\n  fold: [fast]\n";
    CHECK_THROWS_WITH_AS(tuner::load_space(p), doctest::Contains("'fast' is not a fold"), tuner::ConfigError);
    std::ofstream(p, std::ios::trunc) << "gemm:\n  stages: four\n";
    CHECK_THROWS_WITH_AS(tuner::load_space(p), doctest::Contains("key 'gemm.stages': expected a non-empty list"), tuner::ConfigError);
    std::ofstream(p, std::ios::trunc) << "quantize:\n  unit: [4]\n";
    CHECK_THROWS_WITH_AS(tuner::load_space(p), doctest::Contains("key 'quantize.unit': unknown key"), tuner::ConfigError);
    std::ofstream(p, std::ios::trunc) << "layernorm:\n  threads: [4]\n";
    CHECK_THROWS_WITH_AS(tuner::load_space(p), doctest::Contains(":1: key 'layernorm': unknown family"), tuner::ConfigError);
  }

  TEST_CASE("every candidate compiles offline into the cache; tune without a GPU says what to do") {
    const fs::path db = fs::temp_directory_path() / ("jetforge-tune-" + std::to_string(getpid()) + ".db");
    fs::remove(db);
    const auto model = small_model();
    cache::KernelCache cache(db);
    // A narrow quantize space keeps this test short; the full space's candidates all pass validation (above).
    tuner::TuneSpace space;
    space.quantize = {{1024}, {2, 4}, {4, 16}};
    const auto config = tuner::load_model_config(model);
    std::set<std::string> expected;
    int gemm_keys = 0;
    for (const auto& p : tuner::tune_problems(config, gen::TargetLimits::for_arch("sm_80"), space))
      for (const auto& key : p.candidates) gemm_keys += expected.insert(key).second && p.family == "gemm";
    CHECK(gemm_keys == 4);  // sm_80: the portable path x 4 output kinds (i8 nearest, i8 stochastic, f32, bf16)
    const auto results = tuner::compile_candidates(config, "sm_80", cache, 2, space);
    CHECK(results.size() == expected.size());
    for (const auto& r : results) {
      CAPTURE(r.key);
      CHECK(expected.count(r.key) == 1);
      CHECK(r.error.empty());
    }
    CHECK(cache.list().size() == expected.size());
    if (Device::count() == 0) {
      const int status = std::system((std::string(JETFORGE_CLI) + " tune --model " + model.string() + " --cache " + db.string() + " > /dev/null 2>&1").c_str());
      CHECK(WEXITSTATUS(status) == 1);
    }
  }
}

TEST_SUITE("gpu") {
  TEST_CASE("tuning a small model stores winners that gemm() and quantize() then use") {
    const fs::path db = fs::temp_directory_path() / ("jetforge-tune-gpu-" + std::to_string(getpid()) + ".db");
    fs::remove(db);
    auto cache = std::make_shared<cache::KernelCache>(db);
    Context ctx(0, cache);
    tuner::TuneOptions options;
    options.reps = 5;
    const auto config = tuner::load_model_config(small_model());
    const auto results = tuner::tune(ctx, config, options);
    REQUIRE(results.size() == tuner::gemm_shapes(config).size() + tuner::quantize_shapes(config).size());
    for (const auto& r : results) {
      CAPTURE(r.problem.name);
      REQUIRE(r.winner >= 0);
      for (const auto& c : r.candidates) CHECK_MESSAGE(c.verdict == "ok", c.spec << ": " << c.verdict);
      CHECK(ctx.tuned(r.problem.key) == std::optional<std::string>(r.candidates[size_t(r.winner)].spec));
    }
    CHECK(cache->winners().size() == results.size());

    // An operator call now runs the winner: a fresh context on the same cache compiles nothing for it.
    const auto q = tuner::quantize_shapes(config).front();
    Context fresh(0, cache);
    DenseTensor x(q.rows, q.cols, q.in);
    fill_random(x, 9);
    BlockTensor out(q.rows, q.cols), out_t(q.cols, q.rows);
    const auto compiles = compile_count();
    quantize_transpose(fresh, x.ref(), out.ref(), out_t.ref(), {q.rounding, 0, {}}, nullptr);
    CHECK(compile_count() == compiles);
  }
}
