#pragma once
// Internal to the cuda module: how a stored GGUF row is split into the device layout (cuda.h,
// DeviceWeights). Per type, each stored block gives `quant_bytes` of quants (copied in order, so a
// row's quants stay in element order) and `meta_bytes` of scales:
//   Q8_0  block d(2) qs(32)                     -> quants qs       meta d
//   Q4_0  block d(2) qs(16)                     -> quants qs       meta d
//   Q4_K  block d(2) dmin(2) scales(12) qs(128) -> quants qs       meta d dmin scales
//   Q6_K  block ql(128) qh(64) scales(16) d(2)  -> quants ql qh    meta scales d
#include <cstddef>
#include <cstdint>
#include <vector>

#include "autoglm/kernels.h"

namespace autoglm::cuda::detail {

struct Split {
  size_t block_elems, block_bytes;
  size_t quant_offset, quant_bytes;  // where the quants are in a stored block, and how many
  size_t meta_bytes;                 // the rest of the block, in stored order
};
// nullptr for a type the device matvec does not compute with.
const Split* split_of(kernels::DType type);

// rows x cols stored weights -> [rows][quant row] then [rows][meta row], on the host.
struct HostLayout {
  size_t quant_row_bytes = 0, meta_row_bytes = 0;
  std::vector<uint8_t> quants, meta;
};
HostLayout split_rows(const Split& s, const uint8_t* stored, size_t rows, size_t cols);

}  // namespace autoglm::cuda::detail
