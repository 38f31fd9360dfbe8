#include "runtime/loss_curves.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

#include "runtime/crc32.hpp"

namespace jetforge {

void write_loss_csv(const std::filesystem::path& file, const std::vector<LossCurve>& curves) {
  std::ofstream out(file, std::ios::trunc);
  if (!out) throw std::runtime_error(file.string() + ": cannot open for writing");
  out << "run,split,step,loss\n";
  out.precision(9);
  for (const auto& c : curves) {
    for (const auto& [step, loss] : c.train) out << c.run << ",train," << step << "," << loss << "\n";
    for (const auto& [step, loss] : c.validation) out << c.run << ",validation," << step << "," << loss << "\n";
  }
  if (!out) throw std::runtime_error(file.string() + ": writing failed");
}

std::vector<LossCurve> read_loss_csv(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(file.string() + ": cannot open it");
  std::vector<LossCurve> curves;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    if (++number == 1) {
      if (line != "run,split,step,loss") throw std::runtime_error(file.string() + ":1: not a loss-curve CSV (header " + line + ")");
      continue;
    }
    std::istringstream fields(line);
    std::string run, split, step, loss;
    if (!std::getline(fields, run, ',') || !std::getline(fields, split, ',') || !std::getline(fields, step, ',') || !std::getline(fields, loss))
      throw std::runtime_error(file.string() + ":" + std::to_string(number) + ": expected run,split,step,loss");
    auto it = std::find_if(curves.begin(), curves.end(), [&](const LossCurve& c) { return c.run == run; });
    if (it == curves.end()) it = curves.insert(curves.end(), LossCurve{run, {}, {}});
    try {
      (split == "train" ? it->train : it->validation).emplace_back(std::stoll(step), std::stod(loss));
    } catch (const std::exception&) {
      throw std::runtime_error(file.string() + ":" + std::to_string(number) + ": step or loss does not parse");
    }
  }
  return curves;
}

std::array<std::uint8_t, 3> curve_color(std::size_t run, bool validation) {
  static constexpr std::array<std::uint8_t, 3> palette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189}};
  auto c = palette[run % std::size(palette)];
  if (validation)
    for (auto& v : c) v = std::uint8_t(v + (255 - v) / 2);
  return c;
}

namespace {

struct Image {
  int width, height;
  std::vector<std::uint8_t> rgb;
  void set(int x, int y, const std::array<std::uint8_t, 3>& c) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    std::copy(c.begin(), c.end(), rgb.begin() + (std::size_t(y) * width + x) * 3);
  }
  void dot(int x, int y, const std::array<std::uint8_t, 3>& c, int radius) {
    for (int dy = -radius; dy <= radius; ++dy)
      for (int dx = -radius; dx <= radius; ++dx) set(x + dx, y + dy, c);
  }
  void line(int x0, int y0, int x1, int y1, const std::array<std::uint8_t, 3>& c) {  // Bresenham, 2 pixels wide
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    for (int err = dx + dy;;) {
      dot(x0, y0, c, 1);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  }
};

void chunk(std::string& png, const char* type, const std::string& data) {
  const std::uint32_t n = std::uint32_t(data.size());
  for (int s = 24; s >= 0; s -= 8) png.push_back(char(n >> s));
  const std::string body = std::string(type, 4) + data;
  png += body;
  const std::uint32_t crc = crc32(body);
  for (int s = 24; s >= 0; s -= 8) png.push_back(char(crc >> s));
}

// zlib stream of stored (uncompressed) deflate blocks: no compression library needed, and a plot is small.
std::string zlib_stored(const std::string& raw) {
  std::string z = {char(0x78), char(0x01)};
  std::size_t at = 0;
  do {
    const std::size_t n = std::min<std::size_t>(65535, raw.size() - at);
    z.push_back(char(at + n == raw.size() ? 1 : 0));
    z.push_back(char(n & 0xFF)), z.push_back(char(n >> 8)), z.push_back(char(~n & 0xFF)), z.push_back(char((~n >> 8) & 0xFF));
    z.append(raw, at, n);
    at += n;
  } while (at < raw.size());
  std::uint32_t a = 1, b = 0;
  for (unsigned char c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
  const std::uint32_t adler = (b << 16) | a;
  for (int s = 24; s >= 0; s -= 8) z.push_back(char(adler >> s));
  return z;
}

}  // namespace

void write_loss_png(const std::filesystem::path& file, const std::vector<LossCurve>& curves, int width, int height) {
  if (width < 100 || height < 100) throw std::invalid_argument("write_loss_png: the image must be at least 100 x 100 pixels");
  std::int64_t max_step = 1;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& c : curves)
    for (const auto* points : {&c.train, &c.validation})
      for (const auto& [step, loss] : *points)
        if (std::isfinite(loss)) max_step = std::max(max_step, step), lo = std::min(lo, loss), hi = std::max(hi, loss);
  if (!(lo <= hi)) lo = 0, hi = 1;
  if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
  const int left = 40, right = width - 20, top = 20, bottom = height - 40;
  auto px = [&](std::int64_t step) { return left + int(double(step) / double(max_step) * (right - left)); };
  auto py = [&](double loss) { return bottom - int((loss - lo) / (hi - lo) * (bottom - top)); };

  Image img{width, height, std::vector<std::uint8_t>(std::size_t(width) * height * 3, 255)};
  const std::array<std::uint8_t, 3> grid{225, 225, 225}, axis{0, 0, 0};
  for (int i = 0; i <= 5; ++i) {
    const int y = top + i * (bottom - top) / 5, x = left + i * (right - left) / 5;
    for (int k = left; k <= right; ++k) img.set(k, y, grid);
    for (int k = top; k <= bottom; ++k) img.set(x, k, grid);
  }
  for (int k = left; k <= right; ++k) img.set(k, bottom, axis);
  for (int k = top; k <= bottom; ++k) img.set(left, k, axis);
  std::string legend = "jetforge loss curves (x: step 0.." + std::to_string(max_step) + ", y: loss " + std::to_string(lo) + ".." + std::to_string(hi) + ");";
  for (std::size_t i = 0; i < curves.size(); ++i) {
    const auto& c = curves[i];
    const auto color = curve_color(i, false), val_color = curve_color(i, true);
    char rgb[64];
    std::snprintf(rgb, sizeof rgb, " #%02x%02x%02x", color[0], color[1], color[2]);
    legend += " " + c.run + " train" + rgb;
    std::snprintf(rgb, sizeof rgb, " #%02x%02x%02x", val_color[0], val_color[1], val_color[2]);
    legend += ", " + c.run + " validation" + rgb + ";";
    for (std::size_t k = 1; k < c.train.size(); ++k)
      img.line(px(c.train[k - 1].first), py(c.train[k - 1].second), px(c.train[k].first), py(c.train[k].second), color);
    if (c.train.size() == 1) img.dot(px(c.train[0].first), py(c.train[0].second), color, 2);
    for (const auto& [step, loss] : c.validation) img.dot(px(step), py(loss), val_color, 3);
  }

  std::string raw;
  raw.reserve(std::size_t(height) * (1 + 3 * std::size_t(width)));
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);  // filter: none
    raw.append(reinterpret_cast<const char*>(img.rgb.data()) + std::size_t(y) * width * 3, std::size_t(width) * 3);
  }
  std::string ihdr;
  for (std::uint32_t v : {std::uint32_t(width), std::uint32_t(height)})
    for (int s = 24; s >= 0; s -= 8) ihdr.push_back(char(v >> s));
  ihdr += std::string{char(8), char(2), char(0), char(0), char(0)};  // 8-bit RGB, deflate, no filter, no interlace
  std::string png = "\x89PNG\r\n\x1a\n";
  chunk(png, "IHDR", ihdr);
  chunk(png, "tEXt", std::string("Comment") + '\0' + legend);
  chunk(png, "IDAT", zlib_stored(raw));
  chunk(png, "IEND", "");
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(png.data(), std::streamsize(png.size()));
  if (!out) throw std::runtime_error(file.string() + ": writing the plot failed");
}

}  // namespace jetforge
