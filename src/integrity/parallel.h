#pragma once
// A tiny work-stealing loop: `threads` workers take the next index from a shared counter.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace autoglm::integrity::detail {

// 0 means one worker per core; never more workers than items.
inline unsigned worker_count(unsigned requested, size_t items) {
  unsigned n = requested ? requested : std::max(1u, std::thread::hardware_concurrency());
  return static_cast<unsigned>(std::min<size_t>(n, std::max<size_t>(items, 1)));
}

// Calls fn(order[k]) for every k, spread over `threads` workers. `fn` must not throw.
template <class Fn>
void parallel_for_each(const std::vector<size_t>& order, unsigned threads, Fn fn) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t k = next.fetch_add(1); k < order.size(); k = next.fetch_add(1)) fn(order[k]);
  };
  std::vector<std::jthread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();  // the calling thread works too
}

}  // namespace autoglm::integrity::detail
