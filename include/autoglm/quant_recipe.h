#pragma once
// Which weight type each tensor gets when a model is quantized to a target type, following
// llama.cpp's quantize so our files and theirs agree tensor for tensor.
#include <cstdint>
#include <string>

#include "autoglm/kernels.h"

namespace autoglm::model {

// True for the layers whose attn_v / ffn_down llama.cpp's Q4_K_M keeps at Q6_K
// (the first and last eighth, and every third layer between).
bool use_more_bits(uint32_t layer, uint32_t n_layers);

// llama.cpp's fallback for a matrix whose rows are not whole blocks of `type` (GLM-4-9B's ffn_down
// has 13696 = 53.5 x 256 columns): Q4_K becomes Q5_0, Q5_K Q5_1, Q6_K Q8_0, Q2_K and Q3_K Q4_0,
// IQ4_XS IQ4_NL (llama.cpp's tensor_type_fallback), and a type that still
// does not fit becomes F16. Files made this way are what llama.cpp makes (and what users download).
kernels::DType fit_columns(kernels::DType type, uint64_t cols);

// What the recipe reads of the model besides a tensor's name: its layer count, whether the output
// projection is the token embedding, and n_heads / n_kv_heads (query heads per KV head).
struct RecipeModel {
  uint32_t n_layers = 0;
  bool tied = false;
  uint32_t n_gqa = 1;
};
// n_gqa = n_heads / n_kv_heads (1 when either is unknown).
RecipeModel recipe_model(uint32_t n_layers, bool tied, uint32_t n_heads, uint32_t n_kv_heads);

// The type of the 2-D tensor `gguf_name` ("output.weight", "blk.3.attn_v.weight"), of `cols`
// columns, when the model is quantized to `target`, as llama.cpp's quantize picks it without an
// importance matrix for a dense (not mixture-of-experts) model:
//  - every quantized target but Q8_0 keeps the output projection (the token embedding when tied) at Q6_K;
//  - q4_k, q5_k (Q4_K_M, Q5_K_M): use_more_bits() layers' attn_v and ffn_down at Q6_K;
//  - q3_k (Q3_K_M): attn_v Q5_K in layers 0-1 and Q4_K after, ffn_down Q5_K in the first 1/16 of
//    the layers and Q4_K after, attn_output Q4_K;
//  - q2_k (Q2_K): attn_v Q4_K with n_gqa >= 4 and Q3_K otherwise, ffn_down and attn_output Q3_K;
//  - iq4_xs: attn_v Q5_K with n_gqa >= 4, ffn_down Q5_K in the first 1/8 of the layers;
//  - everything else at the target. Then fit_columns.
kernels::DType recipe_type(kernels::DType target, const std::string& gguf_name, const RecipeModel& model,
                           uint64_t cols);

}  // namespace autoglm::model
