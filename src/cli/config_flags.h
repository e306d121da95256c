#pragma once
// Loading --config and laying command-line flags over it, shared by the subcommands that take one.
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "autoglm/config.h"

namespace autoglm::cli {

// A flag that maps onto a config field: registered on the subcommand, applied only when given.
struct ConfigFlag {
  std::string flag;   // "--port"
  std::string field;  // "service.port"
  std::string help;
  std::string value;  // filled by CLI11
  CLI::Option* option = nullptr;  // set by add_config_flags
  bool list = false;              // a list field: the flag may be repeated, or take several values
  std::vector<std::string> values{};  // filled by CLI11 for a list flag
};

// Registers each flag as an option of `cmd`.
void add_config_flags(CLI::App& cmd, std::vector<ConfigFlag>& flags);

// Reads `path` (the defaults when empty), then applies the flags that were given on the command
// line, then validates the result. Throws config::ConfigError listing every problem.
config::Config load_config_with_flags(const std::string& path, const std::vector<ConfigFlag>& flags);

}  // namespace autoglm::cli
