#pragma once
// The vision tower's output for recent images, by content hash: the same screenshot sent again (a
// retry, another client, another conversation) is not encoded twice. Least recently used entries
// go first once the byte budget is reached. Used from the scheduler thread only.
#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

namespace autoglm::server {

class EncoderCache {
 public:
  using Rows = std::shared_ptr<const std::vector<float>>;
  explicit EncoderCache(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  // The rows stored for `hash`, now the most recently used; null when absent.
  Rows find(uint64_t hash);
  // Keeps `rows` for `hash` (nothing when they alone exceed the budget), dropping the oldest entries.
  void insert(uint64_t hash, Rows rows);
  uint64_t bytes() const { return bytes_; }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    uint64_t hash;
    Rows rows;
  };
  uint64_t max_bytes_, bytes_ = 0;
  std::list<Entry> entries_;  // most recently used first
  std::unordered_map<uint64_t, std::list<Entry>::iterator> index_;
};

}  // namespace autoglm::server
