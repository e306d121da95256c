// Attention on CPUs with AVX-512: attention_simd.h on 16-float vectors.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "attention.h"

#if defined(__x86_64__) || defined(__i386__)
// GCC 12's avx512fintrin.h self-initializes its "undefined" registers (GCC PR 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
#include <immintrin.h>

namespace autoglm::kernels {
namespace {

struct S {
  using V = __m512;
  static constexpr size_t kLanes = 16;
  static constexpr size_t kScoreVectors = 4;  // 2 queries x 4 accumulators + 4 keys of 32 registers
  static constexpr size_t kOutVectors = 8;    // 2 queries x 8 accumulators
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static __mmask16 first(size_t n) { return static_cast<__mmask16>((1u << n) - 1); }
  static V load_first(const float* p, size_t n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static void store(float* p, V v) { _mm512_store_ps(p, v); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store_first(float* p, size_t n, V v) { _mm512_mask_storeu_ps(p, first(n), v); }
  static V set1(float f) { return _mm512_set1_ps(f); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static void transpose(V (&r)[16]) {
    V t[16];
    for (size_t i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (size_t i = 0; i < 16; i += 4) {
      r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
      r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
      r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (size_t i = 0; i < 16; i += 8)
      for (size_t k = 0; k < 4; ++k) {
        t[i + k] = _mm512_shuffle_f32x4(r[i + k], r[i + 4 + k], 0x88);
        t[i + 4 + k] = _mm512_shuffle_f32x4(r[i + k], r[i + 4 + k], 0xDD);
      }
    for (size_t k = 0; k < 8; ++k) {
      r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
      r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xDD);
    }
  }
};

#include "attention_simd.h"

}  // namespace

void attention_avx512(const AttentionArgs& args) {
  thread_local auto block = std::make_unique<Block>();
  attend(args, *block);
}

}  // namespace autoglm::kernels
#pragma GCC pop_options
#else
namespace autoglm::kernels {
void attention_avx512(const AttentionArgs& args) { attention_generic(args); }
}  // namespace autoglm::kernels
#endif
