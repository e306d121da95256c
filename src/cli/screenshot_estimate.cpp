#include "screenshot_estimate.h"

#include <fmt/format.h>

#include "autoglm/vision.h"
#include "service.h"

namespace autoglm::cli {
namespace {

vision::VisionConfig tower_config(const model::VisionShape& v) {
  vision::VisionConfig c;
  c.depth = v.depth;
  c.d_model = v.d_model;
  c.n_heads = v.n_heads ? v.n_heads : std::max(1u, v.d_model / 128);
  c.head_dim = c.d_model / c.n_heads;
  c.ffn_dim = v.ffn_dim;
  c.out_dim = v.out_dim;
  c.merger_ffn_dim = v.merger_ffn_dim ? v.merger_ffn_dim : 4 * v.out_dim;
  c.patch_size = v.patch_size;
  c.merge = v.merge;
  return c;
}

// The screenshot's grid at `max_pixels`: its resized size and tokens.
std::pair<image::Size, vision::PatchGrid> grid_at(const ScreenshotEstimate& e, image::ProcessorConfig p, uint64_t max_pixels) {
  p.max_pixels = max_pixels;
  p.min_pixels = std::min(p.min_pixels, max_pixels);
  const image::Size s = image::smart_resize(e.height, e.width, p);
  return {s, vision::PatchGrid{1, s.height / p.patch_size, s.width / p.patch_size}};
}

std::string seconds_text(double s) { return s < 1 ? fmt::format("{:.0f} ms", s * 1000) : fmt::format("{:.1f} s", s); }

}  // namespace

std::optional<ScreenshotEstimate> estimate_screenshot(const model::ModelShape& shape, const config::Config& cfg,
                                                      uint64_t max_pixels, int threads) {
  if (!shape.vision) return std::nullopt;
  const model::VisionShape& v = *shape.vision;
  image::ProcessorConfig p;
  p.patch_size = v.patch_size;
  p.merge_size = v.merge;
  if (v.min_pixels) p.min_pixels = v.min_pixels;
  if (v.max_pixels) p.max_pixels = v.max_pixels;
  if (cfg.vision.min_pixels) p.min_pixels = static_cast<uint64_t>(cfg.vision.min_pixels);
  if (cfg.vision.max_pixels) p.max_pixels = static_cast<uint64_t>(cfg.vision.max_pixels);
  if (max_pixels) p.max_pixels = max_pixels;

  // the tower as deploy loads it (vision.quantization: BF16 on AMX tiles, Q8_0, or as stored)
  model::LoadOptions options = vision_load_options(cfg, {});
  kernels::DType stored = v.bytes_per_weight >= 3.5 ? kernels::DType::f32 : kernels::DType::bf16;
  if (v.bytes_per_weight > 0 && v.bytes_per_weight < 1.9 && !options.quantize_to)
    options.quantize_to = kernels::DType::q8_0;  // stored quantized, served as stored
  const vision::EncodeCost cost = vision::measure_encode_cost(tower_config(v), stored, options, threads);

  ScreenshotEstimate e;
  e.max_pixels = p.max_pixels;
  e.weight_type = cost.weight_type;
  e.threads = threads;
  const auto [size, grid] = grid_at(e, p, p.max_pixels);
  e.resized = size;
  e.tokens = grid.n_patches() / (size_t{v.merge} * v.merge);
  e.seconds = cost.seconds(grid);
  e.target_ms = cfg.vision.target_encode_ms;
  if (e.target_ms) {
    // the largest max_pixels whose screenshot encodes within the target (the time grows with it)
    const double target = static_cast<double>(e.target_ms) / 1000.0;
    const uint64_t step = uint64_t{p.factor()} * p.factor();
    uint64_t lo = 0, hi = p.max_pixels / step;  // in units of one token's pixels
    while (lo < hi) {
      const uint64_t mid = (lo + hi + 1) / 2;
      if (cost.seconds(grid_at(e, p, mid * step).second) <= target) lo = mid;
      else hi = mid - 1;
    }
    if (lo > 0) {
      const auto [s2, g2] = grid_at(e, p, lo * step);
      e.target_max_pixels = lo * step;
      e.target_tokens = g2.n_patches() / (size_t{v.merge} * v.merge);
      e.target_seconds = cost.seconds(g2);
      (void)s2;
    }
  }
  return e;
}

std::string render_text(const ScreenshotEstimate& e) {
  std::string out = fmt::format(
      "  a {}x{} screenshot at max_pixels {}: resized to {}x{}, {} image tokens, ~{} to encode on this CPU "
      "({} tower, {} threads; measured rate)\n",
      e.width, e.height, e.max_pixels, e.resized.width, e.resized.height, e.tokens, seconds_text(e.seconds), e.weight_type,
      e.threads);
  if (e.target_ms) {
    if (e.target_max_pixels)
      out += fmt::format("  vision.target_encode_seconds {:g}: max_pixels {} keeps it within ({} tokens, ~{})\n",
                         static_cast<double>(e.target_ms) / 1000.0, *e.target_max_pixels, e.target_tokens,
                         seconds_text(e.target_seconds));
    else
      out += fmt::format("  vision.target_encode_seconds {:g}: no max_pixels gets it that fast on this CPU\n",
                         static_cast<double>(e.target_ms) / 1000.0);
  }
  return out;
}

nlohmann::json to_json(const ScreenshotEstimate& e) {
  nlohmann::json j{{"width", e.width}, {"height", e.height}, {"max_pixels", e.max_pixels},
                   {"resized", {{"width", e.resized.width}, {"height", e.resized.height}}},
                   {"image_tokens", e.tokens}, {"encode_seconds", e.seconds}, {"weight_type", e.weight_type},
                   {"threads", e.threads}};
  if (e.target_ms) {
    j["target_encode_seconds"] = static_cast<double>(e.target_ms) / 1000.0;
    j["target_max_pixels"] = e.target_max_pixels ? nlohmann::json(*e.target_max_pixels) : nlohmann::json(nullptr);
    if (e.target_max_pixels) {
      j["target_image_tokens"] = e.target_tokens;
      j["target_encode_seconds_estimate"] = e.target_seconds;
    }
  }
  return j;
}

}  // namespace autoglm::cli
