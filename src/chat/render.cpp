// Each render_* function follows its model's Jinja template line by line for plain-text messages;
// the comments quote the template expressions they stand for.
#include <algorithm>
#include <initializer_list>
#include <string>

#include "autoglm/chat.h"
#include "autoglm/error.h"

namespace autoglm::chat {
namespace {

using Messages = std::span<const ChatMessage>;

// Python's str.strip() / Jinja's trim on ASCII whitespace.
constexpr std::string_view kWhitespace = " \t\n\r\v\f\x1c\x1d\x1e\x1f";

std::string_view strip(std::string_view s, std::string_view chars = kWhitespace) {
  const size_t first = s.find_first_not_of(chars);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(chars) - first + 1);
}

std::string_view lstrip(std::string_view s, std::string_view chars) {
  const size_t first = s.find_first_not_of(chars);
  return first == std::string_view::npos ? std::string_view{} : s.substr(first);
}

std::string_view rstrip(std::string_view s, std::string_view chars) {
  const size_t last = s.find_last_not_of(chars);
  return last == std::string_view::npos ? std::string_view{} : s.substr(0, last + 1);
}

// Joins pieces with one allocation (and avoids GCC 12's false -Wrestrict on "literal" + std::string).
std::string concat(std::initializer_list<std::string_view> pieces) {
  size_t size = 0;
  for (std::string_view p : pieces) size += p.size();
  std::string out;
  out.reserve(size);
  for (std::string_view p : pieces) out += p;
  return out;
}

[[noreturn]] void bad_role(ChatFormat format, size_t index, const std::string& role) {
  throw Error(kExitUsage, "message " + std::to_string(index) + ": role '" + role + "' is not supported by the " +
                              std::string(chat_format_name(format)) +
                              " chat format: use system, user or assistant");
}

void check_roles(ChatFormat format, Messages messages) {
  if (messages.empty()) throw Error(kExitUsage, "a chat needs at least one message");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") bad_role(format, i, role);
    if (messages[i].images.empty()) continue;
    if (!reads_images(format))
      throw Error(kExitUsage, "message " + std::to_string(i) + " holds an image, but this model reads text only (chat format " +
                                  std::string(chat_format_name(format)) + ")");
    if (role != "user")
      throw Error(kExitUsage, "message " + std::to_string(i) + ": images are read in user messages only, not in '" + role + "'");
  }
}

// ---- GLM-4.6 ----

struct AssistantParts {
  std::string_view reasoning;
  std::string_view content;
};

// content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n'), and the text after the
// last '</think>' with its leading newlines removed.
AssistantParts split_reasoning(std::string_view content) {
  const size_t first_close = content.find("</think>");
  if (first_close == std::string_view::npos) return {{}, content};
  std::string_view reasoning = rstrip(content.substr(0, first_close), "\n");
  const size_t open = reasoning.rfind("<think>");
  if (open != std::string_view::npos) reasoning = reasoning.substr(open + 7);
  const size_t last_close = content.rfind("</think>");
  return {lstrip(reasoning, "\n"), lstrip(content.substr(last_close + 8), "\n")};
}

// "<|assistant|>" + "\n<think>…</think>" (empty unless after the last user turn) + "\n" + content.strip().
std::string glm4_assistant(std::string_view content, bool after_last_user) {
  const AssistantParts parts = split_reasoning(content);
  std::string out = "<|assistant|>";
  if (after_last_user && !parts.reasoning.empty())
    out += concat({"\n<think>", strip(parts.reasoning), "</think>"});
  else
    out += "\n<think></think>";
  if (const std::string_view text = strip(parts.content); !text.empty()) out += concat({"\n", text});
  return out;
}

std::string render_glm4(Messages messages, bool add_generation_prompt) {
  size_t last_user = 0;
  bool any_user = false;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != "user") continue;
    last_user = i;
    any_user = true;
  }

  std::string out = "[gMASK]<sop>";
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") out += "<|user|>\n" + m.content;
    if (m.role == "system") out += "<|system|>\n" + m.content;
    if (m.role == "assistant") out += glm4_assistant(m.content, !any_user || i > last_user);
  }
  if (add_generation_prompt) out += "<|assistant|>";
  return out;
}

// ---- GLM-4.1V ----

// The content with kImagePart inserted at each image offset.
std::string with_images(const ChatMessage& m) {
  std::string out;
  size_t at = 0;
  for (size_t offset : m.images) {
    offset = std::min(std::max(offset, at), m.content.size());
    out.append(m.content, at, offset - at);
    out += kImagePart;
    at = offset;
  }
  out.append(m.content, at, std::string::npos);
  return out;
}

// "<|system|>\n" + content, "<|user|>\n" + its parts, "<|assistant|>\n" + content; then "<|assistant|>\n".
std::string render_glm4v(Messages messages, bool add_generation_prompt) {
  std::string out = "[gMASK]<sop>";
  for (const ChatMessage& m : messages) out += concat({"<|", m.role, "|>\n", with_images(m)});
  if (add_generation_prompt) out += "<|assistant|>\n";
  return out;
}

// ---- Llama-3.1 ----

// The template's default date_string and its fixed knowledge cutoff, for the no-tools case.
constexpr std::string_view kLlama3SystemHeader =
    "<|start_header_id|>system<|end_header_id|>\n\n"
    "Cutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n\n";

std::string llama3_turn(std::string_view role, std::string_view content) {
  return concat({"<|start_header_id|>", role, "<|end_header_id|>\n\n", strip(content), "<|eot_id|>"});
}

std::string render_llama3(Messages messages, bool add_generation_prompt) {
  std::string out = "<|begin_of_text|>";
  out += kLlama3SystemHeader;
  if (messages.front().role == "system") {
    out += strip(messages.front().content);
    messages = messages.subspan(1);
  }
  out += "<|eot_id|>";
  for (const ChatMessage& m : messages) out += llama3_turn(m.role, m.content);
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// ---- ChatML (Qwen2.5) ----

constexpr std::string_view kQwenDefaultSystem = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

std::string chatml_turn(std::string_view role, std::string_view content) {
  return concat({"<|im_start|>", role, "\n", content, "<|im_end|>\n"});
}

std::string render_chatml(Messages messages, bool add_generation_prompt) {
  std::string out;
  if (messages.front().role == "system") {
    out += chatml_turn("system", messages.front().content);
    messages = messages.subspan(1);
  } else {
    out += chatml_turn("system", kQwenDefaultSystem);
  }
  for (const ChatMessage& m : messages) out += chatml_turn(m.role, m.content);
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// ---- Llama-2 ----

void check_llama2_alternation(Messages turns) {
  if (turns.empty()) throw Error(kExitUsage, "the llama2 chat format needs a user message after the system message");
  for (size_t i = 0; i < turns.size(); ++i) {
    const bool want_user = i % 2 == 0;
    if ((turns[i].role == "user") != want_user || (!want_user && turns[i].role != "assistant"))
      throw Error(kExitUsage, "the llama2 chat format needs roles that alternate user/assistant/user/... after an "
                              "optional first system message; message " +
                                  std::to_string(i) + " after it is '" + turns[i].role + "'");
  }
}

// bos + '[INST] ' + content.strip() + ' [/INST]' for users, ' ' + content.strip() + ' ' + eos for assistants;
// the system message goes inside the first user turn.
std::string render_llama2(Messages messages) {
  std::string system;
  const bool has_system = messages.front().role == "system";
  if (has_system) {
    system = messages.front().content;
    messages = messages.subspan(1);
  }
  check_llama2_alternation(messages);
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    std::string content = messages[i].content;
    if (i == 0 && has_system) content = concat({"<<SYS>>\n", system, "\n<</SYS>>\n\n", content});
    if (messages[i].role == "user")
      out += concat({"<s>[INST] ", strip(content), " [/INST]"});
    else
      out += concat({" ", strip(content), " </s>"});
  }
  return out;
}

}  // namespace

std::string render_chat(ChatFormat format, Messages messages, bool add_generation_prompt) {
  check_roles(format, messages);
  switch (format) {
    case ChatFormat::glm4: return render_glm4(messages, add_generation_prompt);
    case ChatFormat::llama3: return render_llama3(messages, add_generation_prompt);
    case ChatFormat::chatml: return render_chatml(messages, add_generation_prompt);
    case ChatFormat::llama2: return render_llama2(messages);
    case ChatFormat::glm4v: return render_glm4v(messages, add_generation_prompt);
  }
  return {};
}

}  // namespace autoglm::chat
