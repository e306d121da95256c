// sha256sum manifests: parsing (GNU and BSD forms) and writing lines `sha256sum -c` accepts.
#include <algorithm>
#include <cctype>
#include <fmt/format.h>
#include <fstream>
#include <sstream>

#include "autoglm/error.h"
#include "autoglm/integrity.h"

namespace autoglm::integrity {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

size_t hex_run(std::string_view s) {
  size_t n = 0;
  while (n < s.size() && std::isxdigit(static_cast<unsigned char>(s[n]))) ++n;
  return n;
}

// Undoes sha256sum's escaping ("\\\\" -> '\\', "\\n" -> newline, "\\r" -> CR); nullopt if invalid.
std::optional<std::string> unescape(std::string_view s) {
  std::string out;
  for (size_t k = 0; k < s.size(); ++k) {
    if (s[k] != '\\') {
      out += s[k];
      continue;
    }
    if (++k == s.size()) return std::nullopt;
    if (s[k] == '\\')
      out += '\\';
    else if (s[k] == 'n')
      out += '\n';
    else if (s[k] == 'r')
      out += '\r';
    else
      return std::nullopt;
  }
  return out;
}

std::string shorten(std::string_view line) {
  constexpr size_t kMax = 80;
  return line.size() <= kMax ? std::string(line) : std::string(line.substr(0, kMax)) + "...";
}

// "SHA256 (name) = HEX"; nullopt when the line is not in this form.
std::optional<std::pair<std::string, std::string>> parse_bsd(std::string_view line) {
  constexpr std::string_view kPrefix = "SHA256 (";
  if (line.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  const size_t close = line.rfind(") = ");
  if (close == std::string_view::npos || close < kPrefix.size()) return std::nullopt;
  return std::pair{std::string(line.substr(close + 4)),
                   std::string(line.substr(kPrefix.size(), close - kPrefix.size()))};
}

// Parses one non-blank, non-comment line; returns an error message or "".
std::string parse_line(std::string_view line, size_t number, Manifest& out) {
  const std::string expected = "expected '<64 hex digits>  <file name>' (sha256sum format)";
  bool escaped = false;
  if (!line.empty() && line.front() == '\\') {
    escaped = true;
    line.remove_prefix(1);
  }
  std::string hash, name;
  if (auto bsd = parse_bsd(line)) {
    std::tie(hash, name) = *bsd;
  } else {
    const size_t digits = hex_run(line);
    if (digits == 0) return fmt::format("line {}: {}, got '{}'", number, expected, shorten(line));
    if (digits != 64 && (digits == line.size() || line[digits] == ' '))
      return fmt::format("line {}: the hash has {} hex digits, SHA-256 has 64 (is this an MD5 or SHA-1 list?)", number,
                         digits);
    if (digits != 64 || line.size() < 67 || line[64] != ' ' || (line[65] != ' ' && line[65] != '*'))
      return fmt::format("line {}: {}, got '{}'", number, expected, shorten(line));
    hash = std::string(line.substr(0, 64));
    name = std::string(line.substr(66));
  }
  if (!is_sha256_hex(hash)) return fmt::format("line {}: '{}' is not 64 hex digits", number, shorten(hash));
  if (escaped) {
    auto plain = unescape(name);
    if (!plain) return fmt::format("line {}: bad backslash escape in file name '{}'", number, shorten(name));
    name = *plain;
  }
  if (name.empty()) return fmt::format("line {}: the file name is empty", number);
  out.entries.push_back({lower(hash), std::move(name), number});
  return "";
}

}  // namespace

Manifest parse_manifest(std::string_view text) {
  Manifest m;
  size_t number = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // written on Windows
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#') continue;
    line.remove_prefix(first);
    if (std::string err = parse_line(line, number, m); !err.empty()) m.errors.push_back(std::move(err));
  }
  return m;
}

Manifest read_manifest(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw Error(kExitUsage, fmt::format("manifest '{}' does not exist or is not a file: give the path of a "
                                        "SHA256SUMS file (lines '<hex>  <file name>')",
                                        path.string()));
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) throw Error(kExitUsage, fmt::format("cannot read manifest '{}'", path.string()));
  Manifest m = parse_manifest(text.str());
  for (std::string& e : m.errors) e = path.string() + ":" + e.substr(5);  // "line 3: x" -> "PATH:3: x"
  return m;
}

std::string sha256sum_line(std::string_view sha256, std::string_view name) {
  const bool escape = name.find_first_of("\\\n\r") != std::string_view::npos;
  if (!escape) return fmt::format("{}  {}\n", sha256, name);
  std::string escaped;
  for (char c : name) {
    if (c == '\\')
      escaped += "\\\\";
    else if (c == '\n')
      escaped += "\\n";
    else if (c == '\r')
      escaped += "\\r";
    else
      escaped += c;
  }
  return fmt::format("\\{}  {}\n", sha256, escaped);
}

}  // namespace autoglm::integrity
