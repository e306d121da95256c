// autoglm-deploy tokenize / detokenize: a model's tokenizer from the command line.
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "autoglm/exit_codes.h"
#include "autoglm/tokenizer.h"
#include "commands.h"

namespace autoglm::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::string text;
  std::string ids;
  bool json = false;
  bool bos = false;
  bool special = false;
};

// A GGUF file's vocabulary, or a Hugging Face folder's tokenizer.json.
Tokenizer load_tokenizer(const std::string& path) {
  if (std::filesystem::is_directory(path)) return Tokenizer::from_hf_folder(path);
  if (!std::filesystem::exists(path))
    throw Error(kExitUsage, fmt::format("--model: {} does not exist (give a GGUF file or a Hugging Face folder)", path));
  return Tokenizer::from_gguf_file(path);
}

// "1 2 3" or "1,2,3".
std::vector<int32_t> parse_ids(const std::string& text, size_t vocab) {
  std::vector<int32_t> ids;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    if (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t') {
      ++p;
      continue;
    }
    int32_t id = -1;
    auto [next, ec] = std::from_chars(p, end, id);
    if (ec != std::errc() || id < 0 || static_cast<size_t>(id) >= vocab ||
        (next < end && *next != ' ' && *next != ',' && *next != '\n' && *next != '\t'))
      throw Error(kExitUsage, fmt::format("--ids: '{}' is not a token id of this vocabulary (0..{})",
                                          std::string(p, std::min<size_t>(static_cast<size_t>(end - p), 20)),
                                          vocab - 1));
    ids.push_back(id);
    p = next;
  }
  return ids;
}

int run_tokenize(const TokenizeArgs& a) {
  const Tokenizer tok = load_tokenizer(a.model);
  std::vector<int32_t> ids = tok.encode(a.text, /*add_special=*/false, a.special);
  if (a.bos) {
    if (tok.bos() == kNoToken)
      throw Error(kExitUsage, "--bos: this model's vocabulary has no BOS token");
    ids.insert(ids.begin(), tok.bos());
  }
  if (a.json) {
    nlohmann::json out = nlohmann::json::array();
    for (int32_t id : ids) out.push_back(nlohmann::json{{"id", id}, {"piece", tok.token_piece(id)}});
    std::puts(out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return kExitOk;
  }
  std::string line;
  for (int32_t id : ids) line += (line.empty() ? "" : " ") + std::to_string(id);
  std::puts(line.c_str());
  return kExitOk;
}

int run_detokenize(const TokenizeArgs& a) {
  const Tokenizer tok = load_tokenizer(a.model);
  const std::string text = tok.decode(parse_ids(a.ids, tok.vocab_size()), /*render_special=*/true);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return kExitOk;
}

}  // namespace

void add_tokenize_command(CLI::App& app, Runner& run) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text, as the model's tokenizer splits it");
  cmd->add_option("--model,-m", args->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("--text,-t", args->text, "the text (nothing is added to it)")->required();
  cmd->add_flag("--json", args->json, "a JSON array of {id, piece} instead of ids separated by spaces");
  cmd->add_flag("--bos", args->bos, "put the model's BOS token first");
  cmd->add_flag("--special", args->special, "parse special-token text such as <|user|> as those tokens");
  cmd->footer("Example:\n  autoglm-deploy tokenize --model glm-4-9b-Q4_K_M.gguf --text 'Hello world'");
  cmd->callback([&run, args] { run = [args] { return run_tokenize(*args); }; });

  auto dargs = std::make_shared<TokenizeArgs>();
  CLI::App* dcmd = app.add_subcommand("detokenize", "Print the text of token ids");
  dcmd->add_option("--model,-m", dargs->model, "GGUF file or Hugging Face folder")->required();
  dcmd->add_option("--ids,-i", dargs->ids, "token ids separated by spaces or commas")->required();
  dcmd->footer("Example:\n  autoglm-deploy detokenize --model glm-4-9b-Q4_K_M.gguf --ids '9703 1879'");
  dcmd->callback([&run, dargs] { run = [dargs] { return run_detokenize(*dargs); }; });
}

}  // namespace autoglm::cli
