// Attention over f16 keys/values: dispatch to the body compiled for the active ISA, plus the
// portable build of that body.
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention.h"
#include "blocks.h"

namespace autoglm::kernels {

namespace {

void f16_row_scalar(const void* src, float* dst, size_t n) { dequantize_row(DType::f16, src, dst, n); }
void f16_row_f16c(const void* src, float* dst, size_t n) {
  f16_to_f32_row_f16c(static_cast<const uint16_t*>(src), dst, n);
}
void q8_0_row(const void* src, float* dst, size_t n) { dequantize_row(DType::q8_0, src, dst, n); }
void f32_row(const void* src, float* dst, size_t n) { std::memcpy(dst, src, n * sizeof(float)); }

void (*row_to_f32(DType kv_type))(const void*, float*, size_t) {
  if (kv_type == DType::f32) return f32_row;
  if (kv_type == DType::q8_0) return q8_0_row;
  return active_isa() != Isa::scalar ? f16_row_f16c : f16_row_scalar;
}

}  // namespace

void attention(std::span<const AttentionQuery> queries, size_t head_dim, DType kv_type, const void* const* k_rows,
               const void* const* v_rows, float scale) {
  if (head_dim == 0 || head_dim > kAttentionMaxHeadDim)
    throw std::invalid_argument("attention: head_dim must be 1.." + std::to_string(kAttentionMaxHeadDim));
  if (kv_type != DType::f16 && kv_type != DType::f32 && (kv_type != DType::q8_0 || head_dim % 32 != 0))
    throw std::invalid_argument("attention: keys and values are F16, F32, or Q8_0 with head_dim a multiple of 32");
  thread_local std::vector<float> state;
  if (state.size() < 2 * queries.size()) state.resize(2 * queries.size());
  AttentionArgs args{queries.data(), queries.size(), head_dim, k_rows, v_rows, scale, row_to_f32(kv_type),
                     state.data(), state.data() + queries.size()};
  switch (active_isa()) {
    case Isa::avx512: return attention_avx512(args);
    case Isa::avx2: return attention_avx2(args);
    case Isa::scalar: return attention_generic(args);
  }
}

}  // namespace autoglm::kernels
