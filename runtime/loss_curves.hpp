// Loss curves of training runs: a CSV of every logged point, and a PNG plot (no font: the legend is a tEXt chunk and
// the CSV; colors per run, validation drawn as dots on the run's lighter shade).
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace jetforge {

struct LossCurve {
  std::string run;  // e.g. "int8", "bf16"
  std::vector<std::pair<std::int64_t, double>> train, validation;  // (step, loss)
};

// Columns run,split,step,loss; one row per point.
void write_loss_csv(const std::filesystem::path& file, const std::vector<LossCurve>& curves);
// Reads what write_loss_csv wrote (so a resumed run continues its curves); throws naming the file and line.
std::vector<LossCurve> read_loss_csv(const std::filesystem::path& file);

// An RGB PNG of width x height pixels: every curve over the same step and loss axes, with light grid lines.
void write_loss_png(const std::filesystem::path& file, const std::vector<LossCurve>& curves, int width = 800, int height = 500);

// The color a run is drawn in (index in `curves`), for tests and the legend.
std::array<std::uint8_t, 3> curve_color(std::size_t run, bool validation);

}  // namespace jetforge
