// The online softmax steps every attention body shares (attention_generic.cpp, attention_simd.h).
//
// No include guard and no includes: each body includes it inside its own anonymous namespace, after
// <cstddef>, <cstdint>, <cstring> and attention.h, so that every instruction set gets its own copy.

#include "exp_impl.h"

// One query's update for a block of `visible` (>= 1) scores s: s becomes the weights
// exp(scale * score - max), sum and max_score are updated; returns the factor the query's output row
// must be multiplied by before the block's values are added (1 when the maximum did not move).
inline float softmax_block(float* s, size_t visible, float scale, float& max_score, float& sum) {
  float block_max = -__builtin_inff();
  for (size_t j = 0; j < visible; ++j) {
    s[j] *= scale;
    block_max = s[j] > block_max ? s[j] : block_max;
  }
  float correction = 1.0f;
  if (block_max > max_score) {
    correction = exp_nonpositive(max_score - block_max);  // ~0 when max_score is -inf
    sum *= correction;
    max_score = block_max;
  }
  // two loops: the exps vectorize, the in-order sum could not (no -ffast-math)
  for (size_t j = 0; j < visible; ++j) s[j] = exp_nonpositive(s[j] - max_score);
  float block_sum = 0;
  for (size_t j = 0; j < visible; ++j) block_sum += s[j];
  sum += block_sum;
  return correction;
}

// Before the first block: no maximum, no sum, zero output rows.
inline void start_queries(const AttentionArgs& a) {
  for (size_t i = 0; i < a.n_queries; ++i) {
    a.max_score[i] = -__builtin_inff();
    a.sum[i] = 0;
    std::memset(a.queries[i].out, 0, a.head_dim * sizeof(float));
  }
}

// After the last block: each output row divided by its query's sum (0 rows for a query that saw nothing).
inline void finish_queries(const AttentionArgs& a) {
  for (size_t i = 0; i < a.n_queries; ++i) {
    const AttentionQuery& q = a.queries[i];
    const float inv = a.sum[i] > 0 ? 1.0f / a.sum[i] : 0.0f;
    for (size_t d = 0; d < a.head_dim; ++d) q.out[d] *= inv;
  }
}
