// AVX-512 (F + BW) dot products of float weights (F32, F16, BF16): the AVX2 scheme with 16-float
// registers and a batch tile of 4 (16 accumulators of the 32 registers). Quantized weights go
// through qmatmul_avx512.cpp.
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

template <size_t NB> struct F32 { static constexpr TileDot run = dot_floats<LoadF32, NB>; };
template <size_t NB> struct F16 { static constexpr TileDot run = dot_floats<LoadF16, NB>; };
template <size_t NB> struct BF16 { static constexpr TileDot run = dot_floats<LoadBF16, NB>; };

}  // namespace

RowDot row_dot_avx512(DType type) {
  switch (type) {
    case DType::f32: return tiled<F32>();
    case DType::f16: return tiled<F16>();
    case DType::bf16: return tiled<BF16>();
    default: return nullptr;  // quantized types: qmatmul_avx512.cpp
  }
  return nullptr;
}

}  // namespace autoglm::kernels

#else  // no x86 SIMD in this build

namespace autoglm::kernels {
RowDot row_dot_avx512(DType) { return nullptr; }
}  // namespace autoglm::kernels

#endif
