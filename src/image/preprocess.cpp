// The Glm4v image processor after decoding: its config, smart_resize, and RGB to pixel_values in
// its patch order, with its float32 arithmetic.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autoglm/image.h"

namespace autoglm::image {
namespace {

using nlohmann::json;

[[noreturn]] void bad_field(const std::string& field, const std::string& why) {
  throw ImageError(fmt::format("preprocessor config: '{}' {}", field, why));
}

const json* field(const json& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

uint64_t positive_integer(const json& value, const std::string& name, uint64_t max) {
  if (!value.is_number_integer() || value.get<int64_t>() <= 0 || value.get<uint64_t>() > max)
    bad_field(name, fmt::format("must be a positive integer up to {}, got {}", max, value.dump()));
  return value.get<uint64_t>();
}

void read_u32(const json& j, const char* key, uint32_t& out) {
  if (const json* v = field(j, key)) out = static_cast<uint32_t>(positive_integer(*v, key, 1024));
}

void read_u64(const json& j, const char* key, const std::string& name, uint64_t& out) {
  if (const json* v = field(j, key)) out = positive_integer(*v, name, 1ull << 40);
}

void read_triple(const json& j, const char* key, std::array<float, 3>& out, bool nonzero) {
  const json* v = field(j, key);
  if (!v) return;
  if (!v->is_array() || v->size() != 3) bad_field(key, fmt::format("must be a list of 3 numbers, got {}", v->dump()));
  for (size_t c = 0; c < 3; ++c) {
    const json& x = (*v)[c];
    if (!x.is_number() || !std::isfinite(x.get<double>()) || (nonzero && x.get<double>() == 0.0))
      bad_field(key, fmt::format("must hold 3 finite{} numbers, got {}", nonzero ? " non-zero" : "", v->dump()));
    out[c] = x.get<float>();
  }
}

// A do_* switch the processor offers that we only implement in its default position.
void require_flag(const json& j, const char* key, bool expected) {
  const json* v = field(j, key);
  if (!v) return;
  if (!v->is_boolean()) bad_field(key, fmt::format("must be true or false, got {}", v->dump()));
  if (v->get<bool>() != expected) bad_field(key, fmt::format("= {} is not supported (only {})", !expected, expected));
}

// Python's round(): halves go to the even neighbour (nearbyint in the default rounding mode).
double round_half_even(double x) { return std::nearbyint(x); }

}  // namespace

ProcessorConfig ProcessorConfig::from_json(const json& j) {
  if (!j.is_object()) throw ImageError("preprocessor config: expected a JSON object");
  ProcessorConfig c;
  read_u32(j, "patch_size", c.patch_size);
  read_u32(j, "temporal_patch_size", c.temporal_patch_size);
  read_u32(j, "merge_size", c.merge_size);
  if (const json* size = field(j, "size")) {
    if (!size->is_object()) bad_field("size", fmt::format("must be an object, got {}", size->dump()));
    read_u64(*size, "shortest_edge", "size.shortest_edge", c.min_pixels);
    read_u64(*size, "longest_edge", "size.longest_edge", c.max_pixels);
  }
  // Older configs (Qwen2-VL style) name them min_pixels / max_pixels; they win over size, as there.
  read_u64(j, "min_pixels", "min_pixels", c.min_pixels);
  read_u64(j, "max_pixels", "max_pixels", c.max_pixels);
  if (c.min_pixels > c.max_pixels)
    bad_field("size", fmt::format("min pixels {} exceed max pixels {}", c.min_pixels, c.max_pixels));
  read_triple(j, "image_mean", c.mean, false);
  read_triple(j, "image_std", c.std, true);
  if (const json* v = field(j, "rescale_factor")) {
    if (!v->is_number() || !(v->get<double>() > 0.0) || !std::isfinite(v->get<double>()))
      bad_field("rescale_factor", fmt::format("must be a positive number, got {}", v->dump()));
    c.rescale = v->get<double>();
  }
  if (const json* v = field(j, "resample"); v && (!v->is_number_integer() || v->get<int64_t>() != 3))
    bad_field("resample", fmt::format("= {} is not supported (only 3, bicubic)", v->dump()));
  require_flag(j, "do_resize", true);
  require_flag(j, "do_rescale", true);
  require_flag(j, "do_normalize", true);
  require_flag(j, "do_convert_rgb", true);
  return c;
}

ProcessorConfig ProcessorConfig::load(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw ImageError(fmt::format("{}: cannot open the preprocessor config", path.string()));
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded()) throw ImageError(fmt::format("{}: not valid JSON", path.string()));
  try {
    return from_json(j);
  } catch (const ImageError& e) {
    throw ImageError(fmt::format("{}: {}", path.string(), e.what()));
  }
}

Size smart_resize(uint32_t height, uint32_t width, const ProcessorConfig& config) {
  if (height == 0 || width == 0) throw ImageError(fmt::format("image is {}x{} pixels: it has no pixels", width, height));
  const double factor = config.factor();
  const double frames = config.temporal_patch_size;  // a still image fills one temporal patch
  double h = height, w = width;                       // integers, as in Python
  if (h < factor || w < factor) {
    const double scale = std::max(factor / h, factor / w);
    h = std::trunc(h * scale);
    w = std::trunc(w * scale);
  }
  const double ratio = std::max(h, w) / std::min(h, w);
  if (!(ratio <= 200))
    throw ImageError(fmt::format("image is {}x{} pixels: an aspect ratio of {:.1f}:1; the processor accepts at most 200:1",
                                 width, height, ratio));
  double h_bar = round_half_even(h / factor) * factor;
  double w_bar = round_half_even(w / factor) * factor;
  const double t_bar = round_half_even(frames / config.temporal_patch_size) * config.temporal_patch_size;
  if (t_bar * h_bar * w_bar > static_cast<double>(config.max_pixels)) {
    const double beta = std::sqrt(frames * h * w / static_cast<double>(config.max_pixels));
    h_bar = std::max(factor, std::floor(h / beta / factor) * factor);
    w_bar = std::max(factor, std::floor(w / beta / factor) * factor);
  } else if (t_bar * h_bar * w_bar < static_cast<double>(config.min_pixels)) {
    const double beta = std::sqrt(static_cast<double>(config.min_pixels) / (frames * h * w));
    h_bar = std::ceil(h * beta / factor) * factor;
    w_bar = std::ceil(w * beta / factor) * factor;
  }
  if (h_bar > (1 << 20) || w_bar > (1 << 20))
    throw ImageError(fmt::format("image is {}x{} pixels: it would be resized to {}x{}", width, height, w_bar, h_bar));
  return {static_cast<uint32_t>(h_bar), static_cast<uint32_t>(w_bar)};
}

namespace {

// rescale: uint8 * factor in double, then float32; normalize: (x - mean) / std in float32.
std::array<std::array<float, 256>, 3> normalized_values(const ProcessorConfig& config) {
  std::array<std::array<float, 256>, 3> value{};
  for (int c = 0; c < 3; ++c)
    for (int x = 0; x < 256; ++x) value[c][x] = (static_cast<float>(x * config.rescale) - config.mean[c]) / config.std[c];
  return value;
}

// Patch order (block row, block col, row in block, col in block); inside: channel, frame, y, x.
void write_patches(const Rgb8& img, const ProcessorConfig& config, Patches& out) {
  const auto value = normalized_values(config);
  const uint32_t ps = config.patch_size, m = config.merge_size, tps = config.temporal_patch_size;
  const size_t plane = size_t(ps) * ps;
  out.values.resize(out.n_patches() * 3 * tps * plane);
  float* dst = out.values.data();
  for (uint32_t bh = 0; bh < out.h / m; ++bh)
    for (uint32_t bw = 0; bw < out.w / m; ++bw)
      for (uint32_t mh = 0; mh < m; ++mh)
        for (uint32_t mw = 0; mw < m; ++mw) {
          const size_t y0 = size_t(bh * m + mh) * ps, x0 = size_t(bw * m + mw) * ps;
          for (int c = 0; c < 3; ++c) {
            const float* frame0 = dst;
            for (uint32_t py = 0; py < ps; ++py) {
              const uint8_t* src = &img.pixels[((y0 + py) * img.width + x0) * 3 + c];
              for (uint32_t px = 0; px < ps; ++px) *dst++ = value[c][src[px * 3]];
            }
            for (uint32_t t = 1; t < tps; ++t, dst += plane) std::copy(frame0, frame0 + plane, dst);
          }
        }
}

}  // namespace

Patches preprocess(const Rgb8& image, const ProcessorConfig& config) {
  if (image.pixels.size() != size_t(image.width) * image.height * 3)
    throw ImageError(fmt::format("a {}x{} RGB image cannot hold {} bytes", image.width, image.height, image.pixels.size()));
  const Size size = smart_resize(image.height, image.width, config);
  const bool same = size.height == image.height && size.width == image.width;
  const Rgb8 resized = same ? Rgb8{} : resize_bicubic(image, size.width, size.height);
  Patches out;
  out.resized = size;
  out.h = size.height / config.patch_size;
  out.w = size.width / config.patch_size;
  write_patches(same ? image : resized, config, out);
  return out;
}

}  // namespace autoglm::image
