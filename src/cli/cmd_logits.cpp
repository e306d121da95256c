// autoglm-deploy logits: the logits at every position of exactly these token ids, as .npy.
#include <charconv>
#include <chrono>
#include <fmt/format.h>
#include <memory>
#include <spdlog/spdlog.h>

#include "autoglm/engine.h"
#include "autoglm/exit_codes.h"
#include "autoglm/npy.h"
#include "autoglm/quantize.h"
#include "autoglm/vision.h"
#include "commands.h"
#include "model_setup.h"

namespace autoglm::cli {
namespace {

struct LogitsArgs {
  std::string model;
  std::string tokens;
  std::string out;
  std::string isa;
  std::string quantization;
  std::string mmproj;
  std::vector<std::string> images;
  uint64_t min_pixels = 0, max_pixels = 0;
  int threads = 0;
  size_t block_size = 16;
};

std::vector<int32_t> parse_tokens(const std::string& text) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    int32_t id = 0;
    const char* first = text.data() + pos;
    const char* last = text.data() + comma;
    while (first < last && *first == ' ') ++first;
    auto [ptr, ec] = std::from_chars(first, last, id);
    if (ec != std::errc() || ptr != last || id < 0)
      throw Error(kExitUsage, fmt::format("--tokens: '{}' is not a token id (give ids like 1,2,3)",
                                          text.substr(pos, comma - pos)));
    ids.push_back(id);
    pos = comma + 1;
  }
  return ids;
}

void select_isa(const std::string& name) {
  if (name.empty()) return;
  for (kernels::Isa isa : {kernels::Isa::scalar, kernels::Isa::avx2, kernels::Isa::avx512}) {
    if (name != kernels::isa_name(isa)) continue;
    if (static_cast<int>(isa) > static_cast<int>(kernels::detected_isa()))
      throw Error(kExitUsage, fmt::format("--isa {}: this CPU (or build) only has {}", name,
                                          kernels::isa_name(kernels::detected_isa())));
    kernels::set_isa(isa);
    return;
  }
  throw Error(kExitUsage, fmt::format("--isa: unknown '{}' (use scalar, avx2 or avx512)", name));
}

// --quantization applies to Hugging Face weights; a GGUF file is used as stored.
model::LoadOptions load_options(const std::string& name) {
  model::LoadOptions o;
  if (name.empty() || name == "auto") return o;
  o.quantize_to = model::parse_quantize_type(name);
  if (!o.quantize_to)
    throw Error(kExitUsage, fmt::format("--quantization: unknown type '{}' (use auto, f16, bf16, q8_0, q4_0, q4_k)", name));
  return o;
}

int run_logits(const LogitsArgs& a) {
  select_isa(a.isa);
  const model::LoadOptions options = load_options(a.quantization);
  const auto model = model::Model::load(a.model, options);
  vision::MultimodalPrompt mp;
  mp.tokens = parse_tokens(a.tokens);
  VisionSetup vision;
  ImageFiles images;
  if (!a.images.empty()) {  // each image's one placeholder id among the tokens becomes its tokens
    const Tokenizer tok = load_tokenizer(a.model);
    vision = load_vision(a.model, a.mmproj, options, tok);
    if (vision.model) set_pixel_limits(vision, a.min_pixels, a.max_pixels);
    images = read_images(a.images, vision);
    mp = vision::expand_prompt(mp.tokens, vision.image_token, images.grids, images.hashes, vision.model->config.merge);
  }
  const std::vector<int32_t>& tokens = mp.tokens;
  const model::ArchConfig& c = model->config;
  const size_t blocks = (tokens.size() + a.block_size - 1) / a.block_size;
  engine::KvCache cache(c, blocks, a.block_size);
  engine::Engine engine(*model, cache, {a.threads, 512});
  engine::KvCache::Sequence seq;
  const auto start = std::chrono::steady_clock::now();
  vision::PromptEmbeddings embeddings;
  if (!mp.images.empty()) {
    vision::VisionEncoder encoder(*vision.model, engine.pool());
    embeddings = vision::embed_images(encoder, mp, images.patches, images.grids);
  }
  const std::vector<float> logits = engine.eval_all_logits(seq, tokens, embeddings.rows, mp.positions.positions);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const uint64_t shape[2] = {tokens.size(), c.vocab_size};
  npy::write_f32(a.out, logits, shape);
  spdlog::info("{} tokens through {} ({} layers, {}) in {:.3f} s with {} threads, {} kernels -> {}", tokens.size(),
               model->path.filename().string(), c.n_layers, model->weight_type, secs, engine.pool().size(),
               kernels::isa_name(kernels::active_isa()), a.out);
  return kExitOk;
}

}  // namespace

void add_logits_command(CLI::App& app, Runner& run) {
  CLI::App* cmd = app.add_subcommand("logits", "Write the logits at every position of the given token ids (.npy)");
  cmd->footer(
      "Examples:\n"
      "  autoglm-deploy logits --model tiny-glm4-Q8_0.gguf --tokens 1,5,9,300 --out logits.npy\n"
      "  autoglm-deploy logits --model m.gguf --tokens 1,2,3 --out l.npy --isa scalar --threads 1\n\n"
      "  autoglm-deploy logits --model GLM-4.1V/ --tokens 2050,2052,2055,...,2058,2062,2059,... --image a.png --out l.npy\n\n"
      "Evaluates exactly these ids (no BOS added). Output: float32 [n_tokens, n_vocab]. With --image, each\n"
      "<|image|> id among them stands for the next image and is expanded to its tokens (the rows cover them).");
  auto a = std::make_shared<LogitsArgs>();
  cmd->add_option("--model,-m", a->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("--quantization,-q", a->quantization,
                  "For a Hugging Face folder: auto (as stored), f16, bf16, q8_0, q4_0, q4_k — quantized while loading");
  cmd->add_option("--tokens", a->tokens, "Comma-separated token ids")->required();
  cmd->add_option("--out,-o", a->out, "Output .npy file")->required();
  cmd->add_option("--image", a->images, "PNG or JPEG for each <|image|> id, in order (repeatable; vision models)");
  cmd->add_option("--mmproj", a->mmproj, "llama.cpp's vision projector GGUF for a text GGUF (GLM-4.1V)");
  cmd->add_option("--min-image-pixels", a->min_pixels, "images resized to at least this many pixels (default: the processor's)");
  cmd->add_option("--max-image-pixels", a->max_pixels, "images resized to at most this many pixels (default: the processor's)");
  cmd->add_option("--threads,-t", a->threads, "CPU threads (default: all)");
  cmd->add_option("--isa", a->isa, "Kernel path: scalar, avx2 or avx512 (default: the fastest available)");
  cmd->add_option("--kv-block-size", a->block_size, "Positions per KV cache block")
      ->check(CLI::Range(size_t{1}, size_t{4096}))->capture_default_str();
  cmd->callback([&run, a] { run = [a] { return run_logits(*a); }; });
}

}  // namespace autoglm::cli
