// The memory read ceiling generation is compared with: a streamed sum over a buffer far larger
// than the caches, on every thread of the engine's pool, best of a few passes.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "autoglm/benchmark.h"

namespace autoglm::benchmark {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kChunkWords = size_t{1} << 17;  // 1 MiB per pool chunk: long sequential streams

#if defined(__x86_64__)
// The same sum with 512-bit loads: the baseline x86-64 build vectorizes sum_words to 128 bits only,
// which may not keep up with memory (the weight matvecs read faster than it does).
__attribute__((target("avx512f"))) uint64_t sum_words_avx512(const uint64_t* p, size_t n) {
  __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_add_epi64(s0, _mm512_loadu_si512(p + i));
    s1 = _mm512_add_epi64(s1, _mm512_loadu_si512(p + i + 8));
    s2 = _mm512_add_epi64(s2, _mm512_loadu_si512(p + i + 16));
    s3 = _mm512_add_epi64(s3, _mm512_loadu_si512(p + i + 24));
  }
  alignas(64) uint64_t lanes[8];  // not _mm512_reduce_add_epi64: GCC 12 warns inside it (-Wuninitialized)
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3)));
  uint64_t s = 0;
  for (uint64_t v : lanes) s += v;
  for (; i < n; ++i) s += p[i];
  return s;
}
#endif

using SumFn = uint64_t (*)(const uint64_t*, size_t);

// Best of `passes` reads of the whole buffer, GB/s (10^9 bytes).
double best_read_gbps(kernels::ThreadPool& pool, const std::vector<uint64_t>& buffer, SumFn sum, int passes) {
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) {
    std::atomic<uint64_t> total{0};  // an atomic result: the compiler cannot drop the loads
    const auto t0 = Clock::now();
    pool.run(buffer.size(), kChunkWords, [&](size_t begin, size_t end) {
      total.fetch_add(sum(buffer.data() + begin, end - begin), std::memory_order_relaxed);
    });
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, static_cast<double>(buffer.size() * sizeof(uint64_t)) / s / 1e9);
  }
  return best;
}

}  // namespace

uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four chains: the loop vectorizes and never waits on an add
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __builtin_prefetch(reinterpret_cast<const char*>(p + i) + 4096, 0, 3);
    s0 += p[i] + p[i + 4];
    s1 += p[i + 1] + p[i + 5];
    s2 += p[i + 2] + p[i + 6];
    s3 += p[i + 3] + p[i + 7];
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}

ReadProbe::ReadProbe(kernels::ThreadPool& pool, size_t bytes)
    : pool_(pool), buffer_(std::max<size_t>(bytes / sizeof(uint64_t), 1)) {
  for (size_t i = 0; i < buffer_.size(); ++i) buffer_[i] = i;  // every page touched before timing
}

MemoryBandwidth ReadProbe::measure(int passes) {
  MemoryBandwidth m;
  m.bytes = buffer_.size() * sizeof(uint64_t);
  m.threads = pool_.size();
  m.plain_gbps = best_read_gbps(pool_, buffer_, sum_words, std::max(passes, 1));
#if defined(__x86_64__)
  if (kernels::detected_isa() == kernels::Isa::avx512)
    m.wide_gbps = best_read_gbps(pool_, buffer_, sum_words_avx512, std::max(passes, 1));
#endif
  m.gbps = std::max(m.plain_gbps, m.wide_gbps);
  return m;
}

MemoryBandwidth measure_memory_read(kernels::ThreadPool& pool, size_t bytes, int passes) {
  return ReadProbe(pool, bytes).measure(passes);
}

}  // namespace autoglm::benchmark
