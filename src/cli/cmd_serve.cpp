// autoglm-deploy serve --config FILE: the service a YAML file describes.
#include <memory>

#include "autoglm/exit_codes.h"
#include "commands.h"
#include "config_flags.h"
#include "service.h"

namespace autoglm::cli {

void add_serve_command(CLI::App& app, Runner& run) {
  CLI::App* cmd = app.add_subcommand("serve", "Serve the model a YAML config describes (OpenAI-compatible API)");
  cmd->footer(
      "Examples:\n"
      "  autoglm-deploy serve --config configs/autoglm-phone-9b.yaml\n"
      "  autoglm-deploy serve --config service.yaml --port 9000\n\n"
      "The whole file is validated first; every problem is reported with file:line:column.");
  auto path = std::make_shared<std::string>();
  cmd->add_option("--config,-c", *path, "Service config (YAML), see docs/config.md")->required();
  auto flags = std::make_shared<std::vector<ConfigFlag>>(std::vector<ConfigFlag>{
      {"--served-model-name", "service.served_model_names",
       "Model name(s) requests may use, e.g. autoglm-phone-9b (repeatable; the first is the id)", {}, nullptr, true},
      {"--host", "service.host", "Address to bind", {}},
      {"--port", "service.port", "TCP port", {}},
      {"--threads", "runtime.threads", "CPU threads (0 = one per physical core)", {}},
  });
  add_config_flags(*cmd, *flags);
  cmd->callback([&run, path, flags] {
    run = [path, flags] {
      return run_service(load_config_with_flags(*path, *flags), {});
    };
  });
}

}  // namespace autoglm::cli
