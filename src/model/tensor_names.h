#pragma once
// Internal to the model module: Hugging Face checkpoint tensor names to GGUF names (the reverse of
// model_load's mapping), shared by `quantize` and the shape reader.
#include <optional>
#include <string>

namespace autoglm::model {

// "model.layers.3.mlp.down_proj.weight" (or "model.language_model.layers.3...." of a vision-language
// checkpoint) -> "blk.3.ffn_down.weight"; "" for a tensor llama.cpp
// drops (rotary inv_freq); nullopt for a name that is not a glm4/llama/qwen2 checkpoint tensor.
std::optional<std::string> gguf_name_of_checkpoint(const std::string& hf);

}  // namespace autoglm::model
