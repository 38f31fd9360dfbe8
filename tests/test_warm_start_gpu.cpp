// Warm start: every kernel a GPT-2 124M training step needs, loaded from the kernel cache into a fresh context,
// with no NVRTC compilation, in at most 100 ms.
#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "generator/families.hpp"
#include "runtime/kernels.hpp"
#include "testing.hpp"
#include "tuner/model_config.hpp"

using namespace jetforge;

TEST_SUITE("gpu") {
  TEST_CASE("warm start: a model's kernels load from the cache with zero NVRTC compilations") {
    Context& ctx = testing::gpu();
    const std::string arch = ctx.device().info().arch();
    const auto db = std::filesystem::temp_directory_path() / ("jetforge-warm-" + std::to_string(getpid()) + ".db");
    std::filesystem::remove(db);
    const auto config = tuner::load_model_config(std::string(JETFORGE_SOURCE_DIR) + "/configs/gpt2-124m.yaml");
    const auto kernels = tuner::training_step_kernels(config, ctx.limits());
    REQUIRE_FALSE(kernels.empty());
    auto cache = std::make_shared<cache::KernelCache>(db);
    for (const auto& k : kernels) compile_or_load(k, arch, cache.get());  // cold: fills the cache

    const auto compiles = compile_count();
    const auto start = std::chrono::steady_clock::now();
    KernelTable table(ctx.device().info(), cache, OnCacheMiss::fail);  // a miss would throw, not compile
    for (const auto& k : kernels) table.get(k.key, [&] { return gen::emit_key(k.key, ctx.limits()); });  // emission included
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    MESSAGE("warm start: " << kernels.size() << " kernels loaded from the cache in " << ms << " ms");
    CHECK(compile_count() == compiles);
    CHECK(ms <= 100.0);
    std::filesystem::remove(db);
  }
}
