#include "autoglm/preflight.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <fmt/format.h>

#include "autoglm/kernels.h"
#include "autoglm/quant_recipe.h"
#include "autoglm/units.h"

namespace autoglm::preflight {
namespace {

struct QuantInfo {
  Quant quant;
  const char* name;
  uint32_t block_size;  // elements per block
  uint32_t block_bytes;
};
// Block layouts of the ggml types (Q8_0: 32 int8 + f16 scale; Q4_0: 32 nibbles + f16 scale; ...).
constexpr std::array<QuantInfo, 6> kQuants{{
    {Quant::f32, "f32", 1, 4},
    {Quant::f16, "f16", 1, 2},
    {Quant::bf16, "bf16", 1, 2},
    {Quant::q8_0, "q8_0", 32, 34},
    {Quant::q4_k, "q4_k", 256, 144},
    {Quant::q4_0, "q4_0", 32, 18},
}};
constexpr QuantInfo kQ6K{Quant::q4_k, "q6_k", 256, 210};

// Runtime memory besides weights and KV: allocator slack, thread stacks; on GPU the CUDA context
// and cuBLAS workspace, which take 300–600 MiB on current drivers.
constexpr uint64_t kCpuRuntimeBytes = 256ull << 20;
constexpr uint64_t kGpuRuntimeBytes = 640ull << 20;
constexpr uint64_t kPrefillChunk = 512;
constexpr uint32_t kMinContext = 512;

const QuantInfo& info(Quant q) {
  for (const QuantInfo& i : kQuants)
    if (i.quant == q) return i;
  return kQuants[0];
}

uint64_t bytes_for(uint64_t n, const QuantInfo& q) {
  return (n + q.block_size - 1) / q.block_size * q.block_bytes;
}

bool is_output_projection(const model::TensorSize& t, bool tied) {
  if (t.name == "output.weight" || t.name == "lm_head.weight") return true;
  return tied && (t.name == "token_embd.weight" || t.name == "model.embed_tokens.weight");
}

kernels::DType dtype_of(Quant q) {
  switch (q) {
    case Quant::f32: return kernels::DType::f32;
    case Quant::f16: return kernels::DType::f16;
    case Quant::bf16: return kernels::DType::bf16;
    case Quant::q8_0: return kernels::DType::q8_0;
    case Quant::q4_k: return kernels::DType::q4_k;
    case Quant::q4_0: return kernels::DType::q4_0;
  }
  return kernels::DType::f32;
}

// A matrix's bytes at `q` as `quantize` writes it: the recipe's type for its name (Q4_K_M's Q6_K
// tensors, the output projection of 4-bit files) and llama.cpp's fallback for rows that are not
// whole blocks (GLM-4-9B's ffn_down: Q5_0 / Q8_0). Without a row length, by the element count.
uint64_t matrix_bytes(const model::ModelShape& shape, const model::TensorSize& t, Quant q) {
  if (t.cols == 0 || t.n_elements % t.cols != 0) {
    const bool q6k = (q == Quant::q4_k || q == Quant::q4_0) && is_output_projection(t, shape.tied_embeddings);
    return bytes_for(t.n_elements, q6k ? kQ6K : info(q));
  }
  const kernels::DType type =
      model::recipe_type(dtype_of(q), t.gguf_name, model::recipe_model(shape.n_layers, shape.tied_embeddings, shape.n_heads, shape.n_kv_heads), t.cols);
  return t.n_elements / t.cols * kernels::row_bytes(type, t.cols);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string describe(const MemoryNeed& n) {
  return fmt::format("{} = weights {} + KV cache {} + runtime {}{}", format_bytes(n.total()), format_bytes(n.weights),
                     format_bytes(n.kv_cache), format_bytes(n.overhead),
                     n.vision ? " + image buffers " + format_bytes(n.vision) : std::string());
}

// Smaller weight types to try, largest first, when the request does not fit.
std::vector<Quant> smaller_quants(const model::ModelShape& shape, std::optional<Quant> requested) {
  const uint64_t current = weight_bytes(shape, requested);
  std::vector<Quant> out;
  for (Quant q : {Quant::q8_0, Quant::q4_k, Quant::q4_0})
    if (weight_bytes(shape, q) < current) out.push_back(q);
  return out;
}

// The largest context (halving from `context`) whose need fits in `available`, or 0.
uint32_t largest_fitting_context(const model::ModelShape& shape, std::optional<Quant> quant, uint32_t context,
                                 const FitRequest& r, bool on_gpu, uint64_t available) {
  for (uint32_t c = context / 2; c >= std::min(kMinContext, context) && c > 0; c /= 2)
    if (estimate(shape, quant, c, r.batch, r.kv_type, on_gpu).total() <= available) return c;
  return 0;
}

DeviceVerdict judge(const model::ModelShape& shape, const DeviceMemory& dev, const FitRequest& r, uint32_t context) {
  DeviceVerdict v;
  v.device = dev;
  v.need = estimate(shape, r.quant, context, r.batch, r.kv_type, dev.is_gpu);
  if (!dev.available) {
    v.outcome = Outcome::unknown;
    v.message = fmt::format("needs {}; free memory unknown", format_bytes(v.need.total()));
    return v;
  }
  const uint64_t avail = *dev.available;
  if (v.need.total() <= avail) {
    v.outcome = Outcome::fits;
    v.message = fmt::format("fits: needs {} of {} ({} spare)", format_bytes(v.need.total()), format_bytes(avail),
                            format_bytes(avail - v.need.total()));
    return v;
  }
  for (Quant q : smaller_quants(shape, r.quant)) {
    MemoryNeed n = estimate(shape, q, context, r.batch, r.kv_type, dev.is_gpu);
    if (n.total() <= avail) {
      v.outcome = Outcome::fits_with_quant;
      v.quant = q;
      v.alternative_need = n;
      v.message = fmt::format("does not fit as requested ({} > {}); fits at {} ({})", format_bytes(v.need.total()),
                              format_bytes(avail), quant_name(q), format_bytes(n.total()));
      return v;
    }
  }
  if (uint32_t c = largest_fitting_context(shape, r.quant, context, r, dev.is_gpu, avail)) {
    v.outcome = Outcome::fits_with_context;
    v.context = c;
    v.alternative_need = estimate(shape, r.quant, c, r.batch, r.kv_type, dev.is_gpu);
    v.message = fmt::format("does not fit as requested ({} > {}); fits with context {} ({})",
                            format_bytes(v.need.total()), format_bytes(avail), c,
                            format_bytes(v.alternative_need.total()));
    return v;
  }
  const std::vector<Quant> smaller = smaller_quants(shape, r.quant);
  if (!smaller.empty()) {
    const Quant q = smaller.back();
    if (uint32_t c = largest_fitting_context(shape, q, context, r, dev.is_gpu, avail)) {
      v.outcome = Outcome::fits_with_quant_and_context;
      v.quant = q;
      v.context = c;
      v.alternative_need = estimate(shape, q, c, r.batch, r.kv_type, dev.is_gpu);
      v.message = fmt::format("does not fit as requested ({} > {}); fits at {} with context {} ({})",
                              format_bytes(v.need.total()), format_bytes(avail), quant_name(q), c,
                              format_bytes(v.alternative_need.total()));
      return v;
    }
  }
  v.outcome = Outcome::does_not_fit;
  v.message = fmt::format("does not fit: needs {}, has {}, even at the smallest quantization and context {}",
                          format_bytes(v.need.total()), format_bytes(avail), kMinContext);
  return v;
}

// How a user gets the alternative: a different file for GGUF, a load-time option for HF weights.
std::string how_to_quantize(const model::ModelShape& shape, Quant q) {
  if (shape.format == "gguf")
    return fmt::format("use a {} GGUF of this model (or `autoglm-deploy quantize` from the original weights)",
                       q == Quant::q4_k ? "Q4_K_M" : lower(quant_name(q)) == "q8_0" ? "Q8_0" : quant_name(q));
  return fmt::format("deploy with --quantization {}", quant_name(q));
}

std::string recommend(const FitReport& report) {
  const DeviceVerdict* best = nullptr;
  for (const DeviceVerdict& v : report.devices) {
    if (report.request.require_gpu && !v.device.is_gpu) continue;
    if (v.outcome == Outcome::fits && (!best || (v.device.is_gpu && !best->device.is_gpu))) best = &v;
  }
  if (best)
    return fmt::format("Run on {} ({}): needs {} of {}.", best->device.id, best->device.description,
                       format_bytes(best->need.total()), format_bytes(*best->device.available));
  for (const DeviceVerdict& v : report.devices) {
    if (report.request.require_gpu && !v.device.is_gpu) continue;
    switch (v.outcome) {
      case Outcome::fits_with_quant:
        return fmt::format("On {}: {}.", v.device.id, how_to_quantize(report.model, *v.quant));
      case Outcome::fits_with_context:
        return fmt::format("On {}: limit the context with --context {}.", v.device.id, v.context);
      case Outcome::fits_with_quant_and_context:
        return fmt::format("On {}: {} and limit the context with --context {}.", v.device.id,
                           how_to_quantize(report.model, *v.quant), v.context);
      default:
        break;
    }
  }
  if (report.request.require_gpu &&
      std::none_of(report.devices.begin(), report.devices.end(), [](const DeviceVerdict& v) { return v.device.is_gpu; }))
    return "No usable GPU was found: install the NVIDIA driver, or run without --gpu on the CPU.";
  return "No device can hold this model: use a machine with more memory or a smaller model.";
}

// "9.40 B", "2.23 M", "4096".
std::string format_count(uint64_t n) {
  if (n >= 1'000'000'000) return fmt::format("{:.2f} B", static_cast<double>(n) / 1e9);
  if (n >= 1'000'000) return fmt::format("{:.2f} M", static_cast<double>(n) / 1e6);
  return fmt::format("{}", n);
}

nlohmann::json need_json(const MemoryNeed& n) {
  return {{"weights_bytes", n.weights}, {"kv_cache_bytes", n.kv_cache}, {"overhead_bytes", n.overhead},
          {"total_bytes", n.total()}};
}

}  // namespace

std::optional<Quant> parse_quant(std::string_view name) {
  std::string n = lower(name);
  if (n == "q4_k_m" || n == "q4_k_s") n = "q4_k";
  for (const QuantInfo& i : kQuants)
    if (n == i.name) return i.quant;
  return std::nullopt;
}

const char* quant_name(Quant q) { return info(q).name; }

std::optional<KvType> parse_kv_type(std::string_view name) {
  const std::string n = lower(name);
  if (n == "f16") return KvType::f16;
  if (n == "q8_0") return KvType::q8_0;
  return std::nullopt;
}

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::fits: return "fits";
    case Outcome::fits_with_quant: return "fits_with_quantization";
    case Outcome::fits_with_context: return "fits_with_context";
    case Outcome::fits_with_quant_and_context: return "fits_with_quantization_and_context";
    case Outcome::does_not_fit: return "does_not_fit";
    case Outcome::unknown: return "unknown";
  }
  return "unknown";
}

uint64_t weight_bytes(const model::ModelShape& shape, std::optional<Quant> quant) {
  if (!quant) {
    if (shape.stored_bytes() > 0) return shape.stored_bytes();
    quant = parse_quant(shape.stored_type).value_or(Quant::bf16);
  }
  uint64_t total = 0;
  for (const model::TensorSize& t : shape.tensors)
    total += t.is_matrix ? matrix_bytes(shape, t, *quant) : t.n_elements * 4;  // norms and biases stay f32
  return total;
}

uint64_t kv_cache_bytes(const model::ModelShape& shape, uint64_t context, uint64_t batch, KvType kv) {
  const uint64_t elements = uint64_t{shape.n_layers} * 2 * shape.n_kv_heads * shape.head_dim * context * batch;
  return kv == KvType::f16 ? elements * 2 : bytes_for(elements, info(Quant::q8_0));
}

MemoryNeed estimate(const model::ModelShape& shape, std::optional<Quant> quant, uint32_t context, uint32_t batch,
                    KvType kv, bool on_gpu) {
  MemoryNeed n;
  n.weights = weight_bytes(shape, quant);
  n.kv_cache = kv_cache_bytes(shape, context, batch, kv);
  // Activations of one prefill chunk: residual, norm output, q/k/v, attention output, gate/up; and f32 logits.
  const uint64_t per_token = 3ull * shape.d_model + uint64_t{shape.n_heads + 2 * shape.n_kv_heads} * shape.head_dim +
                             2ull * shape.ffn_dim;
  n.overhead = (on_gpu ? kGpuRuntimeBytes : kCpuRuntimeBytes) + kPrefillChunk * per_token * 4 +
               uint64_t{batch} * shape.vocab_size * 4;
  if (shape.vision && shape.vision->max_pixels) {
    // per patch, f32: residual, norm output, q/k/v, attention output, gate and up; per image token the
    // merged rows; the patches themselves (3 x 2 x 14 x 14)
    const model::VisionShape& v = *shape.vision;
    const uint64_t patch_bytes = (7ull * v.d_model + 2ull * v.ffn_dim + 6ull * v.patch_size * v.patch_size) * 4;
    n.vision = v.patches(v.max_pixels) * patch_bytes + v.tokens(v.max_pixels) * 3ull * v.out_dim * 4;
  }
  return n;
}

FitReport plan(const model::ModelShape& model_shape, const std::vector<DeviceMemory>& devices, const FitRequest& request) {
  model::ModelShape shape = model_shape;
  if (shape.vision && request.max_image_pixels) shape.vision->max_pixels = request.max_image_pixels;
  FitReport report;
  report.model = shape;
  report.request = request;
  report.context = request.context ? request.context : shape.context_length;
  for (const DeviceMemory& d : devices) report.devices.push_back(judge(shape, d, request, report.context));
  report.requirement_met = std::any_of(report.devices.begin(), report.devices.end(), [&](const DeviceVerdict& v) {
    return v.outcome == Outcome::fits && (!request.require_gpu || v.device.is_gpu);
  });
  report.recommendation = recommend(report);
  return report;
}

nlohmann::json to_json(const FitReport& r) {
  nlohmann::json devices = nlohmann::json::array();
  for (const DeviceVerdict& v : r.devices) {
    nlohmann::json d = {
        {"id", v.device.id},
        {"description", v.device.description},
        {"is_gpu", v.device.is_gpu},
        {"available_bytes", v.device.available ? nlohmann::json(*v.device.available) : nlohmann::json(nullptr)},
        {"available_source", v.device.available_source},
        {"need", need_json(v.need)},
        {"verdict", outcome_name(v.outcome)},
        {"message", v.message},
        {"quantization", v.quant ? nlohmann::json(quant_name(*v.quant)) : nlohmann::json(nullptr)},
        {"context", v.context ? nlohmann::json(v.context) : nlohmann::json(nullptr)},
    };
    if (v.outcome != Outcome::fits && v.outcome != Outcome::does_not_fit && v.outcome != Outcome::unknown)
      d["alternative_need"] = need_json(v.alternative_need);
    devices.push_back(std::move(d));
  }
  const model::ModelShape& m = r.model;
  return {
      {"model",
       {{"source", m.source.string()}, {"format", m.format}, {"name", m.name}, {"architecture", m.architecture},
        {"parameters", m.n_params()}, {"stored_type", m.stored_type}, {"stored_bytes", m.stored_bytes()},
        {"layers", m.n_layers}, {"d_model", m.d_model}, {"heads", m.n_heads}, {"kv_heads", m.n_kv_heads},
        {"head_dim", m.head_dim}, {"ffn_dim", m.ffn_dim}, {"vocab_size", m.vocab_size},
        {"context_length", m.context_length}, {"tied_embeddings", m.tied_embeddings},
        {"vision", m.vision ? nlohmann::json{{"blocks", m.vision->depth}, {"d_model", m.vision->d_model},
                                             {"ffn_dim", m.vision->ffn_dim}, {"parameters", m.vision->params},
                                             {"max_image_pixels", m.vision->max_pixels},
                                             {"max_image_tokens", m.vision->tokens(m.vision->max_pixels)}}
                            : nlohmann::json(nullptr)}}},
      {"request",
       {{"quantization", r.request.quant ? quant_name(*r.request.quant) : "as stored"},
        {"context", r.context},
        {"batch", r.request.batch},
        {"kv_cache_type", r.request.kv_type == KvType::f16 ? "f16" : "q8_0"},
        {"require_gpu", r.request.require_gpu}}},
      {"devices", devices},
      {"requirement_met", r.requirement_met},
      {"recommendation", r.recommendation},
  };
}

namespace {

std::string vision_line(const model::ModelShape& m) {
  if (!m.vision) return "";
  const model::VisionShape& v = *m.vision;
  std::string out = fmt::format("       vision tower: {} parameters, {} blocks, d_model {}, FFN {}", format_count(v.params),
                                v.depth, v.d_model, v.ffn_dim);
  if (v.max_pixels)
    out += fmt::format("; an image of up to {} pixels is {} tokens (e.g. a 1080x2400 screenshot: {})", v.max_pixels,
                       v.tokens(v.max_pixels), v.tokens(std::min<uint64_t>(v.max_pixels, 1092ull * 2408)));
  return out + "\n";
}

}  // namespace

std::string render_text(const FitReport& r) {
  const model::ModelShape& m = r.model;
  std::string out = fmt::format(
      "Model  {} ({}, {})\n"
      "       {} parameters, {} layers, d_model {}, {} heads / {} KV heads × {}, FFN {}, vocab {}\n"
      "       stored as {}{}, trained context {}\n"
      "{}"
      "Request  weights {}, context {}, batch {}, KV cache {}\n",
      m.name, m.architecture, m.source.string(), format_count(m.n_params()), m.n_layers, m.d_model,
      m.n_heads, m.n_kv_heads, m.head_dim, m.ffn_dim, m.vocab_size, m.stored_type.empty() ? "?" : m.stored_type,
      m.stored_bytes() ? fmt::format(" ({})", format_bytes(m.stored_bytes())) : std::string(), m.context_length,
      vision_line(m),
      r.request.quant ? quant_name(*r.request.quant) : "as stored", r.context, r.request.batch,
      r.request.kv_type == KvType::f16 ? "f16" : "q8_0");
  for (const DeviceVerdict& v : r.devices) {
    const bool eligible = !r.request.require_gpu || v.device.is_gpu;
    const char* mark = !eligible                          ? "SKIP"
                       : v.outcome == Outcome::fits         ? "OK  "
                       : v.outcome == Outcome::unknown      ? "??  "
                                                            : "FAIL";
    out += fmt::format("  [{}] {:<5} {:<34} {}{}\n", mark, v.device.id, v.device.description.substr(0, 34), v.message,
                       eligible ? "" : " (not counted: a GPU is required)");
    out += fmt::format("         need {}\n", describe(v.need));
  }
  out += fmt::format("Verdict  {}\n", r.requirement_met ? "OK: the model fits as requested" : "FAIL: the model does not fit as requested");
  out += fmt::format("Recommendation  {}\n", r.recommendation);
  return out;
}

}  // namespace autoglm::preflight
