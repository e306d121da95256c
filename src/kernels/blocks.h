#pragma once
// Internal to the kernels module: the ggml block layouts (byte-exact with ggml-common.h) and the
// per-ISA row-dot entry points that matmul.cpp dispatches to.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "autoglm/kernels.h"

namespace autoglm::kernels {

constexpr size_t kQK = 32;    // elements per Q8_0 / Q4_0 block
constexpr size_t kQK_K = 256; // elements per K-quant super-block

// x = d * q
struct BlockQ8_0 {
  uint16_t d;     // f16 scale
  int8_t qs[32];
};
// x = d * (q - 8); element j (j < 16) is the low nibble of qs[j], element j + 16 the high nibble.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
// x = d * (q - 16), q 5-bit: element j (j < 16) is the low nibble of qs[j] with bit j of qh as its
// 5th bit, element j + 16 the high nibble with bit j + 16 of qh (qh little-endian).
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
// 8 sub-blocks of 32: x = d * sc[j] * q - dmin * m[j], with 6-bit sc/m packed in `scales`.
// qs[32 * g + l]: low nibble is element 64 * g + l, high nibble element 64 * g + 32 + l.
struct BlockQ4K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
// 16 sub-blocks of 16: x = d * scales[j] * (q - 32), q 6-bit: 4 low bits in ql, 2 high bits in qh.
struct BlockQ6K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
// x = d * q + m, q 4-bit: element j (j < 16) the low nibble of qs[j], j + 16 the high one.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[16];
};
// x = d * q + m, q 5-bit as in Q5_0 (5th bits in qh).
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[16];
};
// 16 sub-blocks of 16: x = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4), q 2-bit. Sub-block
// j of each half h (128 elements, 32 bytes of qs) takes bits 2 (j / 2) of qs[32 h + 16 (j % 2) + l].
struct BlockQ2K {
  uint8_t scales[16];
  uint8_t qs[64];
  uint16_t d;
  uint16_t dmin;
};
// 16 sub-blocks of 16: x = d * (sc[j] - 32) * q, q = 2 bits of qs (as Q2_K) minus 4 where the
// element's bit of hmask is clear; the 6-bit scales packed in `scales`.
struct BlockQ3K {
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];
  uint16_t d;
};
// 8 sub-blocks of 32: x = d * sc[j] * q - dmin * m[j] as Q4_K, q 5-bit: the nibbles as Q4_K, the
// 5th bit of sub-block j's element l at bit j of qh[l].
struct BlockQ5K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
// 8 sub-blocks of 32: x = d * (ls[j] - 32) * kIq4nl[q], q 4-bit (element l < 16 of sub-block j the
// low nibble of qs[16 j + l], l + 16 the high one); ls 6-bit: 4 bits in scales_l, 2 in scales_h.
struct BlockIQ4XS {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[4];
  uint8_t qs[128];
};
// x = d * kIq4nl[q]: IQ4_XS's levels on plain blocks of 32 (element l < 16 the low nibble of qs[l],
// l + 16 the high one). llama.cpp writes it where an IQ4_XS matrix's rows are not whole 256-blocks
// (GLM-4-9B's ffn_down).
struct BlockIQ4NL {
  uint16_t d;
  uint8_t qs[16];
};
// IQ4_NL / IQ4_XS's 16 non-uniform levels.
constexpr int8_t kIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ4K) == 144 && sizeof(BlockQ6K) == 210);
static_assert(sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_1) == 24 && sizeof(BlockQ2K) == 84);
static_assert(sizeof(BlockQ3K) == 110 && sizeof(BlockQ5K) == 176 && sizeof(BlockIQ4XS) == 136);
static_assert(sizeof(BlockIQ4NL) == 18);

// 6-bit scale and min of sub-block j (0..7) of a Q4_K block: j < 4 sit in the low 6 bits of bytes
// j and j + 4; j >= 4 are split into a nibble in byte j + 4 and the top 2 bits of bytes j - 4 / j.
inline void q4k_scale_min(size_t j, const uint8_t* scales, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = scales[j] & 63;
    m = scales[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// All eight scales (out[0..7]) and mins (out[8..15]) at once, with 32-bit word operations: the
// same unpacking as q4k_scale_min, for the SIMD paths where eight scalar decodes would dominate.
inline void q4k_unpack_scales(const uint8_t* scales, uint8_t* out) {
  uint32_t w[3];
  std::memcpy(w, scales, sizeof(w));
  const uint32_t sc_hi = (w[2] & 0x0F0F0F0F) | ((w[0] >> 2) & 0x30303030);  // (byte >> 6) << 4, per byte
  const uint32_t m_hi = ((w[2] >> 4) & 0x0F0F0F0F) | ((w[1] >> 2) & 0x30303030);
  const uint32_t unpacked[4] = {w[0] & 0x3F3F3F3F, sc_hi, w[1] & 0x3F3F3F3F, m_hi};
  std::memcpy(out, unpacked, sizeof(unpacked));
}

// The 6-bit value of element e (0..255) of a Q6_K block, 0..63 (subtract 32 for the signed value).
// Each half of 128 has 64 bytes of ql and 32 of qh; element l + 32 * k of a half (l < 32, k < 4)
// takes nibble k / 2 of ql[l + 32 * (k % 2)] and bits 2k..2k+1 of qh[l].
inline int q6k_value(const BlockQ6K& b, size_t e) {
  const size_t half = e / 128, k = (e % 128) / 32, l = e % 32;
  const uint8_t ql = b.ql[64 * half + l + 32 * (k % 2)];
  const uint8_t qh = b.qh[32 * half + l];
  const int low = (k < 2) ? (ql & 0xF) : (ql >> 4);
  return low | (((qh >> (2 * k)) & 3) << 4);
}

float f16_to_f32(uint16_t h);

// One block to floats: the definition of each format (the SIMD kernels must agree with these).
inline void dequantize_block(const BlockQ8_0& b, float* y) {
  const float d = f16_to_f32(b.d);
  for (size_t j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(b.qs[j]);
}

inline void dequantize_block(const BlockQ4_0& b, float* y) {
  const float d = f16_to_f32(b.d);
  for (size_t j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>((b.qs[j] & 0xF) - 8);
    y[j + kQK / 2] = d * static_cast<float>((b.qs[j] >> 4) - 8);
  }
}

// The 5-bit value (0..31) of element j of a Q5_0 block.
inline int q5_0_value(const BlockQ5_0& b, size_t j) {
  uint32_t qh = 0;
  std::memcpy(&qh, b.qh, sizeof(qh));
  const int low = j < kQK / 2 ? (b.qs[j] & 0xF) : (b.qs[j - kQK / 2] >> 4);
  return low | static_cast<int>(((qh >> j) & 1) << 4);
}

inline void dequantize_block(const BlockQ5_0& b, float* y) {
  const float d = f16_to_f32(b.d);
  for (size_t j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q5_0_value(b, j) - 16);
}

inline void dequantize_block(const BlockQ4K& b, float* y) {
  const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
  for (size_t j = 0; j < 8; ++j) {  // sub-block j: nibble j % 2 of qs[32 * (j / 2) + l]
    uint8_t sc = 0, m = 0;
    q4k_scale_min(j, b.scales, sc, m);
    const float scale = d * sc, min = dmin * m;
    const uint8_t* q = b.qs + 32 * (j / 2);
    for (size_t l = 0; l < 32; ++l) {
      const int v = (j % 2 == 0) ? (q[l] & 0xF) : (q[l] >> 4);
      y[32 * j + l] = scale * static_cast<float>(v) - min;
    }
  }
}

inline void dequantize_block(const BlockQ6K& b, float* y) {
  const float d = f16_to_f32(b.d);
  for (size_t e = 0; e < kQK_K; ++e)
    y[e] = d * static_cast<float>(b.scales[e / 16]) * static_cast<float>(q6k_value(b, e) - 32);
}

// ---- the types defined by their groups ----
//
// Each group (sub-block) of these types is integer weights wq, a float scale s and an offset m:
// x = s * wq + m, exactly as ggml's dequantize_row_* rounds it (s and m are the products ggml
// forms, m = -(dmin * min) where ggml subtracts). The same group_of gives the int8 products
// (qmatmul.cpp) and dequantize_block below.
float f16_to_f32(uint16_t h);

inline void group_of(const BlockQ4_1& b, size_t, int* wq, float& s, float& m) {
  for (size_t l = 0; l < 16; ++l) {
    wq[l] = b.qs[l] & 0xF;
    wq[l + 16] = b.qs[l] >> 4;
  }
  s = f16_to_f32(b.d);
  m = f16_to_f32(b.m);
}

inline void group_of(const BlockQ5_1& b, size_t, int* wq, float& s, float& m) {
  uint32_t qh = 0;
  std::memcpy(&qh, b.qh, sizeof(qh));
  for (size_t l = 0; l < 16; ++l) {
    wq[l] = (b.qs[l] & 0xF) | static_cast<int>(((qh >> l) & 1) << 4);
    wq[l + 16] = (b.qs[l] >> 4) | static_cast<int>(((qh >> (l + 16)) & 1) << 4);
  }
  s = f16_to_f32(b.d);
  m = f16_to_f32(b.m);
}

inline void group_of(const BlockQ2K& b, size_t j, int* wq, float& s, float& m) {  // j < 16
  const uint8_t* q = b.qs + 32 * (j / 8) + 16 * (j % 2);
  const int shift = static_cast<int>(2 * ((j % 8) / 2));
  for (size_t l = 0; l < 16; ++l) wq[l] = (q[l] >> shift) & 3;
  s = f16_to_f32(b.d) * static_cast<float>(b.scales[j] & 0xF);
  m = -(f16_to_f32(b.dmin) * static_cast<float>(b.scales[j] >> 4));
}

// The 6-bit scale (0..63, 32 is zero) of sub-block j of a Q3_K block: the low 4 bits are nibble
// j / 8 of scales[j % 8], the high 2 bits bits 2 (j / 4) of scales[8 + j % 4].
inline int q3k_scale(const uint8_t* scales, size_t j) {
  const int low = (scales[j % 8] >> (4 * (j / 8))) & 0xF;
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return low | (high << 4);
}

inline void group_of(const BlockQ3K& b, size_t j, int* wq, float& s, float&) {  // j < 16
  const uint8_t* q = b.qs + 32 * (j / 8) + 16 * (j % 2);
  const uint8_t* hm = b.hmask + 16 * (j % 2);
  const int shift = static_cast<int>(2 * ((j % 8) / 2));
  const int bit = 1 << (4 * (j / 8) + (j % 8) / 2);
  for (size_t l = 0; l < 16; ++l) wq[l] = ((q[l] >> shift) & 3) - ((hm[l] & bit) ? 0 : 4);
  s = f16_to_f32(b.d) * static_cast<float>(q3k_scale(b.scales, j) - 32);
}

inline void group_of(const BlockQ5K& b, size_t j, int* wq, float& s, float& m) {  // j < 8
  uint8_t sc = 0, mn = 0;
  q4k_scale_min(j, b.scales, sc, mn);
  const uint8_t* q = b.qs + 32 * (j / 2);
  for (size_t l = 0; l < 32; ++l) {
    const int low = (j % 2 == 0) ? (q[l] & 0xF) : (q[l] >> 4);
    wq[l] = low | (((b.qh[l] >> j) & 1) << 4);
  }
  s = f16_to_f32(b.d) * static_cast<float>(sc);
  m = -(f16_to_f32(b.dmin) * static_cast<float>(mn));
}

inline void group_of(const BlockIQ4XS& b, size_t j, int* wq, float& s, float&) {  // j < 8
  const int ls = ((b.scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((b.scales_h >> (2 * j)) & 3) << 4);
  const uint8_t* q = b.qs + 16 * j;
  for (size_t l = 0; l < 16; ++l) {
    wq[l] = kIq4nl[q[l] & 0xF];
    wq[l + 16] = kIq4nl[q[l] >> 4];
  }
  s = f16_to_f32(b.d) * static_cast<float>(ls - 32);
}

inline void group_of(const BlockIQ4NL& b, size_t, int* wq, float& s, float&) {
  for (size_t l = 0; l < 16; ++l) {
    wq[l] = kIq4nl[b.qs[l] & 0xF];
    wq[l + 16] = kIq4nl[b.qs[l] >> 4];
  }
  s = f16_to_f32(b.d);
}

// Elements per group and per block of a block type defined by its groups.
template <class Block>
constexpr size_t kGroupOf = 32;
template <>
inline constexpr size_t kGroupOf<BlockQ2K> = 16;
template <>
inline constexpr size_t kGroupOf<BlockQ3K> = 16;
template <class Block>
constexpr size_t kBlockElems = kQK_K;
template <>
inline constexpr size_t kBlockElems<BlockQ4_1> = kQK;
template <>
inline constexpr size_t kBlockElems<BlockQ5_1> = kQK;
template <>
inline constexpr size_t kBlockElems<BlockIQ4NL> = kQK;

template <class Block>
inline void dequantize_groups(const Block& b, float* y) {
  constexpr size_t group = kGroupOf<Block>;
  int wq[32] = {};
  for (size_t j = 0; j < kBlockElems<Block> / group; ++j) {
    float s = 0, m = 0;
    group_of(b, j, wq, s, m);
    for (size_t l = 0; l < group; ++l) y[group * j + l] = s * static_cast<float>(wq[l]) + m;
  }
}
inline void dequantize_block(const BlockQ4_1& b, float* y) { dequantize_groups(b, y); }
inline void dequantize_block(const BlockQ5_1& b, float* y) { dequantize_groups(b, y); }
inline void dequantize_block(const BlockQ2K& b, float* y) { dequantize_groups(b, y); }
inline void dequantize_block(const BlockQ3K& b, float* y) { dequantize_groups(b, y); }
inline void dequantize_block(const BlockQ5K& b, float* y) { dequantize_groups(b, y); }
inline void dequantize_block(const BlockIQ4XS& b, float* y) { dequantize_groups(b, y); }
inline void dequantize_block(const BlockIQ4NL& b, float* y) { dequantize_groups(b, y); }

// out[b] = dot(row, x + b * x_stride) for b < nb (1..kMaxBatchTile); `cols` elements in the row.
// Each vector's sum is computed the same way whatever nb is, so results do not depend on batch.
using RowDot = void (*)(const void* row, size_t cols, const float* x, size_t x_stride, size_t nb, float* out);
constexpr size_t kMaxBatchTile = 4;

RowDot row_dot_scalar(DType type);
RowDot row_dot_avx2(DType type);    // nullptr when this build has no x86 SIMD path
RowDot row_dot_avx512(DType type);

// Bulk f16 <-> f32 with F16C (only called when the CPU has it).
void f16_to_f32_row_f16c(const uint16_t* src, float* dst, size_t n);
void f32_to_f16_row_f16c(const float* src, uint16_t* dst, size_t n);

}  // namespace autoglm::kernels
