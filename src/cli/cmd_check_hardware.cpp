// autoglm-deploy check-hardware: what this machine has, and whether a model fits on it.
#include <cstdio>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <memory>

#include "autoglm/config.h"
#include "autoglm/exit_codes.h"
#include "autoglm/hardware.h"
#include "autoglm/model_shape.h"
#include "autoglm/preflight.h"
#include "commands.h"
#include "screenshot_estimate.h"
#include "service.h"

namespace autoglm::cli {
namespace {

struct CheckHardwareOptions {
  std::string sysroot = "/";
  std::string model;
  std::string config;
  std::string quantization;
  std::string kv_cache_type;
  std::string disk;
  std::string mmproj;
  uint64_t max_image_pixels = 0;
  double target_encode_seconds = 0;
  uint32_t context = 0;
  uint32_t batch = 1;
  bool gpu = false;
  bool json = false;
};

[[noreturn]] void usage_error(const std::string& message) { throw Error(kExitUsage, message); }

// Settings from --config first, then the flags on top.
preflight::FitRequest fit_request(const CheckHardwareOptions& o, const config::Config* cfg) {
  preflight::FitRequest r;
  std::string quant = o.quantization, kv = o.kv_cache_type;
  if (cfg) {
    if (quant.empty() && cfg->model.quantization != config::Quantization::kAuto)
      quant = std::string(config::to_string(cfg->model.quantization));
    if (kv.empty()) kv = std::string(config::to_string(cfg->runtime.kv_cache_type));
    r.context = static_cast<uint32_t>(cfg->model.context_length);
    r.max_image_pixels = static_cast<uint64_t>(cfg->vision.max_pixels);
    r.require_gpu = cfg->runtime.backend == config::Backend::kCuda;
  }
  if (!quant.empty() && quant != "auto") {
    r.quant = preflight::parse_quant(quant);
    if (!r.quant) usage_error(fmt::format("--quantization: unknown type '{}' (use f16, bf16, q8_0, q4_0 or q4_k)", quant));
  }
  if (!kv.empty()) {
    auto t = preflight::parse_kv_type(kv);
    if (!t) usage_error(fmt::format("--kv-cache-type: unknown type '{}' (use f16 or q8_0)", kv));
    r.kv_type = *t;
  }
  if (o.context) r.context = o.context;
  if (o.max_image_pixels) r.max_image_pixels = o.max_image_pixels;
  if (o.batch == 0) usage_error("--batch: must be at least 1");
  r.batch = o.batch;
  r.require_gpu = r.require_gpu || o.gpu;
  return r;
}

int run_check_hardware(const CheckHardwareOptions& o) {
  std::unique_ptr<config::Config> cfg;
  if (!o.config.empty()) cfg = std::make_unique<config::Config>(config::load_config(o.config));
  const preflight::FitRequest request = fit_request(o, cfg.get());

  std::string model_path = o.model;
  if (model_path.empty() && cfg && !cfg->model.path.empty()) {
    model_path = cfg->model.path.string();
    if (!std::filesystem::exists(model_path))
      throw Error(kExitCheckFailed, fmt::format("{}: model.path '{}' does not exist: download the model there, or "
                                                "fix model.path (relative paths start at the config's folder)",
                                                o.config, model_path));
  }
  std::string note;
  if (model_path.empty() && cfg && !cfg->model.url.empty())
    note = "model.url: the model is not downloaded yet; run check-hardware --model on the downloaded file.";

  hardware::ProbeOptions probe;
  probe.sysroot = o.sysroot;
  probe.disk_path = !o.disk.empty() ? std::filesystem::path(o.disk)
                    : !model_path.empty() ? std::filesystem::absolute(model_path).parent_path()
                                          : std::filesystem::current_path();
  const hardware::HardwareReport hw = hardware::probe(probe);

  std::optional<preflight::FitReport> fit;
  std::optional<ScreenshotEstimate> screenshot;
  std::string mmproj = o.mmproj;
  if (mmproj.empty() && o.model.empty() && cfg) mmproj = cfg->model.mmproj.string();
  if (!model_path.empty()) {
    model::ModelShape shape = model::read_model_shape(model_path);
    if (!mmproj.empty()) model::add_mmproj(shape, mmproj);
    fit = preflight::plan(shape, devices_of(hw), request);
    if (shape.vision) {
      config::Config vision_cfg = cfg ? *cfg : config::default_config();
      if (o.target_encode_seconds > 0) vision_cfg.vision.target_encode_ms = static_cast<uint64_t>(o.target_encode_seconds * 1000 + 0.5);
      const int threads = vision_cfg.runtime.threads ? vision_cfg.runtime.threads : hw.cpu.physical_cores.value_or(0);
      screenshot = estimate_screenshot(shape, vision_cfg, o.max_image_pixels, threads);
    }
  }

  std::vector<std::string> failures;
  if (hw.overall() == hardware::Status::fail) failures.push_back("a hardware check failed");
  if (request.require_gpu && !has_usable_gpu(hw))
    failures.push_back("--gpu: no usable GPU (an NVIDIA GPU with its driver loaded)");
  if (fit && !fit->requirement_met) failures.push_back("the model does not fit as requested");

  if (o.json) {
    nlohmann::json j = hardware::to_json(hw);
    j["fit"] = fit ? preflight::to_json(*fit) : nlohmann::json(nullptr);
    if (screenshot) j["screenshot"] = to_json(*screenshot);
    j["ok"] = failures.empty();
    j["failures"] = failures;
    if (!note.empty()) j["note"] = note;
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("{}", hardware::render_text(hw));
    if (fit) fmt::print("\nModel fit\n{}", preflight::render_text(*fit));
    if (screenshot) fmt::print("\nVision tower\n{}", render_text(*screenshot));
    if (!note.empty()) fmt::print("\n{}\n", note);
    fmt::print("\nResult: {}\n", failures.empty() ? "OK" : "FAIL — " + fmt::format("{}", fmt::join(failures, "; ")));
  }
  return failures.empty() ? kExitOk : kExitCheckFailed;
}

}  // namespace

void add_check_hardware_command(CLI::App& app, Runner& run) {
  CLI::App* cmd = app.add_subcommand("check-hardware", "Preflight: CPU, memory, GPUs, disk — and will this model fit?");
  cmd->footer(
      "Examples:\n"
      "  autoglm-deploy check-hardware\n"
      "  autoglm-deploy check-hardware --model ./glm-4-9b-0414-Q4_K_M.gguf --gpu\n"
      "  autoglm-deploy check-hardware --model ./GLM-4-9B-0414 --quantization q4_k --context 32768 --json\n"
      "  autoglm-deploy check-hardware --model ./AutoGLM-Phone-9B-Q4_K_M.gguf --mmproj ./mmproj-AutoGLM-Phone-9B-F16.gguf\n"
      "  autoglm-deploy check-hardware --config configs/autoglm-phone-9b.yaml\n\n"
      "Reads only headers (GGUF metadata, config.json, safetensors headers), never the weights.\n"
      "Exit 1 when a requirement is not met: a failed check, no usable GPU with --gpu, or a model that does not fit.");
  auto o = std::make_shared<CheckHardwareOptions>();
  cmd->add_option("--model,-m", o->model, "GGUF file, Hugging Face folder or config.json to check the fit of");
  cmd->add_option("--config,-c", o->config, "Service config: model, quantization, context, backend come from it");
  cmd->add_option("--quantization,-q", o->quantization, "Weights to price: auto (as stored), f16, bf16, q8_0, q4_0, q4_k");
  cmd->add_option("--mmproj", o->mmproj, "llama.cpp's vision projector GGUF beside a text GGUF: its tower is priced too");
  cmd->add_option("--max-image-pixels", o->max_image_pixels,
                  "Vision models: the largest image to price (default: the processor's max pixels)");
  cmd->add_option("--target-encode-seconds", o->target_encode_seconds,
                  "Vision models: the max_pixels whose 1080x2400 screenshot encodes within this time here "
                  "(default: vision.target_encode_seconds of --config)");
  cmd->add_option("--context", o->context, "Context length in tokens (default: the model's own)");
  cmd->add_option("--batch", o->batch, "Sequences holding a full context at once (default 1)");
  cmd->add_option("--kv-cache-type", o->kv_cache_type, "f16 (default) or q8_0");
  cmd->add_flag("--gpu", o->gpu, "Require a usable GPU: the CPU does not count");
  cmd->add_flag("--json", o->json, "Machine-readable output (schema: docs/check-hardware.md)");
  cmd->add_option("--sysroot", o->sysroot, "Read /proc and /sys under this folder instead of /")->capture_default_str();
  cmd->add_option("--disk", o->disk, "Report the disk holding this path (default: the model's folder, else .)");
  cmd->callback([&run, o] { run = [o] { return run_check_hardware(*o); }; });
}

}  // namespace autoglm::cli
