// The two merge loops: byte-level BPE by merge rank, SentencePiece BPE by token score. Both keep
// the symbols of one piece in a linked list and the candidate pairs in a heap; a pair that went
// stale (one side merged meanwhile) is recognised when it comes out and dropped.
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "unicode.h"
#include "vocab.h"

namespace autoglm::tokenizer_detail {

namespace {

struct Symbol {
  int32_t id;     // BPE: token id (kNoToken: a byte with no token); SPM: unused
  int32_t prev;
  int32_t next;
  size_t offset;  // SPM: bytes of the text this symbol covers
  size_t size;    // 0 once merged into its left neighbour
};

std::vector<Symbol> link(std::vector<Symbol> symbols) {
  const auto n = static_cast<int32_t>(symbols.size());
  for (int32_t i = 0; i < n; ++i) {
    symbols[i].prev = i - 1;
    symbols[i].next = i + 1 < n ? i + 1 : -1;
  }
  return symbols;
}

void unlink_right(std::vector<Symbol>& symbols, int32_t left, int32_t right) {
  symbols[left].next = symbols[right].next;
  if (symbols[right].next >= 0) symbols[symbols[right].next].prev = left;
  symbols[left].size += symbols[right].size;
  symbols[right].size = 0;
}

// ---- byte-level BPE

struct BpeCandidate {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t left_id;
  int32_t right_id;
  // Lowest rank first; among equal ranks the leftmost pair, as Hugging Face and llama.cpp do.
  bool operator<(const BpeCandidate& o) const {
    return rank != o.rank ? rank > o.rank : left > o.left;
  }
};

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

class BpeMerger {
 public:
  BpeMerger(const Vocab& vocab, std::string_view piece) : vocab_(vocab) {
    std::vector<Symbol> symbols;
    symbols.reserve(piece.size());
    for (char c : piece) {
      symbols.push_back(Symbol{vocab.byte_tokens[static_cast<uint8_t>(c)], 0, 0, 0, 1});
    }
    symbols_ = link(std::move(symbols));
  }

  void run(std::vector<int32_t>& out) {
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols_.size()); ++i) consider(i, i + 1);
    while (!queue_.empty()) {
      const BpeCandidate c = queue_.top();
      queue_.pop();
      Symbol& left = symbols_[c.left];
      const Symbol& right = symbols_[c.right];
      if (left.size == 0 || right.size == 0 || left.next != c.right || left.id != c.left_id ||
          right.id != c.right_id) {
        continue;  // stale
      }
      left.id = vocab_.merges.at(pair_key(c.left_id, c.right_id)).result;
      unlink_right(symbols_, c.left, c.right);
      consider(left.prev, c.left);
      consider(c.left, left.next);
    }
    for (const Symbol& s : symbols_) {
      // A byte without a token has nothing to stand for it: dropped, as llama.cpp does.
      if (s.size > 0 && s.id != kNoToken) out.push_back(s.id);
    }
  }

 private:
  void consider(int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t a = symbols_[left].id, b = symbols_[right].id;
    if (a == kNoToken || b == kNoToken) return;
    const auto it = vocab_.merges.find(pair_key(a, b));
    if (it != vocab_.merges.end()) queue_.push(BpeCandidate{it->second.rank, left, right, a, b});
  }

  const Vocab& vocab_;
  std::vector<Symbol> symbols_;
  std::priority_queue<BpeCandidate> queue_;
};

void encode_bpe_piece(const Vocab& vocab, std::string_view piece, std::vector<int32_t>& out) {
  if (piece.empty()) return;
  if (vocab.ignore_merges) {
    std::string mapped;
    for (char c : piece) append_utf8(mapped, byte_to_char(static_cast<uint8_t>(c)));
    const int32_t id = vocab.find(mapped);
    if (id != kNoToken) {
      out.push_back(id);
      return;
    }
  }
  BpeMerger(vocab, piece).run(out);
}

// Applies each split pattern to the pieces the previous one produced; returns piece ends.
std::vector<size_t> pre_tokenize(const Vocab& vocab, std::span<const char32_t> text) {
  std::vector<size_t> ends{text.size()};
  for (const Regex& pattern : vocab.splits) {
    std::vector<size_t> finer;
    size_t begin = 0;
    for (size_t end : ends) {
      std::vector<size_t> local;
      pattern.split(text.subspan(begin, end - begin), local);
      for (size_t e : local) finer.push_back(begin + e);
      begin = end;
    }
    ends = std::move(finer);
  }
  return ends;
}

// ---- SentencePiece

struct SpmCandidate {
  float score;
  int32_t left;
  int32_t right;
  size_t size;
  // Highest score first; among equal scores the leftmost pair (llama.cpp's order).
  bool operator<(const SpmCandidate& o) const {
    return score != o.score ? score < o.score : left > o.left;
  }
};

// Tokens that text may turn into: SentencePiece never produces control, unknown, byte or unused
// pieces from text (their text is matched, if at all, as special tokens beforehand).
int32_t find_text_token(const Vocab& vocab, std::string_view text) {
  const int32_t id = vocab.find(text);
  if (id == kNoToken) return kNoToken;
  const TokenKind kind = vocab.tokens[id].kind;
  return kind == TokenKind::normal || kind == TokenKind::user_defined ? id : kNoToken;
}

class SpmMerger {
 public:
  SpmMerger(const Vocab& vocab, std::string_view text) : vocab_(vocab), text_(text) {
    std::vector<Symbol> symbols;
    size_t pos = 0;
    while (pos < text.size()) {
      // One UTF-8 character per symbol; an invalid byte is a symbol of its own.
      const int length = utf8_sequence_length(text.substr(pos));
      const size_t n = length > 0 ? static_cast<size_t>(length) : 1;
      symbols.push_back(Symbol{kNoToken, 0, 0, pos, n});
      pos += n;
    }
    symbols_ = link(std::move(symbols));
  }

  void run(std::vector<int32_t>& out) {
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols_.size()); ++i) consider(i, i + 1);
    while (!queue_.empty()) {
      const SpmCandidate c = queue_.top();
      queue_.pop();
      const Symbol& left = symbols_[c.left];
      const Symbol& right = symbols_[c.right];
      if (left.size == 0 || right.size == 0 || left.next != c.right || left.size + right.size != c.size) {
        continue;  // stale
      }
      unlink_right(symbols_, c.left, c.right);
      consider(symbols_[c.left].prev, c.left);
      consider(c.left, symbols_[c.left].next);
    }
    for (const Symbol& s : symbols_) {
      if (s.size > 0) emit(s, out);
    }
  }

 private:
  void consider(int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const size_t size = symbols_[left].size + symbols_[right].size;
    const int32_t id = find_text_token(vocab_, text_.substr(symbols_[left].offset, size));
    if (id != kNoToken) queue_.push(SpmCandidate{vocab_.tokens[id].score, left, right, size});
  }

  // A merged symbol is always a token; a single character may not be: then its bytes.
  void emit(const Symbol& s, std::vector<int32_t>& out) const {
    const std::string_view piece = text_.substr(s.offset, s.size);
    const int32_t id = find_text_token(vocab_, piece);
    if (id != kNoToken) {
      out.push_back(id);
      return;
    }
    for (char c : piece) {
      const int32_t byte_id = vocab_.byte_tokens[static_cast<uint8_t>(c)];
      if (byte_id != kNoToken) out.push_back(byte_id);
      else if (vocab_.unk != kNoToken) out.push_back(vocab_.unk);
    }
  }

  const Vocab& vocab_;
  std::string_view text_;
  std::vector<Symbol> symbols_;
  std::priority_queue<SpmCandidate> queue_;
};

}  // namespace

void encode_byte_level_bpe(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) {
  // Invalid UTF-8 becomes U+FFFD here, as in llama.cpp; the patterns work on code points.
  const std::vector<char32_t> cps = decode_utf8(text);
  size_t begin = 0;
  for (size_t end : pre_tokenize(vocab, cps)) {
    encode_bpe_piece(vocab, encode_utf8(cps.data() + begin, cps.data() + end), out);
    begin = end;
  }
}

void encode_sentencepiece(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) {
  if (!text.empty()) SpmMerger(vocab, text).run(out);
}

}  // namespace autoglm::tokenizer_detail
