// Attention on any CPU (the scalar path, and the reference the SIMD bodies of attention_simd.h
// follow): keys and values are taken in blocks of kKeyBlock rows, converted (f16 or q8_0) once per
// block for all the queries of the call (the query heads of a GQA group, for one token or a tile of
// prompt tokens); per query, scores of the block, then an online softmax update.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "attention.h"

namespace autoglm::kernels {
namespace {

constexpr size_t kKeyBlock = 64;

#include "online_softmax_impl.h"

struct KeyBlock {
  float kt[kAttentionMaxHeadDim * kKeyBlock];  // keys transposed: kt[d * kKeyBlock + j]
  float v[kKeyBlock * kAttentionMaxHeadDim];   // values: v[j * head_dim + d]
  float row[kAttentionMaxHeadDim];
  float s[kKeyBlock];
};

void load_block(const AttentionArgs& a, size_t p0, size_t count, KeyBlock& b) {
  const size_t hd = a.head_dim;
  for (size_t j = 0; j < count; ++j) {
    a.to_f32(a.k_rows[p0 + j], b.row, hd);
    for (size_t d = 0; d < hd; ++d) b.kt[d * kKeyBlock + j] = b.row[d];
    a.to_f32(a.v_rows[p0 + j], b.v + j * hd, hd);
  }
  for (size_t j = count; j < kKeyBlock; ++j)
    for (size_t d = 0; d < hd; ++d) b.kt[d * kKeyBlock + j] = 0.0f;
}

// One query against one block: scores, online softmax update of (max, sum, acc).
void attend_block(const AttentionArgs& a, const float* q, size_t visible, KeyBlock& b, float& max_score,
                  float& sum, float* acc) {
  const size_t hd = a.head_dim;
  float* s = b.s;
  for (size_t j = 0; j < kKeyBlock; ++j) s[j] = 0.0f;
  for (size_t d = 0; d < hd; ++d) {
    const float qd = q[d];
    const float* kd = b.kt + d * kKeyBlock;
    for (size_t j = 0; j < kKeyBlock; ++j) s[j] += qd * kd[j];
  }
  const float correction = softmax_block(s, visible, a.scale, max_score, sum);
  for (size_t d = 0; d < hd; ++d) acc[d] *= correction;
  for (size_t j = 0; j < visible; ++j) {
    const float w = s[j];
    const float* vj = b.v + j * hd;
    for (size_t d = 0; d < hd; ++d) acc[d] += w * vj[d];
  }
}

void attend(const AttentionArgs& a, KeyBlock& b) {
  size_t n_kv = 0;
  for (size_t i = 0; i < a.n_queries; ++i) n_kv = a.queries[i].visible > n_kv ? a.queries[i].visible : n_kv;
  start_queries(a);
  for (size_t p0 = 0; p0 < n_kv; p0 += kKeyBlock) {
    const size_t count = n_kv - p0 < kKeyBlock ? n_kv - p0 : kKeyBlock;
    load_block(a, p0, count, b);
    for (size_t i = 0; i < a.n_queries; ++i) {
      const AttentionQuery& q = a.queries[i];
      if (q.visible <= p0) continue;
      const size_t visible = q.visible - p0 < count ? q.visible - p0 : count;
      attend_block(a, q.q, visible, b, a.max_score[i], a.sum[i], q.out);
    }
  }
  finish_queries(a);
}

}  // namespace

void attention_generic(const AttentionArgs& args) {
  thread_local auto block = std::make_unique<KeyBlock>();
  attend(args, *block);
}

}  // namespace autoglm::kernels
