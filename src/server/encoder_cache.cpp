#include "encoder_cache.h"

namespace autoglm::server {

namespace {
uint64_t size_of(const EncoderCache::Rows& rows) { return rows->size() * sizeof(float); }
}  // namespace

EncoderCache::Rows EncoderCache::find(uint64_t hash) {
  const auto it = index_.find(hash);
  if (it == index_.end()) return nullptr;
  entries_.splice(entries_.begin(), entries_, it->second);
  return it->second->rows;
}

void EncoderCache::insert(uint64_t hash, Rows rows) {
  if (!rows || size_of(rows) > max_bytes_ || index_.count(hash)) return;
  while (bytes_ + size_of(rows) > max_bytes_) {
    bytes_ -= size_of(entries_.back().rows);
    index_.erase(entries_.back().hash);
    entries_.pop_back();
  }
  bytes_ += size_of(rows);
  entries_.push_front({hash, std::move(rows)});
  index_[hash] = entries_.begin();
}

}  // namespace autoglm::server
