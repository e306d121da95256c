#pragma once
// "Will this model fit, at which quantization and context length?" Memory arithmetic over a
// model's tensors and the memory each device can offer, and a verdict per device.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "autoglm/model_shape.h"

namespace autoglm::preflight {

// Weight types a model can be run at. `q4_k` is priced like llama.cpp's Q4_K_M recipe's bulk:
// Q4_K for every matrix, Q6_K for the output projection.
enum class Quant { f32, f16, bf16, q8_0, q4_k, q4_0 };
std::optional<Quant> parse_quant(std::string_view name);  // "q8_0", "Q4_K_M", "bf16", ...
const char* quant_name(Quant q);

enum class KvType { f16, q8_0 };
std::optional<KvType> parse_kv_type(std::string_view name);

struct FitRequest {
  std::optional<Quant> quant;  // nullopt: the weights as stored (GGUF) or the checkpoint dtype (HF)
  uint32_t context = 0;        // 0: the model's trained context length
  uint32_t batch = 1;          // sequences that each hold a full context in the KV cache
  KvType kv_type = KvType::f16;
  bool require_gpu = false;    // --gpu / runtime.backend cuda: only GPUs count
  uint64_t max_image_pixels = 0;  // vision models: the largest image priced; 0 = the processor's
};

struct MemoryNeed {
  uint64_t weights = 0;
  uint64_t kv_cache = 0;   // n_layers × 2 × kv_heads × head_dim × context × batch × bytes
  uint64_t overhead = 0;   // runtime + compute buffers for a 512-token prefill chunk + logits
  uint64_t vision = 0;     // the vision tower's buffers for the largest image (its weights are in `weights`)
  uint64_t total() const { return weights + kv_cache + overhead + vision; }
};

// Bytes of the weights at `quant` (nullopt: as stored; for a bare config the checkpoint dtype).
uint64_t weight_bytes(const model::ModelShape& shape, std::optional<Quant> quant);
uint64_t kv_cache_bytes(const model::ModelShape& shape, uint64_t context, uint64_t batch, KvType kv);
MemoryNeed estimate(const model::ModelShape& shape, std::optional<Quant> quant, uint32_t context,
                    uint32_t batch, KvType kv, bool on_gpu);

// Memory a device offers to the model (from the hardware report).
struct DeviceMemory {
  std::string id;           // "cpu", "gpu0"
  std::string description;  // "Intel Xeon … (system RAM)", "NVIDIA GeForce RTX 4090"
  bool is_gpu = false;
  std::optional<uint64_t> available;  // nullopt: unknown (no driver, unreadable /proc/meminfo)
  std::string available_source;       // "MemAvailable", "free (NVML)", …
};

enum class Outcome { fits, fits_with_quant, fits_with_context, fits_with_quant_and_context, does_not_fit, unknown };
const char* outcome_name(Outcome o);

struct DeviceVerdict {
  DeviceMemory device;
  MemoryNeed need;                  // for the request as given
  Outcome outcome = Outcome::unknown;
  std::optional<Quant> quant;       // the quantization that fits, for fits_with_quant*
  uint32_t context = 0;             // the context that fits, for fits_with_context*
  MemoryNeed alternative_need;      // for the alternative, when there is one
  std::string message;
};

struct FitReport {
  model::ModelShape model;
  FitRequest request;
  uint32_t context = 0;  // the context the request resolves to
  std::vector<DeviceVerdict> devices;
  bool requirement_met = false;  // the request fits as given on at least one eligible device
  std::string recommendation;
};

FitReport plan(const model::ModelShape& shape, const std::vector<DeviceMemory>& devices, const FitRequest& request);

nlohmann::json to_json(const FitReport& report);
std::string render_text(const FitReport& report);

}  // namespace autoglm::preflight
