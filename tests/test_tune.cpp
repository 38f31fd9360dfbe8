// The GEMM tuner: shapes and search space (everywhere), offline compilation of every candidate, and (on a GPU)
// a tuning run on a small model whose winners gemm() then picks up.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "generator/families.hpp"
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
    CHECK(tuner::gemm_search_space(gen::TargetLimits::for_arch("sm_90a")).size() == 26);  // 2 folds x (12 Hopper + 1 portable)
    CHECK(tuner::gemm_search_space(gen::TargetLimits::for_arch("sm_80")).size() == 2);
    CHECK(choice_from_spec("gemm_sm90:bn=64,group=32,stages=6,out=i8,round=nearest,fold=magic,cluster=2").cluster == 2);
    CHECK(choice_from_spec("gemm_sm80:group=32,stages=3,out=f32,round=nearest,fold=convert").portable);
    CHECK_THROWS_AS(choice_from_spec("quantize:in=f32"), gen::SpecError);
  }

  TEST_CASE("tuning spaces from YAML: the shipped file is the default, overrides narrow it, errors name file, line and key") {
    const auto shipped = tuner::load_gemm_space(std::string(JETFORGE_SOURCE_DIR) + "/configs/tuning.yaml");
    const auto target = gen::TargetLimits::for_arch("sm_90a");
    CHECK(tuner::gemm_search_space(target, shipped).size() == tuner::gemm_search_space(target).size());
    const fs::path p = fs::temp_directory_path() / ("jetforge-space-" + std::to_string(getpid()) + ".yaml");
    std::ofstream(p) << "gemm:\n  bn: [128]\n  stages: [4]\n  fold: [magic]\n  portable: false\n";
    const auto narrow = tuner::gemm_search_space(target, tuner::load_gemm_space(p));
    REQUIRE(narrow.size() == 2);  // cluster 1 and 2
    CHECK(narrow[0].fold == gen::GemmFold::magic);
    CHECK(tuner::gemm_search_space(gen::TargetLimits::for_arch("sm_80"), tuner::load_gemm_space(p)).size() == 1);  // off Hopper: portable
    std::ofstream(p, std::ios::trunc) << "gemm:\n  bn: [128]\n  tiles: [1]\n";
    CHECK_THROWS_WITH_AS(tuner::load_gemm_space(p), doctest::Contains(":3: key 'gemm.tiles': unknown key"), tuner::ConfigError);
    std::ofstream(p, std::ios::trunc) << "gemm:\n  fold: [fast]\n";
    CHECK_THROWS_WITH_AS(tuner::load_gemm_space(p), doctest::Contains("'fast' is not a fold"), tuner::ConfigError);
    std::ofstream(p, std::ios::trunc) << "gemm:\n  stages: four\n";
    CHECK_THROWS_WITH_AS(tuner::load_gemm_space(p), doctest::Contains("key 'gemm.stages': expected a non-empty list"), tuner::ConfigError);
  }

  TEST_CASE("every candidate compiles offline into the cache; tune without a GPU says what to do") {
    const fs::path db = fs::temp_directory_path() / ("jetforge-tune-" + std::to_string(getpid()) + ".db");
    fs::remove(db);
    const auto model = small_model();
    cache::KernelCache cache(db);
    const auto results = tuner::compile_candidates(tuner::load_model_config(model), "sm_80", cache, 2);
    CHECK(results.size() == 8);  // sm_80: 2 folds x 4 output kinds (i8 nearest, i8 stochastic, f32, bf16)
    for (const auto& r : results) {
      CAPTURE(r.key);
      CHECK(r.error.empty());
    }
    CHECK(cache.list().size() == 8);
    if (Device::count() == 0) {
      const int status = std::system((std::string(JETFORGE_CLI) + " tune --model " + model.string() + " --cache " + db.string() + " > /dev/null 2>&1").c_str());
      CHECK(WEXITSTATUS(status) == 1);
    }
  }
}

TEST_SUITE("gpu") {
  TEST_CASE("tuning a small model stores winners that gemm() then uses") {
    const fs::path db = fs::temp_directory_path() / ("jetforge-tune-gpu-" + std::to_string(getpid()) + ".db");
    fs::remove(db);
    auto cache = std::make_shared<cache::KernelCache>(db);
    Context ctx(0, cache);
    tuner::TuneOptions options;
    options.reps = 5;
    const auto config = tuner::load_model_config(small_model());
    const auto results = tuner::tune_gemms(ctx, config, options);
    REQUIRE(results.size() == tuner::gemm_shapes(config).size());
    for (const auto& r : results) {
      CAPTURE(r.shape.name);
      REQUIRE(r.winner >= 0);
      for (const auto& c : r.candidates) CHECK_MESSAGE(c.verdict != "wrong result", c.spec);
      CHECK(ctx.tuned(r.shape.key()) == std::optional<std::string>(r.candidates[size_t(r.winner)].spec));
    }
    CHECK(cache->winners().size() == results.size());
  }
}
