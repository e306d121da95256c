// Attention on CPUs with AVX2 and FMA: attention_simd.h on 8-float vectors.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "attention.h"

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

namespace autoglm::kernels {
namespace {

struct S {
  using V = __m256;
  static constexpr size_t kLanes = 8;
  static constexpr size_t kScoreVectors = 4;  // 2 queries x 4 accumulators + 4 keys of 16 registers
  static constexpr size_t kOutVectors = 4;    // 2 queries x 4 accumulators
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static __m256i first(size_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V load_first(const float* p, size_t n) { return _mm256_maskload_ps(p, first(n)); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store_first(float* p, size_t n, V v) { _mm256_maskstore_ps(p, first(n), v); }
  static V set1(float f) { return _mm256_set1_ps(f); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static void transpose(V (&r)[8]) {
    V t[8];
    for (size_t i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (size_t i = 0; i < 8; i += 4) {
      r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
      r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
      r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (size_t k = 0; k < 4; ++k) {
      t[k] = _mm256_permute2f128_ps(r[k], r[4 + k], 0x20);
      t[4 + k] = _mm256_permute2f128_ps(r[k], r[4 + k], 0x31);
    }
    for (size_t k = 0; k < 8; ++k) r[k] = t[k];
  }
};

#include "attention_simd.h"

}  // namespace

void attention_avx2(const AttentionArgs& args) {
  thread_local auto block = std::make_unique<Block>();
  attend(args, *block);
}

}  // namespace autoglm::kernels
#pragma GCC pop_options
#else
namespace autoglm::kernels {
void attention_avx2(const AttentionArgs& args) { attention_generic(args); }
}  // namespace autoglm::kernels
#endif
