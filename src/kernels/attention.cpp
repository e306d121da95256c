// Attention over f16 keys/values: dispatch to the body compiled for the active ISA, plus the
// portable build of that body.
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention.h"
#include "blocks.h"

namespace autoglm::kernels {

void f16_row_to_f32_scalar(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

void attention(std::span<const AttentionQuery> queries, size_t head_dim, const uint16_t* const* k_rows,
               const uint16_t* const* v_rows, float scale) {
  if (head_dim == 0 || head_dim > kAttentionMaxHeadDim)
    throw std::invalid_argument("attention: head_dim must be 1.." + std::to_string(kAttentionMaxHeadDim));
  thread_local std::vector<float> state;
  if (state.size() < 2 * queries.size()) state.resize(2 * queries.size());
  AttentionArgs args{queries.data(), queries.size(), head_dim, k_rows, v_rows, scale, f16_row_to_f32_scalar,
                     state.data(), state.data() + queries.size()};
  switch (active_isa()) {
    case Isa::avx512:
      args.f16_to_f32 = f16_to_f32_row_f16c;
      return attention_avx512(args);
    case Isa::avx2:
      args.f16_to_f32 = f16_to_f32_row_f16c;
      return attention_avx2(args);
    case Isa::scalar: return attention_generic(args);
  }
}

}  // namespace autoglm::kernels
