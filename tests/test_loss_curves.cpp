// Loss-curve files: the CSV round-trips and refuses what it did not write; the PNG is a valid image (chunk CRCs,
// zlib stream with its Adler-32) with each run drawn in its color on a white background.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "runtime/crc32.hpp"
#include "runtime/loss_curves.hpp"

using namespace jetforge;

namespace {

std::uint32_t be32(const std::string& s, std::size_t at) {
  return std::uint32_t(std::uint8_t(s[at])) << 24 | std::uint32_t(std::uint8_t(s[at + 1])) << 16 | std::uint32_t(std::uint8_t(s[at + 2])) << 8 |
         std::uint8_t(s[at + 3]);
}

}  // namespace

TEST_SUITE("data") {
  TEST_CASE("loss curves: the CSV round-trips, the PNG decodes and shows every run in its color") {
    const auto dir = std::filesystem::temp_directory_path() / ("jetforge_curves_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::vector<LossCurve> curves{{"int8", {{0, 10.9}, {50, 7.5}, {100, 6.0}}, {{50, 7.8}, {100, 6.4}}},
                                        {"bf16", {{0, 10.9}, {50, 7.4}, {100, 5.9}}, {{100, 6.3}}}};
    write_loss_csv(dir / "loss.csv", curves);
    const auto back = read_loss_csv(dir / "loss.csv");
    REQUIRE(back.size() == 2);
    CHECK(back[0].run == "int8");
    CHECK(back[0].train == curves[0].train);
    CHECK(back[1].validation == curves[1].validation);
    std::ofstream(dir / "bad.csv") << "run,split,step,loss\nint8,train,ten,1.0\n";
    CHECK_THROWS_WITH(read_loss_csv(dir / "bad.csv"), doctest::Contains("bad.csv:2: step or loss does not parse"));
    std::ofstream(dir / "other.csv") << "a,b\n";
    CHECK_THROWS_WITH(read_loss_csv(dir / "other.csv"), doctest::Contains("not a loss-curve CSV"));

    const int width = 320, height = 200;
    write_loss_png(dir / "loss.png", curves, width, height);
    std::ifstream in(dir / "loss.png", std::ios::binary);
    const std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(png.substr(0, 8) == "\x89PNG\r\n\x1a\n");
    std::string idat;
    bool saw_end = false;
    for (std::size_t at = 8; at + 12 <= png.size();) {
      const std::uint32_t n = be32(png, at);
      const std::string type = png.substr(at + 4, 4), data = png.substr(at + 8, n);
      CHECK(be32(png, at + 8 + n) == crc32(png.substr(at + 4, 4 + n)));
      if (type == "IHDR") CHECK((be32(data, 0) == std::uint32_t(width) && be32(data, 4) == std::uint32_t(height) && data[8] == 8 && data[9] == 2));
      if (type == "IDAT") idat += data;
      saw_end |= type == "IEND";
      at += 12 + n;
    }
    CHECK(saw_end);
    // Inflate the stored blocks and check the Adler-32.
    std::string raw;
    std::size_t at = 2;
    for (bool last = false; !last;) {
      last = idat[at] & 1;
      const std::size_t n = std::uint8_t(idat[at + 1]) | std::size_t(std::uint8_t(idat[at + 2])) << 8;
      raw += idat.substr(at + 5, n);
      at += 5 + n;
    }
    std::uint32_t a = 1, b = 0;
    for (unsigned char ch : raw) a = (a + ch) % 65521, b = (b + a) % 65521;
    CHECK(be32(idat, at) == ((b << 16) | a));
    REQUIRE(raw.size() == std::size_t(height) * (1 + 3 * width));
    auto pixel = [&](int x, int y) {
      const std::size_t p = std::size_t(y) * (1 + 3 * width) + 1 + 3 * std::size_t(x);
      return std::array<std::uint8_t, 3>{std::uint8_t(raw[p]), std::uint8_t(raw[p + 1]), std::uint8_t(raw[p + 2])};
    };
    CHECK(pixel(width - 1, 0) == std::array<std::uint8_t, 3>{255, 255, 255});
    for (std::size_t run = 0; run < curves.size(); ++run)
      for (bool validation : {false, true}) {
        bool found = false;
        for (int y = 0; y < height && !found; ++y)
          for (int x = 0; x < width && !found; ++x) found = pixel(x, y) == curve_color(run, validation);
        CAPTURE(run);
        CAPTURE(validation);
        CHECK(found);
      }
    std::filesystem::remove_all(dir);
  }
}
