// data: URLs (RFC 2397) carrying base64, as OpenAI-style clients send images.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "autoglm/image.h"

namespace autoglm::image {
namespace {

[[noreturn]] void fail(const std::string& message) { throw ImageError(message); }

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// The 6-bit value of a base64 character, or -1.
int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::string shown(char c) {
  const auto u = static_cast<unsigned char>(c);
  return std::isprint(u) ? fmt::format("'{}'", c) : fmt::format("byte 0x{:02x}", u);
}

[[noreturn]] void bad_char(std::string_view url, size_t at) {
  fail(fmt::format("invalid base64 at offset {} of the data URL ({})", at, shown(url[at])));
}

// Counts the payload's base64 characters (whitespace skipped), checking the alphabet and that
// padding only ends it.
size_t count_sextets(std::string_view url, size_t begin) {
  size_t n = 0, pads = 0;
  for (size_t i = begin; i < url.size(); ++i) {
    const char c = url[i];
    if (is_space(c)) continue;
    if (c == '=') {
      if (++pads > 2) bad_char(url, i);
      continue;
    }
    if (pads > 0 || sextet(c) < 0) bad_char(url, i);
    ++n;
  }
  if (n % 4 == 1 || (pads > 0 && (n + pads) % 4 != 0))
    fail(fmt::format("invalid base64 in the data URL: {} characters{} cannot end a base64 payload", n,
                     pads ? fmt::format(" and {} '='", pads) : ""));
  return n;
}

}  // namespace

DataUrl parse_data_url(std::string_view url, uint64_t max_bytes) {
  url = trim(url);
  if (url.size() < 5 || lower(url.substr(0, 5)) != "data:") fail("not a data: URL (it must start with 'data:')");
  const size_t comma = url.find(',');
  if (comma == std::string_view::npos) fail("the data URL has no ',' before its data");
  const std::string_view meta = url.substr(5, comma - 5);
  const size_t semi = meta.rfind(';');
  if (semi == std::string_view::npos || lower(trim(meta.substr(semi + 1))) != "base64")
    fail("only base64 data URLs are supported (expected ';base64,' before the data)");

  DataUrl out;
  const std::string_view type = trim(meta.substr(0, meta.find(';')));
  if (type.find('/') != std::string_view::npos) out.media_type = lower(type);

  const size_t n = count_sextets(url, comma + 1);
  const uint64_t decoded = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
  if (decoded == 0) fail("the data URL carries no data");
  if (decoded > max_bytes) fail(fmt::format("the data URL carries {} bytes; the limit is {}", decoded, max_bytes));

  out.bytes.reserve(decoded);
  uint32_t bits = 0;
  int held = 0;
  for (size_t i = comma + 1; i < url.size(); ++i) {
    const int v = sextet(url[i]);
    if (v < 0) continue;  // whitespace or padding, already checked
    bits = (bits << 6) | static_cast<uint32_t>(v);
    held += 6;
    if (held >= 8) {
      held -= 8;
      out.bytes.push_back(static_cast<uint8_t>(bits >> held));
      bits &= (1u << held) - 1;
    }
  }
  return out;
}

}  // namespace autoglm::image
