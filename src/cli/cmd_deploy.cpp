// autoglm-deploy deploy: preflight, verify, load, serve — in one command.
#include <memory>

#include "autoglm/exit_codes.h"
#include "commands.h"
#include "config_flags.h"
#include "service.h"

namespace autoglm::cli {

void add_deploy_command(CLI::App& app, Runner& run) {
  CLI::App* cmd = app.add_subcommand("deploy", "One shot: check the hardware, verify, load and serve a model");
  cmd->footer(
      "Examples:\n"
      "  autoglm-deploy deploy                       # the built-in demo model (random weights)\n"
      "  autoglm-deploy deploy --config configs/default.yaml\n"
      "  autoglm-deploy deploy --model ./glm-4-9b-0414-Q4_K_M.gguf --port 8080 --gpu\n"
      "  autoglm-deploy deploy --model ./AutoGLM-Phone-9B            # a Hugging Face folder: vision included\n"
      "  autoglm-deploy deploy --model ./AutoGLM-Phone-9B-Q4_K_M.gguf --mmproj ./mmproj-AutoGLM-Phone-9B-F16.gguf\n\n"
      "Flags override the matching fields of --config. Without a model, a small random-weight demo model\n"
      "is generated once into the cache ($XDG_CACHE_HOME/autoglm-deploy) so the whole path can be tried.");
  auto path = std::make_shared<std::string>();
  auto gpu = std::make_shared<bool>(false);
  auto force = std::make_shared<bool>(false);
  cmd->add_option("--config,-c", *path, "Service config (YAML), see docs/config.md");
  cmd->add_flag("--gpu", *gpu, "Require a usable NVIDIA GPU (runtime.backend: cuda)");
  cmd->add_flag("--force", *force, "Start even when the preflight says the model does not fit");
  auto flags = std::make_shared<std::vector<ConfigFlag>>(std::vector<ConfigFlag>{
      {"--model,-m", "model.path", "GGUF file, Hugging Face folder or http(s):// URL", {}},
      {"--mmproj", "model.mmproj", "llama.cpp's vision projector GGUF for a text GGUF (GLM-4.1V)", {}},
      {"--served-model-name", "service.served_model_names",
       "Model name(s) requests may use, e.g. autoglm-phone-9b (repeatable; the first is the id)", {}, nullptr, true},
      {"--host", "service.host", "Address to bind", {}},
      {"--port,-p", "service.port", "TCP port", {}},
      {"--quantization,-q", "model.quantization", "auto, f16, bf16, q8_0, q4_0 or q4_k", {}},
      {"--context", "model.context_length", "Context length in tokens (0 = the model's own)", {}},
  });
  add_config_flags(*cmd, *flags);
  cmd->callback([&run, path, flags, gpu, force] {
    run = [path, flags, gpu, force] {
      config::Config cfg = load_config_with_flags(*path, *flags);
      if (*gpu) cfg.runtime.backend = config::Backend::kCuda;
      return run_service(cfg, {/*preflight=*/true, *force, *gpu});
    };
  });
}

}  // namespace autoglm::cli
