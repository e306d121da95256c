#pragma once
// A progress bar on stderr, drawn only when stderr is a terminal (never when piped or logged).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace autoglm {

class ProgressBar {
 public:
  // `enabled` = false draws nothing; use `ProgressBar::stderr_is_tty()` to decide.
  ProgressBar(std::string label, uint64_t total, bool enabled);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Thread-safe: adds `n` units of progress; redraws at most ~10 times a second.
  void advance(uint64_t n);
  // Draws the final state and moves to a new line.
  void finish();

  static bool stderr_is_tty();

 private:
  void draw(bool final_draw);

  std::string label_;
  uint64_t total_;
  bool enabled_;
  bool finished_ = false;
  std::atomic<uint64_t> done_{0};
  std::mutex draw_mutex_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace autoglm
