#include <algorithm>
#include <array>
#include <cstdio>

#include "unicode.h"
#include "vocab.h"

namespace autoglm::tokenizer_detail {

namespace {

// Tokens that end a turn in the chat formats we serve (GLM-4 ends a reply with the next
// <|user|> or <|observation|>). Only control or user-defined tokens count.
constexpr std::array<std::string_view, 13> kEndOfTurnTexts = {
    "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|user|>",
    "<|observation|>", "<|endoftext|>", "<|end_of_text|>", "<｜end▁of▁sentence｜>", "<EOT>",
    "<|return|>", "<|call|>"};
// The first of these present is eot() when the metadata names none.
constexpr std::array<std::string_view, 5> kEotTexts = {"<|eot_id|>", "<|im_end|>", "<|end|>",
                                                       "<end_of_turn>", "<|user|>"};

bool is_added_kind(TokenKind kind) {
  return kind == TokenKind::control || kind == TokenKind::user_defined || kind == TokenKind::unknown;
}

}  // namespace

void Vocab::finish(const std::vector<std::pair<std::string, std::string>>& merge_pairs,
                   const std::string& source) {
  if (tokens.empty()) throw TokenizerError(source + ": the vocabulary has no tokens");
  if (tokens.size() > static_cast<size_t>(INT32_MAX)) throw TokenizerError(source + ": too many tokens");
  ids.clear();
  ids.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!tokens[i].text.empty()) ids.insert_or_assign(tokens[i].text, static_cast<int32_t>(i));
  }

  for (int b = 0; b < 256; ++b) {
    std::string text;
    if (model == Model::byte_level_bpe) {
      append_utf8(text, byte_to_char(static_cast<uint8_t>(b)));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      text = buf;
    }
    byte_tokens[b] = find(text);
  }

  // A merge whose parts or result are not tokens can never apply to ids: left out (Hugging Face
  // refuses such files; llama.cpp carries them along without effect on real vocabularies).
  merges.clear();
  merges.reserve(merge_pairs.size());
  for (size_t rank = 0; rank < merge_pairs.size(); ++rank) {
    const auto& [left, right] = merge_pairs[rank];
    const int32_t l = find(left), r = find(right), result = find(left + right);
    if (l == kNoToken || r == kNoToken || result == kNoToken) continue;
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
    merges.try_emplace(key, Merge{static_cast<int32_t>(rank), result});  // first (lowest) rank wins
  }

  special_by_length.clear();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (is_added_kind(tokens[i].kind) && !tokens[i].text.empty()) {
      special_by_length.push_back(static_cast<int32_t>(i));
    }
  }
  std::stable_sort(special_by_length.begin(), special_by_length.end(), [&](int32_t a, int32_t b) {
    return tokens[a].text.size() > tokens[b].text.size();
  });

  const auto find_added = [&](std::string_view text) {
    const int32_t id = find(text);
    return id != kNoToken && is_added_kind(tokens[id].kind) ? id : kNoToken;
  };
  for (std::string_view text : kEotTexts) {
    if (eot != kNoToken) break;
    eot = find_added(text);
  }
  for (std::string_view text : kEndOfTurnTexts) {
    const int32_t id = find_added(text);
    if (id != kNoToken) extra_end_ids.push_back(id);
  }
}

}  // namespace autoglm::tokenizer_detail
