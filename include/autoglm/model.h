#pragma once
// A loaded model: its architecture description and its weights, mapped from the GGUF file
// (copy-on-write: the matrices stay in the page cache in their stored block format, except those
// repacked for the kernels, which become private pages; LoadOptions::repack).
#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autoglm/error.h"
#include "autoglm/kernels.h"

namespace autoglm::model {

enum class RopeStyle {
  adjacent,  // pairs (2i, 2i+1): ggml "normal" mode (llama, GLM-4)
  neox,      // pairs (i, i + rope_dims/2) (qwen2)
};

// Every variation the decoder knows. A model family is a set of values, not a code path.
struct ArchConfig {
  std::string arch;            // "glm4", "llama", "qwen2"
  uint32_t n_layers = 0;
  uint32_t d_model = 0;
  uint32_t n_heads = 0;
  uint32_t n_kv_heads = 0;     // GQA: n_heads / n_kv_heads query heads share a KV head
  uint32_t head_dim = 0;
  uint32_t ffn_dim = 0;
  uint32_t vocab_size = 0;
  uint32_t context_length = 0; // trained context
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  uint32_t rope_dims = 0;      // rotated dims per head; dims after that pass through (GLM-4: head_dim/2)
  RopeStyle rope_style = RopeStyle::adjacent;
  // M-RoPE (GLM-4.1V): the first mrope_sections[0] rotary pairs turn with a token's t position, the
  // next [1] with its h position, the next [2] with its w position (image tokens sit on a 3-D grid,
  // text tokens have t = h = w). All zero: one position per token.
  std::array<uint32_t, 3> mrope_sections{};
  bool qkv_bias = false;       // q/k/v projections add a bias (qwen2, GLM-4)
  bool post_norms = false;     // RMSNorm on the attention and FFN outputs before each residual add (GLM-4)
  bool fused_gate_up = false;  // ffn_up holds [gate; up] stacked (GLM-4)
  bool tied_embeddings = false;// no output.weight: the token embedding doubles as the output projection
};

// A weight matrix: `rows` rows of `cols` elements in `layout` (rows: the stored format, rows
// contiguous; panels16: repacked for the matmul kernels, the same size, see kernels.h).
struct Matrix {
  kernels::DType type = kernels::DType::f32;
  size_t rows = 0;
  size_t cols = 0;
  const void* data = nullptr;
  std::string name;
  kernels::Layout layout = kernels::Layout::rows;
  size_t row_bytes() const { return kernels::row_bytes(type, cols); }
  size_t bytes() const { return rows * row_bytes(); }
  // Row r in the stored format: only for layout rows (the token embedding always is).
  const void* row(size_t r) const { return static_cast<const uint8_t*>(data) + r * row_bytes(); }
};

struct Layer {
  std::vector<float> attn_norm;
  Matrix wq, wk, wv, wo;
  std::vector<float> bq, bk, bv;          // empty without qkv_bias
  std::vector<float> post_attn_norm;      // empty without post_norms
  std::vector<float> ffn_norm;
  Matrix w_gate, w_up;                    // w_up is [2*ffn] rows when fused_gate_up; w_gate unused then
  Matrix w_down;
  std::vector<float> post_ffn_norm;       // empty without post_norms
};

struct LoadOptions {
  // Weight type for the matrices of a Hugging Face checkpoint: nullopt keeps them as stored
  // (bf16/f16 stay mapped, zero-copy); q8_0/q4_0/... quantizes tensor by tensor while loading.
  // GGUF files are always used as stored.
  std::optional<kernels::DType> quantize_to;
  // Repack the matrices the matmul kernels read (all but the token embedding) into the layout they
  // are fastest with on this CPU (kernels::preferred_layout), in place: the mapped pages of those
  // tensors become private memory of the same size. false keeps every matrix as stored (zero-copy).
  bool repack = true;
  // BF16 matrices whose shape fits go to kernels::Layout::tiles_bf16 (AMX tile products, the
  // activations rounded to bf16) when the CPU has AMX-BF16: the vision tower's fastest form.
  bool bf16_tiles = false;
};

class Model {
 public:
  // A GGUF file or a Hugging Face folder (config.json + *.safetensors). Checks every tensor the
  // architecture needs is there with the right shape and a supported type. Throws Error naming the
  // file and tensor.
  static std::unique_ptr<Model> load(const std::filesystem::path& path, const LoadOptions& options = {});
  static std::unique_ptr<Model> load_gguf(const std::filesystem::path& path, const LoadOptions& options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  ArchConfig config;
  Matrix token_embd;                 // [vocab] rows of d_model
  std::vector<float> output_norm;
  Matrix output;                     // token_embd when tied
  std::vector<Layer> layers;
  std::filesystem::path path;
  std::string format;                // "gguf" or "hf"
  std::string weight_type;           // "Q4_K_M", "F16", ... for reports

  // The storage behind the views above, released with the model.
  void keep_mapping(void* addr, size_t size) { maps_.push_back({addr, size}); }
  void seal_mappings();  // read-only from now on (they are writable while matrices are repacked)
  const uint8_t* keep_buffer(std::unique_ptr<uint8_t[]> buffer) {
    owned_.push_back(std::move(buffer));
    return owned_.back().get();
  }

 private:
  Model() = default;
  struct Mapping {
    void* addr;
    size_t size;
  };
  std::vector<Mapping> maps_;                         // the mapped files
  std::vector<std::unique_ptr<uint8_t[]>> owned_;     // matrices quantized while loading
};

}  // namespace autoglm::model
