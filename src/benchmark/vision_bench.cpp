// bench --image: how long a screenshot takes, stage by stage, and the time to first token of an
// agent step that carries it.
#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <random>

#include "autoglm/benchmark.h"
#include "autoglm/engine.h"
#include "autoglm/error.h"

namespace autoglm::benchmark {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

double matrix_flop(const model::Matrix& w, double rows_in) { return 2.0 * static_cast<double>(w.rows) * static_cast<double>(w.cols) * rows_in; }

// Multiply-adds of the tower on n patches in frames of n / t: every product, and attention's two
// products per head over the whole frame.
double tower_gflop(const vision::VisionModel& v, vision::PatchGrid g) {
  const double n = static_cast<double>(g.n_patches()), merged = n / (v.config.merge * v.config.merge);
  const double frame = n / g.t;
  double flop = matrix_flop(v.patch_embed, n);
  for (const vision::VisionBlock& b : v.blocks) {
    for (const model::Matrix* w : {&b.qkv, &b.proj, &b.gate, &b.up, &b.down}) flop += matrix_flop(*w, n);
    flop += 4.0 * n * frame * v.config.d_model;
  }
  for (const model::Matrix* w : {&v.downsample, &v.merger_proj, &v.merger_gate, &v.merger_up, &v.merger_down})
    flop += matrix_flop(*w, merged);
  return flop / 1e9;
}

std::vector<int32_t> random_text(size_t n, uint32_t vocab, std::mt19937& rng) {
  // ordinary ids only: the top of a GLM vocabulary holds the special tokens
  std::uniform_int_distribution<int32_t> pick(100, static_cast<int32_t>(std::min<uint32_t>(vocab, 50000) * 9 / 10));
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = pick(rng);
  return ids;
}

}  // namespace

VisionReport run_vision(const model::Model& m, const vision::VisionModel& tower, const image::ProcessorConfig& processor,
                        int32_t image_token, std::span<const uint8_t> image_bytes, const std::string& model_name,
                        const std::string& image_name, const VisionOptions& options) {
  if (options.repetitions < 1) throw Error(kExitUsage, "bench: --repetitions must be at least 1");
  VisionReport r;
  r.model = model_name;
  r.image = image_name;
  r.weight_type = tower.weight_type;
  r.isa = kernels::isa_name(kernels::active_isa());

  std::mt19937 rng(20261203);
  std::vector<int32_t> ids = random_text(options.text_tokens, m.config.vocab_size, rng);
  ids.push_back(image_token);
  const std::vector<int32_t> tail = random_text(options.tail_tokens, m.config.vocab_size, rng);
  ids.insert(ids.end(), tail.begin(), tail.end());

  // the prompt's length is known once the image is: the KV cache is sized after a first decode
  const image::Patches first = image::preprocess(image::decode(image_bytes), processor);
  const vision::PatchGrid grid{first.t, first.h, first.w};
  const size_t total = ids.size() - 1 + first.n_tokens(tower.config.merge) + 1;
  constexpr size_t kBlock = 16, kChunk = 512;
  engine::KvCache cache(m.config, (total + kBlock - 1) / kBlock, kBlock);
  engine::Engine engine(m, cache, {options.threads, kChunk});
  vision::VisionEncoder encoder(tower, engine.pool());
  r.threads = static_cast<int>(engine.pool().size());

  std::vector<float> logits;
  for (int rep = -1; rep < options.repetitions; ++rep) {  // rep -1: the warm-up
    const auto start = Clock::now();
    const image::Rgb8 rgb = image::decode(image_bytes);
    const double decode_ms = ms_since(start);
    const auto t1 = Clock::now();
    const image::Patches p = image::preprocess(rgb, processor);
    const double preprocess_ms = ms_since(t1);
    const auto t2 = Clock::now();
    const uint64_t hash = vision::image_hash(p.values.data(), grid, tower.config.patch_dim());
    const vision::MultimodalPrompt mp = vision::expand_prompt(ids, image_token, std::span(&grid, 1), std::span(&hash, 1),
                                                              tower.config.merge);
    const vision::PromptEmbeddings emb = vision::embed_images(encoder, mp, std::span(&p.values, 1), std::span(&grid, 1));
    const double encode_ms = ms_since(t2);
    if (options.ttft) {
      engine::KvCache::Sequence seq;
      cache.reserve(seq, mp.tokens.size());
      for (size_t i = 0; i < mp.tokens.size(); i += kChunk) {
        const size_t n = std::min(kChunk, mp.tokens.size() - i);
        engine::StepItem item{&seq, std::span(mp.tokens).subspan(i, n), false};
        item.embeddings = std::span<const float* const>(emb.rows).subspan(i, n);
        item.rope_positions = std::span(mp.positions.positions).subspan(i, n);
        engine.step(std::span(&item, 1), logits);
      }
      (void)std::max_element(logits.begin(), logits.end());  // the first token, greedily
      cache.release(seq);
      if (rep >= 0) r.ttft_ms.push_back(ms_since(start));
    }
    if (rep < 0) continue;
    r.decode_ms.push_back(decode_ms);
    r.preprocess_ms.push_back(preprocess_ms);
    r.encode_ms.push_back(encode_ms);
    if (rep == 0) {
      r.width = rgb.width;
      r.height = rgb.height;
      r.resized = p.resized;
      r.patches = p.n_patches();
      r.image_tokens = mp.image_tokens();
      r.prompt_tokens = mp.tokens.size();
    }
  }
  r.gflop = tower_gflop(tower, grid);
  return r;
}

namespace {

std::string ms_cell(const std::vector<double>& v) {
  if (v.empty()) return "-";
  return fmt::format("{:.1f} ± {:.1f}", mean(v), stddev(v));
}

std::string vision_json(const VisionReport& r) {
  nlohmann::json j{{"model", r.model}, {"image", r.image}, {"weight_type", r.weight_type}, {"isa", r.isa},
                   {"threads", r.threads}, {"width", r.width}, {"height", r.height},
                   {"resized", {r.resized.width, r.resized.height}}, {"patches", r.patches},
                   {"image_tokens", r.image_tokens}, {"prompt_tokens", r.prompt_tokens}, {"gflop", r.gflop},
                   {"decode_ms", r.decode_ms}, {"preprocess_ms", r.preprocess_ms}, {"encode_ms", r.encode_ms},
                   {"ttft_ms", r.ttft_ms}};
  if (!r.encode_ms.empty()) j["encode_gflops"] = r.gflop / (mean(r.encode_ms) / 1e3);
  return j.dump(2) + "\n";
}

}  // namespace

std::string render_vision(const VisionReport& r, Format format) {
  if (format == Format::json) return vision_json(r);
  const double gflops = r.encode_ms.empty() ? 0 : r.gflop / (mean(r.encode_ms) / 1e3);
  const std::string head = fmt::format(
      "{} ({} tower, {} threads, {}): {} {}x{} -> {}x{}, {} patches, {} image tokens; agent prompt {} tokens\n",
      r.model, r.weight_type, r.threads, r.isa, r.image, r.width, r.height, r.resized.width, r.resized.height, r.patches,
      r.image_tokens, r.prompt_tokens);
  const std::vector<std::pair<std::string, const std::vector<double>*>> rows{
      {"decode (PNG/JPEG)", &r.decode_ms}, {"preprocess (resize, normalize)", &r.preprocess_ms},
      {"vision tower", &r.encode_ms}, {"TTFT (image bytes to first token)", &r.ttft_ms}};
  std::string out = head;
  if (format == Format::markdown) {
    out += "\n| stage | ms (mean ± sd) |\n|---|---|\n";
    for (const auto& [name, v] : rows) out += fmt::format("| {} | {} |\n", name, ms_cell(*v));
  } else {
    for (const auto& [name, v] : rows) out += fmt::format("  {:<36} {:>18} ms\n", name, ms_cell(*v));
  }
  out += fmt::format("  vision tower: {:.1f} GFLOP, {:.1f} GFLOP/s\n", r.gflop, gflops);
  return out;
}

}  // namespace autoglm::benchmark
