#include "autoglm/quant_recipe.h"

#include <charconv>

namespace autoglm::model {
namespace {

// The targets whose output projection llama.cpp keeps at Q6_K (the 4- and 5-bit ones).
bool keeps_output_at_q6_k(kernels::DType t) {
  using kernels::DType;
  return t == DType::q4_0 || t == DType::q4_1 || t == DType::q5_1 || t == DType::q4_k || t == DType::q5_k;
}
// The K-quant mixes (Q4_K_M, Q5_K_M): use_more_bits() layers' attn_v and ffn_down at Q6_K as well.
bool k_mix(kernels::DType t) { return t == kernels::DType::q4_k || t == kernels::DType::q5_k; }

// "blk.12.attn_v.weight" -> 12 and "attn_v.weight"; false for names outside a block.
bool split_block_name(const std::string& name, uint32_t& layer, std::string& part) {
  if (name.rfind("blk.", 0) != 0) return false;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos) return false;
  auto [ptr, ec] = std::from_chars(name.data() + 4, name.data() + dot, layer);
  if (ec != std::errc() || ptr != name.data() + dot) return false;
  part = name.substr(dot + 1);
  return true;
}

// The recipe by name alone, before fit_columns.
kernels::DType recipe_type_of_name(kernels::DType target, const std::string& gguf_name, uint32_t n_layers, bool tied) {
  if (!keeps_output_at_q6_k(target)) return target;
  if (gguf_name == "output.weight" || (tied && gguf_name == "token_embd.weight")) return kernels::DType::q6_k;
  uint32_t layer = 0;
  std::string part;
  if (k_mix(target) && split_block_name(gguf_name, layer, part) &&
      (part == "attn_v.weight" || part == "ffn_down.weight") && use_more_bits(layer, n_layers))
    return kernels::DType::q6_k;
  return target;
}

}  // namespace

bool use_more_bits(uint32_t layer, uint32_t n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

kernels::DType fit_columns(kernels::DType type, uint64_t cols) {
  using kernels::DType;
  auto fits = [cols](DType t) { return cols % kernels::dtype_info(t).block_size == 0; };
  if (fits(type)) return type;
  const DType fallback = type == DType::q4_k                         ? DType::q5_0
                         : type == DType::q5_k                       ? DType::q5_1
                         : type == DType::q6_k                       ? DType::q8_0
                         : type == DType::q2_k || type == DType::q3_k ? DType::q4_0
                         : type == DType::iq4_xs                     ? DType::iq4_nl
                                                                     : type;
  return fits(fallback) ? fallback : DType::f16;
}

kernels::DType recipe_type(kernels::DType target, const std::string& gguf_name, uint32_t n_layers, bool tied,
                           uint64_t cols) {
  return fit_columns(recipe_type_of_name(target, gguf_name, n_layers, tied), cols);
}

}  // namespace autoglm::model
