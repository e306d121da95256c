// AVX2 + FMA + F16C dot products. Each 32-element chunk of a weight row is dequantized into four
// ymm registers and multiply-accumulated into four accumulators per activation vector; the same
// registers serve every vector of the batch tile (2 vectors: 8 accumulators of the 16 registers).
//
// Functions carry target attributes instead of the file being built with -mavx2, so nothing here
// (inline functions from headers included) can leak AVX2 code into paths a plain x86-64 CPU runs.
#include "blocks.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define AUTOGLM_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace autoglm::kernels {
namespace {

constexpr size_t kTile = 2;  // vectors per pass over a row

// Decode streams the weights from memory: request the lines kPrefetchBytes ahead of those in use
// so loads overlap the arithmetic. The hardware prefetcher alone runs too little ahead: with it a
// 1 GiB Q8_0 matvec ran at 9 GiB/s, with 4 KiB of software prefetch at 19 (2-16 KiB measured).
constexpr size_t kPrefetchBytes = 4096;
AUTOGLM_AVX2 inline void prefetch_ahead(const void* p, size_t bytes) {
  const char* ahead = static_cast<const char*>(p) + kPrefetchBytes;
  for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
}

AUTOGLM_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

AUTOGLM_AVX2 inline float half(uint16_t h) { return _cvtsh_ss(h); }

// 8 bytes at p, widened to 8 int32 lanes.
AUTOGLM_AVX2 inline __m256i widen_u8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
AUTOGLM_AVX2 inline __m256i widen_i8(const int8_t* p) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
AUTOGLM_AVX2 inline __m256 to_float(__m256i v) { return _mm256_cvtepi32_ps(v); }

template <size_t NB>
struct Acc {
  __m256 v[NB][4];
};

template <size_t NB>
AUTOGLM_AVX2 inline void zero(Acc<NB>& a) {
#pragma GCC unroll 16
  for (size_t b = 0; b < NB; ++b)
#pragma GCC unroll 4
    for (size_t k = 0; k < 4; ++k) a.v[b][k] = _mm256_setzero_ps();
}

// a[b][k] += w[k] * x_b[k * step .. k * step + 8): the weights' chunk k sits at element k * step.
template <size_t NB>
AUTOGLM_AVX2 inline void fma4(const __m256 (&w)[4], const float* x, size_t x_stride, size_t step, Acc<NB>& a) {
#pragma GCC unroll 16
  for (size_t b = 0; b < NB; ++b)
#pragma GCC unroll 4
    for (size_t k = 0; k < 4; ++k)
      a.v[b][k] = _mm256_fmadd_ps(w[k], _mm256_loadu_ps(x + b * x_stride + k * step), a.v[b][k]);
}

// The fixed reduction order of a vector's four accumulators, plus its scalar tail.
template <size_t NB>
AUTOGLM_AVX2 inline void finish(const Acc<NB>& a, const float* tail, float* out) {
#pragma GCC unroll 16
  for (size_t b = 0; b < NB; ++b)
    out[b] = hsum(_mm256_add_ps(_mm256_add_ps(a.v[b][0], a.v[b][1]), _mm256_add_ps(a.v[b][2], a.v[b][3]))) +
             (tail ? tail[b] : 0.0f);
}

// ---- Q8_0: w = d * q ----
template <size_t NB>
AUTOGLM_AVX2 void dot_q8_0(const void* row, size_t cols, const float* x, size_t xs, float* out) {
  const auto* blocks = static_cast<const BlockQ8_0*>(row);
  Acc<NB> acc;
  zero(acc);
  for (size_t i = 0; i < cols / kQK; ++i) {
    prefetch_ahead(&blocks[i], sizeof(BlockQ8_0));
    const __m256 d = _mm256_set1_ps(half(blocks[i].d));
    const int8_t* q = blocks[i].qs;
    const __m256 w[4] = {_mm256_mul_ps(d, to_float(widen_i8(q))), _mm256_mul_ps(d, to_float(widen_i8(q + 8))),
                         _mm256_mul_ps(d, to_float(widen_i8(q + 16))), _mm256_mul_ps(d, to_float(widen_i8(q + 24)))};
    fma4(w, x + i * kQK, xs, 8, acc);
  }
  finish(acc, nullptr, out);
}

// ---- Q4_0: w = d * (q - 8) = fma(q, d, -8d), exact like the scalar form ----
template <size_t NB>
AUTOGLM_AVX2 void dot_q4_0(const void* row, size_t cols, const float* x, size_t xs, float* out) {
  const auto* blocks = static_cast<const BlockQ4_0*>(row);
  const __m256i low4 = _mm256_set1_epi32(0xF);
  Acc<NB> acc;
  zero(acc);
  for (size_t i = 0; i < cols / kQK; ++i) {
    prefetch_ahead(&blocks[i], sizeof(BlockQ4_0));
    const float dv = half(blocks[i].d);
    const __m256 d = _mm256_set1_ps(dv), bias = _mm256_set1_ps(-8 * dv);
    const __m256i q0 = widen_u8(blocks[i].qs), q1 = widen_u8(blocks[i].qs + 8);  // bytes 0-7, 8-15
    const __m256 w[4] = {
        _mm256_fmadd_ps(to_float(_mm256_and_si256(q0, low4)), d, bias),  // elements 0-7
        _mm256_fmadd_ps(to_float(_mm256_and_si256(q1, low4)), d, bias),  // 8-15
        _mm256_fmadd_ps(to_float(_mm256_srli_epi32(q0, 4)), d, bias),    // 16-23
        _mm256_fmadd_ps(to_float(_mm256_srli_epi32(q1, 4)), d, bias),    // 24-31
    };
    fma4(w, x + i * kQK, xs, 8, acc);
  }
  finish(acc, nullptr, out);
}

// ---- Q4_K: sub-block j: w = d * sc[j] * q - dmin * m[j] ----
// scale[j] = d * sc[j] and bias[j] = -(dmin * m[j]) for the 8 sub-blocks, rounded as the scalar path.
AUTOGLM_AVX2 inline void q4_k_scales(const BlockQ4K& blk, float* scale, float* bias) {
  alignas(16) uint8_t sm[16];
  q4k_unpack_scales(blk.scales, sm);
  const __m128i both = _mm_load_si128(reinterpret_cast<const __m128i*>(sm));
  const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(both));
  const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(both, both)));
  _mm256_storeu_ps(scale, _mm256_mul_ps(_mm256_set1_ps(half(blk.d)), sc));
  _mm256_storeu_ps(bias, _mm256_xor_ps(_mm256_mul_ps(_mm256_set1_ps(half(blk.dmin)), m), _mm256_set1_ps(-0.0f)));
}

template <size_t NB>
AUTOGLM_AVX2 void dot_q4_k(const void* row, size_t cols, const float* x, size_t xs, float* out) {
  const auto* blocks = static_cast<const BlockQ4K*>(row);
  const __m256i low4 = _mm256_set1_epi32(0xF);
  Acc<NB> acc;
  zero(acc);
  for (size_t i = 0; i < cols / kQK_K; ++i) {
    const BlockQ4K& blk = blocks[i];
    prefetch_ahead(&blk, sizeof(blk));
    float scale[8], bias[8];
    q4_k_scales(blk, scale, bias);
    for (size_t g = 0; g < 4; ++g) {  // 64 elements: low nibbles are sub-block 2g, high 2g + 1
      const __m256 s_lo = _mm256_broadcast_ss(&scale[2 * g]), b_lo = _mm256_broadcast_ss(&bias[2 * g]);
      const __m256 s_hi = _mm256_broadcast_ss(&scale[2 * g + 1]), b_hi = _mm256_broadcast_ss(&bias[2 * g + 1]);
      const uint8_t* q = blk.qs + 32 * g;
      const __m256i v[4] = {widen_u8(q), widen_u8(q + 8), widen_u8(q + 16), widen_u8(q + 24)};
      const float* xg = x + i * kQK_K + 64 * g;
      const __m256 w_lo[4] = {_mm256_fmadd_ps(to_float(_mm256_and_si256(v[0], low4)), s_lo, b_lo),
                              _mm256_fmadd_ps(to_float(_mm256_and_si256(v[1], low4)), s_lo, b_lo),
                              _mm256_fmadd_ps(to_float(_mm256_and_si256(v[2], low4)), s_lo, b_lo),
                              _mm256_fmadd_ps(to_float(_mm256_and_si256(v[3], low4)), s_lo, b_lo)};
      fma4(w_lo, xg, xs, 8, acc);
      const __m256 w_hi[4] = {_mm256_fmadd_ps(to_float(_mm256_srli_epi32(v[0], 4)), s_hi, b_hi),
                              _mm256_fmadd_ps(to_float(_mm256_srli_epi32(v[1], 4)), s_hi, b_hi),
                              _mm256_fmadd_ps(to_float(_mm256_srli_epi32(v[2], 4)), s_hi, b_hi),
                              _mm256_fmadd_ps(to_float(_mm256_srli_epi32(v[3], 4)), s_hi, b_hi)};
      fma4(w_hi, xg + 32, xs, 8, acc);
    }
  }
  finish(acc, nullptr, out);
}

// Bits 2k and 2k + 1 of each lane (a qh byte) moved to bits 4 and 5: the high part of value k.
template <int K>
AUTOGLM_AVX2 inline __m256i q6_high(__m256i qh) {
  return _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(qh, 2 * K), _mm256_set1_epi32(3)), 4);
}

// ---- Q6_K: sub-block j of 16: w = d * scales[j] * (q - 32) = fma(q, s, -32 s) ----
template <size_t NB>
AUTOGLM_AVX2 void dot_q6_k(const void* row, size_t cols, const float* x, size_t xs, float* out) {
  const auto* blocks = static_cast<const BlockQ6K*>(row);
  const __m256i low4 = _mm256_set1_epi32(0xF);
  Acc<NB> acc;
  zero(acc);
  for (size_t i = 0; i < cols / kQK_K; ++i) {
    const BlockQ6K& blk = blocks[i];
    prefetch_ahead(&blk, sizeof(blk));
    float scale[16], bias[16];
    const __m256 d = _mm256_set1_ps(half(blk.d)), minus32 = _mm256_set1_ps(-32.0f);
    for (size_t j = 0; j < 16; j += 8) {
      const __m256 s8 = _mm256_mul_ps(d, to_float(widen_i8(blk.scales + j)));
      _mm256_storeu_ps(scale + j, s8);
      _mm256_storeu_ps(bias + j, _mm256_mul_ps(s8, minus32));
    }
    for (size_t h = 0; h < 2; ++h) {
      const uint8_t* ql = blk.ql + 64 * h;
      const uint8_t* qh = blk.qh + 32 * h;
      for (size_t l = 0; l < 32; l += 8) {  // elements l.., l+32.., l+64.., l+96.. of this half
        const __m256i a = widen_u8(ql + l), c = widen_u8(ql + 32 + l), hb = widen_u8(qh + l);
        const __m256i q[4] = {_mm256_or_si256(_mm256_and_si256(a, low4), q6_high<0>(hb)),
                              _mm256_or_si256(_mm256_and_si256(c, low4), q6_high<1>(hb)),
                              _mm256_or_si256(_mm256_srli_epi32(a, 4), q6_high<2>(hb)),
                              _mm256_or_si256(_mm256_srli_epi32(c, 4), q6_high<3>(hb))};
        const size_t s = 8 * h + l / 16;  // sub-block of element l; +2 per group of 32
        __m256 w[4];
#pragma GCC unroll 4
        for (size_t k = 0; k < 4; ++k)
          w[k] = _mm256_fmadd_ps(to_float(q[k]), _mm256_broadcast_ss(&scale[s + 2 * k]),
                                 _mm256_broadcast_ss(&bias[s + 2 * k]));
        fma4(w, x + i * kQK_K + 128 * h + l, xs, 32, acc);
      }
    }
  }
  finish(acc, nullptr, out);
}

// ---- F32 / F16 / BF16: 32 elements per step, then 8, then a scalar tail ----
struct LoadF32 {
  static constexpr size_t kBytes = 4;
  AUTOGLM_AVX2 static __m256 load8(const void* row, size_t j) {
    return _mm256_loadu_ps(static_cast<const float*>(row) + j);
  }
  AUTOGLM_AVX2 static float load1(const void* row, size_t j) { return static_cast<const float*>(row)[j]; }
};
struct LoadF16 {
  static constexpr size_t kBytes = 2;
  AUTOGLM_AVX2 static __m256 load8(const void* row, size_t j) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + j)));
  }
  AUTOGLM_AVX2 static float load1(const void* row, size_t j) { return half(static_cast<const uint16_t*>(row)[j]); }
};
struct LoadBF16 {  // bf16 is the top half of an f32
  static constexpr size_t kBytes = 2;
  AUTOGLM_AVX2 static __m256 load8(const void* row, size_t j) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + j));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  AUTOGLM_AVX2 static float load1(const void* row, size_t j) {
    return bf16_to_f32(static_cast<const uint16_t*>(row)[j]);
  }
};

template <class Load, size_t NB>
AUTOGLM_AVX2 void dot_floats(const void* row, size_t cols, const float* x, size_t xs, float* out) {
  Acc<NB> acc;
  zero(acc);
  size_t j = 0;
  for (; j + 32 <= cols; j += 32) {
    prefetch_ahead(static_cast<const char*>(row) + j * Load::kBytes, 32 * Load::kBytes);
    const __m256 w[4] = {Load::load8(row, j), Load::load8(row, j + 8), Load::load8(row, j + 16),
                         Load::load8(row, j + 24)};
    fma4(w, x + j, xs, 8, acc);
  }
  for (; j + 8 <= cols; j += 8) {
    const __m256 w = Load::load8(row, j);
#pragma GCC unroll 16
    for (size_t b = 0; b < NB; ++b) acc.v[b][0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + b * xs + j), acc.v[b][0]);
  }
  float tail[NB] = {};
  for (; j < cols; ++j) {
    const float w = Load::load1(row, j);
    for (size_t b = 0; b < NB; ++b) tail[b] += w * x[b * xs + j];
  }
  finish(acc, tail, out);
}

using TileDot = void (*)(const void* row, size_t cols, const float* x, size_t xs, float* out);

// Runs the 2-vector kernel over pairs of the batch tile and the 1-vector kernel on an odd one out.
template <TileDot One, TileDot Two>
void row_dot_tiled(const void* row, size_t cols, const float* x, size_t x_stride, size_t nb, float* out) {
  size_t b = 0;
  for (; b + kTile <= nb; b += kTile) Two(row, cols, x + b * x_stride, x_stride, out + b);
  if (b < nb) One(row, cols, x + b * x_stride, x_stride, out + b);
}

}  // namespace

RowDot row_dot_avx2(DType type) {
  switch (type) {
    case DType::f32: return row_dot_tiled<dot_floats<LoadF32, 1>, dot_floats<LoadF32, 2>>;
    case DType::f16: return row_dot_tiled<dot_floats<LoadF16, 1>, dot_floats<LoadF16, 2>>;
    case DType::bf16: return row_dot_tiled<dot_floats<LoadBF16, 1>, dot_floats<LoadBF16, 2>>;
    case DType::q8_0: return row_dot_tiled<dot_q8_0<1>, dot_q8_0<2>>;
    case DType::q4_0: return row_dot_tiled<dot_q4_0<1>, dot_q4_0<2>>;
    case DType::q4_k: return row_dot_tiled<dot_q4_k<1>, dot_q4_k<2>>;
    case DType::q6_k: return row_dot_tiled<dot_q6_k<1>, dot_q6_k<2>>;
  }
  return nullptr;
}

AUTOGLM_AVX2 void f16_to_f32_row_f16c(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}

AUTOGLM_AVX2 void f32_to_f16_row_f16c(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

}  // namespace autoglm::kernels

#else  // no x86 SIMD in this build: the scalar path only

namespace autoglm::kernels {
RowDot row_dot_avx2(DType) { return nullptr; }
void f16_to_f32_row_f16c(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}
void f32_to_f16_row_f16c(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}
}  // namespace autoglm::kernels

#endif
