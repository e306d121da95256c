// Layout::panels16: the stored blocks of 16 rows, rewritten and transposed unit by unit (see qmatmul.h).
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

// A run of 32 Q4_K quant bytes holds group A in its low nibbles and group B in its high ones.
void regroup_q4k(uint8_t* block) {
  for (uint8_t* q = block + 16; q < block + sizeof(BlockQ4K); q += 32) {
    uint8_t a[32], b[32];
    for (size_t l = 0; l < 32; ++l) a[l] = q[l] & 0x0F, b[l] = q[l] >> 4;
    for (size_t t = 0; t < 16; ++t) {
      q[t] = static_cast<uint8_t>(a[t] | a[16 + t] << 4);
      q[16 + t] = static_cast<uint8_t>(b[t] | b[16 + t] << 4);
    }
  }
}
void ungroup_q4k(uint8_t* block) {
  for (uint8_t* q = block + 16; q < block + sizeof(BlockQ4K); q += 32) {
    uint8_t a[32], b[32];
    for (size_t t = 0; t < 16; ++t) {
      a[t] = q[t] & 0x0F, a[16 + t] = q[t] >> 4;
      b[t] = q[16 + t] & 0x0F, b[16 + t] = q[16 + t] >> 4;
    }
    for (size_t l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(a[l] | b[l] << 4);
  }
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

constexpr PanelFormat kQ8_0{sizeof(BlockQ8_0), {{2, 1}, {4, 8}, {0, 0}}, flip_q8_0, flip_q8_0};
constexpr PanelFormat kQ4_0{sizeof(BlockQ4_0), {{2, 1}, {4, 4}, {0, 0}}, as_stored, as_stored};
constexpr PanelFormat kQ4K{sizeof(BlockQ4K), {{4, 4}, {4, 32}, {0, 0}}, regroup_q4k, ungroup_q4k};
constexpr PanelFormat kQ6K{sizeof(BlockQ6K), {{2, 1}, {1, 16}, {4, 48}}, to_panel_q6k, from_panel_q6k};

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
    case DType::q4_k: return &kQ4K;
    case DType::q6_k: return &kQ6K;
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
