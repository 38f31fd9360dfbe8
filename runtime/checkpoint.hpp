// Training checkpoints: everything a run needs to continue bit for bit (master weights, AdamW moments, step, seed,
// position in the token stream). Written to a temporary file and renamed over the old one, so a crash mid-save
// leaves the previous checkpoint intact; read back with every field and a CRC-32 checked.
#pragma once
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace jetforge {

struct Checkpoint {
  std::string model;                // the config's name, checked against the run that resumes
  std::int64_t step = 0;            // optimizer steps done
  std::uint64_t seed = 0;           // the run's seed (dropout masks and stochastic rounding derive from seed and step)
  std::int64_t data_position = 0;   // offset of the next training token
  std::vector<float> params, m, v;  // master weights and AdamW moments, in the gpt2_parameters layout
};

// "FILE: what is wrong" (not a checkpoint, other version, truncated, damaged, ...).
struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void save_checkpoint(const std::filesystem::path& file, const Checkpoint& c);
Checkpoint load_checkpoint(const std::filesystem::path& file);

}  // namespace jetforge
