#include "autoglm/quant_recipe.h"

#include <charconv>

namespace autoglm::model {
namespace {

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
kernels::DType recipe_type_of_name(kernels::DType target, const std::string& gguf_name, const RecipeModel& m) {
  using kernels::DType;
  if (kernels::dtype_info(target).block_size == 1 || target == DType::q8_0) return target;
  if (gguf_name == "output.weight" || (m.tied && gguf_name == "token_embd.weight")) return DType::q6_k;
  uint32_t layer = 0;
  std::string part;
  if (!split_block_name(gguf_name, layer, part)) return target;
  const uint32_t n = m.n_layers;
  const bool v = part == "attn_v.weight", down = part == "ffn_down.weight", out = part == "attn_output.weight";
  switch (target) {
    case DType::q4_k:
    case DType::q5_k:
      return (v || down) && use_more_bits(layer, n) ? DType::q6_k : target;
    case DType::q3_k:
      if (v) return layer < 2 ? DType::q5_k : DType::q4_k;
      if (down) return layer < n / 16 ? DType::q5_k : DType::q4_k;
      return out ? DType::q4_k : target;
    case DType::q2_k:
      if (v) return m.n_gqa >= 4 ? DType::q4_k : DType::q3_k;
      return down || out ? DType::q3_k : target;
    case DType::iq4_xs:
      if (v && m.n_gqa >= 4) return DType::q5_k;
      return down && layer < n / 8 ? DType::q5_k : target;
    default:
      return target;
  }
}

}  // namespace

RecipeModel recipe_model(uint32_t n_layers, bool tied, uint32_t n_heads, uint32_t n_kv_heads) {
  return {n_layers, tied, n_heads && n_kv_heads ? n_heads / n_kv_heads : 1};
}

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

kernels::DType recipe_type(kernels::DType target, const std::string& gguf_name, const RecipeModel& model,
                           uint64_t cols) {
  return fit_columns(recipe_type_of_name(target, gguf_name, model), cols);
}

}  // namespace autoglm::model
