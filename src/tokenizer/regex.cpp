#include "regex.h"

#include <algorithm>
#include <limits>

#include "autoglm/tokenizer.h"
#include "unicode.h"

namespace autoglm::tokenizer_detail {

namespace {

constexpr uint32_t kInfinite = std::numeric_limits<uint32_t>::max();
constexpr uint32_t kMaxRepeat = 1000;        // {n,m} bounds; keeps hostile patterns small
constexpr size_t kMaxProgram = 200000;       // instructions
constexpr uint64_t kStepsPerChar = 2000;     // backtracking budget, see Regex::split
constexpr uint64_t kStepsFloor = 200000;
constexpr int kMaxNesting = 64;              // groups inside groups; bounds our recursion

}  // namespace

// ---------------------------------------------------------------------------------------------
// Character classes

bool Regex::CharClass::matches_slow(char32_t cp) const {
  bool in = false;
  for (const auto& [lo, hi] : ranges) {
    if (cp >= lo && cp <= hi) {
      in = true;
      break;
    }
  }
  if (!in && (flags != 0 || !not_flags.empty())) {
    const uint16_t f = codepoint_flags(cp);
    in = (f & flags) != 0;
    for (uint16_t nf : not_flags) in = in || (f & nf) == 0;
  }
  return in != negated;
}

void Regex::CharClass::finish() {
  for (char32_t cp = 0; cp < 128; ++cp) {
    if (matches_slow(cp)) ascii[cp >> 6] |= uint64_t{1} << (cp & 63);
  }
}

bool Regex::CharClass::matches(char32_t cp) const {
  if (cp < 128) return (ascii[cp >> 6] >> (cp & 63)) & 1;
  return matches_slow(cp);
}

// ---------------------------------------------------------------------------------------------
// Parsing: pattern -> tree

struct Regex::Node {
  enum Kind { kClass, kConcat, kAlt, kRepeat, kBegin, kEnd, kLook, kNegLook };
  explicit Node(Kind k = kConcat) : kind(k) {}
  Kind kind;
  uint32_t cls = 0;
  std::vector<Node> kids;
  uint32_t min = 0;
  uint32_t max = 0;
  bool greedy = true;
};

class Regex::Parser {
 public:
  Parser(Regex& re, std::string_view pattern) : re_(re), p_(decode_utf8(pattern)) {}

  Node parse() {
    Node node = parse_alternation();
    if (pos_ < p_.size()) fail("unbalanced ')'");
    return node;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw TokenizerError("pre-tokenizer pattern \"" + re_.pattern_ + "\": " + what +
                         " at character " + std::to_string(pos_) +
                         " (supported: literals, [..], \\p{L|M|N|Nd|P|S|Z|C}, \\s \\d, groups, "
                         "alternation, quantifiers, lookahead, ^ $)");
  }
  bool at_end() const { return pos_ >= p_.size(); }
  char32_t peek() const { return at_end() ? 0 : p_[pos_]; }
  char32_t next() {
    if (at_end()) fail("unexpected end of pattern");
    return p_[pos_++];
  }
  bool accept(char32_t c) {
    if (peek() != c || at_end()) return false;
    ++pos_;
    return true;
  }
  bool accept(std::u32string_view s) {
    if (p_.size() - pos_ < s.size() || !std::equal(s.begin(), s.end(), p_.begin() + pos_)) return false;
    pos_ += s.size();
    return true;
  }

  Node parse_alternation() {
    Node alt{Node::kAlt};
    alt.kids.push_back(parse_concat());
    while (accept(U'|')) alt.kids.push_back(parse_concat());
    if (alt.kids.size() == 1) return std::move(alt.kids[0]);
    return alt;
  }

  Node parse_concat() {
    Node seq{Node::kConcat};
    while (!at_end() && peek() != U'|' && peek() != U')') {
      Node atom = parse_atom();
      seq.kids.push_back(parse_quantifier(std::move(atom)));
    }
    return seq;
  }

  Node parse_group() {
    if (++depth_ > kMaxNesting) fail("groups nested too deeply");
    const bool saved_icase = icase_;
    Node node;
    if (accept(U"?:")) {
      node = parse_alternation();
    } else if (accept(U"?i:")) {
      icase_ = true;
      node = parse_alternation();
    } else if (accept(U"?i)")) {  // flag for the rest of the enclosing group
      icase_ = true;
      --depth_;
      return Node{Node::kConcat};
    } else if (accept(U"?=") || accept(U"?!")) {
      const bool negative = p_[pos_ - 1] == U'!';
      node = Node{negative ? Node::kNegLook : Node::kLook};
      node.kids.push_back(parse_alternation());
    } else if (peek() == U'?') {
      fail("unsupported group kind");
    } else {
      node = parse_alternation();  // capturing group: we only need the grouping
    }
    if (!accept(U')')) fail("missing ')'");
    icase_ = saved_icase;
    --depth_;
    return node;
  }

  Node parse_atom() {
    const char32_t c = next();
    switch (c) {
      case U'(': return parse_group();
      case U'[': return class_node(parse_class());
      case U'^': return Node{Node::kBegin};
      case U'$': return Node{Node::kEnd};
      case U'.': {
        CharClass cls;
        cls.ranges.push_back({U'\n', U'\n'});
        cls.negated = true;
        return class_node(std::move(cls));
      }
      case U'*': case U'+': case U'?': case U'{': fail("quantifier without anything to repeat");
      case U'\\': {
        CharClass cls;
        parse_escape(cls);
        return class_node(std::move(cls));
      }
      default: {
        CharClass cls;
        add_char(cls, c);
        return class_node(std::move(cls));
      }
    }
  }

  uint32_t parse_number() {
    if (peek() < U'0' || peek() > U'9') fail("expected a number in {..}");
    uint32_t value = 0;
    while (peek() >= U'0' && peek() <= U'9') {
      value = value * 10 + (next() - U'0');
      if (value > kMaxRepeat) fail("repetition count above " + std::to_string(kMaxRepeat));
    }
    return value;
  }

  Node parse_quantifier(Node atom) {
    uint32_t min = 0;
    uint32_t max = 0;
    if (accept(U'?')) {
      max = 1;
    } else if (accept(U'*')) {
      max = kInfinite;
    } else if (accept(U'+')) {
      min = 1;
      max = kInfinite;
    } else if (accept(U'{')) {
      min = parse_number();
      max = min;
      if (accept(U',')) max = peek() == U'}' ? kInfinite : parse_number();
      if (!accept(U'}')) fail("missing '}'");
      if (max < min) fail("{n,m} with m < n");
    } else {
      return atom;
    }
    if (nullable(atom)) fail("repetition of something that can match the empty string");
    Node rep{Node::kRepeat};
    rep.min = min;
    rep.max = max;
    if (accept(U'?')) rep.greedy = false;
    else if (peek() == U'+') fail("possessive quantifiers are not supported");
    rep.kids.push_back(std::move(atom));
    return rep;
  }

  static bool nullable(const Node& node) {
    switch (node.kind) {
      case Node::kClass: return false;
      case Node::kConcat:
        return std::all_of(node.kids.begin(), node.kids.end(), [](const Node& k) { return nullable(k); });
      case Node::kAlt:
        return std::any_of(node.kids.begin(), node.kids.end(), [](const Node& k) { return nullable(k); });
      case Node::kRepeat: return node.min == 0 || nullable(node.kids[0]);
      default: return true;  // anchors and lookaheads consume nothing
    }
  }

  CharClass parse_class() {
    CharClass cls;
    cls.negated = accept(U'^');
    bool first = true;
    while (true) {
      if (at_end()) fail("missing ']'");
      char32_t c = next();
      if (c == U']' && !first) break;
      first = false;
      if (c == U'[') fail("nested classes are not supported");
      if (c == U'\\') {
        if (parse_escape(cls)) continue;  // a category, not a single character
        c = last_literal_;
      }
      if (peek() == U'-' && pos_ + 1 < p_.size() && p_[pos_ + 1] != U']') {
        ++pos_;
        char32_t hi = next();
        if (hi == U'\\') {
          if (parse_escape(cls)) fail("a category cannot end a range");
          hi = last_literal_;
        }
        if (hi < c) fail("range out of order");
        add_range(cls, c, hi);
      } else {
        add_char(cls, c);
      }
    }
    return cls;
  }

  // After a backslash. Adds a category to `cls` and returns true, or sets last_literal_ (and
  // adds it to `cls`) and returns false.
  bool parse_escape(CharClass& cls) {
    const char32_t c = next();
    switch (c) {
      case U's': cls.flags |= kWhiteSpace; return true;
      case U'S': cls.not_flags.push_back(kWhiteSpace); return true;
      case U'd': cls.flags |= kDecimal; return true;
      case U'D': cls.not_flags.push_back(kDecimal); return true;
      case U'p': cls.flags |= parse_category(); return true;
      case U'P': cls.not_flags.push_back(parse_category()); return true;
      case U'n': last_literal_ = U'\n'; break;
      case U'r': last_literal_ = U'\r'; break;
      case U't': last_literal_ = U'\t'; break;
      case U'f': last_literal_ = U'\f'; break;
      case U'v': last_literal_ = U'\v'; break;
      case U'0': last_literal_ = 0; break;
      case U'x': last_literal_ = parse_hex(); break;
      case U'u': last_literal_ = parse_hex_digits(4); break;
      default:
        if ((c >= U'a' && c <= U'z') || (c >= U'A' && c <= U'Z') || (c >= U'0' && c <= U'9')) {
          fail(std::string("unsupported escape \\") + static_cast<char>(c));
        }
        last_literal_ = c;  // escaped punctuation stands for itself
    }
    add_char(cls, last_literal_);
    return false;
  }

  uint16_t parse_category() {
    std::u32string name;
    if (accept(U'{')) {
      while (!accept(U'}')) name += next();
    } else {
      name += next();
    }
    static const std::pair<std::u32string_view, uint16_t> kNames[] = {
        {U"L", kLetter}, {U"Letter", kLetter}, {U"M", kMark}, {U"Mark", kMark},
        {U"N", kNumber}, {U"Number", kNumber}, {U"Nd", kDecimal}, {U"P", kPunct},
        {U"Punctuation", kPunct}, {U"S", kSymbol}, {U"Symbol", kSymbol}, {U"Z", kSeparator},
        {U"Separator", kSeparator}, {U"C", kOther}, {U"Other", kOther}};
    for (const auto& [n, flag] : kNames) {
      if (n == name) return flag;
    }
    fail("unsupported Unicode category \\p{" + encode_utf8(name.data(), name.data() + name.size()) + "}");
  }

  char32_t parse_hex_digits(int count) {
    char32_t value = 0;
    for (int i = 0; i < count; ++i) value = value * 16 + hex_digit(next());
    return value;
  }
  char32_t parse_hex() {
    if (!accept(U'{')) return parse_hex_digits(2);
    char32_t value = 0;
    while (!accept(U'}')) {
      value = value * 16 + hex_digit(next());
      if (value > 0x10FFFF) fail("\\x{..} above U+10FFFF");
    }
    return value;
  }
  char32_t hex_digit(char32_t c) {
    if (c >= U'0' && c <= U'9') return c - U'0';
    if (c >= U'a' && c <= U'f') return c - U'a' + 10;
    if (c >= U'A' && c <= U'F') return c - U'A' + 10;
    fail("bad hex digit");
  }

  void add_char(CharClass& cls, char32_t c) const { add_range(cls, c, c); }
  void add_range(CharClass& cls, char32_t lo, char32_t hi) const {
    cls.ranges.push_back({lo, hi});
    if (!icase_) return;
    // ASCII case folding only: (?i:'s|'t|...) in the patterns we serve.
    const char32_t a = std::max(lo, U'a'), z = std::min(hi, U'z');
    if (a <= z) cls.ranges.push_back({a - 32, z - 32});
    const char32_t A = std::max(lo, U'A'), Z = std::min(hi, U'Z');
    if (A <= Z) cls.ranges.push_back({A + 32, Z + 32});
  }

  Node class_node(CharClass cls) {
    cls.finish();
    re_.classes_.push_back(std::move(cls));
    Node node{Node::kClass};
    node.cls = static_cast<uint32_t>(re_.classes_.size() - 1);
    return node;
  }

  Regex& re_;
  std::vector<char32_t> p_;
  size_t pos_ = 0;
  bool icase_ = false;
  int depth_ = 0;
  char32_t last_literal_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Compiling: tree -> program for a backtracking machine

uint32_t Regex::emit(Op op, uint32_t a, uint32_t b) {
  if (prog_.size() >= kMaxProgram) {
    throw TokenizerError("pre-tokenizer pattern \"" + pattern_ + "\" is too large");
  }
  prog_.push_back(Inst{op, a, b});
  return static_cast<uint32_t>(prog_.size() - 1);
}

void Regex::compile(const Node& node) {
  const auto here = [this] { return static_cast<uint32_t>(prog_.size()); };
  switch (node.kind) {
    case Node::kClass: emit(Op::kClass, node.cls); break;
    case Node::kConcat:
      for (const Node& kid : node.kids) compile(kid);
      break;
    case Node::kAlt: {
      std::vector<uint32_t> jumps;
      for (size_t i = 0; i < node.kids.size(); ++i) {
        const bool last = i + 1 == node.kids.size();
        const uint32_t split = last ? 0 : emit(Op::kSplit);
        if (!last) prog_[split].a = here();
        compile(node.kids[i]);
        if (!last) {
          jumps.push_back(emit(Op::kJmp));
          prog_[split].b = here();
        }
      }
      for (uint32_t j : jumps) prog_[j].a = here();
      break;
    }
    case Node::kRepeat: {
      // Greedy: try one more before going on; lazy: the other way round.
      const auto branch = [&](uint32_t split, uint32_t body, uint32_t out) {
        prog_[split].a = node.greedy ? body : out;
        prog_[split].b = node.greedy ? out : body;
      };
      for (uint32_t i = 0; i < node.min; ++i) compile(node.kids[0]);
      if (node.max == kInfinite) {
        const uint32_t split = emit(Op::kSplit);
        compile(node.kids[0]);
        emit(Op::kJmp, split);
        branch(split, split + 1, here());
      } else {
        std::vector<uint32_t> splits;
        for (uint32_t i = node.min; i < node.max; ++i) {
          splits.push_back(emit(Op::kSplit));
          compile(node.kids[0]);
        }
        for (uint32_t s : splits) branch(s, s + 1, here());
      }
      break;
    }
    case Node::kBegin: emit(Op::kBegin); break;
    case Node::kEnd: emit(Op::kEnd); break;
    case Node::kLook:
    case Node::kNegLook: {
      const uint32_t look = emit(node.kind == Node::kLook ? Op::kLookAhead : Op::kNegLookAhead);
      prog_[look].a = here();
      compile(node.kids[0]);
      emit(Op::kMatch);
      prog_[look].b = here();
      break;
    }
  }
}

Regex::Regex(std::string_view pattern) : pattern_(pattern) {
  Node tree = Parser(*this, pattern).parse();
  compile(tree);
  emit(Op::kMatch);
}

// ---------------------------------------------------------------------------------------------
// Matching

bool Regex::run(uint32_t pc, std::span<const char32_t> text, size_t pos, size_t& end,
                uint64_t& budget, std::vector<Frame>& stack) const {
  // Choice points still to try, most recent last. Lookaheads run as nested calls that use the
  // stack above `base` and leave it as they found it.
  const size_t base = stack.size();
  while (true) {
    if (budget-- == 0) {
      throw TokenizerError("pre-tokenizer pattern \"" + pattern_ +
                           "\" backtracks too much on this input");
    }
    const Inst& inst = prog_[pc];
    bool ok = true;
    switch (inst.op) {
      case Op::kClass:
        ok = pos < text.size() && classes_[inst.a].matches(text[pos]);
        if (ok) {
          ++pos;
          ++pc;
        }
        break;
      case Op::kSplit:
        stack.push_back(Frame{inst.b, pos});
        pc = inst.a;
        break;
      case Op::kJmp: pc = inst.a; break;
      case Op::kMatch:
        stack.resize(base);
        end = pos;
        return true;
      case Op::kBegin:
        ok = pos == 0;
        ++pc;
        break;
      case Op::kEnd:
        ok = pos == text.size();
        ++pc;
        break;
      case Op::kLookAhead:
      case Op::kNegLookAhead: {
        size_t ignored = 0;
        const bool found = run(inst.a, text, pos, ignored, budget, stack);
        ok = found == (inst.op == Op::kLookAhead);
        pc = inst.b;
        break;
      }
    }
    if (!ok) {
      if (stack.size() == base) return false;
      pc = stack.back().pc;
      pos = stack.back().pos;
      stack.pop_back();
    }
  }
}

std::optional<size_t> Regex::match_at(std::span<const char32_t> text, size_t pos) const {
  uint64_t budget = kStepsFloor + kStepsPerChar * (text.size() - pos);
  size_t end = 0;
  std::vector<Frame> stack;
  if (run(0, text, pos, end, budget, stack)) return end;
  return std::nullopt;
}

void Regex::split(std::span<const char32_t> text, std::vector<size_t>& ends) const {
  // One budget for the whole piece: the patterns we ship are linear in practice; a pathological
  // pattern from a tokenizer.json fails loudly instead of hanging the server.
  uint64_t budget = kStepsFloor + kStepsPerChar * text.size();
  std::vector<Frame> stack;
  size_t last = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = 0;
    if (run(0, text, pos, end, budget, stack) && end > pos) {
      if (pos > last) ends.push_back(pos);
      ends.push_back(end);
      last = pos = end;
    } else {
      ++pos;
    }
  }
  if (last < text.size()) ends.push_back(text.size());
}

}  // namespace autoglm::tokenizer_detail
