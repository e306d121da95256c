// Layout::panels16: the stored blocks of 16 rows, transposed dword by dword (see qmatmul.h).
#include <cstring>
#include <stdexcept>
#include <vector>

#include "autoglm/kernels.h"
#include "blocks.h"
#include "qmatmul.h"

namespace autoglm::kernels {
namespace {

constexpr PanelFormat kQ8_0{sizeof(BlockQ8_0), 2, 1, 8, 0x80, false};
constexpr PanelFormat kQ4_0{sizeof(BlockQ4_0), 2, 1, 4, 0, false};
constexpr PanelFormat kQ4K{sizeof(BlockQ4K), 4, 4, 32, 0, true};
constexpr size_t kMaxBlockBytes = sizeof(BlockQ4K);

// A run of 32 Q4_K quant bytes holds group A in its low nibbles and group B in its high ones;
// regrouped, bytes 0..15 hold A (element t low, 16 + t high) and bytes 16..31 hold B likewise.
void regroup(uint8_t* q) {
  uint8_t a[32], b[32];
  for (size_t l = 0; l < 32; ++l) a[l] = q[l] & 0x0F, b[l] = q[l] >> 4;
  for (size_t t = 0; t < 16; ++t) {
    q[t] = static_cast<uint8_t>(a[t] | a[16 + t] << 4);
    q[16 + t] = static_cast<uint8_t>(b[t] | b[16 + t] << 4);
  }
}
void ungroup(uint8_t* q) {
  uint8_t a[32], b[32];
  for (size_t t = 0; t < 16; ++t) {
    a[t] = q[t] & 0x0F, a[16 + t] = q[t] >> 4;
    b[t] = q[16 + t] & 0x0F, b[16 + t] = q[16 + t] >> 4;
  }
  for (size_t l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(a[l] | b[l] << 4);
}

// The quants of one row's stored block as the panel holds them (xor flip, regrouped), or back.
void to_panel_bytes(const PanelFormat& f, uint8_t* block) {
  uint8_t* q = block + f.header_units * f.header_unit;
  for (size_t i = 0; i < 4 * f.quant_dwords; ++i) q[i] ^= f.flip;
  if (f.regroup)
    for (size_t i = 0; i < 4 * f.quant_dwords; i += 32) regroup(q + i);
}
void from_panel_bytes(const PanelFormat& f, uint8_t* block) {
  uint8_t* q = block + f.header_units * f.header_unit;
  if (f.regroup)
    for (size_t i = 0; i < 4 * f.quant_dwords; i += 32) ungroup(q + i);
  for (size_t i = 0; i < 4 * f.quant_dwords; ++i) q[i] ^= f.flip;
}

// fn(row, packed_at, stored_at, bytes) for each piece of one block: `bytes` bytes at offset
// stored_at of row `row`'s block (as to_panel_bytes leaves it) sit at offset packed_at of the panel's.
template <class Fn>
void for_each_piece(const PanelFormat& f, size_t r, Fn&& fn) {
  const size_t header = f.header_units * f.header_unit;
  for (size_t u = 0; u < f.header_units; ++u) fn((u * kPanelRows + r) * f.header_unit, u * f.header_unit, f.header_unit);
  for (size_t k = 0; k < f.quant_dwords; ++k) fn(header * kPanelRows + (k * kPanelRows + r) * 4, header + 4 * k, size_t{4});
}

}  // namespace

const PanelFormat* panel_format(DType type) {
  switch (type) {
    case DType::q8_0: return &kQ8_0;
    case DType::q4_0: return &kQ4_0;
    case DType::q4_k: return &kQ4K;
    default: return nullptr;
  }
}

void pack_panel(const PanelFormat& f, const uint8_t* src, size_t stride, uint8_t* dst) {
  uint8_t row[kMaxBlockBytes];
  for (size_t b = 0; b < stride / f.block_bytes; ++b) {
    uint8_t* block = dst + b * f.block_bytes * kPanelRows;
    for (size_t r = 0; r < kPanelRows; ++r) {
      std::memcpy(row, src + r * stride + b * f.block_bytes, f.block_bytes);
      to_panel_bytes(f, row);
      for_each_piece(f, r, [&](size_t packed_at, size_t stored_at, size_t n) {
        std::memcpy(block + packed_at, row + stored_at, n);
      });
    }
  }
}

void unpack_panel(const PanelFormat& f, const uint8_t* src, size_t stride, uint8_t* dst) {
  uint8_t row[kMaxBlockBytes];
  for (size_t b = 0; b < stride / f.block_bytes; ++b) {
    const uint8_t* block = src + b * f.block_bytes * kPanelRows;
    for (size_t r = 0; r < kPanelRows; ++r) {
      for_each_piece(f, r, [&](size_t packed_at, size_t stored_at, size_t n) {
        std::memcpy(row + stored_at, block + packed_at, n);
      });
      from_panel_bytes(f, row);
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
