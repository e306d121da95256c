// autoglm-deploy generate: text in, streamed text out, through the model's tokenizer and chat format.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fmt/format.h>
#include <random>
#include <spdlog/spdlog.h>

#include "autoglm/chat.h"
#include "autoglm/engine.h"
#include "autoglm/exit_codes.h"
#include "autoglm/quantize.h"
#include "autoglm/sampling.h"
#include "autoglm/tokenizer.h"
#include "autoglm/vision.h"
#include "commands.h"
#include "model_setup.h"

namespace autoglm::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct GenerateArgs {
  std::string model, prompt, chat, system, chat_format, quantization, mmproj;
  std::vector<std::string> stop, images;
  int max_tokens = 256;
  uint64_t min_pixels = 0, max_pixels = 0;
  int threads = 0;
  sampling::SamplingParams sampling{0.8f, 40, 0.95f, 0.05f, 1.0f, 0.0f, 0.0f, 0, 64};
  bool seed_given = false;
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

chat::ChatFormat choose_format(const GenerateArgs& a, const model::Model& m, const Tokenizer& tok) {
  return choose_chat_format(a.chat_format, m, tok);
}

// --prompt: the text as is (BOS if the vocabulary asks for one); --chat: rendered in `format`.
std::vector<int32_t> prompt_tokens(const GenerateArgs& a, const Tokenizer& tok, std::optional<chat::ChatFormat> format) {
  if (!format) return tok.encode(a.prompt, /*add_special=*/true, /*parse_special=*/false);
  std::vector<chat::ChatMessage> messages;
  if (!a.system.empty()) messages.push_back({"system", a.system});
  messages.push_back({"user", a.chat});
  messages.back().images.assign(a.images.size(), 0);  // the images first, then the text
  const std::string text = chat::render_chat(*format, messages, /*add_generation_prompt=*/true);
  return tok.encode(text, /*add_special=*/!chat::prompt_includes_bos(*format), /*parse_special=*/true);
}

// Token ids that end the answer: the vocabulary's EOS / end-of-turn ids and the format's.
std::vector<int32_t> stop_ids(const Tokenizer& tok, std::optional<chat::ChatFormat> format) {
  std::vector<int32_t> ids = tok.end_of_turn_ids();
  if (tok.eos() != kNoToken) ids.push_back(tok.eos());
  if (format)
    for (const std::string& t : chat::end_of_turn_tokens(*format))
      if (auto id = tok.find_token(t)) ids.push_back(*id);
  return ids;
}

// Streams text to stdout as the stop matcher releases it.
void emit(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

int run_generate(GenerateArgs a) {
  if (a.prompt.empty() == a.chat.empty()) throw Error(kExitUsage, "give exactly one of --prompt TEXT or --chat TEXT");
  if (!a.system.empty() && a.chat.empty()) throw Error(kExitUsage, "--system goes with --chat");
  if (a.max_tokens < 1) throw Error(kExitUsage, "--max-tokens must be at least 1");
  if (!a.seed_given) a.sampling.seed = std::random_device{}();
  sampling::Sampler sampler(a.sampling);  // validates the sampling flags

  model::LoadOptions load;
  if (!a.quantization.empty() && a.quantization != "auto") {
    load.quantize_to = model::parse_quantize_type(a.quantization);
    if (!load.quantize_to) throw Error(kExitUsage, fmt::format("--quantization: unknown type '{}'", a.quantization));
  }
  if (!a.images.empty() && a.chat.empty()) throw Error(kExitUsage, "--image goes with --chat");
  const auto m = model::Model::load(a.model, load);
  const Tokenizer tok = load_tokenizer(a.model);
  VisionSetup vision = load_vision(a.model, a.mmproj, load, tok);
  if (vision.model) set_pixel_limits(vision, a.min_pixels, a.max_pixels);
  const ImageFiles images = read_images(a.images, vision);
  std::optional<chat::ChatFormat> format;
  if (!a.chat.empty()) format = choose_format(a, *m, tok);
  if (format && vision.model) format = vision_chat_format(*format, a.chat_format);
  vision::MultimodalPrompt mp;
  mp.tokens = prompt_tokens(a, tok, format);
  if (mp.tokens.empty()) throw Error(kExitUsage, "the prompt has no tokens");
  if (vision.model) mp = vision::expand_prompt(mp.tokens, vision.image_token, images.grids, images.hashes, vision.model->config.merge);
  const std::vector<int32_t>& prompt = mp.tokens;
  const size_t total = prompt.size() + static_cast<size_t>(a.max_tokens);
  if (m->config.context_length && total > m->config.context_length)
    throw Error(kExitUsage, fmt::format("{} prompt tokens + --max-tokens {} exceed the model's context of {}",
                                        prompt.size(), a.max_tokens, m->config.context_length));

  constexpr size_t kBlock = 16;
  engine::KvCache cache(m->config, (total + kBlock - 1) / kBlock, kBlock);
  engine::Engine engine(*m, cache, {a.threads, 512});
  engine::KvCache::Sequence seq;
  cache.reserve(seq, total);

  // the images through the vision tower, then the prompt in steps of up to 512 tokens; the logits of its last token
  std::vector<float> logits;
  const auto t0 = Clock::now();
  vision::PromptEmbeddings embeddings;
  if (!mp.images.empty()) {
    vision::VisionEncoder encoder(*vision.model, engine.pool());
    embeddings = vision::embed_images(encoder, mp, images.patches, images.grids);
    std::fprintf(stderr, "images: %zu (%zu tokens) encoded in %.2f s\n", mp.images.size(), mp.image_tokens(), seconds_since(t0));
  }
  for (size_t i = 0; i < prompt.size(); i += 512) {
    const size_t n = std::min<size_t>(512, prompt.size() - i);
    engine::StepItem item{&seq, std::span(prompt).subspan(i, n), false};
    if (!embeddings.rows.empty()) item.embeddings = std::span<const float* const>(embeddings.rows).subspan(i, n);
    if (!mp.positions.positions.empty()) item.rope_positions = std::span(mp.positions.positions).subspan(i, n);
    engine.step(std::span(&item, 1), logits);
  }
  const double prompt_s = seconds_since(t0);

  const std::vector<int32_t> enders = stop_ids(tok, format);
  std::vector<int32_t> history = prompt;
  Utf8StreamDecoder utf8;
  sampling::StopMatcher stops(a.stop);
  std::string reason = "length";
  const auto t1 = Clock::now();
  for (;;) {
    const int32_t id = sampler.sample(logits, history);
    if (std::find(enders.begin(), enders.end(), id) != enders.end()) {
      reason = "end of turn";
      break;
    }
    history.push_back(id);
    const sampling::StopMatcher::Result r = stops.feed(utf8.push(tok.is_special(id) ? "" : tok.token_piece(id)));
    emit(r.text);
    if (r.stopped) {
      reason = "stop string";
      break;
    }
    if (history.size() == total) break;  // --max-tokens
    engine::StepItem item{&seq, std::span(&history.back(), 1), false};
    item.rope_offset = mp.positions.next_offset;
    engine.step(std::span(&item, 1), logits);
  }
  if (!stops.stopped()) emit(stops.feed(utf8.flush()).text + stops.flush());
  const size_t generated = history.size() - prompt.size();
  const double gen_s = seconds_since(t1);
  std::fputc('\n', stdout);
  std::fprintf(stderr, "prompt: %zu tokens, %.1f tokens/s | generated: %zu tokens, %.1f tokens/s | stop: %s | seed %llu\n",
               prompt.size(), static_cast<double>(prompt.size()) / prompt_s, generated,
               static_cast<double>(generated) / std::max(gen_s, 1e-9), reason.c_str(), static_cast<unsigned long long>(a.sampling.seed));
  return kExitOk;
}

}  // namespace

void add_generate_command(CLI::App& app, Runner& run) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text with a model, streamed to stdout");
  cmd->add_option("--model,-m", a->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("--prompt,-p", a->prompt, "raw text to continue (BOS added if the model wants one)");
  cmd->add_option("--chat,-c", a->chat, "a user message, sent through the model's chat format");
  cmd->add_option("--system", a->system, "a system message (with --chat)");
  cmd->add_option("--image", a->images, "a PNG or JPEG the user message shows, before its text (repeatable; vision models)");
  cmd->add_option("--mmproj", a->mmproj, "llama.cpp's vision projector GGUF for a text GGUF (GLM-4.1V)");
  cmd->add_option("--min-image-pixels", a->min_pixels, "images resized to at least this many pixels (default: the processor's)");
  cmd->add_option("--max-image-pixels", a->max_pixels, "images resized to at most this many pixels (default: the processor's)");
  cmd->add_option("--chat-format", a->chat_format, "glm4, glm4v, llama3, chatml or llama2 (default: from the model's template)");
  cmd->add_option("--max-tokens,-n", a->max_tokens, "most tokens to generate (default 256)");
  cmd->add_option("--temperature", a->sampling.temperature, "0 = greedy (default 0.8)");
  cmd->add_option("--top-k", a->sampling.top_k, "0 = off (default 40)");
  cmd->add_option("--top-p", a->sampling.top_p, "1 = off (default 0.95)");
  cmd->add_option("--min-p", a->sampling.min_p, "0 = off (default 0.05)");
  cmd->add_option("--repeat-penalty", a->sampling.repetition_penalty, "1 = off (default)");
  cmd->add_option("--presence-penalty", a->sampling.presence_penalty, "default 0");
  cmd->add_option("--frequency-penalty", a->sampling.frequency_penalty, "default 0");
  cmd->add_option_function<uint64_t>("--seed", [a](uint64_t s) { a->sampling.seed = s, a->seed_given = true; },
                                     "same seed, same text (default: random, printed on stderr)");
  cmd->add_option("--stop", a->stop, "stop before this text (repeatable)");
  cmd->add_option("--threads,-t", a->threads, "CPU threads (default: all)");
  cmd->add_option("--quantization", a->quantization, "for HF weights: quantize at load to q8_0, q4_0, q4_k");
  cmd->footer("Examples:\n"
              "  autoglm-deploy generate -m glm-4-9b-Q4_K_M.gguf --chat 'Why is the sky blue?'\n"
              "  autoglm-deploy generate -m GLM-4-9B-0414/ --quantization q8_0 --prompt 'Once upon a time' -n 64 --seed 1\n"
              "  autoglm-deploy generate -m AutoGLM-Phone-9B/ --quantization q8_0 --image screen.png --chat 'What is on this screen?'");
  cmd->callback([&run, a] { run = [a] { return run_generate(*a); }; });
}

}  // namespace autoglm::cli
