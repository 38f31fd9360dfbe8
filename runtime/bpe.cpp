#include "runtime/bpe.hpp"

#include <yaml-cpp/yaml.h>

#include <climits>
#include <cwctype>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace jetforge::data {

namespace {

std::string utf8(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12)), s += char(0x80 | ((cp >> 6) & 0x3F)), s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18)), s += char(0x80 | ((cp >> 12) & 0x3F)), s += char(0x80 | ((cp >> 6) & 0x3F)), s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

// Decodes the code point at text[i]; returns its length in bytes (1 for an invalid byte, taken as U+FFFD).
int decode_at(std::string_view text, size_t i, char32_t& cp) {
  const auto b = static_cast<unsigned char>(text[i]);
  int n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + size_t(n) > text.size()) {
    cp = 0xFFFD;
    return 1;
  }
  cp = n == 1 ? b : char32_t(b & (0xFF >> (n + 1)));
  for (int k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(text[i + size_t(k)]);
    if ((c >> 6) != 2) {
      cp = 0xFFFD;
      return 1;
    }
    cp = (cp << 6) | (c & 0x3F);
  }
  return n;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + p.string() + " (fetch the GPT-2 vocabulary with tools/prepare_data.sh)");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

Gpt2Bpe::Gpt2Bpe(const std::filesystem::path& encoder_json, const std::filesystem::path& vocab_bpe) {
  utf8_ = newlocale(LC_CTYPE_MASK, "C.UTF-8", nullptr);
  if (!utf8_) throw std::runtime_error("the C.UTF-8 locale is not available; it classifies Unicode letters for the GPT-2 pre-tokenizer");
  // Bytes that are printable keep their code point; the others map to 256, 257, ... in byte order.
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    byte_symbol_[b] = utf8(char32_t(printable ? b : next++));
    symbol_byte_[byte_symbol_[b]] = static_cast<unsigned char>(b);
  }
  YAML::Node vocab;  // JSON is YAML: yaml-cpp reads encoder.json, \u escapes included
  try {
    vocab = YAML::Load(read_file(encoder_json));
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(encoder_json.string() + ": not a GPT-2 encoder.json: " + e.what());
  }
  if (!vocab.IsMap()) throw std::runtime_error(encoder_json.string() + ": not a GPT-2 encoder.json (expected an object of token -> id)");
  decoder_.resize(vocab.size());
  for (const auto& kv : vocab) {
    const int id = kv.second.as<int>();
    if (id < 0 || size_t(id) >= decoder_.size()) throw std::runtime_error(encoder_json.string() + ": token id " + std::to_string(id) + " out of range");
    encoder_[kv.first.as<std::string>()] = id;
    decoder_[size_t(id)] = kv.first.as<std::string>();
  }
  std::istringstream merges(read_file(vocab_bpe));
  std::string line;
  std::getline(merges, line);  // "#version: 0.2"
  for (int rank = 0; std::getline(merges, line);) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    ranks_.emplace(line, rank++);
  }
  if (ranks_.empty()) throw std::runtime_error(vocab_bpe.string() + ": no merges found (expected the GPT-2 vocab.bpe)");
}

Gpt2Bpe::~Gpt2Bpe() {
  if (utf8_) freelocale(utf8_);
}

std::vector<std::string_view> Gpt2Bpe::pretokenize(std::string_view text) const {
  // The GPT-2 pattern 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ as a scanner.
  enum Class { kLetter, kNumber, kSpace, kOther };
  auto class_at = [&](size_t i, int* len) {
    char32_t cp;
    *len = decode_at(text, i, cp);
    const auto w = static_cast<wint_t>(cp);
    if (iswspace_l(w, utf8_) || cp == 0xA0 || cp == 0xFEFF) return kSpace;
    if (iswalpha_l(w, utf8_)) return kLetter;
    if (iswalnum_l(w, utf8_)) return kNumber;
    return kOther;
  };
  auto run_of = [&](size_t i, Class c) {  // end of the run of class c starting at i
    int len;
    while (i < text.size() && class_at(i, &len) == c) i += size_t(len);
    return i;
  };
  auto run_of_other = [&](size_t i) {
    int len;
    while (i < text.size() && class_at(i, &len) == kOther) i += size_t(len);
    return i;
  };
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t end = i;
    if (text[i] == '\'') {
      for (std::string_view c : {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"})
        if (text.substr(i, c.size()) == c) {
          end = i + c.size();
          break;
        }
    }
    if (end == i) {
      int len;
      const size_t body = text[i] == ' ' && i + 1 < text.size() ? i + 1 : i;  // " ?" prefix
      const Class c = class_at(body, &len);
      if (body < text.size() && c != kSpace) {
        end = c == kOther ? run_of_other(body) : run_of(body, c);
      } else {
        // \s+(?!\S) leaves the run's last character to prefix the next token, unless the run ends the text or is
        // that one character (then \s+ takes it).
        const size_t run_end = run_of(i, kSpace);
        size_t last = run_end - 1;
        while (last > i && (static_cast<unsigned char>(text[last]) >> 6) == 2) --last;  // first byte of the last character
        end = run_end == text.size() || last == i ? run_end : last;
      }
    }
    out.push_back(text.substr(i, end - i));
    i = end;
  }
  return out;
}

void Gpt2Bpe::merge(std::string_view pretoken, std::vector<int>& out) const {
  {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(std::string(pretoken)); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<std::string> word;
  for (char c : pretoken) word.push_back(byte_symbol_[static_cast<unsigned char>(c)]);
  while (word.size() > 1) {
    int best = INT_MAX;
    size_t best_at = 0;
    for (size_t k = 0; k + 1 < word.size(); ++k)
      if (auto it = ranks_.find(word[k] + " " + word[k + 1]); it != ranks_.end() && it->second < best) best = it->second, best_at = k;
    if (best == INT_MAX) break;
    // Merge every occurrence of the best pair, left to right.
    const std::string left = word[best_at], right = word[best_at + 1];
    std::vector<std::string> merged;
    for (size_t k = 0; k < word.size();) {
      if (k + 1 < word.size() && word[k] == left && word[k + 1] == right) {
        merged.push_back(left + right);
        k += 2;
      } else {
        merged.push_back(word[k++]);
      }
    }
    word = std::move(merged);
  }
  std::vector<int> ids;
  for (const auto& symbol : word) {
    auto it = encoder_.find(symbol);
    if (it == encoder_.end()) throw std::runtime_error("BPE symbol '" + symbol + "' is not in the vocabulary");
    ids.push_back(it->second);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard lock(cache_mutex_);
  cache_.emplace(std::string(pretoken), std::move(ids));
}

std::vector<int> Gpt2Bpe::encode(std::string_view text) const {
  std::vector<int> ids;
  for (auto piece : pretokenize(text)) merge(piece, ids);
  return ids;
}

std::string Gpt2Bpe::decode(std::span<const int> ids) const {
  std::string out;
  for (int id : ids) {
    if (id < 0 || id >= vocab_size()) throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary");
    const std::string& token = decoder_[size_t(id)];
    for (size_t i = 0; i < token.size();) {
      char32_t cp;
      const int n = decode_at(token, i, cp);
      out += char(symbol_byte_.at(token.substr(i, size_t(n))));
      i += size_t(n);
    }
  }
  return out;
}

}  // namespace jetforge::data
