#pragma once
// Logging setup: spdlog to stderr, as text or one JSON object per line.
#include <string>
#include <string_view>

namespace autoglm {

enum class LogFormat { text, json };

// Returns an error message when `level` or `format` is not recognised, else an empty string.
// Levels: trace, debug, info, warn, error, critical, off.
std::string setup_logging(std::string_view level, std::string_view format);

}  // namespace autoglm
