#pragma once
// check-hardware and deploy: how long this machine's CPU takes to encode a phone screenshot with the
// model's vision tower, from a measured rate (a random tower of the same widths, timed here), and the
// max_pixels that keeps it under a target.
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "autoglm/config.h"
#include "autoglm/image.h"
#include "autoglm/model_shape.h"

namespace autoglm::cli {

struct ScreenshotEstimate {
  uint32_t width = 1080, height = 2400;  // the screenshot priced (Open-AutoGLM's phones)
  uint64_t max_pixels = 0;               // the limit in effect
  image::Size resized;
  size_t tokens = 0;
  double seconds = 0;
  std::string weight_type;               // the tower's matrices as served ("Q8_0", "BF16")
  int threads = 0;
  uint64_t target_ms = 0;                // vision.target_encode_seconds; 0 = none
  std::optional<uint64_t> target_max_pixels;  // the largest max_pixels under the target (none fits: nullopt)
  size_t target_tokens = 0;
  double target_seconds = 0;
};

// The estimate for `shape`'s tower (nullopt for a text-only model) under cfg's vision limits, the tower
// loaded as deploy would load it, on `threads` threads. `max_pixels` (when not 0) overrides cfg's.
std::optional<ScreenshotEstimate> estimate_screenshot(const model::ModelShape& shape, const config::Config& cfg,
                                                      uint64_t max_pixels, int threads);
std::string render_text(const ScreenshotEstimate& e);
nlohmann::json to_json(const ScreenshotEstimate& e);

}  // namespace autoglm::cli
