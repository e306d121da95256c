#pragma once
// Converting a model (GGUF file or Hugging Face folder) into a GGUF file of another weight type,
// readable by llama.cpp: standard tensor names, metadata and tokenizer keys. Tensor types follow
// llama.cpp's quantize recipe (quant_recipe.h), so our Q4_0/Q4_K_M/Q8_0 files agree with theirs.
// Streams tensor by tensor: peak memory is about one tensor, never the whole model.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "autoglm/error.h"
#include "autoglm/kernels.h"

namespace autoglm::model {

// The targets `quantize --type` takes, as its help and errors list them.
constexpr const char* kQuantizeTypes =
    "q8_0, q4_0, q4_1, q5_1, q4_k (Q4_K_M), q5_k (Q5_K_M), q3_k (Q3_K_M), q2_k, iq4_xs, f16, bf16 or f32";

// One of kQuantizeTypes (case-insensitive; "q4_k_m", "q5_k_m", "q3_k_m" too); nullopt otherwise.
std::optional<kernels::DType> parse_quantize_type(std::string_view name);

// llama.cpp's general.file_type (enum llama_ftype) for a target: 7 Q8_0, 2 Q4_0, 3 Q4_1, 9 Q5_1,
// 15 Q4_K_M (q4_k), 17 Q5_K_M (q5_k), 12 Q3_K_M (q3_k), 10 Q2_K, 30 IQ4_XS, 1 F16, 32 BF16, 0 F32.
uint32_t quantize_file_type(kernels::DType target);

struct QuantizeOptions {
  kernels::DType type = kernels::DType::q8_0;
  // Already-quantized input tensors are dequantized and quantized again only with this (quality drops).
  bool allow_requantize = false;
  int threads = 0;  // <= 0: all hardware threads
  // Called after each tensor is written (done counts from 1).
  std::function<void(size_t done, size_t total, const std::string& name)> on_tensor;
};

struct QuantizeResult {
  uint64_t input_bytes = 0;   // the GGUF file, or the folder's *.safetensors
  uint64_t output_bytes = 0;
  size_t tensors = 0;
  size_t requantized = 0;     // quantized input tensors that were dequantized and quantized again
};

// Writes `out` (through out + ".tmp", renamed when complete). Throws Error: exit 2 for a missing
// input or quantized input without allow_requantize; exit 3 for a tokenizer not supported yet
// (SentencePiece); exit 1 for an unsupported architecture, a malformed input or a tensor whose rows
// are not whole blocks of the target type.
QuantizeResult quantize_model(const std::filesystem::path& in, const std::filesystem::path& out,
                              const QuantizeOptions& options);

// The source row of GGUF row `row` of a Llama q_proj/k_proj weight: llama.cpp's converter stores
// them as w.reshape(n_head, 2, head_dim/2, d).swapaxes(1, 2), because GGUF Llama rotates adjacent
// pairs while Hugging Face rotates halves. head_dim = rows / n_head.
size_t llama_permuted_source_row(size_t row, size_t head_dim);

}  // namespace autoglm::model
