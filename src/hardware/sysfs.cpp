#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "internal.h"

namespace autoglm::hardware::detail {

fs::path under(const fs::path& root, std::string_view relative) {
  while (!relative.empty() && relative.front() == '/') relative.remove_prefix(1);
  return root / fs::path(relative);
}

bool is_live_root(const fs::path& root) {
  return root.empty() || root.lexically_normal() == fs::path("/");
}

std::optional<std::string> read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  // sysfs reports some failures (EIO, ENODATA) only when reading, not when opening.
  if (in.bad()) return std::nullopt;
  return out.str();
}

std::optional<std::string> read_line(const fs::path& path) {
  auto text = read_text(path);
  if (!text) return std::nullopt;
  std::string_view view = *text;
  view = view.substr(0, view.find('\n'));
  return std::string(trim(view));
}

std::optional<int64_t> read_int(const fs::path& path) {
  auto line = read_line(path);
  return line ? parse_int(*line) : std::nullopt;
}

std::optional<uint64_t> read_hex(const fs::path& path) {
  auto line = read_line(path);
  return line ? parse_hex(*line) : std::nullopt;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::vector<std::string_view> split_lines(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    const size_t nl = s.find('\n');
    out.push_back(s.substr(0, nl));
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
  return out;
}

template <class T>
static std::optional<T> parse_number(std::string_view s, int base) {
  s = trim(s);
  T value{};
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

std::optional<int64_t> parse_int(std::string_view s) { return parse_number<int64_t>(s, 10); }
std::optional<uint64_t> parse_uint(std::string_view s) { return parse_number<uint64_t>(s, 10); }

std::optional<uint64_t> parse_hex(std::string_view s) {
  s = trim(s);
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
  return parse_number<uint64_t>(s, 16);
}

std::optional<double> parse_leading_double(std::string_view s) {
  s = trim(s);
  double value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr == s.data()) return std::nullopt;
  return value;
}

std::vector<std::pair<int, fs::path>> numbered_entries(const fs::path& dir, std::string_view prefix) {
  std::vector<std::pair<int, fs::path>> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string_view digits = std::string_view(name).substr(prefix.size());
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    auto n = parse_int(digits);
    if (n && *n < 1'000'000) out.emplace_back(static_cast<int>(*n), it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool path_exists(const fs::path& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

std::string format_khz(uint64_t khz) { return fmt::format("{:.2f} GHz", static_cast<double>(khz) / 1e6); }

std::string format_celsius(int64_t millicelsius) {
  return fmt::format("{:.1f}°C", static_cast<double>(millicelsius) / 1000.0);
}

std::string format_link(const PcieLink& link) {
  std::string speed = "?";
  if (link.speed_gts) {
    auto gen = pcie_generation(*link.speed_gts);
    speed = gen ? fmt::format("Gen{}", *gen) : fmt::format("{:g} GT/s", *link.speed_gts);
  }
  const std::string width = link.width ? fmt::format("x{}", *link.width) : "x?";
  if (!link.speed_gts && !link.width) return "unknown";
  return speed + " " + width;
}

std::string format_cuda_version(int version) {
  return fmt::format("{}.{}", version / 1000, version % 1000 / 10);
}

}  // namespace autoglm::hardware::detail
