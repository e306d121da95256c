#include <fmt/format.h>

#include "autoglm/engine.h"

namespace autoglm::engine {

KvCache::KvCache(const model::ArchConfig& config, size_t n_blocks, size_t block_size, kernels::DType type)
    : type_(type), n_layers_(config.n_layers), n_blocks_(n_blocks), block_size_(block_size), row_elems_(size_t{config.n_kv_heads} * config.head_dim) {
  if (n_blocks == 0 || block_size == 0) throw Error(kExitUsage, "KV cache: need at least one block of one slot");
  if (n_blocks >= kNoParent) throw Error(kExitUsage, "KV cache: too many blocks");
  if (type != kernels::DType::f16 && type != kernels::DType::q8_0)
    throw Error(kExitUsage, "KV cache: the cache type must be f16 or q8_0");
  if (type == kernels::DType::q8_0 && config.head_dim % 32 != 0)
    throw Error(kExitUsage, fmt::format("KV cache: q8_0 needs head_dim to be a multiple of 32 (this model has {}); "
                                        "use kv_cache_type: f16", config.head_dim));
  row_bytes_ = kernels::row_bytes(type, row_elems_);
  head_bytes_ = kernels::row_bytes(type, config.head_dim);
  const size_t n = size_t{config.n_layers} * n_blocks * block_size * row_bytes_;
  k_.assign(n, 0);
  v_.assign(n, 0);
  // Hand out low block ids first: pop_back takes from the end.
  for (size_t b = n_blocks; b-- > 0;) free_.push_back(static_cast<uint32_t>(b));
  refs_.assign(n_blocks, 0);
  generation_.assign(n_blocks, 0);
  published_.resize(n_blocks);
  lru_pos_.resize(n_blocks, lru_.end());
}

// An unused block, else the least recently used cached one (which stops being published).
uint32_t KvCache::take_block() {
  uint32_t b = 0;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    b = lru_.front();
    lru_.pop_front();
    lru_pos_[b] = lru_.end();
    Published& p = published_[b];
    const uint64_t k = key(p.parent, p.tokens);
    for (auto [it, end] = index_.equal_range(k); it != end; ++it)
      if (it->second == b) {
        index_.erase(it);
        break;
      }
    for (auto [it, end] = children_.equal_range(child_key(p.parent, p.parent_generation)); it != end; ++it)
      if (it->second == b) {
        children_.erase(it);
        break;
      }
    p = {};
    ++generation_[b];  // its children's parent link no longer matches
  }
  refs_[b] = 1;
  return b;
}

bool KvCache::reserve(Sequence& seq, size_t length) {
  const size_t needed = (length + block_size_ - 1) / block_size_;
  if (needed <= seq.blocks.size()) return true;
  if (needed - seq.blocks.size() > free_blocks()) return false;
  while (seq.blocks.size() < needed) seq.blocks.push_back(take_block());
  return true;
}

void KvCache::release(Sequence& seq) {
  for (uint32_t b : seq.blocks) {
    if (--refs_[b] > 0) continue;
    if (published_[b].valid) lru_pos_[b] = lru_.insert(lru_.end(), b);
    else free_.push_back(b);
  }
  seq.blocks.clear();
  seq.length = 0;
}

uint64_t KvCache::key(uint32_t parent, std::span<const int32_t> tokens) const {
  // FNV-1a over the parent's identity and the tokens; find_published() compares them exactly
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i, v >>= 8) h = (h ^ (v & 0xFF)) * 1099511628211ull;
  };
  mix(parent);
  mix(parent == kNoParent ? 0 : generation_[parent]);
  for (int32_t t : tokens) mix(static_cast<uint32_t>(t));
  return h;
}

std::optional<uint32_t> KvCache::find_published(uint32_t parent, std::span<const int32_t> tokens) const {
  const uint32_t parent_generation = parent == kNoParent ? 0 : generation_[parent];
  for (auto [it, end] = index_.equal_range(key(parent, tokens)); it != end; ++it) {
    const Published& p = published_[it->second];
    if (p.valid && p.parent == parent && p.parent_generation == parent_generation &&
        std::equal(p.tokens.begin(), p.tokens.end(), tokens.begin(), tokens.end()))
      return it->second;
  }
  return std::nullopt;
}

size_t KvCache::share_prefix(Sequence& seq, std::span<const int32_t> tokens) {
  if (!seq.blocks.empty()) throw Error(kExitUsage, "KV cache: share_prefix needs an empty sequence");
  uint32_t parent = kNoParent;
  while ((seq.blocks.size() + 1) * block_size_ < tokens.size()) {
    const auto b = find_published(parent, tokens.subspan(seq.blocks.size() * block_size_, block_size_));
    if (!b) break;
    if (refs_[*b]++ == 0) {
      lru_.erase(lru_pos_[*b]);
      lru_pos_[*b] = lru_.end();
    }
    seq.blocks.push_back(*b);
    parent = *b;
  }
  seq.length = seq.blocks.size() * block_size_;
  seq.length += share_partial(seq, parent, tokens.subspan(seq.length));
  return seq.length;
}

// The published child of `parent` whose tokens start like `rest` for the most positions (at most
// rest.size() - 1): those positions copied into a new block of `seq`. Returns how many.
size_t KvCache::share_partial(Sequence& seq, uint32_t parent, std::span<const int32_t> rest) {
  if (rest.size() < 2) return 0;
  const size_t limit = std::min(block_size_, rest.size() - 1);
  const uint32_t parent_generation = parent == kNoParent ? 0 : generation_[parent];
  uint32_t source = kNoParent;
  size_t best = 0;
  for (auto [it, end] = children_.equal_range(child_key(parent, parent_generation)); it != end; ++it) {
    const Published& p = published_[it->second];
    if (!p.valid || p.parent != parent || p.parent_generation != parent_generation) continue;
    size_t m = 0;
    while (m < limit && p.tokens[m] == rest[m]) ++m;
    if (m > best) {
      best = m;
      source = it->second;
    }
  }
  if (best == 0) return 0;
  // the source must survive taking a block: hold it while one is taken
  if (refs_[source]++ == 0) {
    lru_.erase(lru_pos_[source]);
    lru_pos_[source] = lru_.end();
  }
  const bool room = !free_.empty() || !lru_.empty();
  if (room) {
    const uint32_t b = take_block();
    for (size_t layer = 0; layer < n_layers_; ++layer) {
      const size_t to = ((layer * n_blocks_ + b) * block_size_) * row_bytes_;
      const size_t from = ((layer * n_blocks_ + source) * block_size_) * row_bytes_;
      std::copy_n(k_.data() + from, best * row_bytes_, k_.data() + to);
      std::copy_n(v_.data() + from, best * row_bytes_, v_.data() + to);
    }
    seq.blocks.push_back(b);
  }
  if (--refs_[source] == 0) lru_pos_[source] = lru_.insert(lru_.end(), source);
  return room ? best : 0;
}

void KvCache::publish_prefix(const Sequence& seq, std::span<const int32_t> tokens) {
  const size_t full = std::min(tokens.size(), seq.length) / block_size_;
  uint32_t parent = kNoParent;
  for (size_t i = 0; i < full; parent = seq.blocks[i], ++i) {
    const uint32_t b = seq.blocks[i];
    if (published_[b].valid) continue;
    const std::span<const int32_t> block_tokens = tokens.subspan(i * block_size_, block_size_);
    // Another sequence published the same prefix first: this copy stays private, and so do the
    // blocks after it (their parent is not published).
    if (find_published(parent, block_tokens)) return;
    published_[b] = {true, parent, parent == kNoParent ? 0 : generation_[parent],
                     std::vector<int32_t>(block_tokens.begin(), block_tokens.end())};
    index_.emplace(key(parent, block_tokens), b);
    children_.emplace(child_key(parent, published_[b].parent_generation), b);
  }
}

uint8_t* KvCache::row(std::vector<uint8_t>& store, const Sequence& seq, size_t layer, size_t pos) {
  const size_t block = seq.blocks[pos / block_size_];
  const size_t slot = pos % block_size_;
  return store.data() + ((layer * n_blocks_ + block) * block_size_ + slot) * row_bytes_;
}

}  // namespace autoglm::engine
