// The SQLite kernel cache, model configs and `jetforge cache`: CPU only (cubins are compiled for sm_90a/sm_80
// by NVRTC here; loading them is proven on the GPU machine).
#include <doctest/doctest.h>

#include <algorithm>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sqlite3.h>

#include "cache/kernel_cache.hpp"
#include "generator/families.hpp"
#include "runtime/kernels.hpp"
#include "tuner/model_config.hpp"

using namespace jetforge;
namespace fs = std::filesystem;

namespace {

fs::path fresh(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("jetforge-test-" + std::to_string(getpid()) + "-" + name);
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(p.string() + suffix);
  return p;
}

int run(const std::string& args) {
  const int status = std::system((std::string(JETFORGE_CLI) + " " + args + " > /dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::int64_t rows(const fs::path& db) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, "SELECT count(*), count(DISTINCT hash || arch || nvrtc || options) FROM cubins", -1, &s, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  const std::int64_t n = sqlite3_column_int64(s, 0), distinct = sqlite3_column_int64(s, 1);
  sqlite3_finalize(s);
  sqlite3_close(h);
  CHECK(n == distinct);  // never a duplicate row
  return n;
}

void sql(const fs::path& db, const char* statement) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
  REQUIRE(sqlite3_exec(h, statement, nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(h);
}

const std::string kModel = std::string(JETFORGE_SOURCE_DIR) + "/configs/gpt2-124m.yaml";

}  // namespace

TEST_SUITE("cache") {
  TEST_CASE("a context that must start warm fails on a cache miss, naming the commands that fill the cache") {
    const auto db = fresh("cold.db");
    auto cache = std::make_shared<cache::KernelCache>(db);
    const auto source = gen::emit(gen::QuantizeSpec::fit(gen::DType::bf16, 4096, 4096, 32, gen::Rounding::nearest, false));
    const auto before = compile_count();
    const std::string message = "is not in the kernel cache " + db.string() +
                                " and this context does not compile on a miss; fill the cache with `jetforge cache build --model FILE --arch sm_90a`";
    CHECK_THROWS_WITH_AS(compile_or_load(source, "sm_90a", cache.get(), nullptr, OnCacheMiss::fail), doctest::Contains(message.c_str()), std::runtime_error);
    CHECK(compile_count() == before);
    CHECK(cache->list().empty());
    compile_or_load(source, "sm_90a", cache.get());  // the default policy compiles and stores it ...
    bool compiled = true;
    compile_or_load(source, "sm_90a", cache.get(), &compiled, OnCacheMiss::fail);  // ... after which a warm-only lookup finds it
    CHECK_FALSE(compiled);
  }

  TEST_CASE("a compiled kernel is stored once and loaded without NVRTC afterwards") {
    const auto db = fresh("warm.db");
    auto cache = std::make_shared<cache::KernelCache>(db);
    const auto source = gen::emit(gen::QuantizeSpec::fit(gen::DType::bf16, 4096, 4096, 32, gen::Rounding::nearest, true));
    bool compiled = false;
    const auto first = compile_or_load(source, "sm_90a", cache.get(), &compiled);
    CHECK(compiled);
    const auto before = compile_count();
    const auto second = compile_or_load(source, "sm_90a", cache.get(), &compiled);
    CHECK_FALSE(compiled);
    CHECK(compile_count() == before);  // the warm path touches no NVRTC
    CHECK(second.cubin == first.cubin);
    CHECK(second.lowered_name == first.lowered_name);
    CHECK(second.threads == first.threads);
    // Another arch or NVRTC version is another key.
    CHECK_FALSE(cache->find(source, "sm_80", nvrtc_version(), "--gpu-architecture=sm_80 -std=c++17").has_value());
    CHECK_FALSE(cache->find(source, "sm_90a", "0.0", "--gpu-architecture=sm_90a -std=c++17").has_value());
    CHECK(rows(db) == 1);
  }

  TEST_CASE("a template change makes exactly its entries stale; prune removes exactly those") {
    const auto db = fresh("stale.db");
    REQUIRE(run("cache build --model " + kModel + " --arch sm_90a --cache " + db.string()) == 0);
    const std::int64_t total = rows(db);
    std::int64_t quantize = 0;
    {
      cache::KernelCache c(db);
      for (const auto& e : c.list()) {
        CHECK_FALSE(e.stale);
        quantize += e.family == "quantize";
      }
    }
    REQUIRE(quantize > 0);
    // As if quantize.cuh had been edited since these were compiled: their template hash no longer matches.
    sql(db, "UPDATE cubins SET template_hash = '0000000000000000' WHERE template = 'quantize.cuh'");
    cache::KernelCache c(db);
    std::int64_t stale = 0;
    for (const auto& e : c.list()) {
      CHECK(e.stale == (e.family == "quantize"));
      stale += e.stale;
    }
    CHECK(stale == quantize);
    CHECK(c.prune_stale() == quantize);
    CHECK(rows(db) == total - quantize);
  }

  TEST_CASE("a garbage or truncated database is moved aside and rebuilt, never trusted") {
    const auto db = fresh("garbage.db");
    {
      std::ofstream f(db);
      f << "this is not a database, just text that a user copied over the cache file\n";
    }
    {
      cache::KernelCache c(db);
      CHECK(c.recovery_note().find("moved it to") != std::string::npos);
      CHECK(c.list().empty());
    }
    bool moved = false;
    for (const auto& e : fs::directory_iterator(db.parent_path()))
      moved |= e.path().filename().string().starts_with(db.filename().string() + ".corrupt-");
    CHECK(moved);

    const auto trunc = fresh("truncated.db");
    REQUIRE(run("cache build --model " + kModel + " --arch sm_90a --cache " + trunc.string()) == 0);
    { cache::KernelCache checkpoint(trunc); }  // closing the last connection folds the WAL into the file
    fs::resize_file(trunc, fs::file_size(trunc) / 2);
    cache::KernelCache c(trunc);
    CHECK_FALSE(c.recovery_note().empty());
    CHECK(c.integrity_check() == "ok");
    CHECK(run("info --cache " + trunc.string()) == 0);
  }

  TEST_CASE("import refuses a damaged file and leaves it alone; export then import round-trips") {
    const auto db = fresh("main.db"), other = fresh("other.db"), junk = fresh("junk.db");
    REQUIRE(run("cache build --model " + kModel + " --arch sm_90a --cache " + db.string()) == 0);
    const std::int64_t n = rows(db);
    cache::KernelCache c(db);
    CHECK(c.export_to(other) == n);
    cache::KernelCache empty(fresh("empty.db"));
    CHECK(empty.import_from(other) == n);
    CHECK(empty.import_from(other) == 0);  // nothing new the second time
    {
      std::ofstream f(junk);
      f << "garbage";
    }
    CHECK_THROWS_WITH_AS(empty.import_from(junk), doctest::Contains("is not a readable kernel cache"), cache::CacheError);
    CHECK(fs::file_size(junk) == 7);
    CHECK_THROWS_WITH_AS(empty.import_from(fresh("missing.db")), doctest::Contains("no such file"), cache::CacheError);
  }

  TEST_CASE("four processes building one model into one database: all succeed, no duplicate or lost rows") {
    const auto db = fresh("concurrent.db");
    std::vector<pid_t> children;
    for (int i = 0; i < 4; ++i) {
      const pid_t pid = fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        const std::string cmd = std::string(JETFORGE_CLI) + " cache build --jobs 1 --model " + kModel + " --arch sm_90a,sm_80 --cache " + db.string() +
                                " > /dev/null 2>&1";
        _exit(WEXITSTATUS(std::system(cmd.c_str())));
      }
      children.push_back(pid);
    }
    for (pid_t pid : children) {
      int status = 0;
      waitpid(pid, &status, 0);
      CHECK(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);
    }
    const auto a = tuner::training_step_kernels(tuner::load_model_config(kModel), gen::TargetLimits::for_arch("sm_90a"));
    const auto b = tuner::training_step_kernels(tuner::load_model_config(kModel), gen::TargetLimits::for_arch("sm_80"));
    CHECK(rows(db) == std::int64_t(a.size() + b.size()));
    CHECK(cache::KernelCache(db).integrity_check() == "ok");
  }

  TEST_CASE("a process killed with SIGKILL mid-build leaves a database that opens and passes integrity_check") {
    const auto db = fresh("killed.db");
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      if (!freopen("/dev/null", "w", stdout)) _exit(126);
      execl(JETFORGE_CLI, JETFORGE_CLI, "cache", "build", "--jobs", "2", "--model", kModel.c_str(), "--arch", "sm_90a,sm_80", "--cache", db.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    usleep(700 * 1000);  // some kernels compiled and stored, others in flight
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    cache::KernelCache c(db);
    CHECK(c.recovery_note().empty());
    CHECK(c.integrity_check() == "ok");
    MESSAGE(c.list().size() << " kernel(s) survived the kill");
  }

  TEST_CASE("a model's warm-start kernels are the ones its operators launch on the target (the attention path)") {
    const auto config = tuner::load_model_config(kModel);
    const auto has = [](const std::vector<std::string>& keys, const std::string& prefix) {
      return std::any_of(keys.begin(), keys.end(), [&](const std::string& k) { return k.starts_with(prefix); });
    };
    const auto hopper = tuner::training_step_keys(config, gen::TargetLimits::for_arch("sm_90a"));
    const auto ampere = tuner::training_step_keys(config, gen::TargetLimits::for_arch("sm_80"));
    CHECK(has(hopper, "attention_sm90:kernel=forward"));
    CHECK(has(hopper, "attention_sm90:kernel=backward_kv"));
    CHECK(has(hopper, "attention_sm90:kernel=backward_q"));
    CHECK(has(hopper, "attention:kernel=delta"));  // the delta kernel has no Hopper version
    CHECK_FALSE(has(hopper, "attention:kernel=forward"));
    CHECK(has(ampere, "attention:kernel=forward"));
    CHECK_FALSE(has(ampere, "attention_sm90:"));
    CHECK(has(hopper, "column_sum:kernel=sums"));  // bias gradients in one launch where clusters exist
    CHECK_FALSE(has(hopper, "column_sum:kernel=partials"));
    CHECK(has(ampere, "column_sum:kernel=partials"));
    CHECK_FALSE(has(ampere, "column_sum:kernel=sums"));
    // Every LayerNorm forward takes the statistics of the pass before it (layernorm_apply), the first the embedding's.
    CHECK(has(hopper, "layernorm:pass=backward"));
    CHECK(has(hopper, "layernorm_apply:"));
    CHECK_FALSE(has(hopper, "layernorm:pass=forward"));
  }

  TEST_CASE("model configs: every shipped config loads; errors name the file, line and key") {
    for (const char* name : {"gpt2-124m", "gpt2-350m", "gpt2-774m", "gpt2-1558m"}) {
      const auto c = tuner::load_model_config(std::string(JETFORGE_SOURCE_DIR) + "/configs/" + name + ".yaml");
      CHECK(c.name == name);
      CHECK_FALSE(tuner::training_step_problems(c, gen::TargetLimits::for_arch("sm_90a")).empty());
    }
    const auto bad = fresh("bad.yaml");
    auto write = [&](const std::string& text) {
      std::ofstream f(bad);
      f << text;
    };
    const std::string base = "name: x\nlayers: 2\nhidden: 256\nheads: 4\nsequence: 128\nmicro_batch: 2\nvocab: 1000\n";
    write(base + "colour: red\n");
    const std::string where = bad.string() + ":8: key 'colour': unknown key";
    CHECK_THROWS_WITH_AS(tuner::load_model_config(bad), doctest::Contains(where.c_str()), tuner::ConfigError);
    write("name: x\nlayers: two\n");
    CHECK_THROWS_WITH_AS(tuner::load_model_config(bad), doctest::Contains(":2: key 'layers': expected a positive integer, got 'two'"), tuner::ConfigError);
    write(base + "k_group: 48\n");
    CHECK_THROWS_WITH_AS(tuner::load_model_config(bad), doctest::Contains(":8: key 'k_group': must be 32, 64 or 128"), tuner::ConfigError);
    write("name: x\nlayers: 2\n");
    CHECK_THROWS_WITH_AS(tuner::load_model_config(bad), doctest::Contains("key 'hidden' is missing"), tuner::ConfigError);
    write("name: [unclosed\n");
    CHECK_THROWS_WITH_AS(tuner::load_model_config(bad), doctest::Contains("not valid YAML"), tuner::ConfigError);
  }

  TEST_CASE("cache verbs: ls, show, prune and usage errors") {
    const auto db = fresh("cli.db");
    CHECK(run("cache build --model " + kModel + " --arch sm_90a --cache " + db.string()) == 0);
    CHECK(run("cache ls --json --cache " + db.string()) == 0);
    CHECK(run("cache show transpose:block=32,tile_rows=4,tile_cols=4,threads=256 --cache " + db.string()) == 0);
    CHECK(run("cache show quantize:nope=1 --cache " + db.string()) == 1);
    CHECK(run("cache prune --cache " + db.string()) == 0);
    CHECK(run("cache verify --cache " + db.string()) == 0);
    CHECK(run("cache --cache " + db.string()) == 2);
    CHECK(run("cache build --arch sm_90a --cache " + db.string()) == 2);
    CHECK(run("cache build --model /nonexistent.yaml --arch sm_90a --cache " + db.string()) == 1);
    CHECK(run("cache frob --cache " + db.string()) == 2);
  }
}

TEST_SUITE("cache") {
  TEST_CASE("a cache that cannot be written does not stop a compile") {
    const auto db = fresh("readonly.db");
    auto cache = std::make_shared<cache::KernelCache>(db);
    sql(db, "CREATE TRIGGER refuse BEFORE INSERT ON cubins BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END");
    const auto source = gen::emit(gen::TransposeSpec::fit(128, 128, 32));
    bool compiled = false;
    const auto k = compile_or_load(source, "sm_80", cache.get(), &compiled);
    CHECK(compiled);
    CHECK(k.cubin.size() > 4);
    CHECK(rows(db) == 0);
  }
}

TEST_SUITE("cache") {
  TEST_CASE("schema migrations: a version-1 cache gains the winners table; a newer one is refused, not moved aside") {
    const auto db = fresh("v1.db");
    { cache::KernelCache c(db); }
    sql(db, "DROP TABLE winners; UPDATE meta SET value = '1' WHERE key = 'schema_version'");
    {
      cache::KernelCache c(db);
      CHECK(c.recovery_note().empty());
      c.store_winner("gemm:8192x768x768", "NVIDIA H100|132|13000", "gemm_sm90:bn=128", 42.0, 25);
      c.store_winner("gemm:8192x768x768", "NVIDIA H100|132|13000", "gemm_sm90:bn=64", 40.0, 25);  // a later tune replaces it
      CHECK(c.find_winner("gemm:8192x768x768", "NVIDIA H100|132|13000") == std::optional<std::string>("gemm_sm90:bn=64"));
      CHECK_FALSE(c.find_winner("gemm:8192x768x768", "NVIDIA A100|108|13000").has_value());
      CHECK(c.winners().size() == 1);
    }
    sql(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'");
    CHECK_THROWS_WITH_AS(cache::KernelCache{db}, doctest::Contains("newer than this jetforge's"), std::runtime_error);
    CHECK(fs::exists(db));
  }
}
