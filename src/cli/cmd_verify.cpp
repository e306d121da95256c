// `autoglm-deploy verify PATH [--sha256 HEX | --manifest SHA256SUMS] [--json]`
#include <cstdio>
#include <fmt/format.h>
#include <memory>

#include "autoglm/config.h"
#include "autoglm/exit_codes.h"
#include "autoglm/integrity.h"
#include "autoglm/progress.h"
#include "commands.h"

namespace autoglm::cli {
namespace {

struct VerifyArgs {
  std::string path;
  std::string sha256;
  std::string manifest;
  std::string config;
  bool json = false;
};

// model.path and model.sha256 of a service config; --sha256 / --manifest / PATH win over it.
void apply_config(const std::string& file, std::string& path, integrity::VerifyOptions& options) {
  const config::Config cfg = config::load_config(file);
  if (path.empty()) {
    if (cfg.model.path.empty())
      throw Error(kExitUsage, fmt::format("{}: model.path is not set: give PATH on the command line", file));
    path = cfg.model.path.string();
  }
  if (options.sha256 || options.manifest) return;
  if (!cfg.model.sha256.empty()) options.expected[std::filesystem::path(path).filename().string()] = cfg.model.sha256;
  for (const auto& [name, hex] : cfg.model.sha256_files) options.expected[name] = hex;
}

int run_verify(const VerifyArgs& args) {
  integrity::VerifyOptions options;
  if (!args.sha256.empty()) options.sha256 = args.sha256;
  if (!args.manifest.empty()) options.manifest = args.manifest;
  options.progress = ProgressBar::stderr_is_tty();
  std::string path = args.path;
  if (!args.config.empty()) apply_config(args.config, path, options);
  if (path.empty()) throw Error(kExitUsage, "verify: give PATH (a model file or folder), or --config with model.path");
  const integrity::Report report = integrity::verify(path, options);
  if (args.json) {
    fmt::print("{}\n", integrity::format_json(report));
  } else if (!report.any_expected) {
    // stdout stays a clean manifest (`verify PATH > SHA256SUMS`); the table goes to stderr.
    fmt::print("{}", integrity::format_sha256sums(report));
    std::fflush(stdout);
    fmt::print(stderr, "{}", integrity::format_table(report));
  } else {
    fmt::print("{}", integrity::format_table(report));
  }
  return report.ok() ? kExitOk : kExitCheckFailed;
}

}  // namespace

void add_verify_command(CLI::App& app, Runner& run) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* cmd = app.add_subcommand(
      "verify",
      "Check model files: SHA-256 against expected hashes, and the structure of GGUF, safetensors and JSON files");
  cmd->add_option("PATH", args->path,
                  "A model file, or a model folder (its *.safetensors, *.gguf and *.json files); "
                  "default: model.path of --config");
  cmd->add_option("--config,-c", args->config, "Service config: model.path and the expected hashes in model.sha256");
  CLI::Option* sha =
      cmd->add_option("--sha256", args->sha256, "Expected SHA-256 (64 hex digits) of PATH, a single file");
  CLI::Option* manifest = cmd->add_option(
      "--manifest", args->manifest, "sha256sum-format list ('HEX  name' lines, names relative to the list's folder)");
  sha->excludes(manifest);
  cmd->add_flag("--json", args->json, "Print one JSON object (see docs/verify.md) instead of the table");
  cmd->footer(
      "Examples:\n"
      "  autoglm-deploy verify ./glm-4-9b-0414-Q4_K_M.gguf --sha256 <64 hex digits>\n"
      "  autoglm-deploy verify ./GLM-4-9B-0414 > SHA256SUMS       # record the hashes\n"
      "  autoglm-deploy verify ./GLM-4-9B-0414 --manifest SHA256SUMS --json\n"
      "  autoglm-deploy verify --config configs/autoglm-phone-9b.yaml      # hashes from model.sha256\n\n"
      "Without expected hashes, stdout gets 'HEX  path' lines in sha256sum format and the table goes to\n"
      "stderr. Structure checks (GGUF, safetensors, JSON, shard index) read only headers. See docs/verify.md.\n"
      "Exit codes: 0 all OK, 1 a file is MISMATCH, CORRUPT or MISSING, 2 usage error.\n");
  cmd->callback([&run, args] { run = [args] { return run_verify(*args); }; });
}

}  // namespace autoglm::cli
