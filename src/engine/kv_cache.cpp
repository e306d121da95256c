#include <fmt/format.h>

#include "autoglm/engine.h"

namespace autoglm::engine {

KvCache::KvCache(const model::ArchConfig& config, size_t n_blocks, size_t block_size, kernels::DType type)
    : type_(type), n_blocks_(n_blocks), block_size_(block_size), row_elems_(size_t{config.n_kv_heads} * config.head_dim) {
  if (n_blocks == 0 || block_size == 0) throw Error(kExitUsage, "KV cache: need at least one block of one slot");
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
}

bool KvCache::reserve(Sequence& seq, size_t length) {
  const size_t needed = (length + block_size_ - 1) / block_size_;
  if (needed <= seq.blocks.size()) return true;
  if (needed - seq.blocks.size() > free_.size()) return false;
  while (seq.blocks.size() < needed) {
    seq.blocks.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void KvCache::release(Sequence& seq) {
  for (uint32_t b : seq.blocks) free_.push_back(b);
  seq.blocks.clear();
  seq.length = 0;
}

uint8_t* KvCache::row(std::vector<uint8_t>& store, const Sequence& seq, size_t layer, size_t pos) {
  const size_t block = seq.blocks[pos / block_size_];
  const size_t slot = pos % block_size_;
  return store.data() + ((layer * n_blocks_ + block) * block_size_ + slot) * row_bytes_;
}

}  // namespace autoglm::engine
