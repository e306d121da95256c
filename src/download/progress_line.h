#pragma once
// The download's progress line on stderr: bytes so far, total, rate and time left. Unlike
// autoglm::ProgressBar it copes with an unknown total and a resumed start, and shows an ETA.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace autoglm::download::detail {

class ProgressLine {
 public:
  // `enabled` is the caller's decision (the option, and stderr being a terminal).
  ProgressLine(std::string label, bool enabled) : label_(std::move(label)), enabled_(enabled) {}
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // The body starts: `done` bytes are already on disk (a resumed download) of `total`, when known.
  void start(uint64_t done, std::optional<uint64_t> total);
  void advance(uint64_t bytes);  // redraws at most ~10 times a second
  void finish();                 // final draw and a newline, if anything was drawn

 private:
  void draw();

  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  uint64_t resumed_at_ = 0;
  uint64_t done_ = 0;
  std::optional<uint64_t> total_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace autoglm::download::detail
