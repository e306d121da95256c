#pragma once
// Parsing and printing of sizes ("4GiB", "512MiB", "90%") and durations ("5s", "2m").
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace autoglm {

// Parses "4GiB", "512 MiB", "1.5GB", "4096" (bytes). Binary (KiB, MiB, GiB, TiB) and decimal
// (KB, MB, GB, TB) suffixes; "B" or no suffix means bytes. Returns nullopt on anything else,
// on negative values and on values that overflow 64 bits.
std::optional<uint64_t> parse_size(std::string_view text);

// Parses "250ms", "5s", "2m", "1h", "1.5s". A bare number is rejected (the unit is required,
// so "5" cannot silently mean 5 ms or 5 s). Returns milliseconds.
std::optional<uint64_t> parse_duration_ms(std::string_view text);

// Parses "90%" into 0.9. Accepts 0 < p <= 100.
std::optional<double> parse_percent(std::string_view text);

// "23.4 GiB", "512.0 MiB", "17 B".
std::string format_bytes(uint64_t bytes);

// "1.5 s", "250 ms", "2 m 5 s".
std::string format_duration_ms(uint64_t ms);

}  // namespace autoglm
