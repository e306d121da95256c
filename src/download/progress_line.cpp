#include "progress_line.h"

#include <cstdio>
#include <fmt/format.h>

#include "autoglm/units.h"

namespace autoglm::download::detail {

void ProgressLine::start(uint64_t done, std::optional<uint64_t> total) {
  resumed_at_ = done_ = done;
  total_ = total;
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

void ProgressLine::advance(uint64_t bytes) {
  done_ += bytes;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw();
}

void ProgressLine::finish() {
  if (!enabled_ || !drawn_) return;
  draw();
  std::fputc('\n', stderr);
  drawn_ = false;
}

void ProgressLine::draw() {
  drawn_ = true;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  // The rate of this transfer only: bytes resumed from disk did not cross the network now.
  const double rate = seconds > 0 ? static_cast<double>(done_ - resumed_at_) / seconds : 0;
  std::string line = fmt::format("{}  {}", label_, format_bytes(done_));
  if (total_ && *total_ > 0)
    line += fmt::format(" / {} ({:.1f}%)", format_bytes(*total_), 100.0 * static_cast<double>(done_) / static_cast<double>(*total_));
  line += fmt::format("  {}/s", format_bytes(static_cast<uint64_t>(rate)));
  if (total_ && rate > 0 && *total_ > done_)
    line += "  ETA " + format_duration_ms(static_cast<uint64_t>(1000.0 * static_cast<double>(*total_ - done_) / rate));
  // "\x1b[K" clears what a longer previous line left behind.
  fmt::print(stderr, "\r{}\x1b[K", line);
  std::fflush(stderr);
}

}  // namespace autoglm::download::detail
