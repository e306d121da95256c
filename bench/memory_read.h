#pragma once
// The memory read ceiling both benchmarks compare against: one streaming sum, shared so that
// bench_kernels and bench_engine measure the same thing.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace autoglm::bench {

// With the same 4 KiB software prefetch as the kernels: without it a plain sum reads slower than a
// prefetching matvec does, and would understate the ceiling.
inline uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four chains: the loop vectorizes and never waits on an add
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_prefetch(reinterpret_cast<const char*>(p + i) + 4096, _MM_HINT_T0);
    s0 += p[i] + p[i + 4];
    s1 += p[i + 1] + p[i + 5];
    s2 += p[i + 2] + p[i + 6];
    s3 += p[i + 3] + p[i + 7];
  }
  for (; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}

}  // namespace autoglm::bench
