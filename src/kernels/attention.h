#pragma once
// Internal to the kernels module: the arguments of one attention call as the per-ISA bodies
// (attention_generic.cpp, attention_simd.h) see them.
#include "autoglm/kernels.h"

namespace autoglm::kernels {

struct AttentionArgs {
  const AttentionQuery* queries;
  size_t n_queries;
  size_t head_dim;
  const void* const* k_rows;
  const void* const* v_rows;
  float scale;
  void (*to_f32)(const void* src, float* dst, size_t n);  // one cached row to floats
  float* max_score;  // [n_queries] running state of the online softmax
  float* sum;        // [n_queries]
};

void attention_generic(const AttentionArgs& args);
void attention_avx2(const AttentionArgs& args);
void attention_avx512(const AttentionArgs& args);

}  // namespace autoglm::kernels
