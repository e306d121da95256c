#include "autoglm/units.h"

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fmt/format.h>

namespace autoglm {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Splits "1.5 GiB" into the number 1.5 and the (trimmed) suffix "GiB".
std::optional<std::pair<double, std::string_view>> split_number(std::string_view text) {
  text = trim(text);
  size_t end = 0;
  while (end < text.size() && (std::isdigit(static_cast<unsigned char>(text[end])) || text[end] == '.')) ++end;
  if (end == 0) return std::nullopt;
  double value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + end, value);
  if (ec != std::errc() || ptr != text.data() + end || !std::isfinite(value)) return std::nullopt;
  return std::pair{value, trim(text.substr(end))};
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::optional<uint64_t> scaled(double value, double factor) {
  const double v = value * factor;
  if (!(v >= 0) || v >= 18446744073709551615.0) return std::nullopt;
  return static_cast<uint64_t>(std::llround(v));
}

}  // namespace

std::optional<uint64_t> parse_size(std::string_view text) {
  auto parsed = split_number(text);
  if (!parsed) return std::nullopt;
  auto [value, unit] = *parsed;
  struct Unit { std::string_view name; double factor; };
  static constexpr std::array<Unit, 14> units{{
      {"", 1}, {"B", 1},
      {"K", 1024.0}, {"KiB", 1024.0}, {"MiB", 1048576.0}, {"M", 1048576.0},
      {"GiB", 1073741824.0}, {"G", 1073741824.0}, {"TiB", 1099511627776.0}, {"T", 1099511627776.0},
      {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}}};
  for (const Unit& u : units) {
    // Case matters only for the binary "iB" vs decimal "B" distinction: accept "gib" and "GiB".
    if (iequals(unit, u.name)) {
      const double factor = u.factor;
      auto bytes = scaled(value, factor);
      // Fractional bytes make no sense ("1.5B").
      if (bytes && factor == 1 && value != std::floor(value)) return std::nullopt;
      return bytes;
    }
  }
  return std::nullopt;
}

std::optional<uint64_t> parse_duration_ms(std::string_view text) {
  auto parsed = split_number(text);
  if (!parsed) return std::nullopt;
  auto [value, unit] = *parsed;
  if (unit == "ms") return scaled(value, 1);
  if (unit == "s") return scaled(value, 1000);
  if (unit == "m" || unit == "min") return scaled(value, 60'000);
  if (unit == "h") return scaled(value, 3'600'000);
  return std::nullopt;
}

std::optional<double> parse_percent(std::string_view text) {
  auto parsed = split_number(text);
  if (!parsed || parsed->second != "%") return std::nullopt;
  const double p = parsed->first;
  if (!(p > 0 && p <= 100)) return std::nullopt;
  return p / 100.0;
}

std::string format_bytes(uint64_t bytes) {
  static constexpr std::array<const char*, 5> names{"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  size_t i = 0;
  while (v >= 1024.0 && i + 1 < names.size()) {
    v /= 1024.0;
    ++i;
  }
  if (i == 0) return fmt::format("{} B", bytes);
  return fmt::format("{:.1f} {}", v, names[i]);
}

std::string format_duration_ms(uint64_t ms) {
  if (ms < 1000) return fmt::format("{} ms", ms);
  if (ms < 60'000) return fmt::format("{:.1f} s", static_cast<double>(ms) / 1000.0);
  return fmt::format("{} m {} s", ms / 60'000, (ms % 60'000) / 1000);
}

}  // namespace autoglm
