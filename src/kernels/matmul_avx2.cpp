// AVX2 + FMA + F16C dot products of float weights (F32, F16, BF16; quantized weights go through
// qmatmul_avx2.cpp). Each 32-element chunk of a weight row is loaded into four ymm registers and multiply-accumulated into four accumulators per activation vector; the same
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
  AUTOGLM_AVX2 static float load1(const void* row, size_t j) { return _cvtsh_ss(static_cast<const uint16_t*>(row)[j]); }
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
    default: return nullptr;  // quantized types: qmatmul_avx2.cpp
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
