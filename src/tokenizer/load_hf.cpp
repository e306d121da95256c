// Tokenizer from a Hugging Face folder: tokenizer.json (byte-level BPE), tokenizer_config.json
// (BOS/EOS, add_bos_token, added tokens) and generation_config.json (end-of-generation ids).
#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "autoglm/tokenizer.h"
#include "vocab.h"

namespace autoglm {

using json = nlohmann::json;
using tokenizer_detail::Vocab;

namespace {

// The pattern Hugging Face's ByteLevel pre-tokenizer applies when use_regex is true.
constexpr const char* kByteLevelPattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";

tokenizer_detail::TokenRecord unused_slot() {
  tokenizer_detail::TokenRecord t;
  t.kind = TokenKind::unused;
  return t;
}

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& what) {
  throw TokenizerError(file.string() + ": " + what);
}

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(kExitUsage, path.string() + ": cannot open (is this a Hugging Face model folder?)");
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return json::parse(buffer.str());
  } catch (const json::exception& e) {
    fail(path, std::string("is not valid JSON: ") + e.what());
  }
}

// Escapes a literal string for the regex engine (Split with a "String" pattern).
std::string regex_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}-").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

class TokenizerJson {
 public:
  TokenizerJson(const std::filesystem::path& path, Vocab& vocab) : path_(path), vocab_(vocab) {}

  void load(const json& j) {
    if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) fail(path_, "has no \"model\" object");
    const json& model = j["model"];
    const std::string type = model.value("type", "");
    if (type != "BPE") fail(path_, "model type \"" + type + "\" is not supported (only byte-level BPE)");
    if (model.value("byte_fallback", false)) {
      fail(path_, "SentencePiece-style BPE (byte_fallback) is not supported from tokenizer.json; use the GGUF file");
    }
    check_normalizer(j.value("normalizer", json()));
    vocab_.model = Vocab::Model::byte_level_bpe;
    vocab_.pre = "tokenizer.json";
    vocab_.ignore_merges = model.value("ignore_merges", false);
    read_pre_tokenizer(j.value("pre_tokenizer", json()));
    if (!saw_byte_level_) fail(path_, "pre_tokenizer has no ByteLevel step: not a byte-level BPE tokenizer");
    read_vocab(model.value("vocab", json()), j.value("added_tokens", json::array()));
    read_merges(model.value("merges", json::array()));
    read_post_processor(j.value("post_processor", json()));
  }

  std::vector<std::pair<std::string, std::string>> merges;

 private:
  void check_normalizer(const json& n) {
    if (n.is_null()) return;
    // NFC leaves text that is already NFC (nearly all text) unchanged; we do not normalise.
    if (n.is_object() && n.value("type", "") == "NFC") return;
    fail(path_, "normalizer " + n.dump().substr(0, 80) + " is not supported");
  }

  void read_pre_tokenizer(const json& p, int depth = 0) {
    if (p.is_null()) return;
    if (!p.is_object()) fail(path_, "pre_tokenizer must be an object");
    if (depth > 8) fail(path_, "pre_tokenizer Sequences nested too deeply");
    const std::string type = p.value("type", "");
    if (type == "Sequence") {
      for (const json& step : p.value("pretokenizers", json::array())) read_pre_tokenizer(step, depth + 1);
    } else if (type == "Split") {
      read_split(p);
    } else if (type == "ByteLevel") {
      saw_byte_level_ = true;
      if (p.value("add_prefix_space", false)) fail(path_, "ByteLevel add_prefix_space is not supported");
      if (p.value("use_regex", true)) vocab_.splits.emplace_back(kByteLevelPattern);
    } else if (type == "Digits") {
      vocab_.splits.emplace_back(p.value("individual_digits", false) ? "[0-9]" : "[0-9]+");
    } else {
      fail(path_, "pre_tokenizer \"" + type + "\" is not supported");
    }
  }

  void read_split(const json& p) {
    if (p.value("behavior", "") != "Isolated" || p.value("invert", false)) {
      fail(path_, "Split pre-tokenizers other than behavior Isolated, invert false are not supported");
    }
    const json pattern = p.value("pattern", json());
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      vocab_.splits.emplace_back(pattern["Regex"].get<std::string>());
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      vocab_.splits.emplace_back(regex_escape(pattern["String"].get<std::string>()));
    } else {
      fail(path_, "Split pattern must be {\"Regex\": ...} or {\"String\": ...}");
    }
  }

  void read_vocab(const json& v, const json& added) {
    if (!v.is_object() || v.empty()) fail(path_, "model.vocab must be a non-empty object");
    if (!added.is_array()) fail(path_, "added_tokens must be an array");
    // Ids must be dense-ish: at most one slot per entry, so a hostile id cannot make us
    // allocate more than the file describes.
    const size_t limit = v.size() + added.size();
    const auto slot = [&](const json& id) -> tokenizer_detail::TokenRecord& {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<uint64_t>() >= limit) {
        fail(path_, "token id " + id.dump() + " is not in [0, " + std::to_string(limit) + ")");
      }
      const size_t i = id.get<size_t>();
      if (i >= vocab_.tokens.size()) vocab_.tokens.resize(i + 1, unused_slot());
      return vocab_.tokens[i];
    };
    for (const auto& [text, id] : v.items()) {
      auto& t = slot(id);
      t.text = text;
      t.kind = TokenKind::normal;
    }
    for (const json& a : added) {
      if (!a.is_object() || !a.contains("content") || !a["content"].is_string()) {
        fail(path_, "added_tokens entries need an id and a content string");
      }
      auto& t = slot(a.value("id", json()));
      t.text = a["content"].get<std::string>();
      t.kind = a.value("special", false) ? TokenKind::control : TokenKind::user_defined;
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
    }
  }

  void read_merges(const json& m) {
    if (!m.is_array()) fail(path_, "model.merges must be an array");
    merges.reserve(m.size());
    for (size_t i = 0; i < m.size(); ++i) {
      const json& e = m[i];
      if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
        continue;
      }
      const std::string s = e.is_string() ? e.get<std::string>() : std::string();
      const size_t space = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
      if (space == std::string::npos || space + 1 >= s.size()) {
        fail(path_, "model.merges[" + std::to_string(i) + "] is not \"left right\" or [left, right]");
      }
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    }
  }

  // TemplateProcessing that starts with a special token: that token is the BOS it adds.
  void read_post_processor(const json& p) {
    if (!p.is_object() || p.value("type", "") != "TemplateProcessing") return;
    const json single = p.value("single", json::array());
    if (!single.is_array() || single.empty() || !single[0].contains("SpecialToken")) return;
    if (single[0]["SpecialToken"].is_object()) bos_text = single[0]["SpecialToken"].value("id", "");
  }

 public:
  std::string bos_text;  // the BOS a TemplateProcessing post-processor adds, if any

 private:

  std::filesystem::path path_;
  Vocab& vocab_;
  bool saw_byte_level_ = false;
};

// tokenizer_config.json writes a token as "text" or {"content": "text", ...}.
std::string token_content(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return {};
}

struct ConfigNames {
  std::string bos, eos, pad;
  std::optional<bool> add_bos, add_eos;
};

// added_tokens_decoder: {"151329": {"content": "<|endoftext|>", "special": true, ...}, ...}.
void read_added_tokens_decoder(const std::filesystem::path& path, const json& decoder, Vocab& vocab) {
  if (!decoder.is_object()) return;
  const size_t limit = vocab.tokens.size() + decoder.size();
  for (const auto& [key, entry] : decoder.items()) {
    size_t id = 0;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || end != key.data() + key.size() || id >= limit) {
      fail(path, "added_tokens_decoder key \"" + key.substr(0, 32) + "\" is not a token id below " +
                     std::to_string(limit));
    }
    const std::string content = token_content(entry);
    if (content.empty()) continue;
    if (id >= vocab.tokens.size()) vocab.tokens.resize(id + 1, unused_slot());
    auto& t = vocab.tokens[id];
    if (!t.text.empty() && t.text != content) continue;  // tokenizer.json is authoritative
    t.text = content;
    t.kind = entry.value("special", false) ? TokenKind::control : TokenKind::user_defined;
    t.lstrip = entry.value("lstrip", false);
    t.rstrip = entry.value("rstrip", false);
  }
}

ConfigNames read_tokenizer_config(const std::filesystem::path& path, Vocab& vocab) {
  ConfigNames names;
  if (!std::filesystem::exists(path)) return names;
  const json j = read_json(path);
  if (!j.is_object()) fail(path, "must be a JSON object");
  read_added_tokens_decoder(path, j.value("added_tokens_decoder", json()), vocab);
  names.bos = token_content(j.value("bos_token", json()));
  names.eos = token_content(j.value("eos_token", json()));
  names.pad = token_content(j.value("pad_token", json()));
  if (j.contains("add_bos_token") && j["add_bos_token"].is_boolean()) names.add_bos = j["add_bos_token"].get<bool>();
  if (j.contains("add_eos_token") && j["add_eos_token"].is_boolean()) names.add_eos = j["add_eos_token"].get<bool>();
  return names;
}

// generation_config.json: eos_token_id, one id or a list; every one of them ends generation.
void read_generation_config(const std::filesystem::path& path, Vocab& vocab) {
  if (!std::filesystem::exists(path)) return;
  const json j = read_json(path);
  if (!j.is_object() || !j.contains("eos_token_id")) return;
  const json ids = j["eos_token_id"].is_array() ? j["eos_token_id"] : json::array({j["eos_token_id"]});
  for (const json& id : ids) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX ||
        !vocab.valid(id.get<int32_t>())) {
      fail(path, "eos_token_id " + id.dump() + " is not a token id of this vocabulary");
    }
    vocab.extra_end_ids.push_back(id.get<int32_t>());
    if (vocab.eos == kNoToken) vocab.eos = id.get<int32_t>();
  }
}

}  // namespace

Tokenizer Tokenizer::from_hf_folder(const std::filesystem::path& folder) {
  try {
    return load_hf_folder(folder);
  } catch (const json::exception& e) {
    // A field of the wrong JSON type (nlohmann's value()/get() throw on those).
    fail(folder, std::string("unexpected tokenizer JSON structure: ") + e.what());
  }
}

Tokenizer Tokenizer::load_hf_folder(const std::filesystem::path& folder) {
  auto vocab = std::make_shared<Vocab>();
  const std::filesystem::path tokenizer_json = folder / "tokenizer.json";
  TokenizerJson reader(tokenizer_json, *vocab);
  reader.load(read_json(tokenizer_json));
  const ConfigNames names = read_tokenizer_config(folder / "tokenizer_config.json", *vocab);
  vocab->finish(reader.merges, tokenizer_json.string());

  const std::string& bos_text = names.bos.empty() ? reader.bos_text : names.bos;
  vocab->bos = bos_text.empty() ? kNoToken : vocab->find(bos_text);
  vocab->eos = names.eos.empty() ? kNoToken : vocab->find(names.eos);
  vocab->pad = names.pad.empty() ? kNoToken : vocab->find(names.pad);
  vocab->add_bos = names.add_bos.value_or(!reader.bos_text.empty());
  vocab->add_eos = names.add_eos.value_or(false);
  read_generation_config(folder / "generation_config.json", *vocab);
  return Tokenizer(std::move(vocab));
}

}  // namespace autoglm
