// Pillow's bicubic resize (libImaging/Resample.c) on 8-bit RGB, reimplemented to give the same
// bytes: per output size a table of (first input index, tap count, fixed-point weights), then a
// horizontal pass over the rows the vertical pass will read and a vertical pass, each rounding to
// 8 bits. A pass whose size does not change is skipped, as Pillow skips it. Matches Pillow 13
// (the fixture's references), whose pass order depends on the sizes.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "autoglm/image.h"

namespace autoglm::image {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's: 8 bits of result, 2 for overshoot
constexpr double kSupport = 2.0;            // bicubic

// Keys' cubic with a = -0.5, as Pillow writes it.
double bicubic(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// For each output index: its first input index, its tap count and `stride` weights (2^22 = 1.0).
struct Taps {
  int stride = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box [0, in_size).
Taps plan_taps(int in_size, int out_size) {
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = kSupport * filter_scale;
  Taps taps;
  taps.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(size_t(out_size) * taps.stride, 0);
  std::vector<double> k(taps.stride);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double inv = 1.0 / filter_scale;
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) {
      k[x] = bicubic((x + xmin - center + 0.5) * inv);
      total += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double w = total != 0.0 ? k[x] / total : k[x];
      const double fixed = w * (1 << kPrecisionBits);
      taps.weights[size_t(xx) * taps.stride + x] = static_cast<int32_t>(w < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    taps.first[xx] = xmin;
    taps.count[xx] = std::max(xmax, 0);
  }
  return taps;
}

uint8_t clip8(int32_t sum) { return static_cast<uint8_t>(std::clamp(sum >> kPrecisionBits, 0, 255)); }

// Rows [row0, row0 + n_rows) of src, resized across to taps.first.size() columns. Raw pointers in
// locals: the uint8_t stores could otherwise alias the vectors' own pointers and force reloads.
Rgb8 horizontal_pass(const Rgb8& src, int row0, int n_rows, const Taps& taps) {
  const size_t out_w = taps.first.size(), stride = taps.stride;
  Rgb8 out{static_cast<uint32_t>(out_w), static_cast<uint32_t>(n_rows), std::vector<uint8_t>(out_w * n_rows * 3)};
  const int* first = taps.first.data();
  const int* count = taps.count.data();
  const int32_t* weights = taps.weights.data();
  for (int y = 0; y < n_rows; ++y) {
    const uint8_t* in = src.pixels.data() + size_t(row0 + y) * src.width * 3;
    uint8_t* row = out.pixels.data() + size_t(y) * out_w * 3;
    for (size_t xx = 0; xx < out_w; ++xx) {
      const int32_t* k = weights + xx * stride;
      const uint8_t* p = in + size_t(first[xx]) * 3;
      int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int x = 0; x < count[xx]; ++x, p += 3) {
        s0 += p[0] * k[x];
        s1 += p[1] * k[x];
        s2 += p[2] * k[x];
      }
      row[xx * 3 + 0] = clip8(s0);
      row[xx * 3 + 1] = clip8(s1);
      row[xx * 3 + 2] = clip8(s2);
    }
  }
  return out;
}

// An AVX2 clone where the CPU has it: 8 lanes of 32-bit multiply instead of SSE2's emulated ones.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define AUTOGLM_WIDE_LOOP __attribute__((target_clones("avx2", "default")))
#else
#define AUTOGLM_WIDE_LOOP
#endif

// src resized down the columns to taps.first.size() rows; taps index src's rows. Columns go in
// blocks whose sums stay in a local array, so the tap loop vectorizes.
AUTOGLM_WIDE_LOOP Rgb8 vertical_pass(const Rgb8& src, const Taps& taps) {
  constexpr size_t kBlock = 512;
  const size_t out_h = taps.first.size(), row_bytes = size_t(src.width) * 3, stride = taps.stride;
  Rgb8 out{src.width, static_cast<uint32_t>(out_h), std::vector<uint8_t>(row_bytes * out_h)};
  const uint8_t* in = src.pixels.data();
  for (size_t yy = 0; yy < out_h; ++yy) {
    const int32_t* k = taps.weights.data() + yy * stride;
    const uint8_t* top = in + size_t(taps.first[yy]) * row_bytes;
    const int n_taps = taps.count[yy];
    uint8_t* row = out.pixels.data() + yy * row_bytes;
    for (size_t i0 = 0; i0 < row_bytes; i0 += kBlock) {
      const size_t n = std::min(kBlock, row_bytes - i0);
      int32_t sums[kBlock];
      for (size_t i = 0; i < n; ++i) sums[i] = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < n_taps; ++y) {
        const uint8_t* line = top + size_t(y) * row_bytes + i0;
        const int32_t w = k[y];
        for (size_t i = 0; i < n; ++i) sums[i] += line[i] * w;
      }
      for (size_t i = 0; i < n; ++i) row[i0 + i] = clip8(sums[i]);
    }
  }
  return out;
}

}  // namespace

Rgb8 resize_bicubic(const Rgb8& src, uint32_t width, uint32_t height) {
  if (src.width == 0 || src.height == 0 || src.pixels.size() != size_t(src.width) * src.height * 3)
    throw ImageError(fmt::format("cannot resize a {}x{} image holding {} bytes", src.width, src.height, src.pixels.size()));
  if (width == 0 || height == 0 || width > (1u << 20) || height > (1u << 20))
    throw ImageError(fmt::format("cannot resize to {}x{} pixels", width, height));
  const bool need_horizontal = width != src.width, need_vertical = height != src.height;
  if (!need_horizontal && !need_vertical) return src;
  Taps rows = plan_taps(static_cast<int>(src.height), static_cast<int>(height));
  if (!need_horizontal) return vertical_pass(src, rows);
  const Taps cols = plan_taps(static_cast<int>(src.width), static_cast<int>(width));
  if (!need_vertical) return horizontal_pass(src, 0, static_cast<int>(src.height), cols);
  // Pillow 13 runs the vertical pass first when the height shrinks by more than twice
  // as many pixels as the width does; the order changes the rounding between the passes.
  const int64_t shrink_h = int64_t{src.height} - height, shrink_w = int64_t{src.width} - width;
  if (shrink_h > 0 && shrink_h > shrink_w * 2) {
    const Rgb8 down = vertical_pass(src, rows);
    return horizontal_pass(down, 0, static_cast<int>(down.height), cols);
  }
  // Horizontal first, over only the rows the vertical pass reads.
  const int row0 = rows.first.front(), row_end = rows.first.back() + rows.count.back();
  const Rgb8 across = horizontal_pass(src, row0, row_end - row0, cols);
  for (int& first : rows.first) first -= row0;
  return vertical_pass(across, rows);
}

}  // namespace autoglm::image
