// Tokenizer: special-token partitioning around the two encoders, decoding, accessors.
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "autoglm/tokenizer.h"
#include "unicode.h"
#include "vocab.h"

namespace autoglm {

using tokenizer_detail::Vocab;

namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581 "▁" stands for a space

// A stretch of the input: raw text still to tokenize, or an already matched special token.
struct Fragment {
  int32_t token = kNoToken;
  std::string_view text;
};

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// Cuts `text` at every occurrence of `token`'s text, honouring its lstrip/rstrip.
void split_on(const Vocab& vocab, int32_t token, const Fragment& raw, std::vector<Fragment>& out) {
  const tokenizer_detail::TokenRecord& record = vocab.tokens[token];
  std::string_view rest = raw.text;
  while (true) {
    const size_t at = rest.find(record.text);
    if (at == std::string_view::npos) break;
    std::string_view left = rest.substr(0, at);
    if (record.lstrip) {
      while (!left.empty() && is_space(left.back())) left.remove_suffix(1);
    }
    if (!left.empty()) out.push_back(Fragment{kNoToken, left});
    out.push_back(Fragment{token, {}});
    rest.remove_prefix(at + record.text.size());
    if (record.rstrip) {
      while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
    }
  }
  if (!rest.empty()) out.push_back(Fragment{kNoToken, rest});
}

// Special tokens are taken out of the text before anything else, longest first (llama.cpp's
// order). Control and unknown tokens only with parse_special; user-defined ones always.
std::vector<Fragment> partition(const Vocab& vocab, std::string_view text, bool parse_special) {
  std::vector<Fragment> fragments;
  if (!text.empty()) fragments.push_back(Fragment{kNoToken, text});
  for (int32_t token : vocab.special_by_length) {
    const TokenKind kind = vocab.tokens[token].kind;
    if (!parse_special && kind != TokenKind::user_defined) continue;
    if (text.find(vocab.tokens[token].text) == std::string_view::npos) continue;  // cheap skip
    std::vector<Fragment> next;
    for (const Fragment& f : fragments) {
      if (f.token != kNoToken) next.push_back(f);
      else split_on(vocab, token, f, next);
    }
    fragments = std::move(next);
  }
  return fragments;
}

void encode_sentencepiece_text(const Vocab& vocab, std::string_view raw, bool after_special,
                               std::vector<int32_t>& out) {
  std::string text;
  if (vocab.add_space_prefix && after_special) text += kSpmSpace;
  for (char c : raw) {
    if (c == ' ') text += kSpmSpace;
    else text += c;
  }
  tokenizer_detail::encode_sentencepiece(vocab, text, out);
}

// Builds a new string rather than replacing in place (GCC 12 warns falsely on the latter).
std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    const size_t at = s.find(from, pos);
    out.append(s.substr(pos, at == std::string_view::npos ? std::string_view::npos : at - pos));
    if (at == std::string_view::npos) return out;
    out.append(to);
    pos = at + from.size();
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0x0A>" -> 0x0A; -1 for anything else.
int parse_byte_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  const int hi = hex_value(text[3]), lo = hex_value(text[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Byte-level BPE: each character of the token text stands for one byte. A character outside
// the 256 (a hand-added token) stands for itself.
std::string byte_level_bytes(std::string_view text) {
  std::string out;
  for (char32_t cp : tokenizer_detail::decode_utf8(text)) {
    const int byte = tokenizer_detail::char_to_byte(cp);
    if (byte >= 0) out += static_cast<char>(byte);
    else tokenizer_detail::append_utf8(out, cp);
  }
  return out;
}

bool hidden_in_decode(TokenKind kind) {
  return kind == TokenKind::control || kind == TokenKind::unknown || kind == TokenKind::unused;
}

}  // namespace

Tokenizer::Tokenizer(std::shared_ptr<const Vocab> vocab) : vocab_(std::move(vocab)) {}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const Vocab& v = *vocab_;
  std::vector<int32_t> out;
  if (add_special && v.add_bos && v.bos != kNoToken) out.push_back(v.bos);
  // SentencePiece puts a space in front of the text and after every special token (llama.cpp).
  bool after_special = true;
  for (const Fragment& f : partition(v, text, parse_special)) {
    if (f.token != kNoToken) {
      out.push_back(f.token);
      after_special = true;
      continue;
    }
    if (v.model == Vocab::Model::sentencepiece) encode_sentencepiece_text(v, f.text, after_special, out);
    else tokenizer_detail::encode_byte_level_bpe(v, f.text, out);
    after_special = false;
  }
  if (add_special && v.add_eos && v.eos != kNoToken) out.push_back(v.eos);
  return out;
}

std::string Tokenizer::token_piece(int32_t id) const {
  const Vocab& v = *vocab_;
  if (!v.valid(id)) return {};
  const tokenizer_detail::TokenRecord& t = v.tokens[id];
  switch (t.kind) {
    case TokenKind::control:
    case TokenKind::unknown:
    case TokenKind::user_defined:
    case TokenKind::unused:
      return t.text;
    case TokenKind::byte: {
      const int byte = parse_byte_token(t.text);
      if (byte >= 0) return std::string(1, static_cast<char>(byte));
      break;
    }
    case TokenKind::normal:
      break;
  }
  if (v.model == Vocab::Model::byte_level_bpe) return byte_level_bytes(t.text);
  return replace_all(t.text, kSpmSpace, " ");
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  const Vocab& v = *vocab_;
  std::string out;
  bool first = true;
  for (int32_t id : ids) {
    if (!v.valid(id)) continue;
    const TokenKind kind = v.tokens[id].kind;
    if (hidden_in_decode(kind) && !render_special) continue;
    std::string piece = token_piece(id);
    // Undo the space encode() put in front of the text (only before ordinary text).
    if (first && v.add_space_prefix && !hidden_in_decode(kind) && !piece.empty() && piece[0] == ' ') {
      piece.erase(0, 1);
    }
    first = false;
    out += piece;
  }
  return out;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  static const std::string kEmpty;
  return vocab_->valid(id) ? vocab_->tokens[id].text : kEmpty;
}

int32_t Tokenizer::bos() const { return vocab_->bos; }
int32_t Tokenizer::eos() const { return vocab_->eos; }
int32_t Tokenizer::eot() const { return vocab_->eot; }
int32_t Tokenizer::pad() const { return vocab_->pad; }
bool Tokenizer::adds_bos() const { return vocab_->add_bos && vocab_->bos != kNoToken; }

std::vector<int32_t> Tokenizer::end_of_turn_ids() const {
  const Vocab& v = *vocab_;
  std::vector<int32_t> ids;
  const auto add = [&](int32_t id) {
    if (id != kNoToken && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  add(v.eos);
  add(v.eot);
  add(v.eom);
  for (int32_t id : v.extra_end_ids) add(id);
  return ids;
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const int32_t id = vocab_->find(text);
  if (id == kNoToken) return std::nullopt;
  return id;
}

size_t Tokenizer::vocab_size() const { return vocab_->tokens.size(); }

TokenKind Tokenizer::kind(int32_t id) const {
  return vocab_->valid(id) ? vocab_->tokens[id].kind : TokenKind::normal;
}

bool Tokenizer::is_special(int32_t id) const {
  const TokenKind k = kind(id);
  return vocab_->valid(id) && (k == TokenKind::control || k == TokenKind::unknown);
}

bool Tokenizer::is_sentencepiece() const { return vocab_->model == Vocab::Model::sentencepiece; }
const std::string& Tokenizer::pre_tokenizer() const { return vocab_->pre; }

}  // namespace autoglm
