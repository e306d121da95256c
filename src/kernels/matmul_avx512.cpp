// AVX-512 (F + BW) dot products: the AVX2 scheme with 16-float registers and a batch tile of 4
// (16 accumulators of the 32 registers). 4-bit formats dequantize through a 16-entry table held in
// one register: table[i] = scale * i - min, looked up with vpermps by the nibble (vpermps reads only
// the low 4 bits of each index, so no masking is needed).
#include "blocks.h"

#if defined(__x86_64__) || defined(__i386__)
// GCC 12's avx512fintrin.h self-initializes its "undefined" registers, which -O3 reports as
// uninitialized use once inlined (GCC PR 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define AUTOGLM_AVX512 __attribute__((target("avx512f,avx512bw,avx2,fma,f16c")))

namespace autoglm::kernels {
namespace {

constexpr size_t kTile = 4;  // vectors per pass over a row

// Decode streams the weights from memory: request the lines kPrefetchBytes ahead of those in use
// so loads overlap the arithmetic. The hardware prefetcher alone runs too little ahead: with it a
// 1 GiB Q8_0 matvec ran at 9 GiB/s, with 4 KiB of software prefetch at 19 (2-16 KiB measured).
constexpr size_t kPrefetchBytes = 4096;
AUTOGLM_AVX512 inline void prefetch_ahead(const void* p, size_t bytes) {
  const char* ahead = static_cast<const char*>(p) + kPrefetchBytes;
  for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
}

template <size_t NB>
struct Acc {
  __m512 v[NB][4];
};

template <size_t NB>
AUTOGLM_AVX512 inline void zero(Acc<NB>& a) {
#pragma GCC unroll 16
  for (size_t b = 0; b < NB; ++b)
#pragma GCC unroll 4
    for (size_t k = 0; k < 4; ++k) a.v[b][k] = _mm512_setzero_ps();
}

// a[b][first + k] += w[k] * x_b[k * step ..) for k < N.
template <size_t NB, size_t N>
AUTOGLM_AVX512 inline void fma_n(const __m512 (&w)[N], const float* x, size_t x_stride, size_t step, Acc<NB>& a,
                                 size_t first = 0) {
#pragma GCC unroll 16
  for (size_t b = 0; b < NB; ++b)
#pragma GCC unroll 4
    for (size_t k = 0; k < N; ++k)
      a.v[b][first + k] = _mm512_fmadd_ps(w[k], _mm512_loadu_ps(x + b * x_stride + k * step), a.v[b][first + k]);
}

template <size_t NB>
AUTOGLM_AVX512 inline void finish(const Acc<NB>& a, float* out) {
#pragma GCC unroll 16
  for (size_t b = 0; b < NB; ++b)
    out[b] = _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(a.v[b][0], a.v[b][1]), _mm512_add_ps(a.v[b][2], a.v[b][3])));
}

AUTOGLM_AVX512 inline float half(uint16_t h) { return _cvtsh_ss(h); }

// 16 bytes at p, widened to 16 int32 lanes.
AUTOGLM_AVX512 inline __m512i widen_u8(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
AUTOGLM_AVX512 inline __m512 widen_i8_float(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// table[i] = scale * i + bias for i < 16 (one rounding, as fma(q, scale, bias) would give).
AUTOGLM_AVX512 inline __m512 nibble_table(float scale, float bias) {
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return _mm512_fmadd_ps(iota, _mm512_set1_ps(scale), _mm512_set1_ps(bias));
}

// ---- Q8_0: two blocks (64 elements) per step so each vector keeps four accumulators busy ----
AUTOGLM_AVX512 inline void q8_0_weights(const BlockQ8_0& blk, __m512& w0, __m512& w1) {
  const __m512 d = _mm512_set1_ps(half(blk.d));
  w0 = _mm512_mul_ps(d, widen_i8_float(blk.qs));
  w1 = _mm512_mul_ps(d, widen_i8_float(blk.qs + 16));
}

template <size_t NB>
AUTOGLM_AVX512 void dot_q8_0(const void* row, size_t cols, const float* x, size_t xs, float* out) {
  const auto* blocks = static_cast<const BlockQ8_0*>(row);
  const size_t nblocks = cols / kQK;
  Acc<NB> acc;
  zero(acc);
  size_t i = 0;
  for (; i + 2 <= nblocks; i += 2) {
    prefetch_ahead(&blocks[i], 2 * sizeof(BlockQ8_0));
    __m512 w[4];
    q8_0_weights(blocks[i], w[0], w[1]);
    q8_0_weights(blocks[i + 1], w[2], w[3]);
    fma_n(w, x + i * kQK, xs, 16, acc);
  }
  if (i < nblocks) {
    __m512 w[2];
    q8_0_weights(blocks[i], w[0], w[1]);
    fma_n(w, x + i * kQK, xs, 16, acc);
  }
  finish(acc, out);
}

// ---- Q4_0: table[i] = d * (i - 8) ----
AUTOGLM_AVX512 inline void q4_0_weights(const BlockQ4_0& blk, __m512& w0, __m512& w1) {
  const float d = half(blk.d);
  const __m512 table = nibble_table(d, -8 * d);
  const __m512i q = widen_u8(blk.qs);
  w0 = _mm512_permutexvar_ps(q, table);                         // low nibbles: elements 0-15
  w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);  // high nibbles: 16-31
}

template <size_t NB>
AUTOGLM_AVX512 void dot_q4_0(const void* row, size_t cols, const float* x, size_t xs, float* out) {
  const auto* blocks = static_cast<const BlockQ4_0*>(row);
  const size_t nblocks = cols / kQK;
  Acc<NB> acc;
  zero(acc);
  size_t i = 0;
  for (; i + 2 <= nblocks; i += 2) {
    prefetch_ahead(&blocks[i], 2 * sizeof(BlockQ4_0));
    __m512 w[4];
    q4_0_weights(blocks[i], w[0], w[1]);
    q4_0_weights(blocks[i + 1], w[2], w[3]);
    fma_n(w, x + i * kQK, xs, 16, acc);
  }
  if (i < nblocks) {
    __m512 w[2];
    q4_0_weights(blocks[i], w[0], w[1]);
    fma_n(w, x + i * kQK, xs, 16, acc);
  }
  finish(acc, out);
}

// ---- Q4_K: per 64 elements, one table per sub-block: table[i] = d * sc * i - dmin * m ----
// scale[j] = d * sc[j] and bias[j] = -(dmin * m[j]) for the 8 sub-blocks, rounded as the scalar path.
AUTOGLM_AVX512 inline void q4_k_scales(const BlockQ4K& blk, float* scale, float* bias) {
  alignas(16) uint8_t sm[16];
  q4k_unpack_scales(blk.scales, sm);
  const __m128i both = _mm_load_si128(reinterpret_cast<const __m128i*>(sm));
  const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(both));
  const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(both, both)));
  _mm256_storeu_ps(scale, _mm256_mul_ps(_mm256_set1_ps(half(blk.d)), sc));
  _mm256_storeu_ps(bias, _mm256_xor_ps(_mm256_mul_ps(_mm256_set1_ps(half(blk.dmin)), m), _mm256_set1_ps(-0.0f)));
}

template <size_t NB>
AUTOGLM_AVX512 void dot_q4_k(const void* row, size_t cols, const float* x, size_t xs, float* out) {
  const auto* blocks = static_cast<const BlockQ4K*>(row);
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  Acc<NB> acc;
  zero(acc);
  for (size_t i = 0; i < cols / kQK_K; ++i) {
    const BlockQ4K& blk = blocks[i];
    prefetch_ahead(&blk, sizeof(blk));
    float scale[8], bias[8];
    q4_k_scales(blk, scale, bias);
    for (size_t g = 0; g < 4; ++g) {
      const __m512 t_lo = _mm512_fmadd_ps(iota, _mm512_set1_ps(scale[2 * g]), _mm512_set1_ps(bias[2 * g]));
      const __m512 t_hi = _mm512_fmadd_ps(iota, _mm512_set1_ps(scale[2 * g + 1]), _mm512_set1_ps(bias[2 * g + 1]));
      const __m512i q0 = widen_u8(blk.qs + 32 * g), q1 = widen_u8(blk.qs + 32 * g + 16);
      const __m512 w[4] = {_mm512_permutexvar_ps(q0, t_lo), _mm512_permutexvar_ps(q1, t_lo),
                           _mm512_permutexvar_ps(_mm512_srli_epi32(q0, 4), t_hi),
                           _mm512_permutexvar_ps(_mm512_srli_epi32(q1, 4), t_hi)};
      fma_n(w, x + i * kQK_K + 64 * g, xs, 16, acc);
    }
  }
  finish(acc, out);
}

// Bits 2k and 2k + 1 of each lane (a qh byte) moved to bits 4 and 5: the high part of value k.
template <int K>
AUTOGLM_AVX512 inline __m512i q6_high(__m512i qh) {
  return _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, 2 * K), _mm512_set1_epi32(3)), 4);
}

// ---- Q6_K: one register per sub-block of 16: w = fma(q, d * sc, -32 * d * sc) ----
template <size_t NB>
AUTOGLM_AVX512 void dot_q6_k(const void* row, size_t cols, const float* x, size_t xs, float* out) {
  const auto* blocks = static_cast<const BlockQ6K*>(row);
  const __m512i low4 = _mm512_set1_epi32(0xF);
  Acc<NB> acc;
  zero(acc);
  for (size_t i = 0; i < cols / kQK_K; ++i) {
    const BlockQ6K& blk = blocks[i];
    prefetch_ahead(&blk, sizeof(blk));
    float scale[16], bias[16];
    const __m512 s16 = _mm512_mul_ps(_mm512_set1_ps(half(blk.d)),
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales)))));
    _mm512_storeu_ps(scale, s16);
    _mm512_storeu_ps(bias, _mm512_mul_ps(s16, _mm512_set1_ps(-32.0f)));
    for (size_t h = 0; h < 2; ++h) {
      const uint8_t* ql = blk.ql + 64 * h;
      const uint8_t* qh = blk.qh + 32 * h;
      for (size_t l = 0; l < 32; l += 16) {
        const __m512i a = widen_u8(ql + l), c = widen_u8(ql + 32 + l), hb = widen_u8(qh + l);
        const __m512i q[4] = {_mm512_or_si512(_mm512_and_si512(a, low4), q6_high<0>(hb)),
                              _mm512_or_si512(_mm512_and_si512(c, low4), q6_high<1>(hb)),
                              _mm512_or_si512(_mm512_srli_epi32(a, 4), q6_high<2>(hb)),
                              _mm512_or_si512(_mm512_srli_epi32(c, 4), q6_high<3>(hb))};
        const size_t s = 8 * h + l / 16;
        __m512 w[4];
#pragma GCC unroll 4
        for (size_t k = 0; k < 4; ++k)
          w[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q[k]), _mm512_set1_ps(scale[s + 2 * k]),
                                 _mm512_set1_ps(bias[s + 2 * k]));
        fma_n(w, x + i * kQK_K + 128 * h + l, xs, 32, acc);
      }
    }
  }
  finish(acc, out);
}

// ---- F32 / F16 / BF16: 64 elements per step, then 16, then a masked tail ----
// Full steps use plain loads: masked 16-bit loads are markedly slower here (F16 streamed at 15 GiB/s
// with them, 24-29 without), so masks are kept for the tail.
struct LoadF32 {
  static constexpr size_t kBytes = 4;
  AUTOGLM_AVX512 static __m512 load16(const void* row, size_t j) {
    return _mm512_loadu_ps(static_cast<const float*>(row) + j);
  }
  AUTOGLM_AVX512 static __m512 load_tail(const void* row, size_t j, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(row) + j);
  }
};
struct LoadF16 {
  static constexpr size_t kBytes = 2;
  AUTOGLM_AVX512 static __m512 load16(const void* row, size_t j) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + j)));
  }
  AUTOGLM_AVX512 static __m512 load_tail(const void* row, size_t j, __mmask16 m) {
    const __m512i h = _mm512_maskz_loadu_epi16(m, static_cast<const uint16_t*>(row) + j);  // masked lanes don't fault
    return _mm512_cvtph_ps(_mm512_castsi512_si256(h));
  }
};
struct LoadBF16 {  // bf16 is the top half of an f32
  static constexpr size_t kBytes = 2;
  AUTOGLM_AVX512 static __m512 widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  AUTOGLM_AVX512 static __m512 load16(const void* row, size_t j) {
    return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + j)));
  }
  AUTOGLM_AVX512 static __m512 load_tail(const void* row, size_t j, __mmask16 m) {
    return widen(_mm512_castsi512_si256(_mm512_maskz_loadu_epi16(m, static_cast<const uint16_t*>(row) + j)));
  }
};

template <class Load, size_t NB>
AUTOGLM_AVX512 void dot_floats(const void* row, size_t cols, const float* x, size_t xs, float* out) {
  Acc<NB> acc;
  zero(acc);
  size_t j = 0;
  for (; j + 64 <= cols; j += 64) {
    prefetch_ahead(static_cast<const char*>(row) + j * Load::kBytes, 64 * Load::kBytes);
    const __m512 w[4] = {Load::load16(row, j), Load::load16(row, j + 16), Load::load16(row, j + 32),
                         Load::load16(row, j + 48)};
    fma_n(w, x + j, xs, 16, acc);
  }
  for (; j + 16 <= cols; j += 16) {
    const __m512 w[1] = {Load::load16(row, j)};
    fma_n(w, x + j, xs, 16, acc);
  }
  if (j < cols) {
    const auto m = static_cast<__mmask16>((1u << (cols - j)) - 1);
    const __m512 w = Load::load_tail(row, j, m);
#pragma GCC unroll 16
    for (size_t b = 0; b < NB; ++b)
      acc.v[b][1] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, x + b * xs + j), acc.v[b][1]);
  }
  finish(acc, out);
}

using TileDot = void (*)(const void* row, size_t cols, const float* x, size_t xs, float* out);

// Batch tile of up to 4: one pass with the kernel for exactly that many vectors.
template <TileDot One, TileDot Two, TileDot Three, TileDot Four>
void row_dot_tiled(const void* row, size_t cols, const float* x, size_t x_stride, size_t nb, float* out) {
  size_t b = 0;
  for (; b + kTile <= nb; b += kTile) Four(row, cols, x + b * x_stride, x_stride, out + b);
  switch (nb - b) {
    case 3: return Three(row, cols, x + b * x_stride, x_stride, out + b);
    case 2: return Two(row, cols, x + b * x_stride, x_stride, out + b);
    case 1: return One(row, cols, x + b * x_stride, x_stride, out + b);
    default: return;
  }
}

template <template <size_t> class K>
constexpr RowDot tiled() {
  return row_dot_tiled<K<1>::run, K<2>::run, K<3>::run, K<4>::run>;
}

template <size_t NB> struct Q8_0 { static constexpr TileDot run = dot_q8_0<NB>; };
template <size_t NB> struct Q4_0 { static constexpr TileDot run = dot_q4_0<NB>; };
template <size_t NB> struct Q4K { static constexpr TileDot run = dot_q4_k<NB>; };
template <size_t NB> struct Q6K { static constexpr TileDot run = dot_q6_k<NB>; };
template <size_t NB> struct F32 { static constexpr TileDot run = dot_floats<LoadF32, NB>; };
template <size_t NB> struct F16 { static constexpr TileDot run = dot_floats<LoadF16, NB>; };
template <size_t NB> struct BF16 { static constexpr TileDot run = dot_floats<LoadBF16, NB>; };

}  // namespace

RowDot row_dot_avx512(DType type) {
  switch (type) {
    case DType::f32: return tiled<F32>();
    case DType::f16: return tiled<F16>();
    case DType::bf16: return tiled<BF16>();
    case DType::q8_0: return tiled<Q8_0>();
    case DType::q4_0: return tiled<Q4_0>();
    case DType::q4_k: return tiled<Q4K>();
    case DType::q6_k: return tiled<Q6K>();
  }
  return nullptr;
}

}  // namespace autoglm::kernels

#else  // no x86 SIMD in this build

namespace autoglm::kernels {
RowDot row_dot_avx512(DType) { return nullptr; }
}  // namespace autoglm::kernels

#endif
