#pragma once
// Code point properties, UTF-8 decoding/encoding and the GPT-2 byte <-> character mapping.
// Internal to the tokenizer module.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace autoglm::tokenizer_detail {

// Properties of a code point: its major general category, plus Nd and White_Space.
enum CodepointFlag : uint16_t {
  kLetter = 1,       // \p{L}
  kMark = 2,         // \p{M}
  kNumber = 4,       // \p{N}
  kDecimal = 8,      // \p{Nd}, \d
  kPunct = 16,       // \p{P}
  kSymbol = 32,      // \p{S}
  kSeparator = 64,   // \p{Z}
  kOther = 128,      // \p{C}, unassigned code points included
  kWhiteSpace = 256, // \s (the White_Space property)
};

struct CodepointRun {
  uint32_t first;
  uint16_t flags;
};
extern const CodepointRun kCodepointRuns[];  // generated: unicode_tables.cpp
extern const size_t kCodepointRunCount;

uint16_t codepoint_flags(char32_t cp);

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Decodes UTF-8; each maximal ill-formed subsequence becomes one U+FFFD (as Python's
// errors="replace" and the WHATWG decoder do), so any byte string is accepted.
std::vector<char32_t> decode_utf8(std::string_view text);

// The length of the well-formed UTF-8 sequence at the start of `bytes`, 0 when the bytes there
// cannot start one, or -1 when they are a valid but incomplete prefix.
int utf8_sequence_length(std::string_view bytes);

// Bytes of the maximal ill-formed subsequence at the start of `bytes` (at least 1): what one
// U+FFFD replaces.
size_t ill_formed_length(std::string_view bytes);

void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(const char32_t* begin, const char32_t* end);

// GPT-2's reversible byte -> printable character mapping used by byte-level BPE vocabularies.
char32_t byte_to_char(uint8_t byte);
// The byte a mapped character stands for, or -1 when `cp` is not one of the 256.
int char_to_byte(char32_t cp);

}  // namespace autoglm::tokenizer_detail
