#include "runtime/checkpoint.hpp"

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "runtime/crc32.hpp"

namespace jetforge {

namespace {

// File: magic (8 bytes, the last one the format version), header length (u32), header ("key=value" lines),
// params, m, v (FP32, little-endian), CRC-32 (u32) of everything before it.
constexpr char kMagic[8] = {'J', 'F', 'C', 'K', 'P', 'T', '\0', '\1'};

template <class T> void put(std::string& out, T value) { out.append(reinterpret_cast<const char*>(&value), sizeof value); }

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& what) { throw CheckpointError(file.string() + ": " + what); }

}  // namespace

void save_checkpoint(const std::filesystem::path& file, const Checkpoint& c) {
  if (c.m.size() != c.params.size() || c.v.size() != c.params.size()) fail(file, "the optimizer moments must have as many values as the parameters");
  std::ostringstream header;
  header << "model=" << c.model << "\nstep=" << c.step << "\nseed=" << c.seed << "\ndata_position=" << c.data_position << "\nfloats=" << c.params.size()
         << "\n";
  std::string bytes(kMagic, sizeof kMagic);
  put(bytes, std::uint32_t(header.str().size()));
  bytes += header.str();
  for (const auto* v : {&c.params, &c.m, &c.v}) bytes.append(reinterpret_cast<const char*>(v->data()), v->size() * sizeof(float));
  put(bytes, crc32(bytes));

  const auto temp = std::filesystem::path(file.string() + ".tmp");
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) fail(file, "cannot open " + temp.string() + " for writing");
    out.write(bytes.data(), std::streamsize(bytes.size()));
    out.flush();
    if (!out) fail(file, "writing " + temp.string() + " failed (disk full?); the previous checkpoint is untouched");
  }
  std::error_code ec;
  std::filesystem::rename(temp, file, ec);
  if (ec) fail(file, "renaming " + temp.string() + " over it failed: " + ec.message());
}

Checkpoint load_checkpoint(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(file, "cannot open it");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < sizeof kMagic + 8 || std::memcmp(bytes.data(), kMagic, sizeof kMagic - 1) != 0) fail(file, "not a jetforge checkpoint");
  if (bytes[sizeof kMagic - 1] != kMagic[sizeof kMagic - 1])
    fail(file, "checkpoint format version " + std::to_string(int(bytes[sizeof kMagic - 1])) + ", this build reads version " +
                   std::to_string(int(kMagic[sizeof kMagic - 1])));
  std::uint32_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes.data() + sizeof kMagic, 4);
  const std::size_t header_at = sizeof kMagic + 4;
  if (header_at + header_bytes + 4 > bytes.size()) fail(file, "truncated (the header runs past the end)");
  std::map<std::string, std::string> fields;
  std::istringstream header(bytes.substr(header_at, header_bytes));
  for (std::string line; std::getline(header, line);)
    if (const auto eq = line.find('='); eq != std::string::npos) fields[line.substr(0, eq)] = line.substr(eq + 1);
  for (const char* key : {"model", "step", "seed", "data_position", "floats"})
    if (!fields.count(key)) fail(file, std::string("the header has no '") + key + "'");
  Checkpoint c;
  std::size_t floats = 0;
  try {
    c.model = fields["model"];
    c.step = std::stoll(fields["step"]), c.seed = std::stoull(fields["seed"]), c.data_position = std::stoll(fields["data_position"]);
    floats = std::stoull(fields["floats"]);
  } catch (const std::exception&) {
    fail(file, "a header number does not parse");
  }
  const std::size_t payload_at = header_at + header_bytes, expected = payload_at + 3 * floats * sizeof(float) + 4;
  if (bytes.size() != expected)
    fail(file, (bytes.size() < expected ? "truncated: " : "trailing data: ") + std::to_string(bytes.size()) + " bytes, expected " + std::to_string(expected));
  std::uint32_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 4, 4);
  if (stored != crc32(bytes.substr(0, bytes.size() - 4))) fail(file, "damaged (CRC-32 mismatch)");
  for (auto* v : {&c.params, &c.m, &c.v}) {
    v->resize(floats);
    std::memcpy(v->data(), bytes.data() + payload_at + (v == &c.params ? 0 : v == &c.m ? 1 : 2) * floats * sizeof(float), floats * sizeof(float));
  }
  return c;
}

}  // namespace jetforge
