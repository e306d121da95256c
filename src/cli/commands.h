#pragma once
// One file per subcommand. Each add_*_command registers its options on `app` and, when the
// subcommand is chosen, sets `run` to the function main() calls after parsing (it returns the
// process exit code, see autoglm/exit_codes.h).
#include <CLI/CLI.hpp>
#include <functional>

namespace autoglm::cli {

using Runner = std::function<int()>;

void add_check_hardware_command(CLI::App& app, Runner& run);
void add_verify_command(CLI::App& app, Runner& run);
void add_deploy_command(CLI::App& app, Runner& run);
void add_serve_command(CLI::App& app, Runner& run);
void add_bench_command(CLI::App& app, Runner& run);
void add_logits_command(CLI::App& app, Runner& run);
void add_quantize_command(CLI::App& app, Runner& run);
void add_tokenize_command(CLI::App& app, Runner& run);  // tokenize and detokenize
void add_generate_command(CLI::App& app, Runner& run);

// "autoglm-deploy 0.1.0 (commit abc123, CUDA compiled in: yes, sm_80 sm_86 …)"
std::string version_string();

}  // namespace autoglm::cli
