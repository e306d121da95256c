// Tokenizer from GGUF metadata (tokenizer.ggml.*), every value checked before use: the file may
// be hostile, and a bad value must become a TokenizerError naming the key, never a crash.
#include <string>
#include <vector>

#include "autoglm/gguf.h"
#include "autoglm/tokenizer.h"
#include "vocab.h"

namespace autoglm {

using tokenizer_detail::Vocab;

namespace {

class MetadataReader {
 public:
  explicit MetadataReader(const gguf::File& file)
      : file_(file), source_(file.path.empty() ? std::string("GGUF metadata") : file.path.string()) {}

  const std::string& source() const { return source_; }

  [[noreturn]] void fail(std::string_view key, const std::string& what) const {
    const std::string_view gap = !what.empty() && what[0] == '[' ? "" : " ";  // "key[3] = ..."
    throw TokenizerError(tokenizer_detail::concat({source_, ": ", key, gap, what}));
  }

  // The array at `key` when its elements are of kind `want` (string, integer or float); nullptr
  // when absent.
  const gguf::Value* array(std::string_view key, const char* want) const {
    const gguf::Value* v = file_.find(key);
    if (!v) return nullptr;
    const std::string_view kind = want;
    bool ok = v->type == gguf::ValueType::array;
    if (ok && kind == "string") ok = v->array_type == gguf::ValueType::string && v->strings.size() == v->array_size;
    if (ok && kind == "integer") ok = v->ints.size() == v->array_size && v->array_type != gguf::ValueType::string;
    if (ok && kind == "float") ok = v->floats.size() == v->array_size;
    if (!ok) fail(key, std::string("must be an array of ") + want + "s");
    return v;
  }

  std::optional<std::string> string(std::string_view key) const {
    const gguf::Value* v = file_.find(key);
    if (!v) return std::nullopt;
    if (v->type != gguf::ValueType::string) fail(key, "must be a string");
    return v->str;
  }

  std::optional<bool> boolean(std::string_view key) const {
    const gguf::Value* v = file_.find(key);
    if (!v) return std::nullopt;
    if (v->type == gguf::ValueType::boolean) return v->b;
    if (v->is_integer()) return v->i != 0;
    fail(key, "must be a boolean");
  }

  // A token id: absent -> `fallback`; present -> must be in [0, n_tokens).
  int32_t token_id(std::string_view key, size_t n_tokens, int32_t fallback) const {
    const gguf::Value* v = file_.find(key);
    if (!v) return fallback < 0 || static_cast<size_t>(fallback) >= n_tokens ? kNoToken : fallback;
    const std::optional<int64_t> id = v->as_int();
    if (!id) fail(key, "must be an integer token id");
    if (*id < 0 || static_cast<uint64_t>(*id) >= n_tokens) {
      fail(key, "= " + std::to_string(*id) + " is out of range: the vocabulary has " +
                    std::to_string(n_tokens) + " tokens");
    }
    return static_cast<int32_t>(*id);
  }

 private:
  const gguf::File& file_;
  std::string source_;
};

TokenKind kind_from_type(const MetadataReader& meta, int64_t type, size_t index) {
  if (type == 0) return TokenKind::normal;  // "undefined" in older converters
  if (type < 1 || type > 6) {
    meta.fail("tokenizer.ggml.token_type", tokenizer_detail::concat({"[", std::to_string(index), "] = ",
                                                                     std::to_string(type),
                                                                     " is not a token type (1..6)"}));
  }
  return static_cast<TokenKind>(type);
}

void read_tokens(const MetadataReader& meta, Vocab& vocab) {
  const gguf::Value* tokens = meta.array("tokenizer.ggml.tokens", "string");
  if (!tokens) meta.fail("tokenizer.ggml.tokens", "is missing: this file has no tokenizer");
  const size_t n = tokens->strings.size();
  if (n == 0) meta.fail("tokenizer.ggml.tokens", "is empty");
  if (n > static_cast<size_t>(INT32_MAX)) meta.fail("tokenizer.ggml.tokens", "has too many tokens");
  const gguf::Value* scores = meta.array("tokenizer.ggml.scores", "float");
  const gguf::Value* types = meta.array("tokenizer.ggml.token_type", "integer");
  const auto check_length = [&](const gguf::Value* v, const char* key) {
    if (v && v->array_size != n) {
      meta.fail(key, "has " + std::to_string(v->array_size) + " entries but tokenizer.ggml.tokens has " +
                         std::to_string(n));
    }
  };
  check_length(scores, "tokenizer.ggml.scores");
  check_length(types, "tokenizer.ggml.token_type");
  vocab.tokens.resize(n);
  for (size_t i = 0; i < n; ++i) {
    auto& t = vocab.tokens[i];
    t.text = tokens->strings[i];
    if (scores) t.score = static_cast<float>(scores->floats[i]);
    if (types) t.kind = kind_from_type(meta, types->ints[i], i);
  }
}

std::vector<std::pair<std::string, std::string>> read_merges(const MetadataReader& meta) {
  const gguf::Value* merges = meta.array("tokenizer.ggml.merges", "string");
  if (!merges) meta.fail("tokenizer.ggml.merges", "is missing (a gpt2 tokenizer needs its BPE merges)");
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(merges->strings.size());
  for (size_t i = 0; i < merges->strings.size(); ++i) {
    const std::string& m = merges->strings[i];
    // "left right"; the left part is never empty, so the separator is the first space after it.
    const size_t space = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    if (space == std::string::npos || space + 1 >= m.size()) {
      meta.fail("tokenizer.ggml.merges", tokenizer_detail::concat({"[", std::to_string(i), "] = \"",
                                                                  std::string_view(m).substr(0, 64),
                                                                  "\" is not two tokens separated by a space"}));
    }
    pairs.emplace_back(m.substr(0, space), m.substr(space + 1));
  }
  return pairs;
}

void read_special_ids(const MetadataReader& meta, Vocab& vocab, bool sentencepiece) {
  const size_t n = vocab.tokens.size();
  // SentencePiece vocabularies without the keys use llama's <unk>=0, <s>=1, </s>=2.
  vocab.bos = meta.token_id("tokenizer.ggml.bos_token_id", n, sentencepiece ? 1 : kNoToken);
  vocab.eos = meta.token_id("tokenizer.ggml.eos_token_id", n, sentencepiece ? 2 : kNoToken);
  vocab.unk = meta.token_id("tokenizer.ggml.unknown_token_id", n, sentencepiece ? 0 : kNoToken);
  vocab.eot = meta.token_id("tokenizer.ggml.eot_token_id", n, kNoToken);
  vocab.eom = meta.token_id("tokenizer.ggml.eom_token_id", n, kNoToken);
  vocab.pad = meta.token_id("tokenizer.ggml.padding_token_id", n, kNoToken);
  vocab.add_bos = meta.boolean("tokenizer.ggml.add_bos_token").value_or(sentencepiece);
  vocab.add_eos = meta.boolean("tokenizer.ggml.add_eos_token").value_or(false);
  vocab.add_space_prefix = meta.boolean("tokenizer.ggml.add_space_prefix").value_or(sentencepiece);
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const gguf::File& file) {
  const MetadataReader meta(file);
  auto vocab = std::make_shared<Vocab>();
  const std::optional<std::string> model = meta.string("tokenizer.ggml.model");
  if (!model) meta.fail("tokenizer.ggml.model", "is missing: this file has no tokenizer");
  const bool sentencepiece = *model == "llama";
  if (!sentencepiece && *model != "gpt2") {
    meta.fail("tokenizer.ggml.model", "= \"" + *model +
                                          "\" is not supported (supported: gpt2 = byte-level BPE, "
                                          "llama = SentencePiece BPE)");
  }
  vocab->model = sentencepiece ? Vocab::Model::sentencepiece : Vocab::Model::byte_level_bpe;
  read_tokens(meta, *vocab);
  std::vector<std::pair<std::string, std::string>> merges;
  if (!sentencepiece) {
    merges = read_merges(meta);
    vocab->pre = meta.string("tokenizer.ggml.pre").value_or("default");
    try {
      for (const std::string& pattern : tokenizer_detail::split_patterns_for(vocab->pre)) {
        vocab->splits.emplace_back(pattern);
      }
    } catch (const TokenizerError& e) {
      meta.fail("tokenizer.ggml.pre:", e.what());
    }
    // Llama 3's tokenizer.json sets ignore_merges; llama.cpp does the same for this family.
    vocab->ignore_merges = vocab->pre == "llama3" || vocab->pre == "llama-v3" || vocab->pre == "llama-bpe";
  }
  read_special_ids(meta, *vocab, sentencepiece);
  vocab->finish(merges, meta.source());
  return Tokenizer(std::move(vocab));
}

Tokenizer Tokenizer::from_gguf_file(const std::filesystem::path& path) {
  return from_gguf(gguf::read_file_header(path));
}

}  // namespace autoglm
