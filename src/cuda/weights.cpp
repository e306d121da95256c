#include "weights.h"

#include <cstring>

namespace autoglm::cuda::detail {

const Split* split_of(kernels::DType type) {
  using kernels::DType;
  static const Split q8_0{32, 34, 2, 32, 2}, q4_0{32, 18, 2, 16, 2}, q4_k{256, 144, 16, 128, 16},
      q6_k{256, 210, 0, 192, 18};
  switch (type) {
    case DType::q8_0: return &q8_0;
    case DType::q4_0: return &q4_0;
    case DType::q4_k: return &q4_k;
    case DType::q6_k: return &q6_k;
    default: return nullptr;
  }
}

HostLayout split_rows(const Split& s, const uint8_t* stored, size_t rows, size_t cols) {
  const size_t blocks = cols / s.block_elems;
  HostLayout out;
  out.quant_row_bytes = blocks * s.quant_bytes;
  out.meta_row_bytes = blocks * s.meta_bytes;
  out.quants.resize(rows * out.quant_row_bytes);
  out.meta.resize(rows * out.meta_row_bytes);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t b = 0; b < blocks; ++b) {
      const uint8_t* block = stored + (r * blocks + b) * s.block_bytes;
      uint8_t* q = out.quants.data() + r * out.quant_row_bytes + b * s.quant_bytes;
      uint8_t* m = out.meta.data() + r * out.meta_row_bytes + b * s.meta_bytes;
      std::memcpy(q, block + s.quant_offset, s.quant_bytes);
      // the meta bytes: what precedes the quants, then what follows them
      std::memcpy(m, block, s.quant_offset);
      std::memcpy(m + s.quant_offset, block + s.quant_offset + s.quant_bytes,
                  s.block_bytes - s.quant_offset - s.quant_bytes);
    }
  }
  return out;
}

}  // namespace autoglm::cuda::detail
