#include "unicode.h"

#include <algorithm>
#include <array>

namespace autoglm::tokenizer_detail {

uint16_t codepoint_flags(char32_t cp) {
  if (cp > 0x10FFFF) return static_cast<uint16_t>(kOther);
  // The last run whose first code point is <= cp.
  const CodepointRun* end = kCodepointRuns + kCodepointRunCount;
  const CodepointRun* it = std::upper_bound(
      kCodepointRuns, end, static_cast<uint32_t>(cp),
      [](uint32_t value, const CodepointRun& run) { return value < run.first; });
  return it == kCodepointRuns ? static_cast<uint16_t>(kOther) : (it - 1)->flags;
}

namespace {

bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// The range the second byte must be in, which is what rules out overlong forms, surrogates
// and code points above U+10FFFF (Unicode Table 3-7).
bool second_byte_ok(unsigned char lead, unsigned char second) {
  switch (lead) {
    case 0xE0: return second >= 0xA0 && second <= 0xBF;
    case 0xED: return second >= 0x80 && second <= 0x9F;
    case 0xF0: return second >= 0x90 && second <= 0xBF;
    case 0xF4: return second >= 0x80 && second <= 0x8F;
    default: return is_continuation(second);
  }
}

int expected_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;  // continuation byte, C0/C1 overlong lead, or F5..FF
}

}  // namespace

size_t ill_formed_length(std::string_view bytes) {
  const auto lead = static_cast<unsigned char>(bytes[0]);
  const int need = expected_length(lead);
  if (need <= 1 || bytes.size() < 2 || !second_byte_ok(lead, static_cast<unsigned char>(bytes[1]))) {
    return 1;
  }
  size_t i = 2;
  while (i < static_cast<size_t>(need) && i < bytes.size() &&
         is_continuation(static_cast<unsigned char>(bytes[i]))) {
    ++i;
  }
  return i;
}

namespace {

char32_t decode_sequence(std::string_view bytes, int length) {
  const auto b = [&](int i) { return static_cast<char32_t>(static_cast<unsigned char>(bytes[i])); };
  switch (length) {
    case 1: return b(0);
    case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

}  // namespace

int utf8_sequence_length(std::string_view bytes) {
  if (bytes.empty()) return -1;
  const auto lead = static_cast<unsigned char>(bytes[0]);
  const int need = expected_length(lead);
  if (need == 0) return 0;
  for (int i = 1; i < need; ++i) {
    if (static_cast<size_t>(i) >= bytes.size()) return -1;
    const auto byte = static_cast<unsigned char>(bytes[i]);
    const bool ok = i == 1 ? second_byte_ok(lead, byte) : is_continuation(byte);
    if (!ok) return 0;
  }
  return need;
}

std::vector<char32_t> decode_utf8(std::string_view text) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const std::string_view rest = text.substr(pos);
    const int length = utf8_sequence_length(rest);
    if (length > 0) {
      out.push_back(decode_sequence(rest, length));
      pos += static_cast<size_t>(length);
    } else {
      out.push_back(kReplacementChar);
      pos += ill_formed_length(rest);
    }
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = kReplacementChar;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string encode_utf8(const char32_t* begin, const char32_t* end) {
  std::string out;
  out.reserve(static_cast<size_t>(end - begin));
  for (const char32_t* it = begin; it != end; ++it) append_utf8(out, *it);
  return out;
}

namespace {

// Printable bytes stand for themselves; the others are moved to U+0100 and up, in byte order.
struct ByteMap {
  std::array<char32_t, 256> to_char{};
  ByteMap() {
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_char[b] = printable ? static_cast<char32_t>(b) : next++;
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

char32_t byte_to_char(uint8_t byte) { return byte_map().to_char[byte]; }

int char_to_byte(char32_t cp) {
  if (cp >= 0x21 && cp <= 0x7E) return static_cast<int>(cp);
  if ((cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return static_cast<int>(cp);
  if (cp < 256 || cp >= 256 + 68) return -1;
  // Moved bytes: the (cp - 256)-th non-printable byte.
  const auto& to_char = byte_map().to_char;
  for (int b = 0; b < 256; ++b) {
    if (to_char[b] == cp) return b;
  }
  return -1;
}

}  // namespace autoglm::tokenizer_detail
