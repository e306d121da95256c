// AVX2 path of the int8-activation product (the definition is in qmatmul.h): the scheme of
// qmatmul_avx512.cpp with 32-element chunks, 8-row tiles and vpmaddubsw + vpmaddwd for the integer
// dot product. vpmaddubsw saturates pairs above 32767, which 4- and 6-bit weights cannot reach;
// Q8_0 multiplies |w| by x with the sign of w moved onto x (vpsignb) instead of offsetting w.
#include "qmatmul.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "unpack_avx2.h"

#include <algorithm>

#define AUTOGLM_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace autoglm::kernels {
namespace {

constexpr size_t kChunk = 32;  // weight elements unpacked at a time
constexpr size_t kRows = 8;    // rows per tile (one per lane)

AUTOGLM_AVX2 inline float half(uint16_t h) { return _cvtsh_ss(h); }
AUTOGLM_AVX2 inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }



// ---- per-type unpacking of chunk c of a row: 32 bytes, and s[g] / m[g] of the chunk's groups ----
// kSigned: the bytes are signed weights (multiplied as |w| times x with w's sign); otherwise they
// are u = wq + zero and the sums are corrected with QActs::corr.

struct Q8_0 {
  static constexpr size_t kGroups = 1;
  static constexpr bool kMin = false, kSigned = true;
  AUTOGLM_AVX2 static __m256i unpack(const uint8_t* row, size_t c, float* s, float*) {
    const auto& b = reinterpret_cast<const BlockQ8_0*>(row)[c];
    s[0] = half(b.d);
    return load32(b.qs);
  }
};

struct Q4_0 {
  static constexpr size_t kGroups = 1;
  static constexpr bool kMin = false, kSigned = false;
  AUTOGLM_AVX2 static __m256i unpack(const uint8_t* row, size_t c, float* s, float*) {
    const auto& b = reinterpret_cast<const BlockQ4_0*>(row)[c];
    s[0] = half(b.d);
    return nibbles16(b.qs);
  }
};

struct Q5_0 {
  static constexpr size_t kGroups = 1;
  static constexpr bool kMin = false, kSigned = false;
  AUTOGLM_AVX2 static __m256i unpack(const uint8_t* row, size_t c, float* s, float*) {
    const auto& b = reinterpret_cast<const BlockQ5_0*>(row)[c];
    s[0] = half(b.d);
    return _mm256_or_si256(nibbles16(b.qs), fifth_bits(b.qh));
  }
};

// Sub-block j of a Q4_K / Q5_K block: its scale and offset, and its 32 low nibbles.
template <class Block>
AUTOGLM_AVX2 inline __m256i k_sub_block(const Block& b, size_t j, float* s, float* m) {
  uint8_t sm[16];
  q4k_unpack_scales(b.scales, sm);
  s[0] = half(b.d) * static_cast<float>(sm[j]);
  m[0] = -(half(b.dmin) * static_cast<float>(sm[8 + j]));
  const __m256i q = load32(b.qs + 32 * (j / 2));
  return _mm256_and_si256((j % 2 == 0) ? q : _mm256_srli_epi16(q, 4), _mm256_set1_epi8(0x0F));
}

struct Q4K {
  static constexpr size_t kGroups = 1;
  static constexpr bool kMin = true, kSigned = false;
  AUTOGLM_AVX2 static __m256i unpack(const uint8_t* row, size_t c, float* s, float* m) {
    return k_sub_block(reinterpret_cast<const BlockQ4K*>(row)[c / 8], c % 8, s, m);
  }
};

struct Q6K {
  static constexpr size_t kGroups = 2;
  static constexpr bool kMin = false, kSigned = false;
  // Chunk c is value k = c % 4 of half h = (c % 8) / 4 of super-block c / 8: nibble k / 2 of
  // ql[32 * (k % 2) + l] and bits 2k, 2k + 1 of qh[l] (see q6k_value).
  AUTOGLM_AVX2 static __m256i unpack(const uint8_t* row, size_t c, float* s, float*) {
    const auto& b = reinterpret_cast<const BlockQ6K*>(row)[c / 8];
    const size_t h = (c % 8) / 4, k = c % 4;
    const __m256i ql = load32(b.ql + 64 * h + 32 * (k % 2));
    const __m256i qh = load32(b.qh + 32 * h);
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(ql, static_cast<int>(4 * (k / 2))), _mm256_set1_epi8(0x0F));
    const __m256i high = _mm256_slli_epi16(
        _mm256_and_si256(_mm256_srli_epi16(qh, static_cast<int>(2 * k)), _mm256_set1_epi8(0x03)), 4);
    const float d = half(b.d);
    for (size_t g = 0; g < 2; ++g) s[g] = d * static_cast<float>(b.scales[8 * h + 2 * k + g]);
    return _mm256_or_si256(low, high);
  }
};

struct Q4_1 {
  static constexpr size_t kGroups = 1;
  static constexpr bool kMin = true, kSigned = false;
  AUTOGLM_AVX2 static __m256i unpack(const uint8_t* row, size_t c, float* s, float* m) {
    const auto& b = reinterpret_cast<const BlockQ4_1*>(row)[c];
    s[0] = half(b.d);
    m[0] = half(b.m);
    return nibbles16(b.qs);
  }
};

struct Q5_1 {
  static constexpr size_t kGroups = 1;
  static constexpr bool kMin = true, kSigned = false;
  AUTOGLM_AVX2 static __m256i unpack(const uint8_t* row, size_t c, float* s, float* m) {
    const auto& b = reinterpret_cast<const BlockQ5_1*>(row)[c];
    s[0] = half(b.d);
    m[0] = half(b.m);
    return _mm256_or_si256(nibbles16(b.qs), fifth_bits(b.qh));
  }
};

// Bits `shift`, shift + 1 of each of 32 bytes (Q2_K / Q3_K's 2-bit quants), as 0..3.
AUTOGLM_AVX2 inline __m256i two_bits(const uint8_t* p, int shift) {
  return _mm256_and_si256(_mm256_srl_epi16(load32(p), _mm_cvtsi32_si128(shift)), _mm256_set1_epi8(0x03));
}

// Chunk k of a Q2_K / Q3_K super-block (groups 2k, 2k + 1 of blocks.h's group_of) is bits 2 (k % 4)
// of the 32 bytes at qs + 32 (k / 4).
struct Q2K {
  static constexpr size_t kGroups = 2;
  static constexpr bool kMin = true, kSigned = false;
  AUTOGLM_AVX2 static __m256i unpack(const uint8_t* row, size_t c, float* s, float* m) {
    const auto& b = reinterpret_cast<const BlockQ2K*>(row)[c / 8];
    const size_t k = c % 8;
    const float d = half(b.d), dmin = half(b.dmin);
    for (size_t g = 0; g < 2; ++g) {
      const uint8_t sc = b.scales[2 * k + g];
      s[g] = d * static_cast<float>(sc & 0xF);
      m[g] = -(dmin * static_cast<float>(sc >> 4));
    }
    return two_bits(b.qs + 32 * (k / 4), static_cast<int>(2 * (k % 4)));
  }
};

// u = the 2 bits | hmask's bit k << 2 (0..7), wq = u - 4: QFormat's zero 4.
struct Q3K {
  static constexpr size_t kGroups = 2;
  static constexpr bool kMin = false, kSigned = false;
  AUTOGLM_AVX2 static __m256i unpack(const uint8_t* row, size_t c, float* s, float*) {
    const auto& b = reinterpret_cast<const BlockQ3K*>(row)[c / 8];
    const size_t k = c % 8;
    const float d = half(b.d);
    for (size_t g = 0; g < 2; ++g) s[g] = d * static_cast<float>(q3k_scale(b.scales, 2 * k + g) - 32);
    // bits k and k + 1 of hmask moved to bits 2 and 3; the mask keeps bit k
    const __m256i high = _mm256_slli_epi16(two_bits(b.hmask, static_cast<int>(k)), 2);
    return _mm256_or_si256(two_bits(b.qs + 32 * (k / 4), static_cast<int>(2 * (k % 4))),
                           _mm256_and_si256(high, _mm256_set1_epi8(0x04)));
  }
};

struct Q5K {
  static constexpr size_t kGroups = 1;
  static constexpr bool kMin = true, kSigned = false;
  AUTOGLM_AVX2 static __m256i unpack(const uint8_t* row, size_t c, float* s, float* m) {
    const auto& b = reinterpret_cast<const BlockQ5K*>(row)[c / 8];
    const size_t j = c % 8;
    const __m256i nib = k_sub_block(b, j, s, m);
    const __m256i fifth = _mm256_and_si256(_mm256_srl_epi16(load32(b.qh), _mm_cvtsi32_si128(static_cast<int>(j))),
                                           _mm256_set1_epi8(0x01));
    return _mm256_or_si256(nib, _mm256_slli_epi16(fifth, 4));
  }
};

// The signed levels of kIq4nl, looked up per nibble.
AUTOGLM_AVX2 inline __m256i iq4_levels(const uint8_t* qs) {
  const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nl));
  return _mm256_shuffle_epi8(_mm256_set_m128i(levels, levels), nibbles16(qs));
}

struct IQ4NL {
  static constexpr size_t kGroups = 1;
  static constexpr bool kMin = false, kSigned = true;
  AUTOGLM_AVX2 static __m256i unpack(const uint8_t* row, size_t c, float* s, float*) {
    const auto& b = reinterpret_cast<const BlockIQ4NL*>(row)[c];
    s[0] = half(b.d);
    return iq4_levels(b.qs);
  }
};

struct IQ4XS {
  static constexpr size_t kGroups = 1;
  static constexpr bool kMin = false, kSigned = true;
  AUTOGLM_AVX2 static __m256i unpack(const uint8_t* row, size_t c, float* s, float*) {
    const auto& b = reinterpret_cast<const BlockIQ4XS*>(row)[c / 8];
    const size_t j = c % 8;
    const int ls = ((b.scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((b.scales_h >> (2 * j)) & 3) << 4);
    s[0] = half(b.d) * static_cast<float>(ls - 32);
    return iq4_levels(b.qs + 16 * j);
  }
};

// 8 int32 lanes per element quad: sum(u * x) over the chunk, 4 elements per lane.
template <bool kSigned>
AUTOGLM_AVX2 inline __m256i dot_chunk(__m256i u, __m256i x) {
  const __m256i pairs = kSigned ? _mm256_maddubs_epi16(_mm256_sign_epi8(u, u), _mm256_sign_epi8(x, u))
                                : _mm256_maddubs_epi16(u, x);
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

// a..d: 8 int32 lanes each, one row each. Returns, in each 128-bit lane L, the four rows' sums of
// their lanes 4L..4L+3 (row a first).
AUTOGLM_AVX2 inline __m256i sum4(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
  const __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
  return _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
}

// Rows r0..r0+7, vectors b0..b0+NB-1.
template <class U, size_t NB>
AUTOGLM_AVX2 void tile_rows(const QJob& job, size_t r0, size_t b0) {
  const QActs& a = *job.acts;
  const size_t chunks = job.cols / kChunk, group = kChunk / U::kGroups, chunk_bytes = job.stride / chunks;
  const uint8_t* rows = job.w + r0 * job.stride;
  alignas(32) uint8_t u[kRows][kChunk];
  alignas(32) float s[U::kGroups][kRows], m[U::kGroups][kRows];
  __m256 acc[NB];
  for (size_t b = 0; b < NB; ++b) acc[b] = _mm256_setzero_ps();
  for (size_t c = 0; c < chunks; ++c) {
    for (size_t r = 0; r < kRows; ++r) {
      const uint8_t* row = rows + r * job.stride;
      _mm_prefetch(reinterpret_cast<const char*>(row + kRows * job.stride + c * chunk_bytes), _MM_HINT_T1);
      float sr[U::kGroups], mr[U::kGroups] = {};
      _mm256_store_si256(reinterpret_cast<__m256i*>(u[r]), U::unpack(row, c, sr, mr));
      for (size_t g = 0; g < U::kGroups; ++g) {
        s[g][r] = sr[g];
        m[g][r] = mr[g];
      }
    }
    for (size_t b = 0; b < NB; ++b) {
      const size_t v = b0 + b;
      const __m256i x = load32(a.q_row(v) + c * kChunk);
      __m256i dot[kRows];
      for (size_t r = 0; r < kRows; ++r)
        dot[r] = dot_chunk<U::kSigned>(_mm256_load_si256(reinterpret_cast<const __m256i*>(u[r])), x);
      const __m256i lo = sum4(dot[0], dot[1], dot[2], dot[3]), hi = sum4(dot[4], dot[5], dot[6], dot[7]);
      // rows 0..7 over elements 0..15 and 16..31 of the chunk
      const __m256i first = _mm256_permute2x128_si256(lo, hi, 0x20);
      const __m256i second = _mm256_permute2x128_si256(lo, hi, 0x31);
      __m256i isum[U::kGroups];
      if constexpr (U::kGroups == 2) {
        isum[0] = first;
        isum[1] = second;
      } else {
        isum[0] = _mm256_add_epi32(first, second);
      }
      for (size_t g = 0; g < U::kGroups; ++g) {
        const size_t gi = c * U::kGroups + g, blk = gi * group / kActBlock;
        __m256i corrected = isum[g];
        if constexpr (!U::kSigned) corrected = _mm256_sub_epi32(corrected, _mm256_set1_epi32(a.corr_row(v)[gi]));
        const __m256 sdx = _mm256_mul_ps(_mm256_load_ps(s[g]), _mm256_set1_ps(a.dx_row(v)[blk]));
        acc[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(corrected), sdx, acc[b]);
        if constexpr (U::kMin) {
          const float t = group == kActBlock ? a.t_row(v)[blk] : a.t16_row(v)[gi];  // a half block's for Q2_K
          acc[b] = _mm256_fmadd_ps(_mm256_load_ps(m[g]), _mm256_set1_ps(t), acc[b]);
        }
      }
    }
  }
  for (size_t b = 0; b < NB; ++b) _mm256_storeu_ps(job.y + (b0 + b) * job.rows + r0, acc[b]);
}

template <class U>
AUTOGLM_AVX2 void rows(const QJob& job, size_t r0, size_t r1) {
  const size_t batch = job.acts->batch;
  const size_t full = r0 + (r1 - r0) / kRows * kRows;
  for (size_t r = r0; r < full; r += kRows) {
    size_t b = 0;
    for (; b + 4 <= batch; b += 4) tile_rows<U, 4>(job, r, b);
    switch (batch - b) {
      case 3: tile_rows<U, 3>(job, r, b); break;
      case 2: tile_rows<U, 2>(job, r, b); break;
      case 1: tile_rows<U, 1>(job, r, b); break;
      default: break;
    }
  }
  if (full < r1) qrows_scalar(job, full, r1);
}

AUTOGLM_AVX2 int32_t sum_lanes(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// quantize_block_scalar with 8 lanes, NaNs handled as in qmatmul_avx512.cpp's (max_ps returns its
// second operand when either is NaN; cvtps rounds to nearest even).
AUTOGLM_AVX2 void quantize_block_lanes(const float* x, int8_t* q, float& dx, float& t, int32_t* sum16) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4], amax = _mm256_setzero_ps();
  for (size_t i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    amax = _mm256_max_ps(_mm256_andnot_ps(sign, v[i]), amax);
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  dx = _mm_cvtss_f32(m) / 127.0f;
  const __m256 id = _mm256_set1_ps(dx != 0 ? 1.0f / dx : 0.0f);
  __m256i qi[4];
  for (size_t i = 0; i < 4; ++i) {
    const __m256 c = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[i], id), _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    qi[i] = _mm256_cvtps_epi32(c);
  }
  // int32 -> int8 (no saturation reached: |q| <= 127), packs interleave 128-bit lanes: put them back
  const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q),
                      _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  sum16[0] = sum_lanes(_mm256_add_epi32(qi[0], qi[1]));
  sum16[1] = sum_lanes(_mm256_add_epi32(qi[2], qi[3]));
  t = dx * static_cast<float>(sum16[0] + sum16[1]);
}

}  // namespace

QuantizeBlock quantize_block_avx2() { return quantize_block_lanes; }

QRows qrows_avx2(DType type) {
  switch (type) {
    case DType::q8_0: return rows<Q8_0>;
    case DType::q4_0: return rows<Q4_0>;
    case DType::q5_0: return rows<Q5_0>;
    case DType::q4_k: return rows<Q4K>;
    case DType::q6_k: return rows<Q6K>;
    case DType::q4_1: return rows<Q4_1>;
    case DType::q5_1: return rows<Q5_1>;
    case DType::q2_k: return rows<Q2K>;
    case DType::q3_k: return rows<Q3K>;
    case DType::q5_k: return rows<Q5K>;
    case DType::iq4_xs: return rows<IQ4XS>;
    case DType::iq4_nl: return rows<IQ4NL>;
    default: return nullptr;
  }
}

}  // namespace autoglm::kernels

#else

namespace autoglm::kernels {
QRows qrows_avx2(DType) { return nullptr; }
QuantizeBlock quantize_block_avx2() { return nullptr; }
}  // namespace autoglm::kernels

#endif
