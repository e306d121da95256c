// serve and deploy: resolve the model, check it, load it, serve it until SIGTERM/SIGINT.
#include "service.h"
#include "screenshot_estimate.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <thread>

#include "autoglm/download.h"
#include "autoglm/error.h"
#include "autoglm/integrity.h"
#include "autoglm/model_shape.h"
#include "autoglm/quantize.h"
#include "autoglm/random_model.h"
#include "autoglm/server.h"
#include "autoglm/units.h"
#include "commands.h"
#include "model_setup.h"

namespace autoglm::cli {

std::vector<preflight::DeviceMemory> devices_of(const hardware::HardwareReport& hw) {
  std::vector<preflight::DeviceMemory> out;
  int gpu_index = 0;
  for (const hardware::DeviceMemory& d : hardware::usable_memory(hw)) {
    const bool is_gpu = d.device != "cpu";
    out.push_back({is_gpu ? fmt::format("gpu{}", gpu_index++) : "cpu", d.label, is_gpu, d.bytes, d.source});
  }
  return out;
}

bool has_usable_gpu(const hardware::HardwareReport& hw) {
  for (const hardware::DeviceMemory& d : hardware::usable_memory(hw))
    if (d.device != "cpu" && d.bytes) return true;
  return false;
}

namespace {

namespace fs = std::filesystem;

// The built-in demo model: GLM-4-shaped, random weights, small enough to answer at once on any CPU.
// The file name carries the spec's version: a changed spec makes a new file.
fs::path demo_model_path() {
  const fs::path path = download::default_cache_dir() / "demo" / "autoglm-demo-glm4-q8_0-v1.gguf";
  if (fs::exists(path)) return path;
  fs::create_directories(path.parent_path());
  spdlog::info("generating the demo model (random weights, once) at {}", path.string());
  model::RandomModelSpec spec;
  spec.arch = "glm4";
  spec.n_layers = 4;
  spec.d_model = 512;
  spec.n_heads = 8;
  spec.n_kv_heads = 2;
  spec.head_dim = 64;
  spec.ffn_dim = 1408;
  spec.vocab_size = 4096;
  spec.context_length = 4096;
  spec.weight_type = kernels::DType::q8_0;
  spec.seed = 20261122;
  model::write_random_model(spec, path);
  return path;
}

fs::path resolve_model(const config::Config& cfg) {
  if (cfg.model.is_demo()) return demo_model_path();
  if (!cfg.model.url.empty()) {
    download::FetchOptions o;
    o.expected_sha256 = cfg.model.sha256;
    return download::fetch(cfg.model.url, o);
  }
  if (!fs::exists(cfg.model.path))
    throw Error(kExitCheckFailed, fmt::format("model.path '{}' does not exist: download the model there, or fix "
                                              "model.path / --model (relative paths start at the config's folder)",
                                              cfg.model.path.string()));
  return cfg.model.path;
}

// The names requests may use: service.served_model_names as given, else service.name and the
// model's own name (GGUF general.name, the Hugging Face folder's name).
std::vector<std::string> served_names(const config::Config& cfg, const fs::path& model_path) {
  if (!cfg.service.served_model_names.empty()) return cfg.service.served_model_names;
  std::vector<std::string> names{cfg.service.name};
  std::string own;
  try {
    own = model::read_model_shape(model_path).name;
  } catch (const std::exception&) {
    // the loader has read the file already; a name it cannot give is just not offered
  }
  const bool printable = std::all_of(own.begin(), own.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f; });
  if (!own.empty() && own.size() <= 128 && printable && own != names.front()) names.push_back(own);
  return names;
}

// deploy: the check-hardware verdict for this model, refused with the reasons when it cannot fit.
void preflight_check(const config::Config& cfg, const fs::path& model_path, bool force) {
  hardware::ProbeOptions probe;
  probe.disk_path = fs::absolute(model_path).parent_path();
  const hardware::HardwareReport hw = hardware::probe(probe);
  preflight::FitRequest request;
  if (cfg.model.quantization != config::Quantization::kAuto)
    request.quant = preflight::parse_quant(config::to_string(cfg.model.quantization));
  request.context = static_cast<uint32_t>(cfg.model.context_length);
  request.kv_type = cfg.runtime.kv_cache_type == config::KvCacheType::kQ8_0 ? preflight::KvType::q8_0 : preflight::KvType::f16;
  request.require_gpu = cfg.runtime.backend == config::Backend::kCuda;
  request.max_image_pixels = static_cast<uint64_t>(cfg.vision.max_pixels);
  model::ModelShape shape = model::read_model_shape(model_path);
  if (!cfg.model.mmproj.empty() && fs::exists(cfg.model.mmproj)) model::add_mmproj(shape, cfg.model.mmproj);
  const preflight::FitReport fit = preflight::plan(shape, devices_of(hw), request);
  if (shape.vision) {
    const int threads = cfg.runtime.threads ? cfg.runtime.threads : hw.cpu.physical_cores.value_or(0);
    if (auto e = estimate_screenshot(shape, cfg, 0, threads)) spdlog::info("preflight: vision\n{}", render_text(*e));
  }
  if (fit.requirement_met) {
    spdlog::info("preflight: the model fits ({})", fit.recommendation);
    return;
  }
  const std::string report = preflight::render_text(fit);
  if (force) {
    spdlog::warn("preflight: the model does not fit as requested; starting anyway (--force)\n{}", report);
    return;
  }
  throw Error(kExitCheckFailed, fmt::format("preflight: the model does not fit as requested:\n{}\nLower "
                                            "--context or use a smaller --quantization, or pass --force to start anyway.", report));
}

// The config's expected SHA-256 values, checked before loading; nothing to do when none are known.
void verify_hashes(const config::Config& cfg, const fs::path& model_path) {
  if (cfg.model.sha256.empty() && cfg.model.sha256_files.empty()) return;
  if (!cfg.model.url.empty()) return;  // fetch() already checked the download
  integrity::VerifyOptions o;
  if (!cfg.model.sha256.empty()) o.sha256 = cfg.model.sha256;
  o.expected = cfg.model.sha256_files;
  o.progress = true;
  spdlog::info("verifying {} against the config's SHA-256", model_path.string());
  const integrity::Report r = integrity::verify(model_path, o);
  if (r.ok()) return;
  std::vector<std::string> bad = r.errors;
  for (const integrity::FileReport& f : r.files)
    if (f.status() != integrity::Status::ok)
      bad.push_back(fmt::format("{}: {}{}", f.path.string(), integrity::status_name(f.status()),
                                f.expected_sha256 ? fmt::format(" (expected {}, got {})", *f.expected_sha256, f.sha256) : ""));
  throw Error(kExitCheckFailed, fmt::format("verify: the model files do not match the config's SHA-256:\n  {}\nDownload "
                                            "them again, or fix model.sha256.", fmt::join(bad, "\n  ")));
}

model::LoadOptions load_options(const config::Config& cfg, const fs::path& model_path) {
  model::LoadOptions o;
  o.repack = cfg.runtime.repack_weights;
  const config::Quantization q = cfg.model.quantization;
  if (q == config::Quantization::kAuto) return o;
  if (!fs::is_directory(model_path)) {
    spdlog::warn("model.quantization {}: a GGUF file is served as stored (convert it with `autoglm-deploy quantize`); "
                 "an mmproj beside it is quantized", config::to_string(q));
    return o;
  }
  if (q == config::Quantization::kQ8_0 || q == config::Quantization::kQ4_0 || q == config::Quantization::kQ4_K)
    o.quantize_to = model::parse_quantize_type(config::to_string(q));
  return o;
}

}  // namespace

// The vision tower's form whatever the text model's (an mmproj is usually shipped as F16). By default
// (auto) on the CPU: BF16 on AMX tiles where the CPU has AMX-BF16 (Sapphire Rapids and later), else
// Q8_0, whose int8 products are several times faster than the float ones; bf16 and q8_0 ask for
// one. A quantized model.quantization takes Q8_0 where there is no AMX. as_stored keeps the tower.
model::LoadOptions vision_load_options(const config::Config& cfg, model::LoadOptions o) {
  const config::VisionQuantization v = cfg.vision.quantization;
  o.bf16_tiles = false;
  if (v == config::VisionQuantization::kAsStored) {
    o.quantize_to.reset();
    return o;
  }
  const bool cpu = cfg.runtime.backend != config::Backend::kCuda;
  if (v == config::VisionQuantization::kBf16 || (v == config::VisionQuantization::kAuto && cpu && kernels::amx_available())) {
    o.quantize_to = kernels::DType::bf16;
    o.bf16_tiles = true;
    return o;
  }
  const config::Quantization q = cfg.model.quantization;
  if (q == config::Quantization::kQ8_0 || q == config::Quantization::kQ4_0 || q == config::Quantization::kQ4_K ||
      v == config::VisionQuantization::kQ8_0 || cfg.runtime.backend != config::Backend::kCuda)
    o.quantize_to = kernels::DType::q8_0;  // the tower's int8 path takes Q8_0 for every quantized type
  return o;
}

namespace {

struct KvPlan {
  size_t blocks = 0;
  size_t context = 0;
};

// KV cache blocks from the budget (bytes, or a share of the memory left once the weights are in),
// never more than max_batch_size full contexts; the context shrinks when the budget cannot hold one.
KvPlan plan_kv_cache(const config::Config& cfg, const hardware::HardwareReport& hw, const model::Model& m,
                     size_t block_size) {
  const model::ArchConfig& c = m.config;
  const double elem = cfg.runtime.kv_cache_type == config::KvCacheType::kQ8_0 ? 34.0 / 32.0 : 2.0;
  const double per_token = 2.0 * c.n_layers * c.n_kv_heads * c.head_dim * elem;
  size_t context = cfg.model.context_length ? static_cast<size_t>(cfg.model.context_length) : c.context_length;
  if (context == 0) context = 4096;
  uint64_t budget = cfg.runtime.kv_cache_budget.bytes;
  if (budget == 0) {
    const uint64_t available = hw.memory.available_bytes.value_or(4ull << 30);
    const uint64_t weights = static_cast<uint64_t>(fs::is_directory(m.path) ? 0 : fs::file_size(m.path));
    budget = static_cast<uint64_t>(static_cast<double>(available > weights ? available - weights : 0) *
                                   cfg.runtime.kv_cache_budget.fraction);
  }
  const size_t max_blocks = (static_cast<size_t>(cfg.runtime.max_batch_size) * context + block_size - 1) / block_size;
  const size_t budget_blocks = static_cast<size_t>(static_cast<double>(budget) / (per_token * static_cast<double>(block_size)));
  KvPlan plan{std::min(max_blocks, budget_blocks), context};
  if (plan.blocks * block_size < context) {
    if (plan.blocks * block_size < 256)
      throw Error(kExitCheckFailed, fmt::format("runtime.kv_cache_budget leaves room for only {} KV positions; raise it "
                                                "(needs {} per position)", plan.blocks * block_size, format_bytes(static_cast<uint64_t>(per_token))));
    plan.context = plan.blocks * block_size;
    spdlog::warn("the KV cache budget holds {} positions: the context is cut from {} to {} tokens "
                 "(raise runtime.kv_cache_budget for more)", plan.context, context, plan.context);
  }
  spdlog::info("KV cache: {} blocks of {} positions ({}, {}), context {}", plan.blocks, block_size,
               format_bytes(static_cast<uint64_t>(per_token * static_cast<double>(plan.blocks * block_size))),
               config::to_string(cfg.runtime.kv_cache_type), plan.context);
  return plan;
}

std::string curl_example(const std::string& base, const std::string& model, bool auth, bool vision) {
  const std::string header = fmt::format("curl {}/v1/chat/completions -H 'Content-Type: application/json'{} \\\n", base,
                                         auth ? " -H \"Authorization: Bearer $AUTOGLM_API_KEY\"" : "");
  if (vision)  // a screenshot as Open-AutoGLM sends it: base64 in a data: URL, then the text
    return header + fmt::format(
        "  -d '{{\"model\": \"{}\", \"max_tokens\": 64, \"messages\": [{{\"role\": \"user\", \"content\": [\n"
        "        {{\"type\": \"image_url\", \"image_url\": {{\"url\": \"data:image/png;base64,'\"$(base64 -w0 screen.png)\"'\"}}}},\n"
        "        {{\"type\": \"text\", \"text\": \"What is on this screen?\"}}]}}]}}'", model);
  return header + fmt::format(
      "  -d '{{\"model\": \"{}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}], \"max_tokens\": 64}}'",
      model);
}

// The signals that stop the server are blocked in every thread and taken by sigwait().
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

int run_service(const config::Config& cfg, const ServiceRun& how) {
  // before any thread exists, so that every thread inherits the mask
  const sigset_t signals = stop_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const std::vector<std::string> keys = config::resolve_api_keys(cfg.service);
  hardware::ProbeOptions probe;
  probe.disk_path.reset();
  const hardware::HardwareReport hw = hardware::probe(probe);
  if (cfg.runtime.backend == config::Backend::kCuda || how.gpu_flag) {
    if (!has_usable_gpu(hw))
      throw Error(kExitCheckFailed, "--gpu / runtime.backend cuda: no usable NVIDIA GPU (none found, or its driver is not "
                                    "loaded); `autoglm-deploy check-hardware` says why. Drop --gpu to serve from the CPU.");
    throw Error(kExitNotImplemented, "--gpu / runtime.backend cuda: a GPU is present, but the CUDA backend has not landed "
                                     "yet; drop --gpu (or set runtime.backend: cpu) to serve from the CPU");
  }

  server::ServerOptions so{cfg.service, keys, version_string()};
  server::Server http(so);
  const int port = http.start();
  const std::string host = cfg.service.host == "0.0.0.0" || cfg.service.host == "::" ? "127.0.0.1" : cfg.service.host;
  const std::string base = fmt::format("http://{}:{}", host.find(':') != std::string::npos ? "[" + host + "]" : host, port);
  spdlog::info("listening on {}:{} (GET /health; /ready says 503 until the model is loaded)", cfg.service.host, port);

  const fs::path model_path = resolve_model(cfg);
  if (how.preflight) preflight_check(cfg, model_path, how.force);
  verify_hashes(cfg, model_path);
  spdlog::info("loading {}", model_path.string());
  const model::LoadOptions options = load_options(cfg, model_path);
  const auto model = model::Model::load(model_path, options);
  const Tokenizer tokenizer = load_tokenizer(model_path);
  const VisionSetup vision = load_vision(model_path, cfg.model.mmproj, vision_load_options(cfg, options), tokenizer);
  const std::string chat_override = cfg.model.chat_template;
  if (!chat_override.empty() && chat_override.find('/') != std::string::npos)
    throw Error(kExitNotImplemented, "model.chat_template: Jinja template files are not supported yet; use glm4, "
                                     "glm4v, llama3, chatml or llama2");
  server::ServedModel served;
  served.model = model.get();
  served.tokenizer = &tokenizer;
  served.names = served_names(cfg, model_path);
  served.chat_format = choose_chat_format(chat_override, *model, tokenizer);
  if (vision.model) {
    served.chat_format = vision_chat_format(served.chat_format, chat_override);
    served.vision = vision.model.get();
    served.processor = vision.processor;
    if (cfg.vision.min_pixels) served.processor.min_pixels = static_cast<uint64_t>(cfg.vision.min_pixels);
    if (cfg.vision.max_pixels) served.processor.max_pixels = static_cast<uint64_t>(cfg.vision.max_pixels);
    if (served.processor.min_pixels > served.processor.max_pixels)
      throw Error(kExitUsage, fmt::format("vision.min_pixels {} is above the max pixels {}", served.processor.min_pixels,
                                          served.processor.max_pixels));
    served.image_token = vision.image_token;
    served.max_images_per_request = static_cast<size_t>(cfg.vision.max_images_per_request);
    served.encoder_cache_bytes = cfg.vision.encoder_cache_size;
    spdlog::info("vision: {} blocks of width {}, weights {}; images of {}..{} pixels (up to {} tokens)",
                 vision.model->config.depth, vision.model->config.d_model, vision.model->weight_type,
                 served.processor.min_pixels, served.processor.max_pixels,
                 served.processor.max_pixels / (size_t{served.processor.factor()} * served.processor.factor()));
  }
  const KvPlan kv = plan_kv_cache(cfg, hw, *model, served.kv_block_size);
  served.context_length = kv.context;
  served.kv_blocks = kv.blocks;
  served.max_sequences = static_cast<size_t>(cfg.runtime.max_batch_size);
  served.prefix_cache = cfg.runtime.prefix_cache;
  served.kv_type = cfg.runtime.kv_cache_type == config::KvCacheType::kQ8_0 ? kernels::DType::q8_0 : kernels::DType::f16;
  // 0: one thread per physical core (hyper-threads share the core's load units and do not help)
  served.threads = cfg.runtime.threads ? cfg.runtime.threads : hw.cpu.physical_cores.value_or(0);
  http.attach(served);

  std::printf("\nautoglm-deploy: serving model '%s' at %s/v1\n", served.names.front().c_str(), base.c_str());
  if (served.names.size() > 1) {
    std::string also;
    for (size_t i = 1; i < served.names.size(); ++i) also += (i > 1 ? "', '" : "") + served.names[i];
    std::printf("  (requests may also name it '%s')\n", also.c_str());
  }
  if (cfg.model.is_demo())
    std::printf("  This is the built-in demo model: random weights, its answers are noise. Serve real weights with\n"
                "  --model FILE.gguf (or a Hugging Face folder, or an https:// URL) or model.path in the config.\n");
  std::printf("  Try it%s:\n\n%s\n\n  Stop with Ctrl-C (requests in flight finish first).\n", served.vision ? " (screen.png: any PNG or JPEG)" : "",
              curl_example(base, served.names.front(), !keys.empty(), served.vision != nullptr).c_str());
  std::fflush(stdout);

  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("{}: draining (up to {} ms), then exiting", signal == SIGINT ? "SIGINT" : "SIGTERM",
               cfg.service.drain_timeout_ms);
  std::thread([signals] {  // a second signal does not wait for the drain
    int again = 0;
    sigset_t set = signals;
    sigwait(&set, &again);
    spdlog::warn("second signal: exiting now");
    std::_Exit(130);
  }).detach();
  http.shutdown(std::chrono::milliseconds(cfg.service.drain_timeout_ms));
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace autoglm::cli
