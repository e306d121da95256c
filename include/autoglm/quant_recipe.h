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

// The type of the 2-D tensor `gguf_name` ("output.weight", "blk.3.attn_v.weight"), of `cols`
// columns, when the model is quantized to `target`: 4- and 5-bit targets (Q4_0, Q4_1, Q5_1, Q4_K,
// Q5_K) keep the output projection (the token embedding when it is tied) at Q6_K; q4_k and q5_k are
// the Q4_K_M and Q5_K_M recipes, which also keep use_more_bits() layers' attn_v and ffn_down at
// Q6_K. Other targets apply to every matrix. Then fit_columns.
kernels::DType recipe_type(kernels::DType target, const std::string& gguf_name, uint32_t n_layers, bool tied,
                           uint64_t cols);

}  // namespace autoglm::model
