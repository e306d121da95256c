#include <array>

#include "autoglm/chat.h"
#include "autoglm/error.h"

namespace autoglm::chat {
namespace {

struct FormatInfo {
  ChatFormat format;
  std::string_view name;
  std::string_view prefix;  // special-token text that starts every prompt, standing for BOS
};
constexpr std::array<FormatInfo, 5> kFormats{{
    {ChatFormat::glm4, "glm4", "[gMASK]<sop>"},
    {ChatFormat::llama3, "llama3", "<|begin_of_text|>"},
    {ChatFormat::chatml, "chatml", ""},
    {ChatFormat::llama2, "llama2", "<s>"},
    {ChatFormat::glm4v, "glm4v", "[gMASK]<sop>"},
}};

const FormatInfo& info(ChatFormat format) {
  for (const FormatInfo& i : kFormats)
    if (i.format == format) return i;
  return kFormats[0];
}

bool contains(std::string_view text, std::string_view marker) { return text.find(marker) != std::string_view::npos; }

}  // namespace

ChatFormat parse_chat_format(std::string_view name) {
  for (const FormatInfo& i : kFormats)
    if (i.name == name) return i.format;
  throw Error(kExitUsage, "unknown chat format '" + std::string(name) + "': use glm4, glm4v, llama3, chatml or llama2");
}

std::string_view chat_format_name(ChatFormat format) { return info(format).name; }

// Each format's special tokens appear in its template as literal text; no two formats share them
// (GLM-4.1V's template is GLM-4's with image parts).
std::optional<ChatFormat> detect_chat_format(std::string_view t) {
  if (contains(t, "[gMASK]") && contains(t, "<|begin_of_image|>")) return ChatFormat::glm4v;
  if (contains(t, "[gMASK]") && contains(t, "<|assistant|>")) return ChatFormat::glm4;
  if (contains(t, "<|start_header_id|>") && contains(t, "<|eot_id|>")) return ChatFormat::llama3;
  if (contains(t, "<|im_start|>") && contains(t, "<|im_end|>")) return ChatFormat::chatml;
  if (contains(t, "[INST]") && contains(t, "[/INST]") && contains(t, "<<SYS>>")) return ChatFormat::llama2;
  return std::nullopt;
}

// <|eom_id|> ends a Llama-3.1 tool-call turn; generation_config.json lists it beside the other two.
std::vector<std::string> end_of_turn_tokens(ChatFormat format) {
  switch (format) {
    case ChatFormat::glm4:
    case ChatFormat::glm4v: return {"<|user|>", "<|observation|>", "<|endoftext|>"};
    case ChatFormat::llama3: return {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"};
    case ChatFormat::chatml: return {"<|im_end|>", "<|endoftext|>"};
    case ChatFormat::llama2: return {"</s>"};
  }
  return {};
}

std::string_view prompt_prefix(ChatFormat format) { return info(format).prefix; }

bool prompt_includes_bos(ChatFormat format) { return !prompt_prefix(format).empty(); }

bool reads_images(ChatFormat format) { return format == ChatFormat::glm4v; }

}  // namespace autoglm::chat
