#pragma once
// Internal to the kernels module: byte unpacking shared by the AVX2 and AVX-512 product paths
// (qmatmul_avx2.cpp, qmatmul_avx512.cpp). Compiled for AVX2 alone, a subset of both files' targets,
// so their kernels inline these.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#define AUTOGLM_UNPACK_AVX2 __attribute__((target("avx2")))

namespace autoglm::kernels {

// 16 packed nibble bytes -> the 16 low nibbles then the 16 high nibbles.
AUTOGLM_UNPACK_AVX2 inline __m256i nibbles16(const uint8_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

// 0x10 in byte j where bit j of the 32-bit little-endian word at p is set (Q5_0's 5th bits): byte
// j takes byte j / 8 of the word, then bit j % 8 of it is tested.
AUTOGLM_UNPACK_AVX2 inline __m256i fifth_bits(const uint8_t* p) {
  uint32_t bits = 0;
  std::memcpy(&bits, p, sizeof(bits));
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                             _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2,
                                                              2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));  // byte k: 1 << k
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

}  // namespace autoglm::kernels
