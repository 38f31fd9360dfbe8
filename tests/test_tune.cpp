// The tuner: problems and search spaces of the GEMM, quantize and block-tile families (everywhere), offline
// compilation of every candidate, and (on a GPU) the on-device comparison and a tuning run on a small model whose
// winners the operators then pick up.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <set>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>

#include "generator/families.hpp"
#include "runtime/attention.hpp"
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
    CHECK(tuner::gemm_search_space(gen::TargetLimits::for_arch("sm_90a")).size() == 37);  // 2 bn x 3 stages x 3 overlap x 2 epilogues + portable
    CHECK(tuner::gemm_search_space(gen::TargetLimits::for_arch("sm_80")).size() == 1);
    // Split-K by default: the weight gradients of few tiles and a long K (proj and fc of 124M), FP32 output only; the
    // key names it, so an offline cache build compiles the kernel the call runs.
    CHECK(gemm_default_split_k(gen::GemmOut::f32, 768, 768, 8192) == 2);
    CHECK(gemm_default_split_k(gen::GemmOut::f32, 3072, 768, 8192) == 2);
    CHECK(gemm_default_split_k(gen::GemmOut::f32, 768, 3072, 8192) == 2);
    CHECK(gemm_default_split_k(gen::GemmOut::f32, 2304, 768, 8192) == 1);
    CHECK(gemm_default_split_k(gen::GemmOut::f32, 4096, 4096, 4096) == 1);
    CHECK(gemm_default_split_k(gen::GemmOut::i8, 768, 768, 8192) == 1);
    CHECK(gemm_default_split_k(gen::GemmOut::f32, 768, 768, 512) == 1);  // 4 K slices: too few to split
    const auto key = [](const GemmKernelChoice& c) {
      return gemm_kernel_key(gen::GemmOut::f32, 32, gen::Rounding::nearest, 768, 768, 8192, c, gen::TargetLimits::for_arch("sm_90a"));
    };
    CHECK(key(GemmKernelChoice{}).ends_with(",split_k=2"));
    GemmKernelChoice staged;
    staged.epilogue = gen::GemmEpilogue::staged;  // where the choice rules splitting out, the default does not split
    CHECK(key(staged).ends_with(",epilogue=staged,split_k=1"));
    const auto target = gen::TargetLimits::for_arch("sm_90a");
    const auto problems = tuner::tune_problems(config, target);
    const auto quantize = tuner::quantize_shapes(config);
    CHECK(quantize.size() == 9);  // 5 weights, attention output, QKV gradient, embedding output, logits gradient
    const auto tiles = tuner::tile_op_shapes(config);
    // Transposes of X and dY for the 768-, 2304-, 3072- and 50304-wide GEMM operands and of the 5 weights, the
    // attention bridge, GELU forward and backward, residual add forward (with statistics) and backward, LayerNorm with
    // given statistics.
    CHECK(tiles.size() == 15);
    // The attention kernels, each a problem: the forward on Hopper 2 keys x 2 stages x 2 schedules, each backward kernel
    // 2 stages; elsewhere the portable kernels' 2 tiles; the operator's untuned kernel first.
    REQUIRE(problems.size() == shapes.size() + quantize.size() + tiles.size() + 3);
    const auto portable_problems = tuner::tune_problems(config, gen::TargetLimits::for_arch("sm_80"));
    const std::size_t first_attention = problems.size() - 3;
    for (int i = 0; i < 3; ++i) {
      const auto kernel = std::array{gen::AttentionKernel::forward, gen::AttentionKernel::backward_kv, gen::AttentionKernel::backward_q}[std::size_t(i)];
      const auto& attention = problems[first_attention + std::size_t(i)];
      CAPTURE(attention.name);
      CHECK(attention.family == "attention");
      CHECK(attention.key == "attention_" + std::string(gen::enum_name(kernel)) + ":head_dim=64,causal=1,batch=8,heads=12,tokens=1024");
      CHECK(attention.candidates.size() == (i == 0 ? 8u : 2u));
      CHECK(attention.candidates.front() == gen::canonical_key(gen::AttentionSm90Spec::fit(kernel, 64, true)));
      CHECK(std::set<std::string>(attention.candidates.begin(), attention.candidates.end()).size() == attention.candidates.size());
      for (const auto& key : attention.candidates) CHECK_NOTHROW(gen::emit_key(key, target));
      const auto& portable = portable_problems[first_attention + std::size_t(i)].candidates;
      const std::string prefix = "attention:kernel=" + std::string(gen::enum_name(kernel)) + ",head_dim=64,causal=1,tile=";
      CHECK(portable == std::vector<std::string>{prefix + "64", prefix + "32"});
      // As the operators and the attention test read them (bench_attention --variants and the test take these lists).
      for (const auto& key : attention.candidates) CHECK(std::holds_alternative<gen::AttentionSm90Spec>(attention_choice(key)));
      for (const auto& key : portable) CHECK(std::holds_alternative<gen::AttentionSpec>(attention_choice(key)));
    }
    CHECK(tuner::attention_candidates(gen::AttentionKernel::forward, 128, false, gen::TargetLimits::for_arch("sm_80")) ==
          std::vector<std::string>{"attention:kernel=forward,head_dim=128,causal=0,tile=32", "attention:kernel=forward,head_dim=128,causal=0,tile=64"});
    CHECK(tuner::attention_candidates(gen::AttentionKernel::backward_q, 128, true, target) ==
          std::vector<std::string>{"attention_sm90:kernel=backward_q,head_dim=128,causal=1,keys=128,stages=2,schedule=plain",
                                   "attention_sm90:kernel=backward_q,head_dim=128,causal=1,keys=128,stages=3,schedule=plain"});
    for (std::size_t i = 0; i < first_attention; ++i) {
      const auto& p = problems[i];
      CAPTURE(p.name);
      const std::size_t q = i - shapes.size(), t = q - quantize.size();
      if (i < shapes.size()) CHECK((p.family == "gemm" && p.key == shapes[i].key()));
      else if (q < quantize.size()) CHECK((p.family == "quantize" && p.key == quantize[q].key()));
      else CHECK((p.key == tiles[t].key() && p.key.starts_with(p.family + ":") && p.candidates.front() == tiles[t].spec_key()));
      CHECK(std::set<std::string>(p.candidates.begin(), p.candidates.end()).size() == p.candidates.size());
      if (p.family == "quantize") {
        const auto& q = quantize[i - shapes.size()];
        CHECK(p.candidates.front() == gen::canonical_key(gen::QuantizeSpec::fit(q.in, q.rows, q.cols, 32, q.rounding, q.transpose)));
        CHECK(p.candidates.size() >= (q.transpose ? 9u : 3u));
        for (const auto& key : p.candidates) CHECK_NOTHROW(gen::parse_key<gen::QuantizeSpec>(key).validate(target));  // pruned before compiling
      }
      if (i >= shapes.size() + quantize.size()) {
        const auto& shape = tiles[i - shapes.size() - quantize.size()];
        CHECK(p.candidates.size() >= 9u);
        for (const auto& key : p.candidates) {
          // Every candidate tiles the matrix and passes its family's static limits.
          auto field = [&](const std::string& name) { return std::stoi(key.substr(key.find(name + "=") + name.size() + 1)); };
          CHECK(shape.rows % (field("tile_rows") * 32) == 0);
          CHECK(shape.cols % (field("tile_cols") * 32) == 0);
          CHECK_NOTHROW(gen::emit_key(key, target));
        }
      }
    }
    CHECK(tiles[0].key() == "transpose:block=32,rows=8192,cols=768");
    CHECK(std::any_of(tiles.begin(), tiles.end(),
                      [](const auto& t) { return t.key() == "elementwise:op=gelu_tanh,round=nearest,rows=8192,cols=3072"; }));
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
    CHECK(shipped.tile.tile_rows == tuner::TileSpace{}.tile_rows);
    CHECK(shipped.tile.tile_cols == tuner::TileSpace{}.tile_cols);
    CHECK(shipped.tile.threads == tuner::TileSpace{}.threads);
    CHECK(shipped.gemm.persistent == tuner::GemmSpace{}.persistent);
    CHECK(shipped.gemm.epilogue == tuner::GemmSpace{}.epilogue);
    CHECK(shipped.attention.keys == tuner::AttentionSpace{}.keys);
    CHECK(shipped.attention.stages == tuner::AttentionSpace{}.stages);
    CHECK(shipped.attention.schedule == tuner::AttentionSpace{}.schedule);
    CHECK(shipped.attention.tile == tuner::AttentionSpace{}.tile);
    const fs::path p = fs::temp_directory_path() / ("jetforge-space-" + std::to_string(getpid()) + ".yaml");
    std::ofstream(p) << "gemm:\n  bn: [128]\n  stages: [4]\n  cluster: [1, 2]\n  overlap: [1]\n  persistent: [0]\n  fold: [magic]\n  epilogue: [staged]\n  portable: false\nquantize:\n"
                        "  threads: [1024]\n  stages: [4]\ntile:\n  threads: [256]\nattention:\n  schedule: [pingpong]\n";
    const auto narrow_space = tuner::load_space(p);
    const auto narrow = tuner::gemm_search_space(target, narrow_space.gemm);
    REQUIRE(narrow.size() == 2);  // cluster 1 and 2
    CHECK(narrow[0].fold == gen::GemmFold::magic);
    CHECK(narrow[1].cluster == 2);
    CHECK(narrow[1].overlap == 1);
    CHECK(narrow[1].persistent == 0);
    CHECK(narrow[1].epilogue == gen::GemmEpilogue::staged);
    CHECK(tuner::gemm_search_space(gen::TargetLimits::for_arch("sm_80"), narrow_space.gemm).size() == 1);  // off Hopper: portable
    CHECK(narrow_space.quantize.threads == std::vector<int>{1024});
    CHECK(narrow_space.quantize.transpose_unit == tuner::QuantizeSpace{}.transpose_unit);  // not given: the default
    CHECK(narrow_space.tile.threads == std::vector<int>{256});
    CHECK(narrow_space.tile.tile_rows == tuner::TileSpace{}.tile_rows);
    CHECK(narrow_space.attention.schedule == std::vector<gen::AttentionSchedule>{gen::AttentionSchedule::pingpong});
    CHECK(narrow_space.attention.keys == tuner::AttentionSpace{}.keys);
    CHECK(narrow_space.attention.tile == tuner::AttentionSpace{}.tile);
    std::ofstream(p, std::ios::trunc) << "gemm:\n  bn: [128]\n  tiles: [1]\n";
    CHECK_THROWS_WITH_AS(tuner::load_space(p), doctest::Contains(":3: key 'gemm.tiles': unknown key"), tuner::ConfigError);
    std::ofstream(p, std::ios::trunc) << "gemm:\n  fold: [fast]\n";
    CHECK_THROWS_WITH_AS(tuner::load_space(p), doctest::Contains("'fast' is not a fold"), tuner::ConfigError);
    std::ofstream(p, std::ios::trunc) << "attention:\n  schedule: [plain, fast]\n";
    CHECK_THROWS_WITH_AS(tuner::load_space(p), doctest::Contains("key 'attention.schedule': 'fast' is not a schedule (plain, pingpong)"), tuner::ConfigError);
    std::ofstream(p, std::ios::trunc) << "gemm:\n  stages: four\n";
    CHECK_THROWS_WITH_AS(tuner::load_space(p), doctest::Contains("key 'gemm.stages': expected a non-empty list"), tuner::ConfigError);
    std::ofstream(p, std::ios::trunc) << "tile:\n  warps: [4]\n";
    CHECK_THROWS_WITH_AS(tuner::load_space(p), doctest::Contains("key 'tile.warps': unknown key (known: tile_rows, tile_cols, threads)"), tuner::ConfigError);
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
    space.tile = {{4}, {1, 4}, {256}};
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
    // `cache build --candidates` over the same space finds every candidate already there (it compiles only the
    // step's own kernels that are not candidates).
    const fs::path space_file = fs::temp_directory_path() / ("jetforge-tune-space-" + std::to_string(getpid()) + ".yaml");
    std::ofstream(space_file) << "quantize:\n  threads: [1024]\n  stages: [2, 4]\n  transpose_unit: [4, 16]\ntile:\n  tile_rows: [4]\n"
                                 "  tile_cols: [1, 4]\n  threads: [256]\n";
    const fs::path log = fs::temp_directory_path() / ("jetforge-tune-build-" + std::to_string(getpid()) + ".log");
    REQUIRE(std::system((std::string(JETFORGE_CLI) + " cache build --candidates --space " + space_file.string() + " --jobs 2 --model " + model.string() +
                         " --arch sm_80 --cache " + db.string() + " > " + log.string() + " 2>&1")
                            .c_str()) == 0);
    std::ifstream in(log);
    const std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(out.find(std::to_string(expected.size()) + " already cached, 0 failed") != std::string::npos);
    std::set<std::string> cached;
    for (const auto& e : cache::KernelCache(db).list()) cached.insert(e.spec);
    for (const auto& key : expected) CHECK(cached.count(key) == 1);
    fs::remove(space_file), fs::remove(log);
    if (Device::count() == 0) {
      const int status = std::system((std::string(JETFORGE_CLI) + " tune --model " + model.string() + " --cache " + db.string() + " > /dev/null 2>&1").c_str());
      CHECK(WEXITSTATUS(status) == 1);
    }
  }
}

TEST_SUITE("cache") {
  TEST_CASE("max_relative_difference: the largest difference over the largest reference magnitude; NaN and infinity fail") {
    const std::vector<float> want{1.0f, -4.0f, 2.0f}, close{1.01f, -4.0f, 1.98f}, nan{1.0f, NAN, 2.0f};
    CHECK(tuner::max_relative_difference(close.data(), want.data(), 3, DType::f32) == doctest::Approx(0.02f / 4).epsilon(1e-3));
    CHECK(tuner::max_relative_difference(want.data(), want.data(), 3, DType::f32) == 0);
    CHECK(std::isinf(tuner::max_relative_difference(nan.data(), want.data(), 3, DType::f32)));
    // BF16: 0x3f80 = 1, 0x4000 = 2, 0x3f81 = 1 + 2^-7; 0xffff (the tuner's poison) is a NaN.
    const std::uint16_t b_want[] = {0x3f80, 0x4000}, b_got[] = {0x3f81, 0x4000}, b_poison[] = {0xffff, 0x4000};
    CHECK(tuner::max_relative_difference(b_got, b_want, 2, DType::bf16) == doctest::Approx(std::ldexp(1.0, -7) / 2));
    CHECK(std::isinf(tuner::max_relative_difference(b_poison, b_want, 2, DType::bf16)));
    CHECK_THROWS_AS(tuner::max_relative_difference(b_got, b_want, 2, DType::i8), std::invalid_argument);
  }
}

TEST_SUITE("gpu") {
  TEST_CASE("count_differences counts the differing 4-byte words of two buffers (tail bytes one by one) like a CPU memcmp") {
    Context& ctx = testing::gpu();
    std::mt19937_64 rng(42);
    for (const std::size_t bytes : {std::size_t(16), std::size_t(1000003), std::size_t(64) << 20}) {
      CAPTURE(bytes);
      std::vector<unsigned char> a(bytes), b;
      for (auto& x : a) x = static_cast<unsigned char>(rng());
      b = a;
      // Flips at the start, the end (inside the tail when bytes is not a multiple of 16) and at random places,
      // each in a different 4-byte word.
      std::set<std::size_t> words{0, (bytes - 1) / 4};
      while (words.size() < 40 && words.size() < bytes / 4) words.insert(rng() % (bytes / 4));
      for (std::size_t w : words) b[std::min(bytes - 1, w * 4 + rng() % 4)] ^= 0x10;
      std::size_t expected = 0;  // CPU reference: words (tail: bytes) where memcmp sees a difference
      const std::size_t vector_bytes = bytes / 16 * 16;
      for (std::size_t at = 0; at < vector_bytes; at += 4) expected += std::memcmp(&a[at], &b[at], 4) != 0;
      for (std::size_t at = vector_bytes; at < bytes; ++at) expected += a[at] != b[at];
      DeviceBuffer da(bytes), db(bytes), counter(8);
      da.upload(a.data(), bytes), db.upload(b.data(), bytes);
      counter.fill_bytes(0);  // the caller zeroes the counter; the kernel only adds
      count_differences(ctx, da.get(), db.get(), bytes, counter.get(), nullptr);
      count_differences(ctx, da.get(), da.get(), bytes, counter.get(), nullptr);  // identical: adds nothing
      std::uint64_t got = 0;
      counter.download(&got, 8);
      CHECK(expected > 0);
      CHECK(got == expected);
    }
  }

  TEST_CASE("tuning a small model stores winners that gemm(), quantize(), the block-tile operators and attention then use") {
    const fs::path db = fs::temp_directory_path() / ("jetforge-tune-gpu-" + std::to_string(getpid()) + ".db");
    fs::remove(db);
    auto cache = std::make_shared<cache::KernelCache>(db);
    Context ctx(0, cache);
    tuner::TuneOptions options;
    options.reps = 5;
    const auto config = tuner::load_model_config(small_model());
    const auto results = tuner::tune(ctx, config, options);
    REQUIRE(results.size() == tuner::gemm_shapes(config).size() + tuner::quantize_shapes(config).size() + tuner::tile_op_shapes(config).size() + 3);  // + the three attention kernels
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
    if (q.transpose) quantize_transpose(fresh, x.ref(), out.ref(), out_t.ref(), {q.rounding, 0, {}}, nullptr);
    else quantize(fresh, x.ref(), out.ref(), {q.rounding, 0, {}}, nullptr);
    CHECK(compile_count() == compiles);
    // The same for a block-tile operator (GELU forward), whose winner the tuner timed through the operator itself.
    const auto tiles = tuner::tile_op_shapes(config);
    const auto gelu = std::find_if(tiles.begin(), tiles.end(), [](const auto& t) { return t.name == "gelu forward"; });
    REQUIRE(gelu != tiles.end());
    const auto winner = std::find_if(results.begin(), results.end(), [&](const auto& r) { return r.problem.key == gelu->key(); });
    REQUIRE(winner != results.end());
    CHECK(fresh.tuned(gelu->key()) == std::optional<std::string>(winner->candidates[size_t(winner->winner)].spec));
    BlockTensor gx(gelu->rows, gelu->cols), gy(gelu->rows, gelu->cols);
    fill_random(gx, 10);
    gelu_forward(fresh, gx.ref(), gy.ref(), GeluForm::tanh, nullptr);
    CHECK(compile_count() == compiles);
    {  // and the attention kernels, whose candidates passed the tolerance check (verdicts above)
      const auto a = tuner::attention_shape(config);
      const auto layout = AttentionLayout::packed_qkv(a.batch, a.heads, a.tokens, a.head_dim);
      for (auto kernel : {gen::AttentionKernel::forward, gen::AttentionKernel::backward_kv, gen::AttentionKernel::backward_q}) {
        const auto r = std::find_if(results.begin(), results.end(), [&](const auto& x) { return x.problem.key == a.key(kernel); });
        REQUIRE(r != results.end());
        CHECK(fresh.tuned(a.key(kernel)) == std::optional<std::string>(r->candidates[size_t(r->winner)].spec));
      }
      DenseTensor qkv(std::int64_t(a.batch) * a.tokens, 3 * a.heads * a.head_dim, DType::bf16), o(std::int64_t(a.batch) * a.tokens, a.heads * a.head_dim, DType::bf16);
      DeviceBuffer lse(std::size_t(a.batch) * a.heads * a.tokens * 4);
      fill_random(qkv, 12);
      const CUdeviceptr qp = qkv.ref().data, kp = qp + layout.packed_offset(1), vp = qp + layout.packed_offset(2);
      attention_forward(fresh, layout, true, qp, kp, vp, o.ref().data, lse.get(), nullptr);
      DenseTensor d_o(std::int64_t(a.batch) * a.tokens, a.heads * a.head_dim, DType::bf16), grads(qkv.ref().rows, qkv.ref().cols, DType::bf16);
      DeviceBuffer delta(std::size_t(a.batch) * a.heads * a.tokens * 4);
      fill_random(d_o, 13);
      const CUdeviceptr gq = grads.ref().data, gk = gq + layout.packed_offset(1), gv = gq + layout.packed_offset(2);
      attention_backward(fresh, layout, true, qp, kp, vp, o.ref().data, lse.get(), d_o.ref().data, delta.get(), gq, gk, gv, nullptr);
      CHECK(compile_count() == compiles);
    }
  }
}
