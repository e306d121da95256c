#pragma once
// Text <-> token ids for the models we serve: byte-level BPE (GPT-2, Llama 3, GLM-4, Qwen2,
// DeepSeek, Falcon, StarCoder, MPT pre-tokenizers) and SentencePiece BPE (Llama, Phi-3), loaded
// from GGUF metadata or a Hugging Face tokenizer.json. Matches llama.cpp / Hugging Face ids exactly
// on their test suites. Immutable after loading: one Tokenizer can serve many threads.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "autoglm/error.h"

namespace autoglm {

namespace gguf {
struct File;
}

// Bad tokenizer metadata (mismatched array lengths, malformed merges, ids out of range, an
// unknown tokenizer type or pre-tokenizer) or a pattern the regex engine cannot run.
class TokenizerError : public Error {
 public:
  explicit TokenizerError(const std::string& message) : Error(kExitCheckFailed, message) {}
};

// What a token is, as in GGUF's tokenizer.ggml.token_type.
enum class TokenKind : uint8_t {
  normal = 1,
  unknown = 2,       // <unk>
  control = 3,       // <s>, <|user|>, ...: matched in text only with parse_special
  user_defined = 4,  // added tokens that are not special: always matched in text
  unused = 5,
  byte = 6,          // SentencePiece byte fallback <0xXX>
};

inline constexpr int32_t kNoToken = -1;

namespace tokenizer_detail {
struct Vocab;
}

class Tokenizer {
 public:
  // From GGUF metadata (tokenizer.ggml.*). Throws TokenizerError naming the bad key.
  static Tokenizer from_gguf(const gguf::File& file);
  // Reads the GGUF header at `path` (never the weights) and loads its tokenizer.
  static Tokenizer from_gguf_file(const std::filesystem::path& path);
  // From a Hugging Face folder: tokenizer.json (byte-level BPE), plus tokenizer_config.json and
  // generation_config.json when present (BOS/EOS, add_bos_token, added tokens).
  static Tokenizer from_hf_folder(const std::filesystem::path& folder);

  // Text to ids. add_special: prepend BOS / append EOS where the model's metadata asks for them
  // (add_bos_token / add_eos_token). parse_special: match control tokens ("<|user|>") in the
  // text; without it their text is tokenized as ordinary text. User-defined added tokens are
  // always matched, as Hugging Face and llama.cpp do. Invalid UTF-8 is read as U+FFFD.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // Ids to text. Control and unknown tokens are left out unless render_special. SentencePiece:
  // the space that encode() put in front of the text is taken off again, so
  // decode(encode(t)) == t for text without special tokens. Out-of-range ids are skipped.
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;

  // The raw bytes one token stands for (a control token: its text). Possibly an incomplete
  // UTF-8 sequence: stream it through Utf8StreamDecoder. Empty for an id out of range.
  std::string token_piece(int32_t id) const;
  // The token's text as stored in the vocabulary ("Ġhello", "▁hello", "<0x0A>").
  const std::string& token_text(int32_t id) const;

  int32_t bos() const;  // kNoToken when the model has none
  int32_t eos() const;
  int32_t eot() const;  // end of turn (<|eot_id|>, <|im_end|>, <|user|> for GLM-4, ...)
  int32_t pad() const;
  // Every id that ends generation: EOS, EOT and the known end-of-turn tokens in the vocabulary.
  std::vector<int32_t> end_of_turn_ids() const;
  bool adds_bos() const;  // whether encode(..., add_special=true) prepends BOS

  std::optional<int32_t> find_token(std::string_view text) const;
  size_t vocab_size() const;
  TokenKind kind(int32_t id) const;  // normal for an id out of range
  bool is_special(int32_t id) const;  // control or unknown
  bool is_sentencepiece() const;
  const std::string& pre_tokenizer() const;  // "glm4", "qwen2", ... ("default" for SentencePiece)

 private:
  explicit Tokenizer(std::shared_ptr<const tokenizer_detail::Vocab> vocab);
  static Tokenizer load_hf_folder(const std::filesystem::path& folder);
  std::shared_ptr<const tokenizer_detail::Vocab> vocab_;
};

// Turns a stream of token pieces back into text without ever splitting a character: returns
// only complete UTF-8 sequences and holds back an incomplete one at the end (at most 3 bytes)
// until the next push. Bytes that can never become valid come out as U+FFFD right away.
class Utf8StreamDecoder {
 public:
  std::string push(std::string_view bytes);
  // Whatever is still held back, as U+FFFD (the stream ended inside a character).
  std::string flush();
  bool pending() const { return !held_.empty(); }

 private:
  std::string held_;
};

}  // namespace autoglm
