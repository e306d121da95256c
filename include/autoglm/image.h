#pragma once
// Images for GLM-4.1V: PNG / JPEG bytes (or a data: URL) to 8-bit RGB, and RGB to the processor's
// pixel_values exactly as transformers' Glm4vImageProcessor (PIL backend) computes them: alpha onto
// white, smart_resize, Pillow's bicubic, rescale + normalize, merge-window patch order.
#include <array>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace autoglm::image {

// Thrown for every bad input; what() is a sentence a user can act on.
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Rgb8 {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> pixels;  // row-major, 3 bytes per pixel
};

struct DecodeLimits {
  uint64_t max_bytes = 64ull << 20;   // encoded size
  uint32_t max_side = 16384;          // width or height
  uint64_t max_pixels = 64ull << 20;  // width * height, checked from the header before decoding pixels
};

// PNG or JPEG, chosen by the magic bytes. Every PNG colour type and depth ends as 8-bit RGB (16-bit
// keeps the high byte, as Pillow does for RGB and RGBA; for 16-bit grey Pillow's I;16 mode would clip
// every value above 255 to white, which we do not copy); alpha (RGBA, grey+alpha, palette tRNS, grey tRNS)
// is composited onto white with Pillow's alpha_composite integer math, as transformers' convert_to_rgb
// does. An RGB PNG's tRNS colour is ignored (convert_to_rgb leaves RGB images alone). JPEG: grey,
// YCbCr, RGB, CMYK / YCCK (Adobe-inverted as Pillow reads it). EXIF orientation is not applied (the
// processor does not apply it either). Throws ImageError on anything else.
Rgb8 decode(std::span<const uint8_t> bytes, const DecodeLimits& limits = {});

// Pillow's Image.resize((width, height), Image.BICUBIC) on 8-bit RGB, bit for bit (Pillow 13, whose
// pass order depends on the sizes). Throws ImageError for an empty or inconsistent image or size.
Rgb8 resize_bicubic(const Rgb8& src, uint32_t width, uint32_t height);

struct ProcessorConfig {
  uint32_t patch_size = 14, temporal_patch_size = 2, merge_size = 2;
  uint64_t min_pixels = 112 * 112;           // size.shortest_edge (or min_pixels)
  uint64_t max_pixels = 14 * 14 * 4 * 1280;  // size.longest_edge (or max_pixels)
  std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f}, std{0.26862954f, 0.26130258f, 0.27577711f};
  double rescale = 1.0 / 255.0;
  // preprocessor_config.json's fields; missing ones keep the defaults. Throws ImageError naming a bad field.
  static ProcessorConfig from_json(const nlohmann::json& j);
  static ProcessorConfig load(const std::filesystem::path& preprocessor_config_json);
  uint32_t factor() const { return patch_size * merge_size; }
};

struct Size {
  uint32_t height = 0, width = 0;
};
// transformers' Glm4v smart_resize for a still image (num_frames = temporal_patch_size). Throws
// ImageError when the aspect ratio (after scaling up a side below factor) exceeds 200.
Size smart_resize(uint32_t height, uint32_t width, const ProcessorConfig& config);

struct Patches {
  uint32_t t = 1, h = 0, w = 0;  // grid (image_grid_thw): frames, patch rows, patch cols
  Size resized;                  // the size the image was resized to
  std::vector<float> values;     // [t*h*w][3 * temporal_patch_size * patch_size^2], the processor's patch order
  size_t n_patches() const { return size_t{t} * h * w; }
  size_t n_tokens(uint32_t merge) const { return n_patches() / (merge * merge); }
  size_t patch_dim() const { return n_patches() == 0 ? 0 : values.size() / n_patches(); }
};
// smart_resize -> resize_bicubic -> rescale + normalize (float32, the processor's order of operations)
// -> the frame repeated temporal_patch_size times -> patches in merge-window order.
Patches preprocess(const Rgb8& image, const ProcessorConfig& config);

struct DataUrl {
  std::string media_type;  // as written, lower-cased, without parameters; empty when absent
  std::vector<uint8_t> bytes;
};
// "data:[media type][;params];base64,PAYLOAD". ASCII whitespace inside the payload is skipped, as
// browsers do; padding is optional. max_bytes bounds the decoded size, checked before decoding.
DataUrl parse_data_url(std::string_view url, uint64_t max_bytes);

}  // namespace autoglm::image
