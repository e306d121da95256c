#pragma once
// A one-line progress display on stderr, redrawn in place; silent when disabled (callers enable it
// only when stderr is a terminal, so logs and pipes never see it).
#include <string>

namespace autoglm::benchmark::detail {

class StatusLine {
 public:
  explicit StatusLine(bool enabled) : enabled_(enabled) {}
  ~StatusLine() { clear(); }
  StatusLine(const StatusLine&) = delete;
  StatusLine& operator=(const StatusLine&) = delete;

  void show(const std::string& text);
  void clear();  // erases the line, so the report starts on a clean one

 private:
  bool enabled_;
  bool shown_ = false;
};

}  // namespace autoglm::benchmark::detail
