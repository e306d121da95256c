// Chat formats: prompts written out by hand from reading each model's real Jinja template
// (../shared/fixtures/templates), and format detection on those templates.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "autoglm/chat.h"
#include "autoglm/error.h"
#include "test_support.h"

using namespace autoglm;
using namespace autoglm::chat;

namespace {

// system, user, assistant, user: the conversation every format is checked on.
std::vector<ChatMessage> conversation() {
  return {{"system", "You are a helpful assistant."},
          {"user", "What is 2+2?"},
          {"assistant", "2+2 equals 4."},
          {"user", "And 3+3?"}};
}

std::string template_text(const std::string& name) {
  return test::read_file(test::fixtures_dir() / "templates" / name);
}

}  // namespace

TEST(ChatFormat, ParseAndName) {
  for (ChatFormat f : {ChatFormat::glm4, ChatFormat::llama3, ChatFormat::chatml, ChatFormat::llama2, ChatFormat::glm4v})
    EXPECT_EQ(parse_chat_format(chat_format_name(f)), f);
  EXPECT_EQ(chat_format_name(ChatFormat::chatml), "chatml");
  EXPECT_EQ(parse_chat_format("glm4"), ChatFormat::glm4);
  try {
    parse_chat_format("qwen");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kExitUsage);
    EXPECT_NE(std::string(e.what()).find("'qwen'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("glm4, glm4v, llama3, chatml or llama2"), std::string::npos) << e.what();
  }
}

// GLM-4.6: [gMASK]<sop>, no separators between turns, an assistant turn in history gets an empty
// <think></think> and its content after "\n"; the generation prompt is "<|assistant|>" alone.
TEST(ChatRender, Glm4) {
  const auto messages = conversation();
  const std::string body =
      "[gMASK]<sop>"
      "<|system|>\nYou are a helpful assistant."
      "<|user|>\nWhat is 2+2?"
      "<|assistant|>\n<think></think>\n2+2 equals 4."
      "<|user|>\nAnd 3+3?";
  EXPECT_EQ(render_chat(ChatFormat::glm4, messages, true), body + "<|assistant|>");
  EXPECT_EQ(render_chat(ChatFormat::glm4, messages, false), body);
}

// The template strips an assistant message, drops reasoning before the last user turn and keeps it
// (stripped) after it.
TEST(ChatRender, Glm4AssistantThinking) {
  const std::vector<ChatMessage> history = {{"user", "Hi"},
                                            {"assistant", "<think>\nold reasoning\n</think>\n\n  Hello!  \n"},
                                            {"user", "Bye"},
                                            {"assistant", "<think>\n new reasoning \n</think>\nGoodbye."}};
  EXPECT_EQ(render_chat(ChatFormat::glm4, history, false),
            "[gMASK]<sop><|user|>\nHi<|assistant|>\n<think></think>\nHello!"
            "<|user|>\nBye<|assistant|>\n<think>new reasoning</think>\nGoodbye.");
  const std::vector<ChatMessage> empty_answer = {{"user", "Hi"}, {"assistant", "  \n"}};
  EXPECT_EQ(render_chat(ChatFormat::glm4, empty_answer, false),
            "[gMASK]<sop><|user|>\nHi<|assistant|>\n<think></think>");
}

// Llama-3.1: <|begin_of_text|>, a system block that always carries the knowledge cutoff and the
// template's default date, contents trimmed.
TEST(ChatRender, Llama3) {
  const auto messages = conversation();
  const std::string body =
      "<|begin_of_text|>"
      "<|start_header_id|>system<|end_header_id|>\n\n"
      "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
      "You are a helpful assistant.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n2+2 equals 4.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>";
  EXPECT_EQ(render_chat(ChatFormat::llama3, messages, true),
            body + "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render_chat(ChatFormat::llama3, messages, false), body);
}

TEST(ChatRender, Llama3WithoutSystemTrims) {
  const std::vector<ChatMessage> messages = {{"user", "  Hi \n"}};
  EXPECT_EQ(render_chat(ChatFormat::llama3, messages, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Qwen2.5: <|im_start|>role\n…<|im_end|>\n, contents as given.
TEST(ChatRender, ChatMl) {
  const auto messages = conversation();
  const std::string body =
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
      "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
      "<|im_start|>assistant\n2+2 equals 4.<|im_end|>\n"
      "<|im_start|>user\nAnd 3+3?<|im_end|>\n";
  EXPECT_EQ(render_chat(ChatFormat::chatml, messages, true), body + "<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(ChatFormat::chatml, messages, false), body);
}

TEST(ChatRender, ChatMlDefaultSystem) {
  const std::vector<ChatMessage> messages = {{"user", "Hi"}};
  EXPECT_EQ(render_chat(ChatFormat::chatml, messages, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

// Llama-2 chat: the system prompt inside the first [INST], each exchange closed by </s>.
TEST(ChatRender, Llama2) {
  const auto messages = conversation();
  const std::string expected =
      "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nWhat is 2+2? [/INST]"
      " 2+2 equals 4. </s>"
      "<s>[INST] And 3+3? [/INST]";
  EXPECT_EQ(render_chat(ChatFormat::llama2, messages, true), expected);
  EXPECT_EQ(render_chat(ChatFormat::llama2, messages, false), expected);
  const std::vector<ChatMessage> no_system = {{"user", " Hi "}};
  EXPECT_EQ(render_chat(ChatFormat::llama2, no_system, true), "<s>[INST] Hi [/INST]");
}

TEST(ChatRender, Llama2RolesMustAlternate) {
  const std::vector<ChatMessage> two_users = {{"system", "S"}, {"user", "a"}, {"user", "b"}};
  EXPECT_THROW(render_chat(ChatFormat::llama2, two_users, true), Error);
  const std::vector<ChatMessage> assistant_first = {{"assistant", "a"}, {"user", "b"}};
  EXPECT_THROW(render_chat(ChatFormat::llama2, assistant_first, true), Error);
  const std::vector<ChatMessage> only_system = {{"system", "S"}};
  EXPECT_THROW(render_chat(ChatFormat::llama2, only_system, true), Error);
}

TEST(ChatRender, BadRolesAndEmptyChats) {
  const std::vector<ChatMessage> tool = {{"user", "Hi"}, {"tool", "42"}};
  for (ChatFormat f : {ChatFormat::glm4, ChatFormat::llama3, ChatFormat::chatml, ChatFormat::llama2}) {
    try {
      render_chat(f, tool, true);
      FAIL() << "expected an error for " << chat_format_name(f);
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_EQ(e.code(), kExitUsage);
      EXPECT_NE(message.find("message 1: role 'tool'"), std::string::npos) << message;
      EXPECT_NE(message.find(chat_format_name(f)), std::string::npos) << message;
    }
    EXPECT_THROW(render_chat(f, std::vector<ChatMessage>{}, true), Error);
  }
}

TEST(ChatFormat, EndOfTurnTokensAndBos) {
  using V = std::vector<std::string>;
  EXPECT_EQ(end_of_turn_tokens(ChatFormat::glm4), (V{"<|user|>", "<|observation|>", "<|endoftext|>"}));
  EXPECT_EQ(end_of_turn_tokens(ChatFormat::llama3), (V{"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"}));
  EXPECT_EQ(end_of_turn_tokens(ChatFormat::chatml), (V{"<|im_end|>", "<|endoftext|>"}));
  EXPECT_EQ(end_of_turn_tokens(ChatFormat::llama2), (V{"</s>"}));
  const std::vector<ChatMessage> hi = {{"user", "Hi"}};
  for (ChatFormat f : {ChatFormat::glm4, ChatFormat::llama3, ChatFormat::chatml, ChatFormat::llama2}) {
    const std::string prompt = render_chat(f, hi, true);
    EXPECT_TRUE(prompt.starts_with(prompt_prefix(f))) << chat_format_name(f);
    EXPECT_EQ(prompt_includes_bos(f), !prompt_prefix(f).empty());
  }
  EXPECT_TRUE(prompt_includes_bos(ChatFormat::llama3));
  EXPECT_FALSE(prompt_includes_bos(ChatFormat::chatml));
}

TEST(ChatDetect, RealTemplates) {
  AUTOGLM_REQUIRE_FIXTURES();
  EXPECT_EQ(detect_chat_format(template_text("GLM-4.6.jinja")), ChatFormat::glm4);
  EXPECT_EQ(detect_chat_format(template_text("meta-llama-Llama-3.1-8B-Instruct.jinja")), ChatFormat::llama3);
  EXPECT_EQ(detect_chat_format(template_text("Qwen-Qwen2.5-7B-Instruct.jinja")), ChatFormat::chatml);
  const auto config = nlohmann::json::parse(
      test::read_file(test::fixtures_dir() / "hf" / "tiny-glm4-hf" / "tokenizer_config.json"));
  EXPECT_EQ(detect_chat_format(config.at("chat_template").get<std::string>()), ChatFormat::glm4);
}

// The Llama-2 chat template as published in meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json.
TEST(ChatDetect, Llama2AndUnknown) {
  const std::string llama2 =
      "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
      "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
      "{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}"
      "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}"
      "{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + "
      "'[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + "
      "content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
  EXPECT_EQ(detect_chat_format(llama2), ChatFormat::llama2);
  EXPECT_EQ(detect_chat_format("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"), std::nullopt);
  EXPECT_EQ(detect_chat_format(""), std::nullopt);
  // Mistral's [INST] format has no <<SYS>> block: not Llama-2.
  EXPECT_EQ(detect_chat_format("{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}"),
            std::nullopt);
}

// GLM-4.1V: every prompt of the glm4v fixture renders exactly as transformers rendered it with the
// model's own template; image parts stand where they were sent.
TEST(ChatRender, Glm4vMatchesTheFixturePrompts) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto index = nlohmann::json::parse(test::read_file(test::fixtures_dir() / "glm4v" / "refs" / "index.json"));
  for (const auto& [name, prompt] : index["prompts"].items()) {
    std::vector<ChatMessage> messages;
    for (const auto& m : prompt["messages"]) {
      ChatMessage message{m["role"].get<std::string>(), ""};
      if (m["content"].is_string()) {
        message.content = m["content"].get<std::string>();
      } else {
        for (const auto& part : m["content"]) {
          if (part["type"] == "image") message.images.push_back(message.content.size());
          else message.content += part["text"].get<std::string>();
        }
      }
      messages.push_back(message);
    }
    EXPECT_EQ(render_chat(ChatFormat::glm4v, messages, true), prompt["text"].get<std::string>()) << name;
  }
  EXPECT_EQ(detect_chat_format(test::read_file(test::fixtures_dir() / "glm4v" / "tiny-glm4v-hf" / "chat_template.jinja")),
            ChatFormat::glm4v);
  EXPECT_TRUE(reads_images(ChatFormat::glm4v));
}

TEST(ChatRender, ImagesAreRefusedWhereTheyCannotBeRead) {
  std::vector<ChatMessage> with_image{{"user", "What is this?", {0}}};
  for (ChatFormat f : {ChatFormat::glm4, ChatFormat::llama3, ChatFormat::chatml, ChatFormat::llama2}) {
    try {
      render_chat(f, with_image, true);
      FAIL() << "expected an error for " << chat_format_name(f);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("reads text only"), std::string::npos) << e.what();
    }
  }
  std::vector<ChatMessage> system_image{{"system", "look", {0}}, {"user", "hi"}};
  EXPECT_THROW(render_chat(ChatFormat::glm4v, system_image, true), Error);
  EXPECT_EQ(render_chat(ChatFormat::glm4v, with_image, false),
            "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>What is this?");
}
