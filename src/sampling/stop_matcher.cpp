#include <algorithm>

#include "autoglm/sampling.h"

namespace autoglm::sampling {
namespace {

struct Match {
  size_t begin = std::string::npos;
  size_t end = std::string::npos;
  const std::string* stop = nullptr;
};

// The stop string that completes first in `text` (smallest end; at equal ends, the longest).
Match first_completed(std::string_view text, const std::vector<std::string>& stops) {
  Match best;
  for (const std::string& stop : stops) {
    const size_t begin = text.find(stop);
    if (begin == std::string_view::npos) continue;
    const size_t end = begin + stop.size();
    if (end < best.end || (end == best.end && begin < best.begin)) best = {begin, end, &stop};
  }
  return best;
}

}  // namespace

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

// The longest tail of `text` that is a proper prefix of some stop string: it may still become one.
size_t StopMatcher::held_length(std::string_view text) const {
  size_t longest = 0;
  for (const std::string& stop : stops_) {
    const size_t max_len = std::min(text.size(), stop.size() - 1);
    for (size_t len = max_len; len > longest; --len)
      if (text.substr(text.size() - len) == std::string_view(stop).substr(0, len)) {
        longest = len;
        break;
      }
  }
  return longest;
}

StopMatcher::Result StopMatcher::feed(std::string_view text) {
  if (stopped_) return {"", true, matched_};
  held_ += text;
  const Match match = first_completed(held_, stops_);
  if (match.stop) {
    stopped_ = true;
    matched_ = *match.stop;
    Result result{held_.substr(0, match.begin), true, matched_};
    held_.clear();
    return result;
  }
  const size_t keep = held_length(held_);
  Result result{held_.substr(0, held_.size() - keep), false, ""};
  held_.erase(0, held_.size() - keep);
  return result;
}

std::string StopMatcher::flush() {
  std::string rest = std::move(held_);
  held_.clear();
  return rest;
}

}  // namespace autoglm::sampling
