#pragma once
// What a model is, read from headers only (GGUF metadata and tensor directory, or a Hugging Face
// folder's config.json and safetensors headers): architecture, dimensions and its tensors' sizes.
// Used by the fit planner before anything is loaded.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "autoglm/error.h"

namespace autoglm::model {

// The architecture variations that change the parameter count. The decoder will grow this
// description; a new family is a new row, not new code.
struct ArchTraits {
  const char* name;       // "glm4", "llama", "qwen2"
  bool qkv_bias;          // q/k/v projections carry a bias
  bool post_norms;        // GLM-4: RMSNorm on the attention output and the FFN output
};
// nullptr for an architecture we do not know.
const ArchTraits* find_arch(std::string_view name);

// One weight tensor: enough to price it at any quantization.
struct TensorSize {
  std::string name;
  uint64_t n_elements = 0;
  bool is_matrix = false;  // 2-D weights are quantized; norms and biases stay f32
  uint64_t stored_bytes = 0;  // as stored in the file; 0 when only the config is known
  uint64_t cols = 0;       // a matrix's row length (GGUF ne0); 0 for vectors
  std::string gguf_name;   // the name in a GGUF file (checkpoint names mapped; unknown ones kept)
};

// A vision tower beside the decoder (GLM-4.1V / AutoGLM-Phone-9B): what prices its buffers for an
// image. Its weights are among ModelShape::tensors.
struct VisionShape {
  uint32_t depth = 0, d_model = 0, ffn_dim = 0, out_dim = 0;
  uint32_t n_heads = 0, merger_ffn_dim = 0;  // for timing it (check-hardware's screenshot estimate)
  uint32_t patch_size = 14, merge = 2;
  uint64_t min_pixels = 0;      // the processor's shortest_edge; 0 when unknown
  uint64_t max_pixels = 0;      // the processor's longest_edge; 0 when unknown
  double bytes_per_weight = 0;  // of its block matrices as stored (2: f16/bf16, ~1.06: Q8_0)
  uint64_t params = 0;          // of its tensors
  uint64_t patches(uint64_t pixels) const { return pixels / (uint64_t{patch_size} * patch_size); }
  uint64_t tokens(uint64_t pixels) const { return patches(pixels) / (uint64_t{merge} * merge); }
};

struct ModelShape {
  std::filesystem::path source;
  std::string format;           // "gguf", "hf" (safetensors folder), "hf-config" (config.json only)
  std::string architecture;     // "glm4", "llama", "qwen2"
  std::string name;             // general.name or the folder name
  uint32_t n_layers = 0;
  uint32_t d_model = 0;
  uint32_t n_heads = 0;
  uint32_t n_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t ffn_dim = 0;
  uint32_t vocab_size = 0;
  uint32_t context_length = 0;  // trained context
  bool tied_embeddings = false;
  std::string stored_type;      // "Q4_K_M", "BF16", ... (GGUF file type or HF torch_dtype)
  std::vector<TensorSize> tensors;  // from the file, or derived from the shape for a bare config
  std::optional<VisionShape> vision;  // a vision-language model's tower (HF vision_config, or add_mmproj)

  uint64_t n_params() const;
  uint64_t stored_bytes() const;  // sum of TensorSize::stored_bytes
};

// Reads a GGUF file, a Hugging Face folder (config.json, with or without *.safetensors) or a
// config.json path. Throws autoglm::Error (exit 1) naming the file and the missing/invalid key.
ModelShape read_model_shape(const std::filesystem::path& path);

// Adds llama.cpp's vision projector GGUF (an mmproj beside a text GGUF) to `s`: its tensors and its
// tower. Throws autoglm::Error naming the file when it is not an mmproj.
void add_mmproj(ModelShape& s, const std::filesystem::path& mmproj);

// From an HF config.json object (GLM-4 / Glm4ForCausalLM, ChatGLM, Llama, Qwen2; a nested
// "text_config" of a vision-language model is used for its text backbone). Tensor list derived
// from the shape. `origin` names the file in error messages.
ModelShape shape_from_hf_config(const nlohmann::json& config, const std::string& origin);

}  // namespace autoglm::model
