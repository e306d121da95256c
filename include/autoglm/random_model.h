#pragma once
// Random-weight GGUF models, made on the fly for tests and benchmarks. A model has exactly the
// tensor names, shapes and metadata keys (and key types) of the fixtures (../shared/fixtures/models)
// for its architecture, and deterministic weights: same spec and seed, same bytes, on any thread
// count. Scales follow the fixtures: matrices std 1/sqrt(fan_in), token embedding std 1 (1/sqrt(d)
// when tied), norms 1 +- 0.1, biases std 0.1. Written tensor by tensor, row chunk by row chunk:
// the model is never in memory whole.
//
// Vocab, minimal but valid for llama.cpp, laid out like the fixture's of the same arch:
//   glm4, qwen2: "gpt2" (byte-level BPE, pre = the arch): the 256 byte tokens in GPT-2's
//     byte-to-unicode order, fillers "<|tok_N|>", and "<|endoftext|>" last (control; bos = eos);
//     no merges.
//   llama: "llama" (SentencePiece, pre "default"): <unk>, <s>, </s>, <0x00>..<0xFF>, fillers.
#include <cstdint>
#include <filesystem>
#include <string>

#include "autoglm/kernels.h"

namespace autoglm::model {

struct RandomModelSpec {
  std::string arch = "llama";  // glm4 | llama | qwen2
  uint32_t n_layers = 2;
  uint32_t d_model = 256;
  uint32_t n_heads = 4;
  uint32_t n_kv_heads = 2;
  uint32_t head_dim = 64;
  uint32_t ffn_dim = 512;
  uint32_t vocab_size = 2048;  // glm4/qwen2: >= 257 (256 bytes + eos); llama: >= 259 (unk, bos, eos + 256 bytes)
  uint32_t context_length = 512;
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
  bool tied_embeddings = false;  // no output.weight
  // Type of the 2-D weights: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k (norms and biases are always f32).
  // Pure: every matrix gets it (llama.cpp's Q4_0 files keep output.weight at Q6_K; ours do not).
  kernels::DType weight_type = kernels::DType::f32;
  // With weight_type q4_k: llama.cpp's Q4_K_M mix, as model::recipe_type (quant_recipe.h) gives it
  // (output.weight, or token_embd when tied, and attn_v / ffn_down of use_more_bits() layers at
  // Q6_K; general.file_type 15). Without it q4_k is pure Q4_K (file_type 14).
  bool q4_k_m_mix = false;
  uint64_t seed = 1;
  int threads = 0;  // for generating and quantizing; <= 0: all hardware threads
};

// The benchmark model (d_model 2048, 16 layers, 16 heads, 2 KV heads,
// head_dim 128, FFN 6912, vocab 32000): 0.96 B parameters, 1.02 GB at Q8_0, 0.59 GB at Q4_K_M.
RandomModelSpec benchmark_1b_spec(const std::string& arch, kernels::DType weight_type, bool q4_k_m_mix = false);

// Writes the model to `path` (through path + ".tmp", renamed when complete). Throws Error for a
// spec that cannot be a model (unknown arch, zero or inconsistent sizes, a row length that is not
// a multiple of the weight type's block size, a vocab too small) or for an I/O failure.
void write_random_model(const RandomModelSpec& spec, const std::filesystem::path& path);

}  // namespace autoglm::model
