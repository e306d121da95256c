// bf16 products on Intel AMX tiles (Sapphire Rapids and later): detection and the permission the
// kernel grants per process, the Layout::tiles_bf16 packing, one GEMM micro-kernel (2 x 2 tiles of
// 16 x 16 f32 accumulators), the f32 -> bf16 conversions, and matmul on tiles_bf16 weights.
//
// Blocking (measured on 2 cores of a Xeon with 48 KiB L1, 2 MiB L2; 3296 x 4096 x 1536 at
// ~1.1-1.4 TFLOP/s a core): the weights' rows in chunks of kRowChunk, reused by every 32-row block
// of the activations while they sit in L2; K in chunks of at most kMaxK, the f32 outputs kept in
// memory between chunks.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "autoglm/kernels.h"
#include "qmatmul.h"

#if defined(__x86_64__)
// GCC 12's avx512fintrin.h self-initializes its "undefined" registers, which -O3 reports as
// uninitialized use once inlined (GCC PR 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define AUTOGLM_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16,avx512vl,avx2,fma")))
#endif

namespace autoglm::kernels {
namespace {

constexpr size_t kPanel = 16;         // rows of one B tile
constexpr size_t kStep = 32;          // K per tile product (16 pairs of bf16)
constexpr size_t kTileElems = 512;    // bf16 elements of one tile (16 x 64 bytes)
constexpr size_t kBlock = 32;         // rows (and columns) of one 2 x 2 block of accumulators
constexpr size_t kRowChunk = 256;     // weight rows reused across the activation blocks
constexpr size_t kMaxK = 2048;        // K per pass over the outputs

bool probe_amx() {
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool bf16 = (d >> 22) & 1, tile = (d >> 24) & 1;
  if (!bf16 || !tile || !__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) return false;
  // AVX512-BF16 (the f32 -> bf16 conversions): CPUID.(7, 1):EAX bit 5
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !((a >> 5) & 1)) return false;
  // Linux hands out the 8 KiB tile state only to a process that asks (ARCH_REQ_XCOMP_PERM for
  // XFEATURE_XTILEDATA); the grant covers every thread of the process.
  constexpr long kReqXcompPerm = 0x1023, kXtileData = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
#else
  return false;
#endif
}

void check_shape(size_t rows, size_t cols) {
  if (!tiles_fit(rows, cols))
    throw std::invalid_argument("tiles_bf16: rows and columns must be multiples of 32");
}

// Element (r, k) of an n x k matrix packed as tiles_bf16.
size_t tiled_index(size_t r, size_t k, size_t cols) {
  const size_t panel = r / kPanel, step = k / kStep, in = k % kStep;
  return (panel * (cols / kStep) + step) * kTileElems + (in / 2) * (2 * kPanel) + (r % kPanel) * 2 + in % 2;
}

#if defined(__x86_64__)
struct TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

AUTOGLM_AMX void configure_tiles() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}

// C[0..32) x [0..32) (+)= A[0..32) x [k0, k1) . B's two panels over the same K: tiles 0-3 hold C,
// 4-5 the two halves of A, 6-7 the two panels of B.
AUTOGLM_AMX void block_2x2(const uint16_t* a, size_t lda, const uint16_t* b0, const uint16_t* b1, size_t steps,
                           float* c, size_t ldc, bool accumulate) {
  const size_t sa = lda * 2, sc = ldc * 4;
  if (accumulate) {
    _tile_loadd(0, c, sc);
    _tile_loadd(1, c + 16, sc);
    _tile_loadd(2, c + 16 * ldc, sc);
    _tile_loadd(3, c + 16 * ldc + 16, sc);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  const uint16_t* a1 = a + 16 * lda;
  for (size_t s = 0; s < steps; ++s) {
    _tile_loadd(4, a + s * kStep, sa);
    _tile_loadd(6, b0 + s * kTileElems, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, b1 + s * kTileElems, 64);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, a1 + s * kStep, sa);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, sc);
  _tile_stored(1, c + 16, sc);
  _tile_stored(2, c + 16 * ldc, sc);
  _tile_stored(3, c + 16 * ldc + 16, sc);
}

// Rows [n0, n1) of the output (multiples of 32) for m rows of A.
AUTOGLM_AMX void gemm_rows(const uint16_t* a, size_t lda, size_t m, const uint16_t* b, size_t n0, size_t n1,
                           size_t k, float* c, size_t ldc) {
  configure_tiles();
  const size_t per_panel = k / kStep * kTileElems, full = m / kBlock * kBlock;
  auto panel = [&](size_t row, size_t k0) { return b + row / kPanel * per_panel + k0 / kStep * kTileElems; };
  for (size_t k0 = 0; k0 < k; k0 += kMaxK) {
    const size_t steps = (std::min(k, k0 + kMaxK) - k0) / kStep;
    for (size_t r0 = n0; r0 < n1; r0 += kRowChunk) {
      const size_t r1 = std::min(n1, r0 + kRowChunk);
      for (size_t i = 0; i < full; i += kBlock)
        for (size_t r = r0; r < r1; r += kBlock)
          block_2x2(a + i * lda + k0, lda, panel(r, k0), panel(r + kPanel, k0), steps, c + i * ldc + r, ldc, k0 > 0);
    }
  }
  if (full == m) return;
  // the last rows of A, fewer than 32: through zero-padded copies of A and C, over all of K at once
  thread_local aligned_vector<uint16_t> tail_a;
  tail_a.assign(kBlock * k, 0);
  for (size_t i = full; i < m; ++i) std::memcpy(tail_a.data() + (i - full) * k, a + i * lda, k * 2);
  alignas(64) float tail_c[kBlock * kBlock];
  for (size_t r = n0; r < n1; r += kBlock) {
    block_2x2(tail_a.data(), k, panel(r, 0), panel(r + kPanel, 0), k / kStep, tail_c, kBlock, false);
    for (size_t i = full; i < m; ++i) std::memcpy(c + i * ldc + r, tail_c + (i - full) * kBlock, kBlock * 4);
  }
}

// exp_nonpositive (exp_impl.h) on 16 lanes: x = n ln2 + r, a degree-6 polynomial in r, 2^n built in
// the exponent bits; x below -87 gives e^-87.
AUTOGLM_AMX inline __m512 exp_nonpositive16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x));
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

AUTOGLM_AMX float softmax_numerators_avx512(const float* x, size_t n, float scale, uint16_t* p) {
  __m512 top = _mm512_set1_ps(-3.0e38f);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(x + i));
  const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1);
  top = _mm512_mask_max_ps(top, tail, top, _mm512_maskz_loadu_ps(tail, x + i));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(top)), s = _mm512_set1_ps(scale);
  __m512 sum = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    const __m512 e = exp_nonpositive16(_mm512_mul_ps(s, _mm512_sub_ps(_mm512_loadu_ps(x + i), m)));
    sum = _mm512_add_ps(sum, e);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + i), (__m256i)_mm512_cvtneps_pbh(e));
  }
  if (tail) {
    const __m512 e = exp_nonpositive16(_mm512_mul_ps(s, _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), m)));
    sum = _mm512_mask_add_ps(sum, tail, sum, e);
    _mm256_mask_storeu_epi16(p + i, tail, (__m256i)_mm512_cvtneps_pbh(e));
  }
  return _mm512_reduce_add_ps(sum);
}

AUTOGLM_AMX void to_bf16_avx512(const float* x, uint16_t* y, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}
#endif

}  // namespace

bool amx_detected() {
  static const bool detected = probe_amx();
  return detected;
}

namespace {
std::atomic<bool>& amx_enabled() {
  static std::atomic<bool> on{amx_detected()};
  return on;
}
}  // namespace

bool amx_available() { return amx_enabled().load() && active_isa() == Isa::avx512; }

bool amx_int8_available() {
#if defined(__x86_64__)
  static const bool int8 = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((d >> 25) & 1) && __builtin_cpu_supports("avx512vnni");
  }();
  return int8 && amx_available();
#else
  return false;
#endif
}
void set_amx(bool on) { amx_enabled().store(on && amx_detected()); }

bool tiles_fit(size_t rows, size_t cols) { return rows > 0 && cols > 0 && rows % kBlock == 0 && cols % kStep == 0; }

float softmax_numerators_bf16_amx(const float* x, size_t n, float scale, uint16_t* p) {
#if defined(__x86_64__)
  return softmax_numerators_avx512(x, n, scale, p);
#else
  (void)x, (void)n, (void)scale, (void)p;
  return 0;
#endif
}

void to_bf16(const float* x, uint16_t* y, size_t n) {
#if defined(__x86_64__)
  if (amx_available()) return to_bf16_avx512(x, y, n);
#endif
  for (size_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}

// Tile after tile, each written in order: row j of a tile is elements 2j, 2j + 1 of its 16 rows.
void pack_tiles_bf16(const uint16_t* src, size_t ld, size_t rows, size_t cols, uint16_t* dst) {
  check_shape(rows, cols);
  for (size_t panel = 0; panel < rows; panel += kPanel)
    for (size_t k0 = 0; k0 < cols; k0 += kStep)
      for (size_t j = 0; j < kStep; j += 2)
        for (size_t i = 0; i < kPanel; ++i) {
          const uint16_t* s = src + (panel + i) * ld + k0 + j;
          *dst++ = s[0];
          *dst++ = s[1];
        }
}

void pack_tiles_bf16_transposed(const uint16_t* src, size_t ld, size_t rows, size_t cols, uint16_t* dst) {
  check_shape(rows, cols);
  for (size_t panel = 0; panel < rows; panel += kPanel)
    for (size_t k0 = 0; k0 < cols; k0 += kStep)
      for (size_t j = 0; j < kStep; j += 2) {
        const uint16_t* s0 = src + (k0 + j) * ld + panel;
        const uint16_t* s1 = s0 + ld;
        for (size_t i = 0; i < kPanel; ++i) {
          *dst++ = s0[i];
          *dst++ = s1[i];
        }
      }
}

void unpack_tiles_bf16(const uint16_t* src, size_t rows, size_t cols, uint16_t* dst) {
  check_shape(rows, cols);
  for (size_t r = 0; r < rows; ++r)
    for (size_t k = 0; k < cols; ++k) dst[r * cols + k] = src[tiled_index(r, k, cols)];
}

void gemm_tiles_bf16(const uint16_t* a, size_t lda, size_t m, const uint16_t* b, size_t n, size_t k, float* c,
                     size_t ldc) {
  check_shape(n, k);
  if (!amx_available()) throw std::logic_error("gemm_tiles_bf16: this CPU has no AMX-BF16 (check amx_available)");
#if defined(__x86_64__)
  if (m > 0) gemm_rows(a, lda, m, b, 0, n, k, c, ldc);
#else
  (void)a, (void)lda, (void)c, (void)ldc;
#endif
}

// matmul on tiles_bf16 weights: the activations rounded to bf16 once, the weights' rows split
// across the pool in chunks of kRowChunk. Without AMX, each chunk's rows are unpacked and go
// through the float path (tests force this; it is never fast).
void matmul_tiles_bf16(const void* w, size_t rows, size_t cols, const float* x, size_t batch, float* y,
                       ThreadPool* pool) {
  check_shape(rows, cols);
  const auto* b = static_cast<const uint16_t*>(w);
  auto each_chunk = [&](const std::function<void(size_t, size_t)>& fn) {
    if (pool && pool->size() > 1)
      pool->run(rows / kBlock, kRowChunk / kBlock, [&fn](size_t begin, size_t end) { fn(begin * kBlock, end * kBlock); });
    else
      fn(0, rows);
  };
  if (!amx_available()) {
    each_chunk([&](size_t r0, size_t r1) {
      std::vector<uint16_t> stored(kBlock * cols);
      std::vector<float> out(batch * kBlock);
      for (size_t r = r0; r < r1; r += kBlock) {
        for (size_t i = 0; i < kBlock; ++i)
          for (size_t k = 0; k < cols; ++k) stored[i * cols + k] = b[tiled_index(r + i, k, cols)];
        matmul(DType::bf16, stored.data(), kBlock, cols, x, batch, out.data(), nullptr);
        for (size_t j = 0; j < batch; ++j) std::memcpy(y + j * rows + r, out.data() + j * kBlock, kBlock * 4);
      }
    });
    return;
  }
#if defined(__x86_64__)
  thread_local aligned_vector<uint16_t> xb;
  xb.resize(batch * cols);
  uint16_t* a = xb.data();  // this thread's buffer: a worker naming xb would get its own
  if (pool && pool->size() > 1 && batch >= 64)
    pool->run(batch, 16, [&](size_t begin, size_t end) {
      to_bf16_avx512(x + begin * cols, a + begin * cols, (end - begin) * cols);
    });
  else
    to_bf16_avx512(x, xb.data(), batch * cols);
  each_chunk([&](size_t r0, size_t r1) { gemm_rows(a, cols, batch, b, r0, r1, cols, y, rows); });
#endif
}

}  // namespace autoglm::kernels
