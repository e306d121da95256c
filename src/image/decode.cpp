// PNG and JPEG bytes to 8-bit RGB, as Pillow opens them and transformers' convert_to_rgb turns them
// into RGB. libpng and libjpeg report errors by longjmp: every call into them sits in a small
// phase function that owns the setjmp and holds no C++ object, so nothing is skipped when it jumps.
#include <fmt/format.h>
#include <jpeglib.h>
// jerror.h after jpeglib.h: it needs its types
#include <jerror.h>
#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "autoglm/image.h"

namespace autoglm::image {
namespace {

[[noreturn]] void fail(const std::string& message) { throw ImageError(message); }

void check_dimensions(uint64_t width, uint64_t height, const DecodeLimits& limits) {
  if (width == 0 || height == 0) fail(fmt::format("image is {}x{} pixels: it has no pixels", width, height));
  if (width > limits.max_side || height > limits.max_side)
    fail(fmt::format("image is {}x{} pixels; the limit is {} per side", width, height, limits.max_side));
  if (width * height > limits.max_pixels)
    fail(fmt::format("image is {}x{} = {} pixels; the limit is {}", width, height, width * height, limits.max_pixels));
}

// Pillow's ImagingAlphaComposite (integer path, 7 extra bits) of one RGBA pixel over opaque white.
void composite_on_white(const uint8_t* rgba, uint8_t* rgb) {
  constexpr uint32_t kBits = 7, kDst = 255, kDstAlpha = 255;
  const uint32_t a = rgba[3];
  if (a == 0) {
    rgb[0] = rgb[1] = rgb[2] = kDst;
    return;
  }
  const uint32_t blend = kDstAlpha * (255 - a);
  const uint32_t outa255 = a * 255 + blend;
  const uint32_t coef1 = a * 255 * 255 * (1u << kBits) / outa255;
  const uint32_t coef2 = 255 * (1u << kBits) - coef1;
  for (int c = 0; c < 3; ++c) {
    const uint32_t t = rgba[c] * coef1 + kDst * coef2 + (0x80u << kBits);
    rgb[c] = static_cast<uint8_t>((((t >> 8) + t) >> 8) >> kBits);
  }
}

// ---- PNG ----

struct PngSource {
  const uint8_t* data = nullptr;
  size_t size = 0, pos = 0;
};

struct PngHeader {
  uint32_t width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
  bool has_trns = false;
};

struct PngState {
  png_structp png = nullptr;
  png_infop info = nullptr;
  PngSource source;
  char message[256] = {};
  PngState() = default;
  PngState(const PngState&) = delete;
  PngState& operator=(const PngState&) = delete;
  ~PngState() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
};

void png_on_error(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof state->message, "%s", message);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

void png_on_read(png_structp png, png_bytep out, size_t n) {
  auto* source = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > source->size - source->pos) png_error(png, "the data ends early (truncated)");
  std::memcpy(out, source->data + source->pos, n);
  source->pos += n;
}

// Each phase returns false after a libpng error; the message is in state.message.
bool png_phase_header(PngState& state, PngHeader& header) {
  if (setjmp(png_jmpbuf(state.png))) return false;
  png_set_read_fn(state.png, &state.source, png_on_read);
  png_set_user_limits(state.png, 0x7fffffff, 0x7fffffff);  // ours are checked after the header
  png_read_info(state.png, state.info);
  header.width = png_get_image_width(state.png, state.info);
  header.height = png_get_image_height(state.png, state.info);
  header.bit_depth = png_get_bit_depth(state.png, state.info);
  header.color_type = png_get_color_type(state.png, state.info);
  header.has_trns = png_get_valid(state.png, state.info, PNG_INFO_tRNS) != 0;
  return true;
}

// To 8-bit RGB or RGBA. An RGB image's tRNS colour stays unapplied: convert_to_rgb returns RGB as is.
bool png_phase_transforms(PngState& state, const PngHeader& header, int& channels) {
  if (setjmp(png_jmpbuf(state.png))) return false;
  const bool grey = (header.color_type & PNG_COLOR_MASK_COLOR) == 0;
  if (header.bit_depth == 16) png_set_strip_16(state.png);
  if (header.color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(state.png);
  if (grey && header.bit_depth < 8) png_set_expand_gray_1_2_4_to_8(state.png);
  if (header.has_trns && (grey || header.color_type == PNG_COLOR_TYPE_PALETTE)) png_set_tRNS_to_alpha(state.png);
  if (grey) png_set_gray_to_rgb(state.png);
  png_set_interlace_handling(state.png);
  png_read_update_info(state.png, state.info);
  channels = png_get_channels(state.png, state.info);
  return png_get_bit_depth(state.png, state.info) == 8;
}

bool png_phase_rows(PngState& state, png_bytepp rows) {
  if (setjmp(png_jmpbuf(state.png))) return false;
  png_read_image(state.png, rows);
  return true;
}

[[noreturn]] void png_failed(const PngState& state) {
  fail(fmt::format("the PNG data is not readable: {}", state.message[0] ? state.message : "unsupported layout"));
}

uint32_t read_be32(const uint8_t* p) { return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3]; }

Rgb8 decode_png(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  // The IHDR chunk comes first: its size is checked before libpng reads anything else, so a
  // decompression bomb is refused from its header even when the rest is missing.
  if (bytes.size() >= 24 && std::memcmp(bytes.data() + 12, "IHDR", 4) == 0)
    check_dimensions(read_be32(bytes.data() + 16), read_be32(bytes.data() + 20), limits);
  PngState state;
  state.source = {bytes.data(), bytes.size(), 0};
  state.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_on_error, png_on_warning);
  if (!state.png) fail("out of memory while opening the PNG");
  state.info = png_create_info_struct(state.png);
  if (!state.info) fail("out of memory while opening the PNG");

  PngHeader header;
  if (!png_phase_header(state, header)) png_failed(state);
  check_dimensions(header.width, header.height, limits);
  int channels = 0;
  if (!png_phase_transforms(state, header, channels) || (channels != 3 && channels != 4)) png_failed(state);

  const size_t w = header.width, h = header.height;
  Rgb8 out{header.width, header.height, std::vector<uint8_t>(w * h * 3)};
  std::vector<uint8_t> rgba(channels == 4 ? w * h * 4 : 0);
  uint8_t* base = channels == 4 ? rgba.data() : out.pixels.data();
  std::vector<png_bytep> rows(h);
  for (size_t y = 0; y < h; ++y) rows[y] = base + y * w * channels;
  if (!png_phase_rows(state, rows.data())) png_failed(state);
  if (channels == 4)
    for (size_t i = 0; i < w * h; ++i) composite_on_white(&rgba[i * 4], &out.pixels[i * 3]);
  return out;
}

// ---- JPEG ----

constexpr int kMaxJpegScans = 500;  // libjpeg-turbo's advice against progressive-scan bombs

struct JpegState {
  jpeg_decompress_struct cinfo{};
  jpeg_error_mgr errors{};
  jpeg_progress_mgr progress{};
  jmp_buf jump{};
  char message[JMSG_LENGTH_MAX] = {};
  bool created = false;
  JpegState() = default;
  JpegState(const JpegState&) = delete;
  JpegState& operator=(const JpegState&) = delete;
  ~JpegState() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

JpegState& jpeg_state_of(j_common_ptr cinfo) { return *static_cast<JpegState*>(cinfo->client_data); }

void jpeg_on_error(j_common_ptr cinfo) {
  JpegState& state = jpeg_state_of(cinfo);
  cinfo->err->format_message(cinfo, state.message);
  std::longjmp(state.jump, 1);
}

// Warnings stay silent, except the one that means the data ended early (libjpeg would pad with grey).
void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    JpegState& state = jpeg_state_of(cinfo);
    std::snprintf(state.message, sizeof state.message, "the data ends early (truncated)");
    std::longjmp(state.jump, 1);
  }
}

void jpeg_on_output(j_common_ptr) {}

void jpeg_on_progress(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kMaxJpegScans) {
    JpegState& state = jpeg_state_of(cinfo);
    std::snprintf(state.message, sizeof state.message, "more than %d progressive scans", kMaxJpegScans);
    std::longjmp(state.jump, 1);
  }
}

bool jpeg_phase_header(JpegState& state, const uint8_t* data, size_t size) {
  if (setjmp(state.jump)) return false;
  jpeg_create_decompress(&state.cinfo);  // zeroes the struct but for err and client_data
  state.created = true;
  state.cinfo.progress = &state.progress;
  jpeg_mem_src(&state.cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&state.cinfo, TRUE);
  return true;
}

bool jpeg_phase_pixels(JpegState& state, uint8_t* out, size_t row_bytes) {
  if (setjmp(state.jump)) return false;
  jpeg_start_decompress(&state.cinfo);
  if (state.cinfo.output_components * state.cinfo.output_width != row_bytes) return false;
  while (state.cinfo.output_scanline < state.cinfo.output_height) {
    JSAMPROW row = out + size_t{state.cinfo.output_scanline} * row_bytes;
    jpeg_read_scanlines(&state.cinfo, &row, 1);
  }
  jpeg_finish_decompress(&state.cinfo);
  return true;
}

[[noreturn]] void jpeg_failed(const JpegState& state) {
  fail(fmt::format("the JPEG data is not readable: {}", state.message[0] ? state.message : "unsupported layout"));
}

// Pillow's cmyk2rgb, after its "CMYK;I" unpacking of Adobe JPEGs (which store inverted ink).
void cmyk_to_rgb(const uint8_t* cmyk, bool inverted, uint8_t* rgb) {
  int ink[4];
  for (int c = 0; c < 4; ++c) ink[c] = inverted ? 255 - cmyk[c] : cmyk[c];
  const int nk = 255 - ink[3];
  for (int c = 0; c < 3; ++c) {
    const int t = ink[c] * nk + 128;
    rgb[c] = static_cast<uint8_t>(std::clamp(nk - (((t >> 8) + t) >> 8), 0, 255));
  }
}

Rgb8 decode_jpeg(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  JpegState state;
  state.cinfo.err = jpeg_std_error(&state.errors);
  state.errors.error_exit = jpeg_on_error;
  state.errors.emit_message = jpeg_on_message;
  state.errors.output_message = jpeg_on_output;
  state.cinfo.client_data = &state;
  state.progress.progress_monitor = jpeg_on_progress;

  if (!jpeg_phase_header(state, bytes.data(), bytes.size())) jpeg_failed(state);
  check_dimensions(state.cinfo.image_width, state.cinfo.image_height, limits);
  const J_COLOR_SPACE space = state.cinfo.jpeg_color_space;
  const bool cmyk = space == JCS_CMYK || space == JCS_YCCK;
  if (!cmyk && space != JCS_GRAYSCALE && space != JCS_YCbCr && space != JCS_RGB)
    fail("the JPEG uses a colour space other than grey, YCbCr, RGB or CMYK");
  state.cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;

  const size_t w = state.cinfo.image_width, h = state.cinfo.image_height, channels = cmyk ? 4 : 3;
  Rgb8 out{state.cinfo.image_width, state.cinfo.image_height, std::vector<uint8_t>(w * h * 3)};
  std::vector<uint8_t> ink(cmyk ? w * h * 4 : 0);
  if (!jpeg_phase_pixels(state, cmyk ? ink.data() : out.pixels.data(), w * channels)) jpeg_failed(state);
  if (cmyk) {
    const bool inverted = state.cinfo.saw_Adobe_marker;
    for (size_t i = 0; i < w * h; ++i) cmyk_to_rgb(&ink[i * 4], inverted, &out.pixels[i * 3]);
  }
  return out;
}

// ---- format by magic bytes ----

bool starts_with(std::span<const uint8_t> bytes, std::string_view magic, size_t at = 0) {
  return bytes.size() >= at + magic.size() && std::memcmp(bytes.data() + at, magic.data(), magic.size()) == 0;
}

// The name of a format we recognise but do not decode; empty when it is none of them.
std::string other_format(std::span<const uint8_t> bytes) {
  if (starts_with(bytes, "GIF87a") || starts_with(bytes, "GIF89a")) return "GIF";
  if (starts_with(bytes, "RIFF") && starts_with(bytes, "WEBP", 8)) return "WebP";
  if (starts_with(bytes, "BM")) return "BMP";
  if (starts_with(bytes, std::string_view("II*\0", 4)) || starts_with(bytes, std::string_view("MM\0*", 4))) return "TIFF";
  if (starts_with(bytes, "ftypavif", 4) || starts_with(bytes, "ftypavis", 4)) return "AVIF";
  if (starts_with(bytes, "ftyphei", 4) || starts_with(bytes, "ftypmif1", 4) || starts_with(bytes, "ftyphev", 4))
    return "HEIF";
  return {};
}

}  // namespace

Rgb8 decode(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  if (bytes.empty()) fail("the image data is empty");
  if (bytes.size() > limits.max_bytes)
    fail(fmt::format("the image data is {} bytes; the limit is {}", bytes.size(), limits.max_bytes));
  if (starts_with(bytes, "\x89PNG\r\n\x1a\n")) return decode_png(bytes, limits);
  if (starts_with(bytes, "\xff\xd8\xff")) return decode_jpeg(bytes, limits);
  const std::string other = other_format(bytes);
  if (!other.empty()) fail(fmt::format("unsupported image format ({}); send PNG or JPEG", other));
  fail("the data is not a PNG or JPEG image");
}

}  // namespace autoglm::image
