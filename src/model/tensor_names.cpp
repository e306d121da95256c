#include "tensor_names.h"

#include <fmt/format.h>

#include <charconv>
#include <map>

namespace autoglm::model {

std::optional<std::string> gguf_name_of_checkpoint(const std::string& name) {
  // vision-language checkpoints (GLM-4.1V) keep the decoder under model.language_model.
  const std::string nested = "model.language_model.";
  const std::string hf = name.rfind(nested, 0) == 0 ? "model." + name.substr(nested.size()) : name;
  static const std::map<std::string, std::string> global = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
  };
  if (auto it = global.find(hf); it != global.end()) return it->second;
  static const std::map<std::string, std::string> parts = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},     {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.weight", "attn_k.weight"},     {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.weight", "attn_v.weight"},     {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"post_self_attn_layernorm.weight", "post_attention_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},  // HF's name for the pre-FFN norm
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.gate_up_proj.weight", "ffn_up.weight"},  // GLM-4: fused [gate; up], as llama.cpp keeps it
      {"mlp.down_proj.weight", "ffn_down.weight"},
      {"post_mlp_layernorm.weight", "post_ffw_norm.weight"},
  };
  const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) == 0) {
    const size_t dot = hf.find('.', prefix.size());
    const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
    const std::string part = dot == std::string::npos ? "" : hf.substr(dot + 1);
    uint32_t n = 0;
    const auto [ptr, ec] = std::from_chars(layer.data(), layer.data() + layer.size(), n);
    if (ec == std::errc() && ptr == layer.data() + layer.size()) {
      if (part == "self_attn.rotary_emb.inv_freq") return "";  // recomputed from rope.freq_base
      if (auto it = parts.find(part); it != parts.end()) return fmt::format("blk.{}.{}", n, it->second);
    }
  }
  return std::nullopt;
}

}  // namespace autoglm::model
