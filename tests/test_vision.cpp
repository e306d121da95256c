// The GLM-4.1V vision tower and the M-RoPE decoder against the fixture's references
// (../shared/fixtures/glm4v: transformers float32, cross-checked with llama.cpp's mtmd), for the
// Hugging Face folder and for llama.cpp's GGUF pair.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autoglm/engine.h"
#include "autoglm/npy.h"
#include "autoglm/vision.h"
#include "logits_compare.h"
#include "test_support.h"

namespace autoglm {
namespace {
namespace fs = std::filesystem;

constexpr int32_t kImageToken = 2062;  // image_token_id of the fixture's config.json
const char* const kImages[] = {"screen_tall", "odd_rgb", "alpha", "grey", "tiny"};

fs::path glm4v() { return test::fixtures_dir() / "glm4v"; }
fs::path refs() { return glm4v() / "refs"; }

struct RelDiff {
  double rms = 0, max_abs = 0;  // of ours - ref, relative to rms(ref)
};

RelDiff relative_diff(const std::vector<float>& ours, const std::vector<float>& ref) {
  double ss_ref = 0, ss = 0, mx = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = double{ours[i]} - ref[i];
    ss += e * e;
    ss_ref += double{ref[i]} * ref[i];
    mx = std::max(mx, std::abs(e));
  }
  const double scale = std::sqrt(ss_ref / static_cast<double>(ref.size()));
  return {std::sqrt(ss / static_cast<double>(ref.size())) / scale, mx / scale};
}

std::unique_ptr<vision::VisionModel> load_tower(const std::string& form, const model::LoadOptions& options = {}) {
  return form == "hf" ? vision::VisionModel::load_hf(glm4v() / "tiny-glm4v-hf", options)
                      : vision::VisionModel::load_mmproj(glm4v() / "mmproj-tiny-glm4v-F16.gguf", options);
}

std::unique_ptr<model::Model> load_decoder(const std::string& form, const model::LoadOptions& options = {}) {
  return model::Model::load(form == "hf" ? glm4v() / "tiny-glm4v-hf" : glm4v() / "tiny-glm4v-F16.gguf", options);
}

vision::PatchGrid grid_of(const std::string& image) {
  const npy::ArrayI64 g = npy::read_i64(refs() / (image + ".image_grid_thw.npy"));
  return {static_cast<uint32_t>(g.data[0]), static_cast<uint32_t>(g.data[1]), static_cast<uint32_t>(g.data[2])};
}

// The tower's output for a fixture image, fed the reference processor's pixel values.
std::vector<float> encode_reference_pixels(vision::VisionEncoder& encoder, const std::string& image,
                                           vision::EncoderTrace* trace = nullptr) {
  const npy::ArrayF32 pixels = npy::read_f32(refs() / (image + ".pixel_values.npy"));
  std::vector<float> out;
  encoder.encode(pixels.data.data(), grid_of(image), out, trace);
  return out;
}

class Tower : public testing::TestWithParam<std::string> {};

TEST_P(Tower, EmbeddingsMatchTheReferenceForEveryImage) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto tower = load_tower(GetParam());
  EXPECT_EQ(tower->config.depth, 2u);
  EXPECT_EQ(tower->config.d_model, 128u);
  EXPECT_EQ(tower->config.pos_grid, 8u);
  kernels::ThreadPool pool(2);
  vision::VisionEncoder encoder(*tower, pool);
  for (const char* image : kImages) {
    const std::vector<float> ours = encode_reference_pixels(encoder, image);
    const npy::ArrayF32 ref = npy::read_f32(refs() / (std::string(image) + ".vision_embeds.npy"));
    ASSERT_EQ(ours.size(), ref.data.size()) << image;
    const RelDiff d = relative_diff(ours, ref.data);
    EXPECT_LE(d.rms, 1e-2) << image;
    EXPECT_LE(d.max_abs, 5e-2) << image;
    std::printf("  %s %s: rms %.2e max %.2e (relative to rms(ref))\n", GetParam().c_str(), image, d.rms, d.max_abs);
  }
}

TEST_P(Tower, EveryStageMatchesOnTheScreenshot) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto tower = load_tower(GetParam());
  kernels::ThreadPool pool(2);
  vision::VisionEncoder encoder(*tower, pool);
  vision::EncoderTrace trace;
  encode_reference_pixels(encoder, "screen_tall", &trace);
  const RelDiff input = relative_diff(trace.embedded, npy::read_f32(refs() / "screen_tall.vit_input.npy").data);
  const RelDiff output = relative_diff(trace.blocks, npy::read_f32(refs() / "screen_tall.vit_out.npy").data);
  EXPECT_LE(input.rms, 1e-3);
  EXPECT_LE(input.max_abs, 5e-3);
  EXPECT_LE(output.rms, 1e-2);
  EXPECT_LE(output.max_abs, 5e-2);
}

// Q8_0 at load: every product in int8, attention's two included (VisionEncoder::attention_int8).
TEST_P(Tower, QuantizedAtLoadStaysTheSameTower) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto tower = load_tower(GetParam(), {kernels::DType::q8_0});
  EXPECT_EQ(tower->weight_type, "Q8_0");
  kernels::ThreadPool pool(2);
  vision::VisionEncoder encoder(*tower, pool);
  for (const char* image : {"screen_tall", "tiny"}) {
    const RelDiff d = relative_diff(encode_reference_pixels(encoder, image),
                                    npy::read_f32(refs() / (std::string(image) + ".vision_embeds.npy")).data);
    std::printf("  %s %s Q8_0: rms %.3g max %.3g (relative to rms(ref))\n", GetParam().c_str(), image, d.rms, d.max_abs);
    EXPECT_LE(d.rms, 0.07) << image;  // the README's quantized sanity bound
    EXPECT_LE(d.max_abs, 0.35) << image;
  }
}

// BF16 on AMX tiles (vision.quantization auto on such a CPU): every product a bf16 tile product,
// attention's two included (VisionEncoder::attention_tiles); on a CPU without AMX, the float path.
TEST_P(Tower, OnAmxTilesStaysWithinTheFloatTolerance) {
  AUTOGLM_REQUIRE_FIXTURES();
  model::LoadOptions options;
  options.quantize_to = kernels::DType::bf16;
  options.bf16_tiles = true;
  const auto tower = load_tower(GetParam(), options);
  EXPECT_EQ(tower->weight_type, kernels::amx_available() ? "BF16 on AMX tiles" : "BF16");
  kernels::ThreadPool pool(2);
  vision::VisionEncoder encoder(*tower, pool);
  for (const char* image : kImages) {
    const RelDiff d = relative_diff(encode_reference_pixels(encoder, image),
                                    npy::read_f32(refs() / (std::string(image) + ".vision_embeds.npy")).data);
    std::printf("  %s %s %s: rms %.3g max %.3g (relative to rms(ref))\n", GetParam().c_str(), image,
                tower->weight_type.c_str(), d.rms, d.max_abs);
    EXPECT_LE(d.rms, 1e-2) << image;
    EXPECT_LE(d.max_abs, 5e-2) << image;
  }
  if (!kernels::amx_available()) GTEST_SKIP() << "this CPU has no AMX-BF16: the float path ran";
}

INSTANTIATE_TEST_SUITE_P(Forms, Tower, testing::Values("hf", "mmproj"));

TEST(MultimodalPositions, AsGetRopeIndexGivesThem) {
  // 3 text tokens, a 2x3 image, 2 text tokens, a 1x2 image, 1 text token
  const engine::ImagePlacement images[] = {{3, 1, 2, 3}, {11, 1, 1, 2}};
  const engine::PromptPositions p = engine::multimodal_positions(14, images);
  ASSERT_EQ(p.positions.size(), 14u);
  EXPECT_EQ(p.positions[2], (engine::RopePosition{2, 2, 2}));
  EXPECT_EQ(p.positions[3], (engine::RopePosition{3, 3, 3}));   // image row 0, column 0
  EXPECT_EQ(p.positions[8], (engine::RopePosition{3, 4, 5}));   // row 1, column 2
  EXPECT_EQ(p.positions[9], (engine::RopePosition{6, 6, 6}));   // text after: 3 + max(1, 2, 3)
  EXPECT_EQ(p.positions[12], (engine::RopePosition{8, 8, 9}));  // second image, column 1
  EXPECT_EQ(p.positions[13], (engine::RopePosition{10, 10, 10}));
  EXPECT_EQ(p.next_offset, 11 - 14);
  const engine::ImagePlacement overrun[] = {{12, 1, 1, 4}};
  EXPECT_THROW(engine::multimodal_positions(14, overrun), Error);
}

// A fixture prompt: token ids, where its images sit, and their vision embeddings from our tower.
struct Prompt {
  std::vector<int32_t> ids;
  std::vector<engine::ImagePlacement> images;
  std::vector<std::vector<float>> embeddings;  // per image
  std::vector<const float*> rows;              // per token: its image row or nullptr
};

Prompt fixture_prompt(const std::string& name, const std::vector<std::string>& images, vision::VisionEncoder& encoder,
                      uint32_t out_dim) {
  Prompt p;
  for (int64_t id : npy::read_i64(refs() / (name + ".input_ids.npy")).data) p.ids.push_back(static_cast<int32_t>(id));
  for (const std::string& image : images) p.embeddings.push_back(encode_reference_pixels(encoder, image));
  p.rows.assign(p.ids.size(), nullptr);
  size_t image = 0;
  for (size_t i = 0; i < p.ids.size();) {
    if (p.ids[i] != kImageToken) {
      ++i;
      continue;
    }
    const vision::PatchGrid g = grid_of(images.at(image));
    const engine::ImagePlacement placed{i, g.t, g.h / 2, g.w / 2};
    for (size_t k = 0; k < placed.n_tokens(); ++k) {
      EXPECT_EQ(p.ids[i + k], kImageToken);
      p.rows[i + k] = p.embeddings[image].data() + k * out_dim;
    }
    p.images.push_back(placed);
    i += placed.n_tokens();
    ++image;
  }
  EXPECT_EQ(image, images.size());
  return p;
}

struct DecoderCase {
  std::string form;
  std::string prompt;
  std::vector<std::string> images;
};

class Decoder : public testing::TestWithParam<DecoderCase> {};

TEST_P(Decoder, LogitsAtEveryPositionMatchTheReference) {
  AUTOGLM_REQUIRE_FIXTURES();
  const DecoderCase& c = GetParam();
  const auto decoder = load_decoder(c.form);
  EXPECT_EQ(decoder->config.mrope_sections, (std::array<uint32_t, 3>{4, 6, 6}));
  const auto tower = load_tower(c.form == "hf" ? "hf" : "mmproj");
  engine::KvCache cache(decoder->config, 16, 16);
  engine::Engine eng(*decoder, cache, {2, 64});  // chunks of 64: the images straddle a chunk boundary
  vision::VisionEncoder encoder(*tower, eng.pool());
  const Prompt p = fixture_prompt(c.prompt, c.images, encoder, decoder->config.d_model);
  const engine::PromptPositions pos = engine::multimodal_positions(p.ids.size(), p.images);
  const npy::ArrayI64 ref_pos = npy::read_i64(refs() / (c.prompt + ".position_ids.npy"));
  for (size_t i = 0; i < p.ids.size(); ++i)
    for (size_t s = 0; s < 3; ++s) ASSERT_EQ(pos.positions[i][s], ref_pos.data[s * p.ids.size() + i]) << i;
  engine::KvCache::Sequence seq;
  const std::vector<float> logits = eng.eval_all_logits(seq, p.ids, p.images.empty() ? std::span<const float* const>() : p.rows, pos.positions);
  const npy::ArrayF32 ref = npy::read_f32(refs() / (c.prompt + ".logits.npy"));
  const test::LogitDiff d = test::compare_logits(logits, ref.data, decoder->config.vocab_size);
  EXPECT_LE(d.rms, 1e-2);
  EXPECT_LE(d.max_abs, 5e-2);
  EXPECT_LE(d.mean_kl, 1e-4);
  std::printf("  %s prompt %s: rms %.2e max %.2e KL %.2e\n", c.form.c_str(), c.prompt.c_str(), d.rms, d.max_abs,
              d.mean_kl);
}

std::string decoder_case_name(const testing::TestParamInfo<DecoderCase>& info) {
  return info.param.form + "_" + info.param.prompt;
}

INSTANTIATE_TEST_SUITE_P(Prompts, Decoder,
                         testing::Values(DecoderCase{"hf", "a", {"screen_tall"}},
                                         DecoderCase{"hf", "b", {"odd_rgb", "grey"}}, DecoderCase{"hf", "c", {}},
                                         DecoderCase{"gguf", "a", {"screen_tall"}},
                                         DecoderCase{"gguf", "b", {"odd_rgb", "grey"}},
                                         DecoderCase{"gguf", "c", {}}),
                         decoder_case_name);

class Greedy : public testing::TestWithParam<std::string> {};

// Prompt a, then greedy tokens one step at a time at positions past the image. The reference's
// rows are the logits each greedy id was picked from: the prompt's last row, then one per step,
// at positions 29, 30, ... (the prompt's largest position is 29).
TEST_P(Greedy, DecodeContinuesAfterTheImageAsTheReference) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto decoder = load_decoder(GetParam());
  const auto tower = load_tower(GetParam() == "hf" ? "hf" : "mmproj");
  engine::KvCache cache(decoder->config, 16, 16);
  engine::Engine eng(*decoder, cache, {2, 512});
  vision::VisionEncoder encoder(*tower, eng.pool());
  const Prompt p = fixture_prompt("a", {"screen_tall"}, encoder, decoder->config.d_model);
  const engine::PromptPositions pos = engine::multimodal_positions(p.ids.size(), p.images);
  const npy::ArrayI64 ref_pos = npy::read_i64(refs() / "a.greedy_position_ids.npy");
  EXPECT_EQ(static_cast<int64_t>(p.ids.size()) + pos.next_offset, ref_pos.data[1]);  // the first token fed back
  engine::KvCache::Sequence seq;
  const std::vector<float> logits = eng.eval_all_logits(seq, p.ids, p.rows, pos.positions);
  const size_t vocab = decoder->config.vocab_size;
  std::vector<float> last(logits.end() - static_cast<std::ptrdiff_t>(vocab), logits.end());
  std::vector<float> rows = last;
  const npy::ArrayI64 greedy = npy::read_i64(refs() / "a.greedy.npy");
  std::vector<int32_t> generated;
  for (size_t k = 0; k < greedy.data.size(); ++k) {
    generated.push_back(static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin()));
    if (k + 1 == greedy.data.size()) break;
    ASSERT_TRUE(cache.reserve(seq, seq.length + 1));
    engine::StepItem item(&seq, std::span(&generated.back(), 1), false);
    item.rope_offset = pos.next_offset;
    eng.step(std::span(&item, 1), last);
    rows.insert(rows.end(), last.begin(), last.end());
  }
  EXPECT_EQ(std::vector<int64_t>(generated.begin(), generated.end()), greedy.data);
  const test::LogitDiff d = test::compare_logits(rows, npy::read_f32(refs() / "a.greedy_logits.npy").data, vocab);
  EXPECT_LE(d.rms, 1e-2);
  EXPECT_LE(d.max_abs, 5e-2);
}

INSTANTIATE_TEST_SUITE_P(Forms, Greedy, testing::Values("hf", "gguf"));

// A pipeline that dropped the image, or read the same one twice, could not pass this.
TEST(Decoder, TheImageChangesTheAnswer) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto decoder = load_decoder("hf");
  const auto tower = load_tower("hf");
  engine::KvCache cache(decoder->config, 16, 16);
  engine::Engine eng(*decoder, cache, {2, 512});
  vision::VisionEncoder encoder(*tower, eng.pool());
  // alpha and grey have the same grid (35 tokens): prompt b's layout works for either second image
  std::vector<std::vector<float>> last;
  for (const char* second : {"grey", "alpha"}) {
    const Prompt p = fixture_prompt("b", {"odd_rgb", second}, encoder, decoder->config.d_model);
    const engine::PromptPositions pos = engine::multimodal_positions(p.ids.size(), p.images);
    engine::KvCache::Sequence seq;
    const std::vector<float> all = eng.eval_all_logits(seq, p.ids, p.rows, pos.positions);
    last.emplace_back(all.end() - decoder->config.vocab_size, all.end());
    cache.release(seq);
  }
  const test::LogitDiff d = test::compare_logits(last[0], last[1], decoder->config.vocab_size);
  EXPECT_GT(d.max_abs, 0.1);
}

}  // namespace
}  // namespace autoglm
