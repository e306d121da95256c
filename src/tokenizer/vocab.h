#pragma once
// The loaded vocabulary and the encoders that run over it. Internal to the tokenizer module:
// the GGUF and Hugging Face loaders fill a Vocab, Tokenizer only reads it.
#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "autoglm/tokenizer.h"
#include "regex.h"

namespace autoglm::tokenizer_detail {

// Joins message parts. (GCC 12 warns falsely, -Wrestrict, on some "literal" + std::string chains.)
inline std::string concat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view p : parts) out.append(p);
  return out;
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIds = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct TokenRecord {
  std::string text;
  float score = 0;  // SentencePiece: higher merges first
  TokenKind kind = TokenKind::normal;
  bool lstrip = false;  // added tokens: swallow whitespace on that side when matched in text
  bool rstrip = false;
};

struct Merge {
  int32_t rank;
  int32_t result;
};

struct Vocab {
  enum class Model { byte_level_bpe, sentencepiece };
  Model model = Model::byte_level_bpe;
  std::string pre = "default";
  std::vector<TokenRecord> tokens;
  TokenIds ids;  // text -> id; the last of duplicates wins, as in llama.cpp

  // Byte-level BPE: merges keyed by (left id, right id), and the split patterns applied in turn.
  std::unordered_map<uint64_t, Merge> merges;
  std::vector<Regex> splits;
  bool ignore_merges = false;  // a piece that is a whole token is taken as is (Llama 3)

  // The token of each byte: BPE, its mapped character; SentencePiece, <0xXX>.
  std::array<int32_t, 256> byte_tokens{};
  // Tokens matched in raw text before pre-tokenization, longest text first.
  std::vector<int32_t> special_by_length;

  int32_t bos = kNoToken, eos = kNoToken, eot = kNoToken, eom = kNoToken, pad = kNoToken,
          unk = kNoToken;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;  // SentencePiece: "▁" in front of the text
  std::vector<int32_t> extra_end_ids;  // end-of-generation ids named by the model's files

  bool valid(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < tokens.size(); }
  int32_t find(std::string_view text) const {
    const auto it = ids.find(text);
    return it == ids.end() ? kNoToken : it->second;
  }

  // After tokens (and merges as text pairs) are set: builds the lookups, checks the special
  // ids (`source` names the file for messages), fills the defaults.
  void finish(const std::vector<std::pair<std::string, std::string>>& merge_pairs,
              const std::string& source);
};

// Split patterns of a llama.cpp pre-tokenizer name (tokenizer.ggml.pre); throws for an unknown one.
std::vector<std::string> split_patterns_for(std::string_view pre);

// Appends the ids of `text` (no special tokens in it) to `out`.
void encode_byte_level_bpe(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out);
// `text` already has its spaces turned into "▁" and the prefix added.
void encode_sentencepiece(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out);

}  // namespace autoglm::tokenizer_detail
