#pragma once
// Chat formats: a conversation rendered as the prompt text the model was trained on, exactly as the
// model's own Jinja chat template renders plain-text messages (no tools), so that no Jinja engine
// is needed at serving time. Works on text: the tokenizer turns the special-token texts into ids.
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace autoglm::chat {

enum class ChatFormat {
  glm4,    // GLM-4 / GLM-4.6 / AutoGLM: [gMASK]<sop><|system|>\n…<|user|>\n…<|assistant|>
  llama3,  // Llama-3.1 Instruct: <|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>
  chatml,  // Qwen2.5 Instruct: <|im_start|>role\n…<|im_end|>\n
  llama2,  // Llama-2 chat: <s>[INST] <<SYS>>\n…\n<</SYS>>\n\n… [/INST] … </s>
  glm4v,   // GLM-4.1V / AutoGLM-Phone-9B: [gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>…<|assistant|>\n
};

// "glm4" | "llama3" | "chatml" | "llama2" (a config override); anything else throws autoglm::Error.
ChatFormat parse_chat_format(std::string_view name);
std::string_view chat_format_name(ChatFormat format);

// The format a model's own chat template (tokenizer_config.json "chat_template", GGUF
// tokenizer.chat_template) is written for, recognised by its special tokens; nullopt when unknown.
std::optional<ChatFormat> detect_chat_format(std::string_view jinja_template);

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
  // Where the message's image parts stand: byte offsets into content, in order (user messages of
  // vision formats only; any other format refuses a message with images).
  std::vector<size_t> images = {};
};

// The text an image part renders as in a vision format: one image placeholder the server expands
// into the image's tokens.
inline constexpr std::string_view kImagePart = "<|begin_of_image|><|image|><|end_of_image|>";
inline constexpr std::string_view kImageToken = "<|image|>";
bool reads_images(ChatFormat format);

// The prompt for `messages`, ending with the assistant header when `add_generation_prompt`.
// Throws autoglm::Error for an empty conversation, an unknown role, (Llama-2) roles that do not
// alternate user/assistant after an optional first system message, or images the format cannot hold.
//   glm4:   the GLM-4.6 template; an assistant turn in history renders as
//           "<|assistant|>\n<think></think>\n" + trimmed content (its reasoning is kept only after the
//           last user turn); the generation prompt is "<|assistant|>" (the model writes the "\n").
//   llama3: the Llama-3.1 template; always a system block with "Cutting Knowledge Date: December 2023"
//           and "Today Date: 26 Jul 2024" (the template's default date); contents are trimmed.
//   chatml: the Qwen2.5 template; without a first system message it adds "You are Qwen, created by
//           Alibaba Cloud. You are a helpful assistant.".
//   llama2: the Llama-2 chat template; add_generation_prompt changes nothing (a prompt always ends
//           with "[/INST]" after a user turn).
//   glm4v:  the GLM-4.1V template: "<|system|>\n" / "<|user|>\n" / "<|assistant|>\n" + content as
//           given (no trimming, no reasoning split), each image part as kImagePart where it stands;
//           the generation prompt is "<|assistant|>\n".
std::string render_chat(ChatFormat format, std::span<const ChatMessage> messages, bool add_generation_prompt);

// The special-token texts that end an assistant turn: generation stops when one is sampled.
std::vector<std::string> end_of_turn_tokens(ChatFormat format);

// The special-token text every rendered prompt begins with and that takes the place of BOS
// ("[gMASK]<sop>", "<|begin_of_text|>", "<s>"; empty for ChatML, which has none). When it is not
// empty the caller must not add a BOS token when tokenizing the prompt.
std::string_view prompt_prefix(ChatFormat format);
bool prompt_includes_bos(ChatFormat format);

}  // namespace autoglm::chat
