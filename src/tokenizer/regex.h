#pragma once
// A small backtracking regex engine over code points, for pre-tokenizer split patterns.
// std::regex knows no Unicode categories; this supports exactly what tokenizer.json and
// llama.cpp's split patterns use: literals, classes with ranges, \p{..}/\P{..} (L M N Nd P S Z C),
// \s \S \d \D, '.', groups (?:..) and (?i:..) (ASCII case folding), alternation, greedy and
// lazy ? * + {n,m}, lookahead (?=..) (?!..), and the anchors ^ $ (start/end of the piece).
// Leftmost-first semantics, as the Oniguruma and Rust engines behind Hugging Face have.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace autoglm::tokenizer_detail {

class Regex {
 public:
  // Throws TokenizerError for a pattern outside the supported subset.
  explicit Regex(std::string_view pattern);

  // Splits `text` into the matches and the text between them ("Isolated" behaviour), appending
  // each piece's end offset to `ends`. Throws TokenizerError when backtracking runs away.
  void split(std::span<const char32_t> text, std::vector<size_t>& ends) const;

  // The end of the leftmost-first match starting exactly at `pos`, if any.
  std::optional<size_t> match_at(std::span<const char32_t> text, size_t pos) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct CharClass {
    std::vector<std::pair<char32_t, char32_t>> ranges;
    uint16_t flags = 0;                 // matches when the code point has any of these
    std::vector<uint16_t> not_flags;    // ... or lacks one of these (\S, \P{L} inside [..])
    bool negated = false;
    uint64_t ascii[2] = {0, 0};         // precomputed answer for code points < 128
    bool matches(char32_t cp) const;
    bool matches_slow(char32_t cp) const;
    void finish();
  };
  enum class Op : uint8_t { kClass, kSplit, kJmp, kMatch, kBegin, kEnd, kLookAhead, kNegLookAhead };
  struct Inst {
    Op op;
    uint32_t a = 0;  // class index; preferred branch; jump target; lookahead body
    uint32_t b = 0;  // other branch; where to go after the lookahead
  };
  struct Node;
  class Parser;
  friend class Parser;

  uint32_t emit(Op op, uint32_t a = 0, uint32_t b = 0);
  void compile(const Node& node);
  struct Frame {
    uint32_t pc;
    size_t pos;
  };
  // Runs the program from `pc` at `pos`; choice points go on `stack` above its current size.
  bool run(uint32_t pc, std::span<const char32_t> text, size_t pos, size_t& end, uint64_t& budget,
           std::vector<Frame>& stack) const;

  std::string pattern_;
  std::vector<CharClass> classes_;
  std::vector<Inst> prog_;
};

}  // namespace autoglm::tokenizer_detail
