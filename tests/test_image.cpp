// Image decoding and the GLM-4.1V processor against the fixture's transformers references
// (../shared/fixtures/glm4v: Glm4vImageProcessorPil's pixel_values), Pillow's bicubic on
// hand-computed cases, smart_resize, hostile inputs, data: URLs and the processor config.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "autoglm/image.h"
#include "autoglm/npy.h"
#include "test_support.h"

namespace autoglm {
namespace {
namespace fs = std::filesystem;
using image::ImageError;
using image::Rgb8;

const char* const kImages[] = {"screen_tall", "odd_rgb", "alpha", "grey", "tiny"};

fs::path glm4v() { return test::fixtures_dir() / "glm4v"; }

std::vector<uint8_t> bytes_of(const fs::path& path) {
  const std::string s = test::read_file(path);
  return {s.begin(), s.end()};
}

std::vector<uint8_t> bytes_from(std::string_view s) { return {s.begin(), s.end()}; }

// The message of the ImageError `f` throws; fails the test when it throws nothing.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ImageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ImageError";
  return {};
}

// ---- a minimal PNG writer (stored deflate blocks), for colour types the fixtures lack ----

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
  }
  return ~crc;
}

void put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

void chunk(std::vector<uint8_t>& png, const char* type, const std::vector<uint8_t>& data) {
  put32(png, static_cast<uint32_t>(data.size()));
  std::vector<uint8_t> body(type, type + 4);
  body.insert(body.end(), data.begin(), data.end());
  png.insert(png.end(), body.begin(), body.end());
  put32(png, crc32(body.data(), body.size()));
}

std::vector<uint8_t> zlib_stored(const std::vector<uint8_t>& raw) {
  std::vector<uint8_t> z{0x78, 0x01};
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(raw.size() - pos, 65535);
    z.push_back(pos + n == raw.size() ? 1 : 0);
    z.push_back(static_cast<uint8_t>(n));
    z.push_back(static_cast<uint8_t>(n >> 8));
    z.push_back(static_cast<uint8_t>(~n));
    z.push_back(static_cast<uint8_t>(~n >> 8));
    z.insert(z.end(), raw.begin() + pos, raw.begin() + pos + n);
    pos += n;
  } while (pos < raw.size());
  uint32_t a = 1, b = 0;
  for (uint8_t c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  put32(z, (b << 16) | a);
  return z;
}

struct PngSpec {
  uint32_t width = 1, height = 1;
  uint8_t bit_depth = 8, color_type = 2;
  std::vector<uint8_t> rows;  // unfiltered packed rows, without filter bytes
  std::vector<uint8_t> plte, trns;
};

std::vector<uint8_t> png_file(const PngSpec& s) {
  std::vector<uint8_t> png{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  put32(ihdr, s.width);
  put32(ihdr, s.height);
  ihdr.insert(ihdr.end(), {s.bit_depth, s.color_type, 0, 0, 0});
  chunk(png, "IHDR", ihdr);
  if (!s.plte.empty()) chunk(png, "PLTE", s.plte);
  if (!s.trns.empty()) chunk(png, "tRNS", s.trns);
  const size_t row_bytes = s.height ? s.rows.size() / s.height : 0;
  std::vector<uint8_t> raw;
  for (uint32_t y = 0; y < s.height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), s.rows.begin() + y * row_bytes, s.rows.begin() + (y + 1) * row_bytes);
  }
  chunk(png, "IDAT", zlib_stored(raw));
  chunk(png, "IEND", {});
  return png;
}

std::vector<uint8_t> rgb_of(const Rgb8& img, uint32_t x, uint32_t y) {
  const uint8_t* p = &img.pixels[(size_t(y) * img.width + x) * 3];
  return {p[0], p[1], p[2]};
}

// ---- the fixture images against transformers ----

TEST(Processor, MatchesTransformersOnEveryFixtureImage) {
  AUTOGLM_REQUIRE_FIXTURES();
  const image::ProcessorConfig config =
      image::ProcessorConfig::load(glm4v() / "tiny-glm4v-hf" / "preprocessor_config.json");
  const nlohmann::json index = nlohmann::json::parse(test::read_file(glm4v() / "refs" / "index.json"));
  for (const char* name : kImages) {
    SCOPED_TRACE(name);
    const nlohmann::json& entry = index["images"][name];
    const Rgb8 rgb = image::decode(bytes_of(glm4v() / entry["file"].get<std::string>()));
    EXPECT_EQ(rgb.width, entry["size_wh"][0].get<uint32_t>());
    EXPECT_EQ(rgb.height, entry["size_wh"][1].get<uint32_t>());
    const image::Patches patches = image::preprocess(rgb, config);

    const npy::ArrayI64 grid = npy::read_i64(glm4v() / "refs" / (std::string(name) + ".image_grid_thw.npy"));
    EXPECT_EQ(patches.t, grid.data[0]);
    EXPECT_EQ(patches.h, grid.data[1]);
    EXPECT_EQ(patches.w, grid.data[2]);
    EXPECT_EQ(patches.resized.height, entry["resized_hw"][0].get<uint32_t>());
    EXPECT_EQ(patches.resized.width, entry["resized_hw"][1].get<uint32_t>());
    EXPECT_EQ(patches.n_tokens(config.merge_size), entry["n_image_tokens"].get<size_t>());

    const npy::ArrayF32 ref = npy::read_f32(glm4v() / "refs" / (std::string(name) + ".pixel_values.npy"));
    ASSERT_EQ(ref.shape, (std::vector<uint64_t>{patches.n_patches(), 1176}));
    ASSERT_EQ(patches.values.size(), ref.data.size());
    double max_d = 0, ss = 0;
    for (size_t i = 0; i < ref.data.size(); ++i) {
      const double d = std::abs(double{patches.values[i]} - ref.data[i]);
      max_d = std::max(max_d, d);
      ss += d * d;
    }
    const double rms = std::sqrt(ss / static_cast<double>(ref.data.size()));
    std::printf("  %-12s %ux%u -> %ux%u: max |d| %.3g, rms %.3g\n", name, rgb.width, rgb.height,
                patches.resized.width, patches.resized.height, max_d, rms);
    EXPECT_LE(max_d, 0.016);
    EXPECT_LE(rms, 0.002);
  }
}

TEST(Processor, APhoneScreenshotTakesMilliseconds) {
  Rgb8 shot{1080, 2400, std::vector<uint8_t>(size_t(1080) * 2400 * 3)};
  for (size_t i = 0; i < shot.pixels.size(); ++i) shot.pixels[i] = static_cast<uint8_t>(i * 7 + i / 4000);
  const auto start = std::chrono::steady_clock::now();
  const image::Patches p = image::preprocess(shot, {});
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("  1080x2400 -> %ux%u, %zu patches in %.1f ms\n", p.resized.width, p.resized.height, p.n_patches(), ms);
  EXPECT_EQ(p.values.size(), p.n_patches() * 1176);
  EXPECT_LT(ms, 2000.0);  // a few ms in Release; generous for sanitizer builds
}

TEST(Processor, PatchOrderIsMergeWindowsThenChannelFrameRowColumn) {
  // A 56x56 image (already a multiple of 28, inside min/max): no resize, a 4x4 patch grid.
  image::ProcessorConfig config;
  config.min_pixels = 1;
  Rgb8 img{56, 56, std::vector<uint8_t>(56 * 56 * 3)};
  for (uint32_t y = 0; y < 56; ++y)
    for (uint32_t x = 0; x < 56; ++x) {
      uint8_t* p = &img.pixels[(y * 56 + x) * 3];
      p[0] = static_cast<uint8_t>(x);
      p[1] = static_cast<uint8_t>(y);
      p[2] = static_cast<uint8_t>(x + y);
    }
  const image::Patches p = image::preprocess(img, config);
  ASSERT_EQ(p.resized.width, 56u);
  ASSERT_EQ(p.n_patches(), 16u);
  const auto value = [&](int c, int v) {
    return (static_cast<float>(v * config.rescale) - config.mean[c]) / config.std[c];
  };
  // Patch 2 is the first merge window's row 1, column 0: pixels y 14.., x 0..
  const float* patch2 = &p.values[2 * 1176];
  EXPECT_EQ(patch2[0], value(0, 0));                    // R at (x 0, y 14)
  EXPECT_EQ(patch2[3 * 14 + 5], value(0, 5));           // R at (x 5, y 17)
  EXPECT_EQ(patch2[196 + 3 * 14 + 5], value(0, 5));     // frame 1 repeats frame 0
  EXPECT_EQ(patch2[392 + 3 * 14 + 5], value(1, 17));    // G at (x 5, y 17)
  EXPECT_EQ(patch2[2 * 392 + 0], value(2, 14));         // B at (x 0, y 14)
  // Patch 4 starts the second merge window: x 28.., y 0..
  EXPECT_EQ(p.values[4 * 1176 + 1], value(0, 29));
}

// ---- Pillow's bicubic ----

Rgb8 grey_image(uint32_t w, uint32_t h, const std::vector<uint8_t>& values) {
  Rgb8 img{w, h, {}};
  for (uint8_t v : values) img.pixels.insert(img.pixels.end(), {v, v, v});
  return img;
}

std::vector<uint8_t> red_of(const Rgb8& img) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < img.pixels.size(); i += 3) out.push_back(img.pixels[i]);
  return out;
}

TEST(ResizeBicubic, SameSizeReturnsTheSamePixels) {
  Rgb8 img{5, 3, {}};
  for (int i = 0; i < 45; ++i) img.pixels.push_back(static_cast<uint8_t>(i * 37));
  const Rgb8 out = image::resize_bicubic(img, 5, 3);
  EXPECT_EQ(out.pixels, img.pixels);
}

TEST(ResizeBicubic, AConstantImageStaysConstant) {
  Rgb8 img{37, 23, {}};
  for (int i = 0; i < 37 * 23; ++i) img.pixels.insert(img.pixels.end(), {200, 13, 0});
  for (auto [w, h] : {std::pair{80u, 50u}, {13u, 9u}, {37u, 5u}, {1u, 1u}, {300u, 23u}}) {
    const Rgb8 out = image::resize_bicubic(img, w, h);
    ASSERT_EQ(out.width, w);
    ASSERT_EQ(out.height, h);
    for (size_t i = 0; i < out.pixels.size(); i += 3)
      ASSERT_EQ(rgb_of(out, uint32_t(i / 3 % w), uint32_t(i / 3 / w)), (std::vector<uint8_t>{200, 13, 0})) << w << "x" << h;
  }
}

TEST(ResizeBicubic, UpscaleTwiceAcross) {
  // 2 -> 4: scale 0.5, support 2. Output 0 (centre 0.25) weighs input 0 and 1 by cubic(0.25) =
  // 0.8671875 and cubic(1.25) = -0.0703125, normalized: 1.0882, -0.0882 -> 100 * 1.0882 - 200 * 0.0882
  // = 91.2; output 1 (centre 0.75): cubic(0.25), cubic(0.75) = 0.2266 -> 0.7929, 0.2071 -> 120.7.
  const Rgb8 out = image::resize_bicubic(grey_image(2, 1, {100, 200}), 4, 1);
  EXPECT_EQ(red_of(out), (std::vector<uint8_t>{91, 121, 179, 209}));
  // The same down the columns (only the vertical pass runs).
  EXPECT_EQ(red_of(image::resize_bicubic(grey_image(1, 2, {100, 200}), 1, 4)), (std::vector<uint8_t>{91, 121, 179, 209}));
  // Negative lobes clip at 0 and 255.
  EXPECT_EQ(red_of(image::resize_bicubic(grey_image(2, 1, {0, 255}), 4, 1)), (std::vector<uint8_t>{0, 53, 202, 255}));
}

TEST(ResizeBicubic, DownscaleWidensTheSupport) {
  // 4 -> 2: scale 2, support 4, taps at (x - 0.5) / 2: cubic(-0.25), cubic(0.25), cubic(0.75),
  // cubic(1.25) = .8672, .8672, .2266, -.0703 (sum 1.8906): (10*.8672 + 20*.8672 + 30*.2266 - 40*.0703)
  // / 1.8906 = 15.87; mirrored for output 1: 34.13.
  EXPECT_EQ(red_of(image::resize_bicubic(grey_image(4, 1, {10, 20, 30, 40}), 2, 1)), (std::vector<uint8_t>{16, 34}));
  EXPECT_EQ(red_of(image::resize_bicubic(grey_image(1, 4, {10, 20, 30, 40}), 1, 2)), (std::vector<uint8_t>{16, 34}));
}

TEST(ResizeBicubic, BothPassesRoundBetweenThem) {
  // 2x2 -> 4x4 equals resizing across and then down, each rounded to 8 bits.
  const Rgb8 src = grey_image(2, 2, {100, 200, 0, 255});
  const Rgb8 across = image::resize_bicubic(src, 4, 2);
  EXPECT_EQ(red_of(across), (std::vector<uint8_t>{91, 121, 179, 209, 0, 53, 202, 255}));
  EXPECT_EQ(image::resize_bicubic(src, 4, 4).pixels, image::resize_bicubic(across, 4, 4).pixels);
  EXPECT_THROW(image::resize_bicubic(src, 0, 4), ImageError);
  EXPECT_THROW(image::resize_bicubic(Rgb8{2, 2, {1, 2, 3}}, 4, 4), ImageError);
}

// ---- smart_resize ----

TEST(SmartResize, FollowsTransformersFormula) {
  const image::ProcessorConfig defaults;  // 12544 .. 1003520 pixels (x2 frames), factor 28
  // A 1080x2400 phone screenshot: 2 * 2408 * 1092 > max, beta = sqrt(2 * 2400 * 1080 / 1003520) = 2.2728:
  // floor(2400 / beta / 28) = 37, floor(1080 / beta / 28) = 16.
  image::Size s = image::smart_resize(2400, 1080, defaults);
  EXPECT_EQ(s.height, 37u * 28);
  EXPECT_EQ(s.width, 16u * 28);
  // Inside the bounds: round to multiples of 28, halves to even (70 / 28 = 2.5 -> 2).
  s = image::smart_resize(70, 100, defaults);
  EXPECT_EQ(s.height, 56u);
  EXPECT_EQ(s.width, 112u);
  s = image::smart_resize(500, 300, defaults);
  EXPECT_EQ(s.height, 504u);
  EXPECT_EQ(s.width, 308u);
  // The fixture's tiny 20x12: sides below 28 scale up to 28x46 first, then beta = sqrt(12544 / (2 * 28 * 46)):
  // ceil(28 * beta / 28) = 3, ceil(46 * beta / 28) = 4.
  image::ProcessorConfig fixture;
  fixture.max_pixels = 150528;
  s = image::smart_resize(12, 20, fixture);
  EXPECT_EQ(s.height, 84u);
  EXPECT_EQ(s.width, 112u);
  // The fixture's screenshot 360x780: beta = sqrt(2 * 780 * 360 / 150528) -> 14 x 6 blocks of 28.
  s = image::smart_resize(780, 360, fixture);
  EXPECT_EQ(s.height, 392u);
  EXPECT_EQ(s.width, 168u);
}

TEST(SmartResize, RefusesExtremeAspectRatios) {
  const image::ProcessorConfig defaults;
  // 5000x20: the short side scales to 28, the long one to 7000: 250:1.
  const std::string message = error_of([&] { image::smart_resize(20, 5000, defaults); });
  EXPECT_NE(message.find("200:1"), std::string::npos) << message;
  EXPECT_NE(message.find("5000x20"), std::string::npos) << message;
  EXPECT_THROW(image::smart_resize(250 * 30, 30, defaults), ImageError);
  EXPECT_NO_THROW(image::smart_resize(200 * 30, 30, defaults));
  EXPECT_THROW(image::smart_resize(0, 30, defaults), ImageError);
}

// ---- decoding ----

TEST(Decode, GreyAlphaPaletteAndSixteenBitPngsEndAsRgb) {
  // Grey 8-bit.
  Rgb8 img = image::decode(png_file({2, 1, 8, 0, {0, 200}, {}, {}}));
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{0, 0, 0, 200, 200, 200}));
  // Grey 1-bit: 0 and 255.
  img = image::decode(png_file({3, 1, 1, 0, {0b10100000}, {}, {}}));
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{255, 255, 255, 0, 0, 0, 255, 255, 255}));
  // Grey + alpha: transparent is white; half alpha is Pillow's integer composite onto white.
  img = image::decode(png_file({3, 1, 8, 4, {10, 0, 10, 255, 0, 128}, {}, {}}));
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{255, 255, 255, 10, 10, 10, 127, 127, 127}));
  // RGBA.
  img = image::decode(png_file({2, 1, 8, 6, {200, 100, 0, 64, 1, 2, 3, 255}, {}, {}}));
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{241, 216, 191, 1, 2, 3}));
  // Palette with tRNS: entry 1 fully transparent.
  img = image::decode(png_file({2, 1, 8, 3, {0, 1}, {9, 8, 7, 50, 60, 70}, {255, 0}}));
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{9, 8, 7, 255, 255, 255}));
  // Grey tRNS: the transparent grey level becomes white.
  img = image::decode(png_file({2, 1, 8, 0, {7, 8}, {}, {0, 7}}));
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{255, 255, 255, 8, 8, 8}));
  // RGB tRNS is ignored: transformers leaves RGB images as they are.
  img = image::decode(png_file({1, 1, 8, 2, {1, 2, 3}, {}, {0, 1, 0, 2, 0, 3}}));
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{1, 2, 3}));
  // 16-bit RGB keeps the high byte.
  img = image::decode(png_file({1, 1, 16, 2, {0x12, 0xff, 0x34, 0x00, 0xab, 0x80}, {}, {}}));
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{0x12, 0x34, 0xab}));
}

TEST(Decode, GreyJpegIsReplicatedToRgb) {
  AUTOGLM_REQUIRE_FIXTURES();
  const Rgb8 img = image::decode(bytes_of(glm4v() / "images" / "grey.jpg"));
  for (size_t i = 0; i < img.pixels.size(); i += 3) {
    ASSERT_EQ(img.pixels[i], img.pixels[i + 1]);
    ASSERT_EQ(img.pixels[i], img.pixels[i + 2]);
  }
}

TEST(Decode, EmptyRandomAndOtherFormatsAreClearErrors) {
  EXPECT_EQ(error_of([] { image::decode({}); }), "the image data is empty");
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<uint8_t> noise(1 + rng() % 3000);
    for (uint8_t& b : noise) b = static_cast<uint8_t>(rng());
    EXPECT_THROW(image::decode(noise), ImageError);
  }
  EXPECT_EQ(error_of([] { image::decode(bytes_from("GIF89a\x01\x00\x01\x00")); }),
            "unsupported image format (GIF); send PNG or JPEG");
  EXPECT_EQ(error_of([] { image::decode(bytes_from(std::string_view("RIFF\x10\0\0\0WEBPVP8 ", 16))); }),
            "unsupported image format (WebP); send PNG or JPEG");
  EXPECT_EQ(error_of([] { image::decode(bytes_from("hello, world")); }), "the data is not a PNG or JPEG image");
  image::DecodeLimits small;
  small.max_bytes = 10;
  EXPECT_EQ(error_of([&] { image::decode(png_file({2, 1, 8, 0, {0, 200}, {}, {}}), small); }),
            "the image data is 71 bytes; the limit is 10");
}

TEST(Decode, TruncatedFilesAreErrorsAtEveryLength) {
  AUTOGLM_REQUIRE_FIXTURES();
  for (const char* file : {"screen_tall.png", "alpha.png", "tiny.png", "odd_rgb.jpg", "grey.jpg"}) {
    const std::vector<uint8_t> whole = bytes_of(glm4v() / "images" / file);
    EXPECT_NO_THROW(image::decode(whole)) << file;
    for (size_t cut : {size_t{3}, size_t{8}, size_t{20}, size_t{33}, size_t{100}, whole.size() / 3,
                       whole.size() / 2, whole.size() - 40}) {
      const std::vector<uint8_t> part(whole.begin(), whole.begin() + cut);
      const std::string message = error_of([&] { image::decode(part); });
      EXPECT_FALSE(message.empty()) << file << " cut at " << cut;
    }
  }
  // A JPEG cut inside its entropy-coded data says so (libjpeg would pad it with grey).
  const std::vector<uint8_t> jpeg = bytes_of(glm4v() / "images" / "odd_rgb.jpg");
  const std::string message =
      error_of([&] { image::decode(std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + jpeg.size() / 2)); });
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
}

TEST(Decode, CorruptedBytesNeverCrash) {
  AUTOGLM_REQUIRE_FIXTURES();
  std::mt19937 rng(11);
  for (const char* file : {"tiny.png", "odd_rgb.jpg", "grey.jpg"}) {
    const std::vector<uint8_t> whole = bytes_of(glm4v() / "images" / file);
    for (int trial = 0; trial < 40; ++trial) {
      std::vector<uint8_t> bad = whole;
      for (int k = 0; k < 4; ++k) bad[3 + rng() % (bad.size() - 3)] = static_cast<uint8_t>(rng());
      try {
        const Rgb8 img = image::decode(bad);
        EXPECT_EQ(img.pixels.size(), size_t(img.width) * img.height * 3);
      } catch (const ImageError&) {
      }
    }
  }
}

TEST(Decode, AbsurdDimensionsAreRefusedFromTheHeader) {
  // IHDR claims 100000x100000; no pixel data is ever allocated.
  const std::string message = error_of([] { image::decode(png_file({100000, 100000, 8, 2, {}, {}, {}})); });
  EXPECT_EQ(message, "image is 100000x100000 pixels; the limit is 16384 per side");
  // A JPEG whose frame header claims 60000x50000 (the fixture's SOF0 with its sizes patched).
  AUTOGLM_REQUIRE_FIXTURES();
  std::vector<uint8_t> jpeg = bytes_of(glm4v() / "images" / "odd_rgb.jpg");
  size_t sof = 2;
  while (sof + 9 < jpeg.size() && jpeg[sof + 1] != 0xc0) sof += 2 + (size_t{jpeg[sof + 2]} << 8 | jpeg[sof + 3]);
  ASSERT_LT(sof + 9, jpeg.size());
  jpeg[sof + 5] = 50000 >> 8, jpeg[sof + 6] = 50000 & 0xff;  // height
  jpeg[sof + 7] = 60000 >> 8, jpeg[sof + 8] = 60000 & 0xff;  // width
  EXPECT_EQ(error_of([&] { image::decode(jpeg); }), "image is 60000x50000 pixels; the limit is 16384 per side");
  image::DecodeLimits limits;
  limits.max_pixels = 1000;
  EXPECT_EQ(error_of([&] { image::decode(png_file({100, 20, 8, 0, std::vector<uint8_t>(2000), {}, {}}), limits); }),
            "image is 100x20 = 2000 pixels; the limit is 1000");
  limits.max_side = 50;
  EXPECT_EQ(error_of([&] { image::decode(png_file({70, 20, 8, 0, std::vector<uint8_t>(1400), {}, {}}), limits); }),
            "image is 70x20 pixels; the limit is 50 per side");
}

// ---- data: URLs ----

TEST(DataUrl, DecodesBase64WithOrWithoutAMediaType) {
  image::DataUrl d = image::parse_data_url("data:image/png;base64,aGVsbG8=", 100);
  EXPECT_EQ(d.media_type, "image/png");
  EXPECT_EQ(d.bytes, bytes_from("hello"));
  d = image::parse_data_url("DATA:;BASE64,aGVsbG8h", 100);
  EXPECT_EQ(d.media_type, "");
  EXPECT_EQ(d.bytes, bytes_from("hello!"));
  d = image::parse_data_url("data:image/JPEG;name=x.jpg;base64,aGk", 100);  // no padding
  EXPECT_EQ(d.media_type, "image/jpeg");
  EXPECT_EQ(d.bytes, bytes_from("hi"));
}

TEST(DataUrl, ToleratesWhitespaceInThePayload) {
  const image::DataUrl d = image::parse_data_url("data:image/png;base64,aGVs\r\n bG8g\td29y\nbGQ=\n", 100);
  EXPECT_EQ(d.bytes, bytes_from("hello world"));
}

TEST(DataUrl, SaysWhatIsWrong) {
  EXPECT_EQ(error_of([] { image::parse_data_url("https://example.com/a.png", 100); }),
            "not a data: URL (it must start with 'data:')");
  EXPECT_EQ(error_of([] { image::parse_data_url("data:image/png;base64", 100); }),
            "the data URL has no ',' before its data");
  EXPECT_EQ(error_of([] { image::parse_data_url("data:image/png,hello", 100); }),
            "only base64 data URLs are supported (expected ';base64,' before the data)");
  EXPECT_EQ(error_of([] { image::parse_data_url("data:image/png;base64,aGV*bG8=", 100); }),
            "invalid base64 at offset 25 of the data URL ('*')");
  EXPECT_EQ(error_of([] { image::parse_data_url("data:image/png;base64,aG=Vs", 100); }),
            "invalid base64 at offset 25 of the data URL ('V')");
  EXPECT_EQ(error_of([] { image::parse_data_url(std::string("data:;base64,aGVs\x01", 18), 100); }),
            "invalid base64 at offset 17 of the data URL (byte 0x01)");
  EXPECT_NE(error_of([] { image::parse_data_url("data:;base64,aGVsb", 100); }).find("cannot end a base64 payload"),
            std::string::npos);
  EXPECT_EQ(error_of([] { image::parse_data_url("data:;base64,", 100); }), "the data URL carries no data");
  EXPECT_EQ(error_of([] { image::parse_data_url("data:image/png;base64,aGVsbG8gd29ybGQ=", 10); }),
            "the data URL carries 11 bytes; the limit is 10");
}

TEST(DataUrl, RoundTripsAFixtureImage) {
  AUTOGLM_REQUIRE_FIXTURES();
  const std::vector<uint8_t> png = bytes_of(glm4v() / "images" / "tiny.png");
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string url = "data:image/png;base64,";
  for (size_t i = 0; i < png.size(); i += 3) {
    const uint32_t n = (uint32_t{png[i]} << 16) | (i + 1 < png.size() ? uint32_t{png[i + 1]} << 8 : 0) |
                       (i + 2 < png.size() ? png[i + 2] : 0);
    url += kAlphabet[n >> 18];
    url += kAlphabet[(n >> 12) & 63];
    url += i + 1 < png.size() ? kAlphabet[(n >> 6) & 63] : '=';
    url += i + 2 < png.size() ? kAlphabet[n & 63] : '=';
    if (i % 57 == 54) url += '\n';
  }
  EXPECT_EQ(image::parse_data_url(url, 1 << 20).bytes, png);
  EXPECT_EQ(image::decode(image::parse_data_url(url, 1 << 20).bytes).width, 20u);
}

// ---- the processor config ----

TEST(ProcessorConfigJson, LoadsTheFixtureFile) {
  AUTOGLM_REQUIRE_FIXTURES();
  const image::ProcessorConfig c = image::ProcessorConfig::load(glm4v() / "tiny-glm4v-hf" / "preprocessor_config.json");
  EXPECT_EQ(c.patch_size, 14u);
  EXPECT_EQ(c.temporal_patch_size, 2u);
  EXPECT_EQ(c.merge_size, 2u);
  EXPECT_EQ(c.factor(), 28u);
  EXPECT_EQ(c.min_pixels, 12544u);
  EXPECT_EQ(c.max_pixels, 150528u);
  EXPECT_EQ(c.mean[0], 0.48145466f);
  EXPECT_EQ(c.std[2], 0.27577711f);
  EXPECT_EQ(c.rescale, 1.0 / 255.0);
}

TEST(ProcessorConfigJson, AcceptsMinAndMaxPixelsKeys) {
  const auto c = image::ProcessorConfig::from_json(nlohmann::json{{"min_pixels", 3136}, {"max_pixels", 1000000}});
  EXPECT_EQ(c.min_pixels, 3136u);
  EXPECT_EQ(c.max_pixels, 1000000u);
  const auto d = image::ProcessorConfig::from_json(nlohmann::json::object());
  EXPECT_EQ(d.max_pixels, image::ProcessorConfig{}.max_pixels);
}

TEST(ProcessorConfigJson, BadFieldsAreNamed) {
  using nlohmann::json;
  const auto message = [](const json& j) { return error_of([&] { image::ProcessorConfig::from_json(j); }); };
  EXPECT_NE(message(json{{"patch_size", "14"}}).find("'patch_size'"), std::string::npos);
  EXPECT_NE(message(json{{"merge_size", 0}}).find("'merge_size'"), std::string::npos);
  EXPECT_NE(message(json{{"size", {{"longest_edge", -5}}}}).find("'size.longest_edge'"), std::string::npos);
  EXPECT_NE(message(json{{"size", 12}}).find("'size'"), std::string::npos);
  EXPECT_NE(message(json{{"image_mean", {0.5, 0.5}}}).find("'image_mean'"), std::string::npos);
  EXPECT_NE(message(json{{"image_std", {0.5, 0.0, 0.5}}}).find("'image_std'"), std::string::npos);
  EXPECT_NE(message(json{{"rescale_factor", "x"}}).find("'rescale_factor'"), std::string::npos);
  EXPECT_NE(message(json{{"resample", 2}}).find("'resample'"), std::string::npos);
  EXPECT_NE(message(json{{"do_normalize", false}}).find("'do_normalize'"), std::string::npos);
  EXPECT_NE(message(json::array()).find("JSON object"), std::string::npos);
  test::TempDir dir;
  test::write_file(dir / "bad.json", "{\"min_pixels\": 1.5}");
  const std::string m = error_of([&] { image::ProcessorConfig::load(dir / "bad.json"); });
  EXPECT_NE(m.find("bad.json"), std::string::npos) << m;
  EXPECT_NE(m.find("'min_pixels'"), std::string::npos) << m;
}

}  // namespace
}  // namespace autoglm
