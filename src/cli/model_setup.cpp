#include "model_setup.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "autoglm/gguf.h"

namespace autoglm::cli {

std::string chat_template(const model::Model& m) {
  if (m.format == "gguf") return gguf::read_file_header(m.path).get_string("tokenizer.chat_template").value_or("");
  std::ifstream in(m.path / "tokenizer_config.json");
  const nlohmann::json cfg = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (cfg.is_object() && cfg.contains("chat_template") && cfg["chat_template"].is_string())
    return cfg["chat_template"].get<std::string>();
  return "";
}

chat::ChatFormat choose_chat_format(const std::string& override_name, const model::Model& m, const Tokenizer& tok) {
  if (!override_name.empty()) return chat::parse_chat_format(override_name);
  if (auto f = chat::detect_chat_format(chat_template(m))) return *f;
  // no (recognised) template: the family's usual format
  chat::ChatFormat f = chat::ChatFormat::llama2;
  if (m.config.arch == "glm4") f = chat::ChatFormat::glm4;
  if (m.config.arch == "qwen2") f = chat::ChatFormat::chatml;
  if (m.config.arch == "llama" && tok.find_token("<|start_header_id|>")) f = chat::ChatFormat::llama3;
  spdlog::warn("{}: no recognised chat template; using the {} format (choose with --chat-format or model.chat_template)",
               m.path.string(), chat::chat_format_name(f));
  return f;
}

Tokenizer load_tokenizer(const std::filesystem::path& model_path) {
  return std::filesystem::is_directory(model_path) ? Tokenizer::from_hf_folder(model_path)
                                                   : Tokenizer::from_gguf_file(model_path);
}

}  // namespace autoglm::cli
