// Layout::panels16: the stored blocks of 16 rows, rewritten and transposed unit by unit (see qmatmul.h).
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "autoglm/kernels.h"
#include "blocks.h"
#include "qmatmul.h"

namespace autoglm::kernels {
namespace {

constexpr size_t kMaxBlockBytes = sizeof(BlockQ6K);

void flip_q8_0(uint8_t* block) {
  for (size_t i = 0; i < 32; ++i) block[2 + i] ^= 0x80;
}
void as_stored(uint8_t*) {}

// Each 32-byte run of Q4_K / Q5_K quant bytes (n of them at q) holds group A in its low nibbles
// and group B in its high ones; the panel bytes hold A then B, each as Q4_0 holds a block.
void regroup_runs(uint8_t* q, size_t n) {
  for (uint8_t* run = q; run < q + 32 * n; run += 32) {
    uint8_t a[32], b[32];
    for (size_t l = 0; l < 32; ++l) a[l] = run[l] & 0x0F, b[l] = run[l] >> 4;
    for (size_t t = 0; t < 16; ++t) {
      run[t] = static_cast<uint8_t>(a[t] | a[16 + t] << 4);
      run[16 + t] = static_cast<uint8_t>(b[t] | b[16 + t] << 4);
    }
  }
}
void ungroup_runs(uint8_t* q, size_t n) {
  for (uint8_t* run = q; run < q + 32 * n; run += 32) {
    uint8_t a[32], b[32];
    for (size_t t = 0; t < 16; ++t) {
      a[t] = run[t] & 0x0F, a[16 + t] = run[t] >> 4;
      b[t] = run[16 + t] & 0x0F, b[16 + t] = run[16 + t] >> 4;
    }
    for (size_t l = 0; l < 32; ++l) run[l] = static_cast<uint8_t>(a[l] | b[l] << 4);
  }
}
void regroup_q4k(uint8_t* block) { regroup_runs(block + offsetof(BlockQ4K, qs), 4); }
void ungroup_q4k(uint8_t* block) { ungroup_runs(block + offsetof(BlockQ4K, qs), 4); }

// 32 fifth bits of a group of 32 (bit e = element e) as the panel's 4-byte unit: byte k, bit i =
// element 4i + k, so that a kernel moves quad i's four bits to bit 4 of their bytes with one shift.
uint32_t bits_to_panel(uint32_t bits) {
  uint32_t out = 0;
  for (uint32_t e = 0; e < 32; ++e) out |= ((bits >> e) & 1u) << (8 * (e % 4) + e / 4);
  return out;
}
uint32_t bits_from_panel(uint32_t unit) {
  uint32_t out = 0;
  for (uint32_t e = 0; e < 32; ++e) out |= ((unit >> (8 * (e % 4) + e / 4)) & 1u) << e;
  return out;
}
template <uint32_t (*kMap)(uint32_t), size_t kAt>
void map_fifth_bits(uint8_t* block) {  // Q5_0 / Q5_1: the qh word at byte kAt
  uint32_t w = 0;
  std::memcpy(&w, block + kAt, 4);
  w = kMap(w);
  std::memcpy(block + kAt, &w, 4);
}
// Q5_K: qh[l] bit j is element l of group j; unit j of the panel bytes holds group j's 32 bits.
void to_panel_q5k(uint8_t* block) {
  uint8_t* qh = block + offsetof(BlockQ5K, qh);
  uint32_t units[8] = {};
  for (size_t j = 0; j < 8; ++j) {
    uint32_t bits = 0;
    for (uint32_t l = 0; l < 32; ++l) bits |= ((qh[l] >> j) & 1u) << l;
    units[j] = bits_to_panel(bits);
  }
  std::memcpy(qh, units, sizeof(units));
  regroup_runs(block + offsetof(BlockQ5K, qs), 4);
}
void from_panel_q5k(uint8_t* block) {
  uint8_t* qh = block + offsetof(BlockQ5K, qh);
  uint32_t units[8];
  std::memcpy(units, qh, sizeof(units));
  std::memset(qh, 0, 32);
  for (size_t j = 0; j < 8; ++j) {
    const uint32_t bits = bits_from_panel(units[j]);
    for (uint32_t l = 0; l < 32; ++l) qh[l] = static_cast<uint8_t>(qh[l] | ((bits >> l) & 1u) << j);
  }
  ungroup_runs(block + offsetof(BlockQ5K, qs), 4);
}

// Q6_K: the 256 6-bit values, low nibbles and high pairs per 64 (see qmatmul.h).
void to_panel_q6k(uint8_t* block) {
  BlockQ6K b;
  std::memcpy(&b, block, sizeof(b));
  uint8_t* out = block;
  std::memcpy(out, &b.d, 2);
  std::memcpy(out + 2, b.scales, 16);
  for (size_t c = 0; c < 4; ++c) {
    uint8_t* nib = out + 18 + 48 * c;
    uint8_t* high = nib + 32;
    const size_t e = 64 * c;
    for (size_t t = 0; t < 32; ++t)
      nib[t] = static_cast<uint8_t>((q6k_value(b, e + t) & 0xF) | (q6k_value(b, e + 32 + t) & 0xF) << 4);
    for (size_t t = 0; t < 16; ++t) {
      int h = 0;
      for (size_t s = 0; s < 4; ++s) h |= (q6k_value(b, e + 16 * s + t) >> 4) << (2 * s);
      high[t] = static_cast<uint8_t>(h);
    }
  }
}
void from_panel_q6k(uint8_t* block) {
  BlockQ6K b{};
  std::memcpy(&b.d, block, 2);
  std::memcpy(b.scales, block + 2, 16);
  for (size_t c = 0; c < 4; ++c) {
    const uint8_t* nib = block + 18 + 48 * c;
    const uint8_t* high = nib + 32;
    for (size_t i = 0; i < 64; ++i) {
      const size_t t = i % 32;
      const int low = i < 32 ? nib[t] & 0xF : nib[t] >> 4;
      const int q = low | ((high[i % 16] >> (2 * (i / 16))) & 3) << 4;
      // the stored encoding of value e (q6k_value read backwards)
      const size_t e = 64 * c + i, half = e / 128, k = (e % 128) / 32, l = e % 32;
      uint8_t& ql = b.ql[64 * half + l + 32 * (k % 2)];
      ql = static_cast<uint8_t>(ql | (k < 2 ? q & 0xF : (q & 0xF) << 4));
      b.qh[32 * half + l] = static_cast<uint8_t>(b.qh[32 * half + l] | (q >> 4) << (2 * k));
    }
  }
  std::memcpy(block, &b, sizeof(b));
}

constexpr PanelFormat kQ8_0{sizeof(BlockQ8_0), {{2, 1}, {4, 8}}, flip_q8_0, flip_q8_0};
constexpr PanelFormat kQ4_0{sizeof(BlockQ4_0), {{2, 1}, {4, 4}}, as_stored, as_stored};
constexpr PanelFormat kQ4_1{sizeof(BlockQ4_1), {{4, 1}, {4, 4}}, as_stored, as_stored};
constexpr PanelFormat kQ5_0{sizeof(BlockQ5_0), {{2, 1}, {4, 1}, {4, 4}}, map_fifth_bits<bits_to_panel, 2>,
                            map_fifth_bits<bits_from_panel, 2>};
constexpr PanelFormat kQ5_1{sizeof(BlockQ5_1), {{4, 1}, {4, 1}, {4, 4}}, map_fifth_bits<bits_to_panel, 4>,
                            map_fifth_bits<bits_from_panel, 4>};
constexpr PanelFormat kIQ4NL{sizeof(BlockIQ4NL), {{2, 1}, {4, 4}}, as_stored, as_stored};
constexpr PanelFormat kQ2K{sizeof(BlockQ2K), {{4, 4}, {4, 16}, {4, 1}}, as_stored, as_stored};
constexpr PanelFormat kQ3K{sizeof(BlockQ3K), {{4, 8}, {4, 16}, {4, 3}, {2, 1}}, as_stored, as_stored};
constexpr PanelFormat kQ4K{sizeof(BlockQ4K), {{4, 4}, {4, 32}}, regroup_q4k, ungroup_q4k};
constexpr PanelFormat kQ5K{sizeof(BlockQ5K), {{4, 4}, {4, 8}, {4, 32}}, to_panel_q5k, from_panel_q5k};
constexpr PanelFormat kQ6K{sizeof(BlockQ6K), {{2, 1}, {1, 16}, {4, 48}}, to_panel_q6k, from_panel_q6k};
constexpr PanelFormat kIQ4XS{sizeof(BlockIQ4XS), {{4, 2}, {4, 32}}, as_stored, as_stored};

// fn(packed_at, at, bytes) for each unit of row r's panel bytes: `bytes` bytes at offset `at` of
// the row's panel bytes sit at offset packed_at of the panel block.
template <class Fn>
void for_each_unit(const PanelFormat& f, size_t r, Fn&& fn) {
  size_t at = 0;
  for (const PanelFormat::Segment& seg : f.segments)
    for (size_t u = 0; u < seg.count; ++u, at += seg.unit) fn(at * kPanelRows + r * seg.unit, at, seg.unit);
}

}  // namespace

const PanelFormat* panel_format(DType type) {
  switch (type) {
    case DType::q8_0: return &kQ8_0;
    case DType::q4_0: return &kQ4_0;
    case DType::q4_1: return &kQ4_1;
    case DType::q5_0: return &kQ5_0;
    case DType::q5_1: return &kQ5_1;
    case DType::iq4_nl: return &kIQ4NL;
    case DType::q2_k: return &kQ2K;
    case DType::q3_k: return &kQ3K;
    case DType::q4_k: return &kQ4K;
    case DType::q5_k: return &kQ5K;
    case DType::q6_k: return &kQ6K;
    case DType::iq4_xs: return &kIQ4XS;
    default: return nullptr;
  }
}

void pack_panel(const PanelFormat& f, const uint8_t* src, size_t stride, uint8_t* dst) {
  uint8_t row[kMaxBlockBytes];
  for (size_t b = 0; b < stride / f.block_bytes; ++b) {
    uint8_t* block = dst + b * f.block_bytes * kPanelRows;
    for (size_t r = 0; r < kPanelRows; ++r) {
      std::memcpy(row, src + r * stride + b * f.block_bytes, f.block_bytes);
      f.to_panel(row);
      for_each_unit(f, r, [&](size_t packed_at, size_t at, size_t n) { std::memcpy(block + packed_at, row + at, n); });
    }
  }
}

void unpack_panel(const PanelFormat& f, const uint8_t* src, size_t stride, uint8_t* dst) {
  uint8_t row[kMaxBlockBytes];
  for (size_t b = 0; b < stride / f.block_bytes; ++b) {
    const uint8_t* block = src + b * f.block_bytes * kPanelRows;
    for (size_t r = 0; r < kPanelRows; ++r) {
      for_each_unit(f, r, [&](size_t packed_at, size_t at, size_t n) { std::memcpy(row + at, block + packed_at, n); });
      f.from_panel(row);
      std::memcpy(dst + r * stride + b * f.block_bytes, row, f.block_bytes);
    }
  }
}

Layout preferred_layout(DType type, size_t rows) {
  if (rows < kPanelRows || active_isa() != Isa::avx512 || !qrows_panels_avx512(type)) return Layout::rows;
  return Layout::panels16;
}

void pack_weights(DType type, Layout layout, void* w, size_t rows, size_t cols) {
  if (layout == Layout::rows) return;
  if (layout == Layout::tiles_bf16) {
    if (type != DType::bf16) throw std::invalid_argument("pack_weights: the tiles_bf16 layout holds BF16 weights only");
    auto* elems = static_cast<uint16_t*>(w);
    const std::vector<uint16_t> stored(elems, elems + rows * cols);
    return pack_tiles_bf16(stored.data(), cols, rows, cols, elems);
  }
  const PanelFormat* f = panel_format(type);
  if (!f) throw std::invalid_argument("pack_weights: this weight type has no panels16 layout");
  const size_t stride = row_bytes(type, cols);
  std::vector<uint8_t> stored(kPanelRows * stride);
  auto* bytes = static_cast<uint8_t*>(w);
  for (size_t r = 0; r + kPanelRows <= rows; r += kPanelRows) {
    std::memcpy(stored.data(), bytes + r * stride, stored.size());
    pack_panel(*f, stored.data(), stride, bytes + r * stride);
  }
}

}  // namespace autoglm::kernels
