#pragma once
// What generate, serve and deploy share about a loaded model: its chat format.
#include <string>

#include "autoglm/chat.h"
#include "autoglm/model.h"
#include "autoglm/tokenizer.h"

namespace autoglm::cli {

// The model's own chat template: GGUF metadata, or tokenizer_config.json of a HF folder ("" if none).
std::string chat_template(const model::Model& m);

// `override_name` (glm4|llama3|chatml|llama2) when given, else the format the model's template is
// written for, else the family's usual format (with a warning saying how to choose).
chat::ChatFormat choose_chat_format(const std::string& override_name, const model::Model& m, const Tokenizer& tok);

// The tokenizer of a GGUF file or a HF folder.
Tokenizer load_tokenizer(const std::filesystem::path& model_path);

}  // namespace autoglm::cli
