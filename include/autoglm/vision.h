#pragma once
// The vision tower of a vision-language model (GLM-4.1V / AutoGLM-Phone-9B): a ViT over an image's
// patches and the patch merger that turns each merge x merge window of patches into one input row
// of the decoder. Described by values (VisionConfig) and run on the same matmul, attention and
// thread-pool kernels as the decoder.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autoglm/engine.h"
#include "autoglm/error.h"
#include "autoglm/kernels.h"
#include "autoglm/model.h"

namespace autoglm::vision {

// Every variation of the tower, as values.
struct VisionConfig {
  uint32_t patch_size = 14;      // pixels per patch side
  uint32_t temporal_patch = 2;   // frames per patch (a still image repeats its one frame)
  uint32_t merge = 2;            // merge x merge patches become one decoder token
  uint32_t channels = 3;
  uint32_t depth = 0;            // transformer blocks
  uint32_t d_model = 0;          // the ViT's width
  uint32_t n_heads = 0;
  uint32_t head_dim = 0;         // d_model / n_heads; its pairs (i, i + head_dim/2) are rotated
  uint32_t ffn_dim = 0;          // each block's SwiGLU width
  uint32_t out_dim = 0;          // the merger's width: the decoder's d_model
  uint32_t merger_ffn_dim = 0;   // the merger's SwiGLU width
  uint32_t pos_grid = 0;         // learned position embeddings on a pos_grid^2 grid, resized bicubically per image
  float rms_eps = 1e-5f;         // RMSNorm after the patch embedding, in the blocks and after them
  float layer_norm_eps = 1e-5f;  // the merger's LayerNorm
  float rope_base = 10000.0f;    // 2-D RoPE: the first half of a head's pairs turn with the patch row, the rest with its column
  size_t patch_dim() const { return size_t{channels} * temporal_patch * patch_size * patch_size; }
};

struct VisionBlock {
  std::vector<float> norm1, norm2;
  model::Matrix qkv;              // [3 * d_model] rows: q, then k, then v
  std::vector<float> qkv_bias;    // empty when the projection has none
  model::Matrix proj;
  model::Matrix gate, up, down;
};

class VisionModel {
 public:
  // A Hugging Face folder whose config.json has a vision_config and whose safetensors hold
  // model.visual.* (GLM-4.1V-9B-Thinking, AutoGLM-Phone-9B).
  static std::unique_ptr<VisionModel> load_hf(const std::filesystem::path& folder,
                                              const model::LoadOptions& options = {});
  // llama.cpp's mmproj GGUF with clip.projector_type = glm4v.
  static std::unique_ptr<VisionModel> load_mmproj(const std::filesystem::path& path,
                                                  const model::LoadOptions& options = {});
  // A tower of `config`'s shape (depth, widths, merger) with random weights stored as `stored`
  // (f32, f16 or bf16), loaded with `options` like a checkpoint: for measuring its speed.
  static std::unique_ptr<VisionModel> random(const VisionConfig& config, kernels::DType stored,
                                             const model::LoadOptions& options = {}, uint64_t seed = 1);
  // True when the folder's config.json describes a vision tower (vision_config).
  static bool folder_has_vision(const std::filesystem::path& folder);
  VisionModel(const VisionModel&) = delete;
  VisionModel& operator=(const VisionModel&) = delete;

  VisionConfig config;
  model::Matrix patch_embed;          // [d_model] rows of patch_dim, columns in the processor's (c, t, y, x) order
  std::vector<float> patch_bias;
  std::vector<float> post_conv_norm;
  std::vector<float> pos_embed;       // [pos_grid * pos_grid][d_model]
  std::vector<VisionBlock> blocks;
  std::vector<float> post_norm;
  model::Matrix downsample;           // [out_dim] rows of merge^2 * d_model, columns (i, j, c): a window's patches as stored
  std::vector<float> downsample_bias;
  model::Matrix merger_proj;
  std::vector<float> merger_norm, merger_norm_bias;
  model::Matrix merger_gate, merger_up, merger_down;
  std::filesystem::path path;
  std::string weight_type;            // the matrices' type, for reports ("BF16", "Q8_0", ...)

  // Storage behind the matrices, owned by the model: `bytes` bytes at a 64-byte boundary (an AMX
  // tile row that straddles two cache lines halves the product's speed).
  uint8_t* new_buffer(size_t bytes) {
    owned_.push_back(std::make_unique<uint8_t[]>(bytes + 63));
    const auto at = reinterpret_cast<uintptr_t>(owned_.back().get());
    return reinterpret_cast<uint8_t*>((at + 63) & ~uintptr_t{63});
  }

 private:
  VisionModel() = default;
  std::vector<std::unique_ptr<uint8_t[]>> owned_;
};

// An image's patch grid: frames and patch rows/columns (multiples of merge).
struct PatchGrid {
  uint32_t t = 1, h = 0, w = 0;
  size_t n_patches() const { return size_t{t} * h * w; }
};

// What the tower computed on its way, for tests that find where a mismatch starts.
struct EncoderTrace {
  std::vector<float> embedded;  // [n_patches][d_model] after the patch embedding, its norm and the position embeddings
  std::vector<float> blocks;    // [n_patches][d_model] after the last block and the post norm
};

class VisionEncoder {
 public:
  VisionEncoder(const VisionModel& model, kernels::ThreadPool& pool);
  // patches: [grid.n_patches()][patch_dim] in the processor's order (merge windows of
  // merge x merge patches, row after row). Writes [n_patches / merge^2][out_dim] to `out`. Buffers
  // grow to the largest image seen and are kept. Throws Error on a grid that does not fit.
  void encode(const float* patches, PatchGrid grid, std::vector<float>& out, EncoderTrace* trace = nullptr);
  const VisionConfig& config() const { return model_.config; }

 private:
  void embed(const float* patches, PatchGrid grid, size_t n);
  void block(const VisionBlock& b, PatchGrid grid, size_t n);
  void rotate(size_t n);
  void attention(PatchGrid grid, size_t n);
  void attention_int8(PatchGrid grid, size_t n);
  void attention_tiles(PatchGrid grid, size_t n);
  void merge(size_t n, std::vector<float>& out);
  void for_each_row(size_t n, const std::function<void(size_t)>& fn);

  const VisionModel& model_;
  kernels::ThreadPool& pool_;
  // the products' inputs and outputs at cache-line boundaries (AMX tiles)
  kernels::aligned_vector<float> x_, h_, qkv_, att_, gate_, up_, merged_, m1_;
  std::vector<float> rope_cos_, rope_sin_;   // [n][head_dim / 2]
  std::vector<uint32_t> row_, col_;          // each patch's row and column in its frame
  std::vector<double> inv_freq_;             // rope_base^(-2k / (head_dim / 2))
  std::vector<const void*> k_rows_, v_rows_; // [head][patch]
  // The quantized tower's attention as two int8 products per head (attention_int8): a frame's keys
  // and its transposed values as Q8_0 rows, a tile of queries' scores and probabilities.
  bool int8_attention_ = false;
  std::vector<uint8_t> kq_, vq_;
  std::vector<float> vt_, qt_, scores_, probs_, ot_;
  // A tower on AMX tiles: attention as bf16 tile products (attention_tiles), on the queries, keys
  // and values in bf16, a frame's keys and transposed values packed as tiles per head.
  bool tiles_attention_ = false;
  kernels::aligned_vector<uint16_t> qkv16_, keys16_, values16_;
};

// ---- how long the tower takes on this machine ----------------------------------------------------

// An image's encode time from a measurement: per block, `per_patch` seconds for each patch (its
// matrices, norms, rotations) and `per_pair` for each (query, key) pair of a frame (attention);
// once per image, `fixed_per_patch` for the patch embedding and the merger.
struct EncodeCost {
  uint32_t depth = 0;
  double per_patch = 0, per_pair = 0, fixed_per_patch = 0;
  std::string weight_type;   // of the measured matrices ("Q8_0", "BF16")
  double seconds(PatchGrid grid) const;
};

// Times a random one-block tower of `config`'s widths stored as `stored` and loaded with `options`
// (as the server would load the real one) on two patch grids (2304 and 9216 patches at merge 2),
// with `threads` threads; the block's share of the linear time is split from the merger's by their
// multiply-adds. Takes ~5 s at GLM-4.1V-9B's size on two cores with AMX, ~10 s with the Q8_0 tower.
EncodeCost measure_encode_cost(const VisionConfig& config, kernels::DType stored, const model::LoadOptions& options,
                               int threads);

// ---- prompts with images -----------------------------------------------------------------------

// A hash of an image's patches and grid: what the prefix cache knows the image by.
uint64_t image_hash(const float* patches, PatchGrid grid, size_t patch_dim);

// A tokenized prompt whose image placeholders (one `image_token` per image, in order) are expanded
// to each image's merged grid of tokens, with everything the decoder needs besides the embeddings.
struct MultimodalPrompt {
  std::vector<int32_t> tokens;                  // each image's tokens are `image_token`
  std::vector<int32_t> cache_key;               // tokens, image tokens replaced by negative ids from the image's hash
  std::vector<engine::ImagePlacement> images;   // where each image's tokens are
  engine::PromptPositions positions;            // M-RoPE positions, and the offset of the tokens after them
  size_t image_tokens() const;
};
// grids[i] and hashes[i] describe the i-th image (grids in patches; merge x merge patches make a
// token). Throws Error when the placeholders and the images do not pair up.
MultimodalPrompt expand_prompt(std::span<const int32_t> ids, int32_t image_token, std::span<const PatchGrid> grids,
                               std::span<const uint64_t> hashes, uint32_t merge);

// The decoder input rows of a prompt's images: every image encoded, every image token pointed at
// its row (nullptr for text tokens). patches[i] is the i-th image's, in its grid.
struct PromptEmbeddings {
  std::vector<float> data;
  std::vector<const float*> rows;   // one per prompt token
};
PromptEmbeddings embed_images(VisionEncoder& encoder, const MultimodalPrompt& prompt,
                              std::span<const std::vector<float>> patches, std::span<const PatchGrid> grids);

}  // namespace autoglm::vision
