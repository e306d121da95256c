// autoglm-deploy: entry point. Parses the command line, sets up logging, runs one subcommand.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "autoglm/error.h"
#include "autoglm/exit_codes.h"
#include "autoglm/log.h"
#include "commands.h"

int main(int argc, char** argv) {
  using namespace autoglm;
  CLI::App app{"autoglm-deploy: run GLM-4 / Llama / Qwen2 models as a local OpenAI-compatible service."};
  app.footer(
      "Examples:\n"
      "  autoglm-deploy check-hardware --model ./glm-4-9b-Q4_K_M.gguf\n"
      "  autoglm-deploy verify ./GLM-4-9B-0414 --manifest SHA256SUMS\n"
      "  autoglm-deploy deploy --model ./glm-4-9b-Q4_K_M.gguf --port 8080 --gpu\n"
      "  autoglm-deploy serve --config configs/autoglm-phone-9b.yaml\n\n"
      "Exit codes: 0 success, 1 check failed, 2 usage or configuration error, 3 not implemented yet.");
  app.require_subcommand(1);
  app.set_version_flag("--version", cli::version_string());

  std::string log_level = "info";
  std::string log_format = "text";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical or off")
      ->capture_default_str();
  app.add_option("--log-format", log_format, "text or json (one JSON object per line on stderr)")
      ->capture_default_str();

  cli::Runner run;
  cli::add_deploy_command(app, run);
  cli::add_serve_command(app, run);
  cli::add_check_hardware_command(app, run);
  cli::add_verify_command(app, run);
  cli::add_bench_command(app, run);
  cli::add_logits_command(app, run);
  cli::add_quantize_command(app, run);
  cli::add_tokenize_command(app, run);
  cli::add_generate_command(app, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end here too, with exit code 0.
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  if (std::string err = setup_logging(log_level, log_format); !err.empty()) {
    fmt::print(stderr, "error: {}\n", err);
    return kExitUsage;
  }

  try {
    return run ? run() : kExitUsage;
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return e.code();
  } catch (const std::exception& e) {
    spdlog::error("internal error: {}", e.what());
    return kExitCheckFailed;
  }
}
