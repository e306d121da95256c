// AVX-512 VNNI paths of the int8-activation product (the definition is in qmatmul.h).
//
// Weights are read 64 elements (a "chunk") of a row at a time and unpacked into 64 unsigned bytes
// u = wq + zero, in element order, plus the float scale/offset of each group in the chunk.
//
// Few vectors (decode, small batches): tiles of 16 rows. For each vector, vpdpbusd multiplies each
// row's chunk with the vector's 64 int8 activations; the 16 results (16 int32 lanes each) are then
// transposed and summed so that one register holds a group's integer sum for the 16 rows, one row
// per lane; the float steps then run on 16 rows at once, in group order, as the definition says.
//
// Many vectors (prefill): panels of 16 rows are repacked as [chunk][4 elements][16 rows] bytes, so
// that one vpdpbusd with a broadcast of 4 activations advances 16 rows by 4 elements; a register
// tile of 2 panels x 6 vectors then runs 12 vpdpbusd per pair of loads. Weights stored as
// Layout::panels16 skip the repacking. With AMX-INT8, 16 vectors at a time go through tile
// products, one per group (see "panels on AMX-INT8 tiles"). All give the same bits.
#include "qmatmul.h"

#if defined(__x86_64__) || defined(__i386__)
// GCC 12's avx512fintrin.h self-initializes its "undefined" registers, which -O3 reports as
// uninitialized use once inlined (GCC PR 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "unpack_avx2.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <climits>
#include <cstdint>
#include <cstring>
#include <vector>

#define AUTOGLM_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

namespace autoglm::kernels {
namespace {

constexpr size_t kChunk = 64;  // weight elements unpacked at a time
constexpr size_t kRows = 16;   // rows per tile (one per lane)

AUTOGLM_VNNI inline float half(uint16_t h) { return _cvtsh_ss(h); }

AUTOGLM_VNNI inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
AUTOGLM_VNNI inline __m512i join(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
// 32 packed nibble bytes -> the 32 low nibbles then the 32 high nibbles.
AUTOGLM_VNNI inline __m512i nibbles32(const uint8_t* p) {
  const __m256i v = load32(p);
  const __m256i m = _mm256_set1_epi8(0x0F);
  return join(_mm256_and_si256(v, m), _mm256_and_si256(_mm256_srli_epi16(v, 4), m));
}


// ---- per type: the bytes of chunk c of a row, and the scales of 16 rows at once ----
//
// Scales come from a gather across the 16 rows of a tile (lane r reads row r), decoded with the
// same float operations as the scalar definition. A "scale set" covers the groups of one block
// (Q8_0/Q4_0: the chunk's two blocks) or of one super-block (Q4_K: 8 groups, Q6_K: 16), refreshed
// when a chunk starts a new one.

struct ScaleSet {
  __m512 s[16];
  __m512 m[16];
};

// The 16 rows' dwords at byte `offset` of each row (row r at rows + r * stride).
AUTOGLM_VNNI inline __m512i gather_rows(const uint8_t* rows, size_t stride, size_t offset) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(static_cast<int>(stride)));
  return _mm512_i32gather_epi32(idx, rows + offset, 1);
}
// f16 values in the low (shift 0) or high (shift 16) half of each lane, as floats.
AUTOGLM_VNNI inline __m512 halves(__m512i v, unsigned shift) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, shift)));
}
// Byte k of each lane, unsigned or signed, as floats.
AUTOGLM_VNNI inline __m512 byte_u(__m512i v, unsigned k) {
  return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(v, 8 * k), _mm512_set1_epi32(0xFF)));
}
AUTOGLM_VNNI inline __m512 byte_s(__m512i v, unsigned k) {
  return _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * k), 24));
}

// -v, exactly (sign flip; AVX-512F has no float xor)
AUTOGLM_VNNI inline __m512 negate(__m512 v) {
  return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN)));
}

// Q8_0, Q4_0 and Q5_0: a chunk is two blocks of 32 with one f16 scale each (the d at the block's start).
// Bytes::of(block) gives a block's 32 unsigned bytes in element order.
template <class Block, class Bytes>
struct Blocks32 {
  static constexpr size_t kGroups = 2;
  static constexpr bool kMin = false;
  static bool new_set(size_t) { return true; }
  static size_t set_index(size_t, size_t g) { return g; }
  AUTOGLM_VNNI static void scales(const uint8_t* rows, size_t stride, size_t c, size_t nblocks, ScaleSet& set) {
    for (size_t g = 0; g < 2; ++g)
      set.s[g] = 2 * c + g < nblocks ? halves(gather_rows(rows, stride, (2 * c + g) * sizeof(Block)), 0)
                                     : _mm512_setzero_ps();
  }
  AUTOGLM_VNNI static __m512i unpack(const uint8_t* row, size_t c, size_t nblocks) {
    const auto* b = reinterpret_cast<const Block*>(row) + 2 * c;
    const __m256i lo = Bytes::of(b[0]);
    if (2 * c + 1 == nblocks) return join(lo, _mm256_setzero_si256());  // odd count: half a chunk
    return join(lo, Bytes::of(b[1]));
  }
};

struct Q8_0Bytes {  // q + 128 as unsigned bytes
  AUTOGLM_VNNI static __m256i of(const BlockQ8_0& b) {
    return _mm256_xor_si256(load32(b.qs), _mm256_set1_epi8(static_cast<char>(0x80)));
  }
};
struct Q4_0Bytes {
  AUTOGLM_VNNI static __m256i of(const BlockQ4_0& b) { return nibbles16(b.qs); }
};
struct Q5_0Bytes {
  AUTOGLM_VNNI static __m256i of(const BlockQ5_0& b) { return _mm256_or_si256(nibbles16(b.qs), fifth_bits(b.qh)); }
};

using Q8_0 = Blocks32<BlockQ8_0, Q8_0Bytes>;
using Q4_0 = Blocks32<BlockQ4_0, Q4_0Bytes>;
using Q5_0 = Blocks32<BlockQ5_0, Q5_0Bytes>;

struct Q4K {
  static constexpr size_t kGroups = 2;
  static constexpr bool kMin = true;
  static bool new_set(size_t c) { return c % 4 == 0; }
  static size_t set_index(size_t c, size_t g) { return 2 * (c % 4) + g; }
  AUTOGLM_VNNI static void scales(const uint8_t* rows, size_t stride, size_t c, size_t, ScaleSet& set) {
    const size_t at = (c / 4) * sizeof(BlockQ4K);
    decode_scales(gather_rows(rows, stride, at), gather_rows(rows, stride, at + 4), gather_rows(rows, stride, at + 8),
                  gather_rows(rows, stride, at + 12), set);
  }
  // The word-wise unpacking of q4k_unpack_scales, on 16 rows at once: dd = d | dmin << 16, w0..w2 the
  // three dwords of `scales`, one row per lane.
  AUTOGLM_VNNI static void decode_scales(__m512i dd, __m512i w0, __m512i w1, __m512i w2, ScaleSet& set) {
    const __m512i six = _mm512_set1_epi32(0x3F3F3F3F), four = _mm512_set1_epi32(0x0F0F0F0F),
                  top = _mm512_set1_epi32(0x30303030);
    const __m512i sc_lo = _mm512_and_si512(w0, six), m_lo = _mm512_and_si512(w1, six);
    const __m512i sc_hi = _mm512_or_si512(_mm512_and_si512(w2, four), _mm512_and_si512(_mm512_srli_epi32(w0, 2), top));
    const __m512i m_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, 4), four),
                                         _mm512_and_si512(_mm512_srli_epi32(w1, 2), top));
    const __m512 d = halves(dd, 0), dmin = halves(dd, 16);
    for (unsigned k = 0; k < 4; ++k) {
      set.s[k] = _mm512_mul_ps(d, byte_u(sc_lo, k));
      set.s[4 + k] = _mm512_mul_ps(d, byte_u(sc_hi, k));
      set.m[k] = negate(_mm512_mul_ps(dmin, byte_u(m_lo, k)));
      set.m[4 + k] = negate(_mm512_mul_ps(dmin, byte_u(m_hi, k)));
    }
  }
  AUTOGLM_VNNI static __m512i unpack(const uint8_t* row, size_t c, size_t) {
    return nibbles32(reinterpret_cast<const BlockQ4K*>(row)[c / 4].qs + 32 * (c % 4));
  }
};

struct Q6K {
  static constexpr size_t kGroups = 4;
  static constexpr bool kMin = false;
  static bool new_set(size_t c) { return c % 4 == 0; }
  static size_t set_index(size_t c, size_t g) { return 4 * (c % 4) + g; }
  AUTOGLM_VNNI static void scales(const uint8_t* rows, size_t stride, size_t c, size_t, ScaleSet& set) {
    const size_t at = (c / 4) * sizeof(BlockQ6K);
    // d is the block's last 2 bytes: read the dword ending there, never past the block
    const __m512 d = halves(gather_rows(rows, stride, at + offsetof(BlockQ6K, d) - 2), 16);
    for (size_t w = 0; w < 4; ++w) {
      const __m512i v = gather_rows(rows, stride, at + offsetof(BlockQ6K, scales) + 4 * w);
      for (unsigned k = 0; k < 4; ++k) set.s[4 * w + k] = _mm512_mul_ps(d, byte_s(v, k));
    }
  }
  // Chunk c is elements 64 * (c % 4) .. of super-block c / 4: half h = (c % 4) / 2 and, within the
  // half, values k = 2p and 2p + 1 (p = c % 2): nibble p of ql[l] and ql[32 + l], bits 4p.. of qh[l].
  AUTOGLM_VNNI static __m512i unpack(const uint8_t* row, size_t c, size_t) {
    const auto& b = reinterpret_cast<const BlockQ6K*>(row)[c / 4];
    const size_t h = (c % 4) / 2, p = c % 2;
    const uint8_t* ql = b.ql + 64 * h;
    const __m256i qh = load32(b.qh + 32 * h);
    const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
    const auto shift = static_cast<int>(4 * p);
    const __m256i a = _mm256_and_si256(_mm256_srli_epi16(load32(ql), shift), low4);
    const __m256i e = _mm256_and_si256(_mm256_srli_epi16(load32(ql + 32), shift), low4);
    const __m256i ha = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, shift), low2), 4);
    const __m256i he = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, shift + 2), low2), 4);
    return join(_mm256_or_si256(a, ha), _mm256_or_si256(e, he));
  }
};

// Groups of chunk c that exist (a row of Q8_0/Q4_0 blocks may end in half a chunk).
template <class U>
size_t groups_in_chunk(size_t c, size_t cols) {
  const size_t left = cols - c * kChunk;
  return left >= kChunk ? U::kGroups : U::kGroups * left / kChunk;
}

// The float steps of the definition for one group of 16 rows (one per lane) and one vector.
// kCorr false: the type's zero point is 0 (Q4_K), so corr is too and is not subtracted.
template <bool kMin, bool kCorr = true>
AUTOGLM_VNNI inline __m512 apply_group(__m512 acc, __m512i isum, int32_t corr, __m512 s, float dx, __m512 m,
                                       float t) {
  if constexpr (kCorr) isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(corr));
  const __m512 f = _mm512_cvtepi32_ps(isum);
  acc = _mm512_fmadd_ps(f, _mm512_mul_ps(s, _mm512_set1_ps(dx)), acc);
  if constexpr (kMin) acc = _mm512_fmadd_ps(m, _mm512_set1_ps(t), acc);
  return acc;
}

// ---------------------------------------------------------------- few vectors: 16-row tiles

// a..d: 16 int32 lanes each, one row each. Returns, in each 128-bit lane L, the four rows' sums
// of their lanes 4L..4L+3 (row a first).
AUTOGLM_VNNI inline __m512i sum4(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}

// isum[g]: lane r = row r's integer sum over group g of the chunk, from v[q] (see sum4: rows
// 4q..4q+3 in each 128-bit lane, lane L covering elements 16L..16L+15).
template <size_t kGroups>
AUTOGLM_VNNI inline void group_sums(const __m512i (&v)[4], __m512i (&isum)[kGroups]) {
  const __m512i p0 = _mm512_shuffle_i32x4(v[0], v[1], _MM_SHUFFLE(1, 0, 1, 0));
  const __m512i p1 = _mm512_shuffle_i32x4(v[2], v[3], _MM_SHUFFLE(1, 0, 1, 0));
  const __m512i p2 = _mm512_shuffle_i32x4(v[0], v[1], _MM_SHUFFLE(3, 2, 3, 2));
  const __m512i p3 = _mm512_shuffle_i32x4(v[2], v[3], _MM_SHUFFLE(3, 2, 3, 2));
  const __m512i e0 = _mm512_shuffle_i32x4(p0, p1, _MM_SHUFFLE(2, 0, 2, 0));
  const __m512i e1 = _mm512_shuffle_i32x4(p0, p1, _MM_SHUFFLE(3, 1, 3, 1));
  const __m512i e2 = _mm512_shuffle_i32x4(p2, p3, _MM_SHUFFLE(2, 0, 2, 0));
  const __m512i e3 = _mm512_shuffle_i32x4(p2, p3, _MM_SHUFFLE(3, 1, 3, 1));
  if constexpr (kGroups == 4) {
    isum[0] = e0, isum[1] = e1, isum[2] = e2, isum[3] = e3;
  } else {
    isum[0] = _mm512_add_epi32(e0, e1);
    isum[1] = _mm512_add_epi32(e2, e3);
  }
}

// Rows r0..r0+15, vectors b0..b0+NB-1: 4 rows at a time are unpacked into registers and multiplied
// with each vector's chunk; their partial sums are folded at once (sum4), so nothing round-trips
// through memory but the weights themselves.
template <class U, size_t NB>
AUTOGLM_VNNI void tile_rows(const QJob& job, size_t r0, size_t b0) {
  const QActs& a = *job.acts;
  const size_t chunks = (job.cols + kChunk - 1) / kChunk, nblocks = job.cols / kActBlock;
  const size_t group = kChunk / U::kGroups, chunk_bytes = job.stride / chunks;
  const uint8_t* rows = job.w + r0 * job.stride;
  ScaleSet set;
  __m512 acc[NB];
  for (size_t b = 0; b < NB; ++b) acc[b] = _mm512_setzero_ps();
  for (size_t c = 0; c < chunks; ++c) {
    if (U::new_set(c)) U::scales(rows, job.stride, c, nblocks, set);
    const size_t n_elems = std::min(kChunk, job.cols - c * kChunk);
    const __mmask64 mask = n_elems == kChunk ? ~__mmask64{0} : (__mmask64{1} << n_elems) - 1;
    __m512i x[NB];
    for (size_t b = 0; b < NB; ++b) x[b] = _mm512_maskz_loadu_epi8(mask, a.q_row(b0 + b) + c * kChunk);
    __m512i v[NB][4];
    for (size_t q = 0; q < 4; ++q) {
      __m512i u[4];
      for (size_t i = 0; i < 4; ++i) {
        const uint8_t* row = rows + (4 * q + i) * job.stride;
        // ask for the next tile's bytes at this position: the prefetcher alone falls behind 16 streams
        _mm_prefetch(reinterpret_cast<const char*>(row + kRows * job.stride + c * chunk_bytes), _MM_HINT_T0);
        u[i] = U::unpack(row, c, nblocks);
      }
      for (size_t b = 0; b < NB; ++b) {
        const __m512i zero = _mm512_setzero_si512();
        v[b][q] = sum4(_mm512_dpbusd_epi32(zero, u[0], x[b]), _mm512_dpbusd_epi32(zero, u[1], x[b]),
                       _mm512_dpbusd_epi32(zero, u[2], x[b]), _mm512_dpbusd_epi32(zero, u[3], x[b]));
      }
    }
    const size_t valid = groups_in_chunk<U>(c, job.cols);
    for (size_t b = 0; b < NB; ++b) {
      const size_t vec = b0 + b;
      __m512i isum[U::kGroups];
      group_sums<U::kGroups>(v[b], isum);
      for (size_t g = 0; g < valid; ++g) {
        const size_t gi = c * U::kGroups + g, blk = gi * group / kActBlock, si = U::set_index(c, g);
        acc[b] = apply_group<U::kMin>(acc[b], isum[g], a.corr_row(vec)[gi], set.s[si], a.dx_row(vec)[blk],
                                      U::kMin ? set.m[si % 8] : set.s[si], a.t_row(vec)[blk]);
      }
    }
  }
  for (size_t b = 0; b < NB; ++b) _mm512_storeu_ps(job.y + (b0 + b) * job.rows + r0, acc[b]);
}

template <class U>
AUTOGLM_VNNI void rows_few(const QJob& job, size_t r0, size_t r1) {
  const size_t batch = job.acts->batch;
  for (size_t r = r0; r + kRows <= r1; r += kRows) {
    size_t b = 0;
    for (; b + 4 <= batch; b += 4) tile_rows<U, 4>(job, r, b);
    switch (batch - b) {
      case 3: tile_rows<U, 3>(job, r, b); break;
      case 2: tile_rows<U, 2>(job, r, b); break;
      case 1: tile_rows<U, 1>(job, r, b); break;
      default: break;
    }
  }
}

// ---------------------------------------------------------------- many vectors: packed panels

constexpr size_t kGemmMinBatch = 16;  // from here on, repacking the weights pays for itself
constexpr size_t kPanelBytes = kChunk * kRows;  // one chunk of a panel

// 16 rows repacked: bytes[c][quad][row][4] (quad = 4 consecutive elements of chunk c), and each
// group's scale/offset as one 16-row vector: s[c][g][row], m[c][g][row].
struct Panel {
  uint8_t* bytes;
  float* s;
  float* m;
};

template <class U>
AUTOGLM_VNNI void pack_panel(const QJob& job, size_t r0, const Panel& p) {
  const size_t chunks = (job.cols + kChunk - 1) / kChunk, nblocks = job.cols / kActBlock;
  const uint8_t* rows = job.w + r0 * job.stride;
  alignas(64) uint8_t u[kRows][kChunk];
  // lane r of a gather reads dword `quad` of row r's chunk
  const __m512i row_starts = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(kChunk / 4));
  ScaleSet set;
  for (size_t c = 0; c < chunks; ++c) {
    if (U::new_set(c)) U::scales(rows, job.stride, c, nblocks, set);
    for (size_t g = 0; g < U::kGroups; ++g) {
      const size_t si = U::set_index(c, g);
      _mm512_store_ps(p.s + (c * U::kGroups + g) * kRows, set.s[si]);
      _mm512_store_ps(p.m + (c * U::kGroups + g) * kRows, U::kMin ? set.m[si % 8] : _mm512_setzero_ps());
    }
    for (size_t r = 0; r < kRows; ++r) _mm512_store_si512(u[r], U::unpack(rows + r * job.stride, c, nblocks));
    for (size_t quad = 0; quad < kChunk / 4; ++quad)
      _mm512_store_si512(p.bytes + c * kPanelBytes + quad * 64,
                         _mm512_i32gather_epi32(row_starts, reinterpret_cast<const int*>(u[0]) + quad, 4));
  }
}

AUTOGLM_VNNI inline int32_t load_quad(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// P panels (16 rows each, rows r0..r0+16P-1) times vectors b0..b0+B-1.
template <class U, size_t P, size_t B>
AUTOGLM_VNNI void panel_tile(const QJob& job, const Panel* panels, size_t r0, size_t b0) {
  const QActs& a = *job.acts;
  const size_t chunks = (job.cols + kChunk - 1) / kChunk, group = kChunk / U::kGroups;
  constexpr size_t kQuadsPerGroup = kChunk / 4 / U::kGroups;
  __m512 acc[P][B];
  for (size_t p = 0; p < P; ++p)
    for (size_t b = 0; b < B; ++b) acc[p][b] = _mm512_setzero_ps();
  for (size_t c = 0; c < chunks; ++c) {
    const size_t valid = groups_in_chunk<U>(c, job.cols);
    for (size_t g = 0; g < valid; ++g) {
      __m512i isum[P][B];
      for (size_t p = 0; p < P; ++p)
        for (size_t b = 0; b < B; ++b) isum[p][b] = _mm512_setzero_si512();
      for (size_t quad = g * kQuadsPerGroup; quad < (g + 1) * kQuadsPerGroup; ++quad) {
        __m512i w[P];
        for (size_t p = 0; p < P; ++p) w[p] = _mm512_load_si512(panels[p].bytes + c * kPanelBytes + quad * 64);
        for (size_t b = 0; b < B; ++b) {
          const __m512i x = _mm512_set1_epi32(load_quad(a.q_row(b0 + b) + c * kChunk + 4 * quad));
          for (size_t p = 0; p < P; ++p) isum[p][b] = _mm512_dpbusd_epi32(isum[p][b], w[p], x);
        }
      }
      const size_t gi = c * U::kGroups + g, blk = gi * group / kActBlock;
      for (size_t p = 0; p < P; ++p) {
        const __m512 s = _mm512_load_ps(panels[p].s + gi * kRows), m = _mm512_load_ps(panels[p].m + gi * kRows);
        for (size_t b = 0; b < B; ++b) {
          const size_t v = b0 + b;
          acc[p][b] = apply_group<U::kMin>(acc[p][b], isum[p][b], a.corr_row(v)[gi], s, a.dx_row(v)[blk], m,
                                           a.t_row(v)[blk]);
        }
      }
    }
  }
  for (size_t p = 0; p < P; ++p)
    for (size_t b = 0; b < B; ++b) _mm512_storeu_ps(job.y + (b0 + b) * job.rows + r0 + kRows * p, acc[p][b]);
}

template <class U, size_t P>
AUTOGLM_VNNI void panels_times_batch(const QJob& job, const Panel* panels, size_t r0) {
  constexpr size_t kB = 6;  // 2 panels x 6 vectors: 12 integer + 12 float accumulators
  const size_t batch = job.acts->batch;
  size_t b = 0;
  for (; b + kB <= batch; b += kB) panel_tile<U, P, kB>(job, panels, r0, b);
  switch (batch - b) {
    case 5: return panel_tile<U, P, 5>(job, panels, r0, b);
    case 4: return panel_tile<U, P, 4>(job, panels, r0, b);
    case 3: return panel_tile<U, P, 3>(job, panels, r0, b);
    case 2: return panel_tile<U, P, 2>(job, panels, r0, b);
    case 1: return panel_tile<U, P, 1>(job, panels, r0, b);
    default: return;
  }
}

// Whole panels of rows [r0, r1): packed in this thread's buffer, two at a time.
template <class U>
AUTOGLM_VNNI void rows_many(const QJob& job, size_t r0, size_t r1) {
  const size_t chunks = (job.cols + kChunk - 1) / kChunk, groups = chunks * U::kGroups;
  thread_local std::vector<uint8_t> bytes;
  thread_local std::vector<float> scales;
  const size_t panel_floats = groups * kRows;
  if (bytes.size() < 2 * chunks * kPanelBytes + 64) bytes.resize(2 * chunks * kPanelBytes + 64);
  if (scales.size() < 4 * panel_floats + 16) scales.resize(4 * panel_floats + 16);
  // 64-byte aligned views
  uint8_t* base = bytes.data() + (64 - reinterpret_cast<uintptr_t>(bytes.data()) % 64) % 64;
  float* fbase = scales.data() + (16 - reinterpret_cast<uintptr_t>(scales.data()) / 4 % 16) % 16;
  const Panel panels[2] = {{base, fbase, fbase + panel_floats},
                           {base + chunks * kPanelBytes, fbase + 2 * panel_floats, fbase + 3 * panel_floats}};
  size_t r = r0;
  for (; r + 2 * kRows <= r1; r += 2 * kRows) {
    pack_panel<U>(job, r, panels[0]);
    pack_panel<U>(job, r + kRows, panels[1]);
    panels_times_batch<U, 2>(job, panels, r);
  }
  if (r + kRows <= r1) {
    pack_panel<U>(job, r, panels[0]);
    panels_times_batch<U, 1>(job, panels, r);
  }
}

template <class U>
AUTOGLM_VNNI void rows(const QJob& job, size_t r0, size_t r1) {
  const size_t full = r0 + (r1 - r0) / kRows * kRows;
  if (job.acts->batch >= kGemmMinBatch)
    rows_many<U>(job, r0, full);
  else
    rows_few<U>(job, r0, full);
  if (full < r1) qrows_scalar(job, full, r1);
}

// ---------------------------------------------------------------- Layout::panels16
//
// The weights are already in panels (qmatmul.h): dword k of a block's quants is one 64-byte load
// holding elements 4k..4k+3 of the panel's 16 rows, so each vpdpbusd with 4 broadcast activations
// advances 16 rows, and a group's integer sums land one row per lane with no transpose; the scales
// of a block are contiguous vectors. One path for every batch size.
//
// Per type: kGroups groups of kGroupSize elements per block, the block's scales, and quad i
// (elements 4i..4i+3) of group j of a block as 64 unsigned bytes (16 rows x 4).

// How far ahead of the bytes in use each panel's stream is fetched (the hardware prefetcher alone
// falls behind; measured with bench_kernels: 2 KiB beat 1 and 4).
constexpr size_t kPrefetchAhead = 2048;

// kMin: groups have an offset m (Q4_K); kCorr: the bytes carry a zero point (QActs::corr);
// kNibbles: quads 4.. of a group are the high nibbles of quads 0..3 (quad_in_place leaves them there).
struct PanelQ8_0 {
  static constexpr size_t kGroups = 1, kGroupSize = 32, kBlockBytes = sizeof(BlockQ8_0) * kRows;
  static constexpr bool kMin = false, kCorr = true, kNibbles = false;
  AUTOGLM_VNNI static void scales(const uint8_t* block, ScaleSet& set) { set.s[0] = _mm512_cvtph_ps(load32(block)); }
  AUTOGLM_VNNI static __m512i quad(const uint8_t* block, size_t, size_t i) {
    return _mm512_loadu_si512(block + 32 + 64 * i);
  }
};

// A group's 4 units of nibbles: elements 4i.. in the low nibbles and 16 + 4i.. in the high ones.
AUTOGLM_VNNI inline __m512i nibble_quad(const uint8_t* units, size_t i) {
  const __m512i v = _mm512_loadu_si512(units + 64 * (i % 4));
  return _mm512_and_si512(i < 4 ? v : _mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F));
}
AUTOGLM_VNNI inline __m512i nibble_quad_in_place(const uint8_t* units, size_t i) {
  const __m512i v = _mm512_loadu_si512(units + 64 * (i % 4));
  return _mm512_and_si512(v, _mm512_set1_epi8(static_cast<char>(i < 4 ? 0x0F : 0xF0)));
}

struct PanelQ4_0 {
  static constexpr size_t kGroups = 1, kGroupSize = 32, kBlockBytes = sizeof(BlockQ4_0) * kRows;
  static constexpr bool kMin = false, kCorr = true, kNibbles = true;
  AUTOGLM_VNNI static void scales(const uint8_t* block, ScaleSet& set) { set.s[0] = _mm512_cvtph_ps(load32(block)); }
  AUTOGLM_VNNI static __m512i quad(const uint8_t* block, size_t, size_t i) { return nibble_quad(block + 32, i); }
  AUTOGLM_VNNI static __m512i quad_in_place(const uint8_t* block, size_t, size_t i) {
    return nibble_quad_in_place(block + 32, i);
  }
};

struct PanelQ4K {
  static constexpr size_t kGroups = 8, kGroupSize = 32, kBlockBytes = sizeof(BlockQ4K) * kRows;
  static constexpr bool kMin = true, kCorr = false, kNibbles = true;
  AUTOGLM_VNNI static void scales(const uint8_t* block, ScaleSet& set) {
    Q4K::decode_scales(_mm512_loadu_si512(block), _mm512_loadu_si512(block + 64), _mm512_loadu_si512(block + 128),
                       _mm512_loadu_si512(block + 192), set);
  }
  // group j's 4 units, regrouped like Q4_0's
  AUTOGLM_VNNI static __m512i quad(const uint8_t* block, size_t j, size_t i) { return nibble_quad(block + 256 + 256 * j, i); }
  AUTOGLM_VNNI static __m512i quad_in_place(const uint8_t* block, size_t j, size_t i) {
    return nibble_quad_in_place(block + 256 + 256 * j, i);
  }
};

struct PanelQ6K {
  static constexpr size_t kGroups = 16, kGroupSize = 16, kBlockBytes = sizeof(BlockQ6K) * kRows;
  static constexpr bool kMin = false, kCorr = true, kNibbles = false;
  static constexpr size_t kQuants = 32 + 16 * 16;  // after d (16 x f16) and the scales (16 x 16 int8)
  AUTOGLM_VNNI static void scales(const uint8_t* block, ScaleSet& set) {
    const __m512 d = _mm512_cvtph_ps(load32(block));
    for (size_t g = 0; g < 16; ++g) {
      const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 32 + 16 * g));
      set.s[g] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc)));
    }
  }
  // group j = 64-element run c = j / 4, part p = j % 4: the low nibbles of unit 4 * (p % 2) + i
  // (low half for p < 2) and bits 2p.. of high unit i, as bits 4..5
  AUTOGLM_VNNI static __m512i quad(const uint8_t* block, size_t j, size_t i) {
    const size_t p = j % 4;
    const uint8_t* run = block + kQuants + 768 * (j / 4);
    const __m512i v = _mm512_loadu_si512(run + 64 * (4 * (p % 2) + i));
    const __m512i low = _mm512_and_si512(p < 2 ? v : _mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F));
    const __m512i h = _mm512_loadu_si512(run + 512 + 64 * i);
    const __m512i at4 = p == 0 ? _mm512_slli_epi16(h, 4) : p == 1 ? _mm512_slli_epi16(h, 2)
                        : p == 2 ? h : _mm512_srli_epi16(h, 2);
    return _mm512_or_si512(low, _mm512_and_si512(at4, _mm512_set1_epi8(0x30)));
  }
};

// Quad i's fifth bits, from a unit of Q5_0's panel form (byte k, bit i = element 4i + k), at bit 4
// of each byte.
AUTOGLM_VNNI inline __m512i fifth_quad(const uint8_t* unit, size_t i) {
  const __m512i v = _mm512_loadu_si512(unit);
  const __m512i at4 = i <= 4 ? _mm512_slli_epi32(v, static_cast<unsigned>(4 - i))
                             : _mm512_srli_epi32(v, static_cast<unsigned>(i - 4));
  return _mm512_and_si512(at4, _mm512_set1_epi8(0x10));
}
// IQ4's levels + 128 (QFormat zero 128), looked up per nibble.
AUTOGLM_VNNI inline __m512i iq4_quad(const uint8_t* units, size_t i) {
  static constexpr std::array<uint8_t, 16> kLevels = [] {
    std::array<uint8_t, 16> a{};
    for (size_t k = 0; k < 16; ++k) a[k] = static_cast<uint8_t>(kIq4nl[k] + 128);
    return a;
  }();
  const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kLevels.data())));
  return _mm512_shuffle_epi8(table, nibble_quad(units, i));
}
// Bits `shift`, shift + 1 of each byte (Q2_K / Q3_K's 2-bit quants) as 0..3.
AUTOGLM_VNNI inline __m512i two_bit_quad(const uint8_t* unit, size_t shift) {
  return _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(unit), static_cast<unsigned>(shift)),
                          _mm512_set1_epi8(0x03));
}

struct PanelQ4_1 {
  static constexpr size_t kGroups = 1, kGroupSize = 32, kBlockBytes = sizeof(BlockQ4_1) * kRows;
  static constexpr bool kMin = true, kCorr = false, kNibbles = true;
  AUTOGLM_VNNI static void scales(const uint8_t* block, ScaleSet& set) {
    const __m512i dm = _mm512_loadu_si512(block);
    set.s[0] = halves(dm, 0), set.m[0] = halves(dm, 16);
  }
  AUTOGLM_VNNI static __m512i quad(const uint8_t* block, size_t, size_t i) { return nibble_quad(block + 64, i); }
  AUTOGLM_VNNI static __m512i quad_in_place(const uint8_t* block, size_t, size_t i) {
    return nibble_quad_in_place(block + 64, i);
  }
};

struct PanelQ5_0 {
  static constexpr size_t kGroups = 1, kGroupSize = 32, kBlockBytes = sizeof(BlockQ5_0) * kRows;
  static constexpr bool kMin = false, kCorr = true, kNibbles = false;
  AUTOGLM_VNNI static void scales(const uint8_t* block, ScaleSet& set) { set.s[0] = _mm512_cvtph_ps(load32(block)); }
  AUTOGLM_VNNI static __m512i quad(const uint8_t* block, size_t, size_t i) {
    return _mm512_or_si512(nibble_quad(block + 96, i), fifth_quad(block + 32, i));
  }
};

struct PanelQ5_1 {
  static constexpr size_t kGroups = 1, kGroupSize = 32, kBlockBytes = sizeof(BlockQ5_1) * kRows;
  static constexpr bool kMin = true, kCorr = false, kNibbles = false;
  AUTOGLM_VNNI static void scales(const uint8_t* block, ScaleSet& set) { PanelQ4_1::scales(block, set); }
  AUTOGLM_VNNI static __m512i quad(const uint8_t* block, size_t, size_t i) {
    return _mm512_or_si512(nibble_quad(block + 128, i), fifth_quad(block + 64, i));
  }
};

struct PanelIQ4NL {
  static constexpr size_t kGroups = 1, kGroupSize = 32, kBlockBytes = sizeof(BlockIQ4NL) * kRows;
  static constexpr bool kMin = false, kCorr = true, kNibbles = false;
  AUTOGLM_VNNI static void scales(const uint8_t* block, ScaleSet& set) { set.s[0] = _mm512_cvtph_ps(load32(block)); }
  AUTOGLM_VNNI static __m512i quad(const uint8_t* block, size_t, size_t i) { return iq4_quad(block + 32, i); }
};

struct PanelQ5K {
  static constexpr size_t kGroups = 8, kGroupSize = 32, kBlockBytes = sizeof(BlockQ5K) * kRows;
  static constexpr bool kMin = true, kCorr = false, kNibbles = false;
  AUTOGLM_VNNI static void scales(const uint8_t* block, ScaleSet& set) { PanelQ4K::scales(block, set); }
  AUTOGLM_VNNI static __m512i quad(const uint8_t* block, size_t j, size_t i) {
    return _mm512_or_si512(nibble_quad(block + 768 + 256 * j, i), fifth_quad(block + 256 + 64 * j, i));
  }
};

struct PanelIQ4XS {
  static constexpr size_t kGroups = 8, kGroupSize = 32, kBlockBytes = sizeof(BlockIQ4XS) * kRows;
  static constexpr bool kMin = false, kCorr = true, kNibbles = false;
  // ls_j = nibble j of scales_l (bits 4j..) | bits 2j.. of scales_h << 4; s_j = d * (ls_j - 32)
  AUTOGLM_VNNI static void scales(const uint8_t* block, ScaleSet& set) {
    const __m512i dh = _mm512_loadu_si512(block), low = _mm512_loadu_si512(block + 64);
    const __m512 d = halves(dh, 0);
    const __m512i high = _mm512_srli_epi32(dh, 16);
    for (unsigned j = 0; j < 8; ++j) {
      const __m512i lo = _mm512_and_si512(_mm512_srli_epi32(low, 4 * j), _mm512_set1_epi32(0xF));
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(high, 2 * j), _mm512_set1_epi32(3));
      const __m512i ls = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), _mm512_set1_epi32(32));
      set.s[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(ls));
    }
  }
  AUTOGLM_VNNI static __m512i quad(const uint8_t* block, size_t j, size_t i) { return iq4_quad(block + 128 + 256 * j, i); }
};

// Group j of Q2_K / Q3_K (h = j / 8, p = j % 2, s = (j % 8) / 2): its quad i is bits 2s of qs unit
// 8h + 4p + i (blocks.h's group_of).
constexpr size_t two_bit_unit(size_t j, size_t i) { return 8 * (j / 8) + 4 * (j % 2) + i; }
constexpr size_t two_bit_shift(size_t j) { return 2 * ((j % 8) / 2); }

struct PanelQ2K {
  static constexpr size_t kGroups = 16, kGroupSize = 16, kBlockBytes = sizeof(BlockQ2K) * kRows;
  static constexpr bool kMin = true, kCorr = false, kNibbles = false;
  AUTOGLM_VNNI static void scales(const uint8_t* block, ScaleSet& set) {
    const __m512i dd = _mm512_loadu_si512(block + 1280);
    const __m512 d = halves(dd, 0), dmin = halves(dd, 16);
    for (unsigned w = 0; w < 4; ++w) {
      const __m512i v = _mm512_loadu_si512(block + 64 * w);
      for (unsigned k = 0; k < 4; ++k) {
        const __m512i sc = _mm512_srli_epi32(v, 8 * k);
        set.s[4 * w + k] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(sc, _mm512_set1_epi32(0xF))));
        set.m[4 * w + k] = negate(_mm512_mul_ps(
            dmin, _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(sc, 4), _mm512_set1_epi32(0xF)))));
      }
    }
  }
  AUTOGLM_VNNI static __m512i quad(const uint8_t* block, size_t j, size_t i) {
    return two_bit_quad(block + 256 + 64 * two_bit_unit(j, i), two_bit_shift(j));
  }
};

struct PanelQ3K {
  static constexpr size_t kGroups = 16, kGroupSize = 16, kBlockBytes = sizeof(BlockQ3K) * kRows;
  static constexpr bool kMin = false, kCorr = true, kNibbles = false;
  // sc_j = nibble j / 8 of scales[j % 8] | bits 2 (j / 4) of scales[8 + j % 4] << 4; s_j = d * (sc_j - 32)
  AUTOGLM_VNNI static void scales(const uint8_t* block, ScaleSet& set) {
    const __m512 d = _mm512_cvtph_ps(load32(block + 1728));
    const __m512i w[3] = {_mm512_loadu_si512(block + 1536), _mm512_loadu_si512(block + 1600),
                          _mm512_loadu_si512(block + 1664)};
    for (unsigned j = 0; j < 16; ++j) {
      const unsigned b = j % 8;
      const __m512i lo = _mm512_and_si512(_mm512_srli_epi32(w[b / 4], 8 * (b % 4) + 4 * (j / 8)), _mm512_set1_epi32(0xF));
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(w[2], 8 * (j % 4) + 2 * (j / 4)), _mm512_set1_epi32(3));
      const __m512i sc = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), _mm512_set1_epi32(32));
      set.s[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
    }
  }
  // u = the 2 bits | bit 4h + s of hmask unit 4p + i at bit 2 (QFormat zero 4)
  AUTOGLM_VNNI static __m512i quad(const uint8_t* block, size_t j, size_t i) {
    const size_t bit = 4 * (j / 8) + (j % 8) / 2;
    const __m512i h = _mm512_loadu_si512(block + 64 * (4 * (j % 2) + i));
    const __m512i at2 = bit >= 2 ? _mm512_srli_epi16(h, static_cast<unsigned>(bit - 2))
                                 : _mm512_slli_epi16(h, static_cast<unsigned>(2 - bit));
    return _mm512_or_si512(two_bit_quad(block + 512 + 64 * two_bit_unit(j, i), two_bit_shift(j)),
                           _mm512_and_si512(at2, _mm512_set1_epi8(0x04)));
  }
};

// P panels (rows r0..r0+16P-1) times vectors b0..b0+B-1. Each group prefetches its share of the
// panels `ahead` bytes on.
template <class F, size_t P, size_t B>
AUTOGLM_VNNI void packed_tile(const QJob& job, size_t r0, size_t b0, size_t ahead) {
  const QActs& a = *job.acts;
  const size_t blocks = job.cols / (F::kGroupSize * F::kGroups);
  const uint8_t* panel[P];
  for (size_t p = 0; p < P; ++p) panel[p] = job.w + (r0 + kRows * p) * job.stride;
  __m512 acc[P][B];
  for (size_t p = 0; p < P; ++p)
    for (size_t b = 0; b < B; ++b) acc[p][b] = _mm512_setzero_ps();
  for (size_t blk = 0; blk < blocks; ++blk) {
    ScaleSet set[P];
    for (size_t p = 0; p < P; ++p) F::scales(panel[p] + blk * F::kBlockBytes, set[p]);
    for (size_t j = 0; j < F::kGroups; ++j) {
      const size_t gi = blk * F::kGroups + j;
      // this group's share of the panel, kPrefetchAhead bytes on
      constexpr size_t kShare = F::kBlockBytes / F::kGroups;
      for (size_t p = 0; p < P; ++p)
        for (size_t at = 0; at < kShare; at += 64)
          _mm_prefetch(reinterpret_cast<const char*>(panel[p] + blk * F::kBlockBytes + j * kShare + at + ahead),
                       _MM_HINT_T0);
      // with few vectors, K chains of sums per accumulator keep vpdpbusd's latency covered
      constexpr size_t K = P * B <= 4 ? 2 : 1;
      __m512i isum[K][P][B];
      for (size_t k = 0; k < K; ++k)
        for (size_t p = 0; p < P; ++p)
          for (size_t b = 0; b < B; ++b) isum[k][p][b] = _mm512_setzero_si512();
      // Two chains over a nibble type: quads 4.. (the high nibbles) are multiplied in place, as
      // 16 x their value, into chain 1, which is then shifted back (exact): no shift per load.
      constexpr bool kHighInPlace = K == 2 && F::kNibbles;
      for (size_t i = 0; i < F::kGroupSize / 4; ++i) {
        const size_t chain = kHighInPlace ? i / 4 : i % K;
        __m512i w[P];
        for (size_t p = 0; p < P; ++p) {
          if constexpr (kHighInPlace) w[p] = F::quad_in_place(panel[p] + blk * F::kBlockBytes, j, i);
          else w[p] = F::quad(panel[p] + blk * F::kBlockBytes, j, i);
        }
        for (size_t b = 0; b < B; ++b) {
          const __m512i x = _mm512_set1_epi32(load_quad(a.q_row(b0 + b) + gi * F::kGroupSize + 4 * i));
          for (size_t p = 0; p < P; ++p) isum[chain][p][b] = _mm512_dpbusd_epi32(isum[chain][p][b], w[p], x);
        }
      }
      if constexpr (K == 2)
        for (size_t p = 0; p < P; ++p)
          for (size_t b = 0; b < B; ++b)
            isum[0][p][b] = _mm512_add_epi32(isum[0][p][b], kHighInPlace ? _mm512_srai_epi32(isum[1][p][b], 4)
                                                                          : isum[1][p][b]);
      const size_t ab = gi * F::kGroupSize / kActBlock;  // the activation block holding the group
      for (size_t p = 0; p < P; ++p)
        for (size_t b = 0; b < B; ++b) {
          const size_t v = b0 + b;
          // an offset's sum: the activation block's, or its half's for a group of 16 (Q2_K)
          const float t = !F::kMin ? 0.0f : F::kGroupSize == kActBlock ? a.t_row(v)[ab] : a.t16_row(v)[gi];
          acc[p][b] = apply_group<F::kMin, F::kCorr>(acc[p][b], isum[0][p][b], a.corr_row(v)[gi], set[p].s[j],
                                                     a.dx_row(v)[ab], F::kMin ? set[p].m[j] : set[p].s[j], t);
        }
    }
  }
  for (size_t p = 0; p < P; ++p)
    for (size_t b = 0; b < B; ++b) _mm512_storeu_ps(job.y + (b0 + b) * job.rows + r0 + kRows * p, acc[p][b]);
}

template <class F, size_t P>
AUTOGLM_VNNI void packed_panels(const QJob& job, size_t r0, size_t b_begin = 0) {
  // 2 panels x 6 vectors: 12 integer + 12 float accumulators. The nibble types also hold their
  // masks and unpacked quads: at 6 (or 5) vectors they spill, and run at 0.55-0.7x of 4 vectors
  // (bench_kernels matmul Q4_0/Q4_K at batch 16 and 64; Q8_0 and Q6_K are best at 6).
  constexpr size_t kB = F::kNibbles ? 4 : 6;
  const size_t batch = job.acts->batch;
  // as few tiles as kB allows, of sizes as equal as possible (8 = 4 + 4, not 6 + 2)
  const size_t tiles = (batch - b_begin + kB - 1) / kB;
  // The first tile streams these panels from memory a little ahead of its loads; the later ones
  // read them from cache and fetch the next panels meanwhile, so the memory keeps busy while they
  // compute (with 4 + 4 vectors, the first tile alone otherwise waits on memory at twice the rate).
  const size_t next_panels = P * kRows * job.stride;
  for (size_t t = 0, b = b_begin; t < tiles; ++t) {
    const size_t n = (batch - b) / (tiles - t), ahead = t == 0 ? kPrefetchAhead : next_panels;
    switch (n) {
      case 6: packed_tile<F, P, 6>(job, r0, b, ahead); break;
      case 5: packed_tile<F, P, 5>(job, r0, b, ahead); break;
      case 4: packed_tile<F, P, 4>(job, r0, b, ahead); break;
      case 3: packed_tile<F, P, 3>(job, r0, b, ahead); break;
      case 2: packed_tile<F, P, 2>(job, r0, b, ahead); break;
      default: packed_tile<F, P, 1>(job, r0, b, ahead); break;
    }
    b += n;
  }
}

// ---------------------------------------------------------------- panels on AMX-INT8 tiles
//
// From 16 vectors on, where the CPU has AMX-INT8: each panel's groups are unpacked once into AMX's
// B layout ([quad][row][4] bytes, what F::quad gives) with their scales, and reused by every 16
// vectors. Per group, one tile product C (16 vectors x 16 rows, int32) = A (the 16 vectors' int8
// activations of the group) . B (tdpbsud: signed activations, unsigned weights) gives all the
// group's integer sums; the float steps then run on C's rows in group order, as on every path.

#define AUTOGLM_AMX_INT8 \
  __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

constexpr size_t kTileVectors = 16;

struct TileConfig {  // ldtilecfg's 64 bytes, palette 1
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Two sets of tiles, for two groups in flight: A in tiles 0 and 3 (16 vectors x `group` bytes), B
// in 1 and 4 (group / 4 rows of 16 x 4 bytes), C in 2 and 5 (16 x 16 int32).
AUTOGLM_AMX_INT8 void configure_int8_tiles(size_t group) {
  TileConfig cfg;
  for (size_t set = 0; set < 2; ++set) {
    cfg.rows[3 * set] = kTileVectors, cfg.colsb[3 * set] = static_cast<uint16_t>(group);
    cfg.rows[3 * set + 1] = static_cast<uint8_t>(group / 4), cfg.colsb[3 * set + 1] = 64;
    cfg.rows[3 * set + 2] = kTileVectors, cfg.colsb[3 * set + 2] = 64;
  }
  _tile_loadconfig(&cfg);
}

// One panel's groups in B layout, and each group's scale and offset for the 16 rows.
struct TilePanel {
  aligned_vector<uint8_t> bytes;  // [group][quad][row][4]
  aligned_vector<float> s, m;     // [group][row]
};

template <class F>
AUTOGLM_VNNI void unpack_for_tiles(const QJob& job, size_t r0, TilePanel& u) {
  constexpr size_t kQuads = F::kGroupSize / 4;
  const size_t blocks = job.cols / (F::kGroupSize * F::kGroups), groups = blocks * F::kGroups;
  u.bytes.resize(groups * kQuads * 64);
  u.s.resize(groups * kRows);
  u.m.resize(groups * kRows);
  const uint8_t* panel = job.w + r0 * job.stride;
  for (size_t blk = 0; blk < blocks; ++blk) {
    const uint8_t* block = panel + blk * F::kBlockBytes;
    ScaleSet set;
    F::scales(block, set);
    for (size_t j = 0; j < F::kGroups; ++j) {
      const size_t g = blk * F::kGroups + j;
      _mm512_store_ps(u.s.data() + g * kRows, set.s[j]);
      _mm512_store_ps(u.m.data() + g * kRows, F::kMin ? set.m[j] : _mm512_setzero_ps());
      for (size_t i = 0; i < kQuads; ++i) _mm512_store_si512(u.bytes.data() + (g * kQuads + i) * 64, F::quad(block, j, i));
    }
  }
}

// The float steps of group g for vectors b0..b0+15, from C's rows (cg[v]: the 16 rows' sums).
template <class F>
AUTOGLM_AMX_INT8 inline void tile_steps(const QActs& a, const TilePanel& u, size_t g, size_t b0,
                                        const int32_t (&cg)[kTileVectors][kRows], __m512 (&acc)[kTileVectors]) {
  constexpr size_t G = F::kGroupSize;
  const __m512 s = _mm512_load_ps(u.s.data() + g * kRows), m = _mm512_load_ps(u.m.data() + g * kRows);
  const size_t ab = g * G / kActBlock;
  for (size_t v = 0; v < kTileVectors; ++v) {
    const size_t vec = b0 + v;
    const float t = !F::kMin ? 0.0f : G == kActBlock ? a.t_row(vec)[ab] : a.t16_row(vec)[g];
    acc[v] = apply_group<F::kMin, F::kCorr>(acc[v], _mm512_load_si512(cg[v]), a.corr_row(vec)[g], s, a.dx_row(vec)[ab],
                                            m, t);
  }
}

// C (16 vectors x 16 rows) of a group into c: A = the vectors' activations of the group (q, rows
// lda apart), B the panel's unpacked group (b). The tile numbers are literals (the intrinsics
// paste them into the instruction), hence a macro: tiles 0-2, or 3-5 for the other group of a pair.
#define AUTOGLM_TILE_GROUP(kA, kB, kC, q, lda, b, c) \
  do {                                               \
    _tile_loadd(kA, q, lda);                         \
    _tile_loadd(kB, b, 64);                          \
    _tile_zero(kC);                                  \
    _tile_dpbsud(kC, kA, kB);                        \
    _tile_stored(kC, c, 64);                         \
  } while (0)

// Panels unpacked at a time, and the columns of each pass over them: each pass's activations of 16
// vectors (a 4 KiB copy) stay in L1 for all the panels, and the panels' groups of the pass (4 KiB
// each) for every 16 vectors. (Read in place, 16 rows `cols` bytes apart fall into the same few L1
// sets when cols is a multiple of 4096, and miss each time.)
constexpr size_t kTilePanels = 8;
constexpr size_t kPassCols = 256;

constexpr size_t kMaxPassGroups = kPassCols / 16;

// Groups [g0, g1) of vectors b0..b0+15 (their activations of the pass in q, rows kPassCols bytes
// apart) times one unpacked panel, into acc (16 vectors x 16 rows, carried between passes). All the
// pass's tile products first, then all its float steps: a tile instruction between two float steps
// would make the compiler keep the accumulators in memory.
template <class F>
AUTOGLM_AMX_INT8 void tile_vectors(const QActs& a, const TilePanel& u, size_t b0, size_t g0, size_t g1, const int8_t* q,
                                   float* acc_mem) {
  constexpr size_t G = F::kGroupSize, kBBytes = G * kRows;
  alignas(64) int32_t c[kMaxPassGroups][kTileVectors][kRows];
  const uint8_t* b = u.bytes.data();
  size_t g = g0;
  for (; g + 2 <= g1; g += 2) {  // two sets of tiles in alternation
    AUTOGLM_TILE_GROUP(0, 1, 2, q + (g - g0) * G, kPassCols, b + g * kBBytes, &c[g - g0][0][0]);
    AUTOGLM_TILE_GROUP(3, 4, 5, q + (g + 1 - g0) * G, kPassCols, b + (g + 1) * kBBytes, &c[g + 1 - g0][0][0]);
  }
  if (g < g1) AUTOGLM_TILE_GROUP(0, 1, 2, q + (g - g0) * G, kPassCols, b + g * kBBytes, &c[g - g0][0][0]);
  __m512 acc[kTileVectors];
  for (size_t v = 0; v < kTileVectors; ++v) acc[v] = _mm512_load_ps(acc_mem + v * kRows);
  for (g = g0; g < g1; ++g) tile_steps<F>(a, u, g, b0, c[g - g0], acc);
  for (size_t v = 0; v < kTileVectors; ++v) _mm512_store_ps(acc_mem + v * kRows, acc[v]);
}

// Whole panels of [r0, r1) for every vector: 16 at a time on the tiles, the rest on VNNI.
template <class F>
AUTOGLM_AMX_INT8 void tile_panels(const QJob& job, size_t r0, size_t r1) {
  const QActs& a = *job.acts;
  const size_t batch = a.batch, tiled = batch / kTileVectors * kTileVectors, groups = job.cols / F::kGroupSize;
  constexpr size_t kPassGroups = kPassCols / F::kGroupSize;
  thread_local TilePanel u[kTilePanels];
  thread_local aligned_vector<float> acc;  // [panel][16 vectors][vector][row]
  configure_int8_tiles(F::kGroupSize);
  for (size_t r = r0; r < r1; r += kTilePanels * kRows) {
    const size_t n = std::min(kTilePanels, (r1 - r) / kRows);
    for (size_t p = 0; p < n; ++p) unpack_for_tiles<F>(job, r + p * kRows, u[p]);
    acc.assign(n * tiled * kRows, 0.0f);
    alignas(64) int8_t pass[kTileVectors * kPassCols];
    for (size_t g0 = 0; g0 < groups; g0 += kPassGroups) {
      const size_t g1 = std::min(groups, g0 + kPassGroups), bytes = (g1 - g0) * F::kGroupSize;
      for (size_t b = 0; b < tiled; b += kTileVectors) {
        for (size_t v = 0; v < kTileVectors; ++v)
          std::memcpy(pass + v * kPassCols, a.q_row(b + v) + g0 * F::kGroupSize, bytes);
        for (size_t p = 0; p < n; ++p)
          tile_vectors<F>(a, u[p], b, g0, g1, pass, acc.data() + (p * tiled + b) * kRows);
      }
    }
    for (size_t p = 0; p < n; ++p) {
      for (size_t b = 0; b < tiled; ++b)
        std::memcpy(job.y + b * job.rows + r + p * kRows, acc.data() + (p * tiled + b) * kRows, kRows * sizeof(float));
      if (tiled < batch) packed_panels<F, 1>(job, r + p * kRows, tiled);
    }
  }
}

// The stored-format rows after the last whole panel, for types without a stored-layout kernel here.
void stored_rows_avx2(const QJob& job, size_t r0, size_t r1) { qrows_avx2(job.type)(job, r0, r1); }

// Rows [r0, r1) of a panels16 matrix: whole panels two at a time (on AMX tiles from 16 vectors on,
// where the CPU has them), then the stored-format tail.
template <class F, QRows kTail>
AUTOGLM_VNNI void packed_rows(const QJob& job, size_t r0, size_t r1) {
  const size_t full = std::min(r1, job.rows / kRows * kRows);
  size_t r = r0;
  if (job.acts->batch >= kTileVectors && r < full && amx_int8_available()) {
    tile_panels<F>(job, r, full);
    r = full;
  }
  for (; r + 2 * kRows <= full; r += 2 * kRows) packed_panels<F, 2>(job, r);
  if (r < full) packed_panels<F, 1>(job, r), r += kRows;
  if (r < r1) kTail(job, r, r1);
}

// quantize_block_scalar with 16 lanes: max_ps(|x|, amax) keeps amax when |x| is NaN, as std::max
// does; max_ps(v, -127) gives -127 for a NaN v, as the scalar comparison does; cvtps rounds to
// nearest even, as the scalar magic-number addition does.
AUTOGLM_VNNI void quantize_block_lanes(const float* x, int8_t* q, float& dx, float& t, int32_t* sum16) {
  const __m512 lo = _mm512_loadu_ps(x), hi = _mm512_loadu_ps(x + 16);
  __m512 amax = _mm512_max_ps(_mm512_abs_ps(lo), _mm512_setzero_ps());
  amax = _mm512_max_ps(_mm512_abs_ps(hi), amax);
  dx = _mm512_reduce_max_ps(amax) / 127.0f;  // no NaN left in amax
  const __m512 id = _mm512_set1_ps(dx != 0 ? 1.0f / dx : 0.0f);
  int32_t sums[2];
  const __m512 halves[2] = {lo, hi};
  for (size_t h = 0; h < 2; ++h) {
    __m512 v = _mm512_mul_ps(halves[h], id);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    const __m512i qi = _mm512_cvtps_epi32(v);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * h), _mm512_cvtepi32_epi8(qi));
    sums[h] = _mm512_reduce_add_epi32(qi);
  }
  t = dx * static_cast<float>(sums[0] + sums[1]);
  sum16[0] = sums[0];
  sum16[1] = sums[1];
}

}  // namespace

QuantizeBlock quantize_block_avx512() {
  static const QuantizeBlock f = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") ? quantize_block_lanes : nullptr;
  }();
  return f;
}

QRows qrows_avx512(DType type) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512vl")) return nullptr;
  switch (type) {
    case DType::q8_0: return rows<Q8_0>;
    case DType::q4_0: return rows<Q4_0>;
    case DType::q5_0: return rows<Q5_0>;
    case DType::q4_k: return rows<Q4K>;
    case DType::q6_k: return rows<Q6K>;
    default: return nullptr;
  }
}

QRows qrows_panels_avx512(DType type) {
  if (!qrows_avx512(DType::q8_0)) return nullptr;  // no VNNI
  switch (type) {
    case DType::q8_0: return packed_rows<PanelQ8_0, rows<Q8_0>>;
    case DType::q4_0: return packed_rows<PanelQ4_0, rows<Q4_0>>;
    case DType::q5_0: return packed_rows<PanelQ5_0, rows<Q5_0>>;
    case DType::q4_k: return packed_rows<PanelQ4K, rows<Q4K>>;
    case DType::q6_k: return packed_rows<PanelQ6K, rows<Q6K>>;
    case DType::q4_1: return packed_rows<PanelQ4_1, stored_rows_avx2>;
    case DType::q5_1: return packed_rows<PanelQ5_1, stored_rows_avx2>;
    case DType::iq4_nl: return packed_rows<PanelIQ4NL, stored_rows_avx2>;
    case DType::q2_k: return packed_rows<PanelQ2K, stored_rows_avx2>;
    case DType::q3_k: return packed_rows<PanelQ3K, stored_rows_avx2>;
    case DType::q5_k: return packed_rows<PanelQ5K, stored_rows_avx2>;
    case DType::iq4_xs: return packed_rows<PanelIQ4XS, stored_rows_avx2>;
    default: return nullptr;
  }
}

}  // namespace autoglm::kernels

#else

namespace autoglm::kernels {
QRows qrows_avx512(DType) { return nullptr; }
QRows qrows_panels_avx512(DType) { return nullptr; }
QuantizeBlock quantize_block_avx512() { return nullptr; }
}  // namespace autoglm::kernels

#endif
