// Memory-fit arithmetic and verdicts, on the shape of GLM-4-9B-0414 and on the real fixtures.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "autoglm/gguf.h"
#include "autoglm/preflight.h"
#include "autoglm/quant_recipe.h"
#include "autoglm/quantize.h"
#include "autoglm/random_model.h"
#include "test_support.h"

using namespace autoglm;
using namespace autoglm::preflight;

namespace {

// config.json of GLM-4-9B-0414 (as published), the shape of the AutoGLM text backbone.
nlohmann::json glm4_9b_config() {
  return nlohmann::json::parse(R"({
    "architectures": ["Glm4ForCausalLM"], "model_type": "glm4", "hidden_size": 4096,
    "intermediate_size": 13696, "num_attention_heads": 32, "num_key_value_heads": 2, "head_dim": 128,
    "num_hidden_layers": 40, "vocab_size": 151552, "max_position_embeddings": 32768,
    "attention_bias": true, "tie_word_embeddings": false, "torch_dtype": "bfloat16"})");
}

constexpr uint64_t GiB = 1ull << 30;

// Element counts written out from the architecture, independently of the code under test.
constexpr uint64_t kEmbed = 151552ull * 4096;                        // token_embd, and output (untied)
constexpr uint64_t kLayerMatrices = 4096ull * 4096 * 2               // q, o
                                    + 4096ull * 256 * 2              // k, v (2 KV heads × 128)
                                    + 4096ull * 13696 * 3;           // gate, up, down
constexpr uint64_t kLayerVectors = 4096 + (4096 + 512) + 4096 + 8192;  // norms, q/k/v bias, post norms
constexpr uint64_t kMatrices = 40 * kLayerMatrices + 2 * kEmbed;
constexpr uint64_t kVectorBytes = (40 * kLayerVectors + 4096) * 4;

DeviceMemory gpu(uint64_t bytes) { return {"gpu0", "NVIDIA test card", true, bytes, "free (NVML)"}; }

}  // namespace

TEST(Fit, Glm4_9bParameterCount) {
  const model::ModelShape s = model::shape_from_hf_config(glm4_9b_config(), "config.json");
  EXPECT_EQ(s.architecture, "glm4");
  EXPECT_EQ(s.n_params(), kMatrices + 40 * kLayerVectors + 4096);
  EXPECT_NEAR(static_cast<double>(s.n_params()) / 1e9, 9.40, 0.01);  // "GLM-4-9B": 9.4 B parameters
}

TEST(Fit, Glm4_9bWeightBytesAtEachQuantization) {
  const model::ModelShape s = model::shape_from_hf_config(glm4_9b_config(), "config.json");
  EXPECT_EQ(weight_bytes(s, Quant::bf16), kMatrices * 2 + kVectorBytes);
  EXPECT_EQ(weight_bytes(s, std::nullopt), kMatrices * 2 + kVectorBytes);  // checkpoint dtype: bf16
  EXPECT_EQ(weight_bytes(s, Quant::f32), kMatrices * 4 + kVectorBytes);
  EXPECT_EQ(weight_bytes(s, Quant::q8_0), kMatrices / 32 * 34 + kVectorBytes);
  // 4-bit files keep the output projection at Q6_K, as llama.cpp's do.
  EXPECT_EQ(weight_bytes(s, Quant::q4_0), (kMatrices - kEmbed) / 32 * 18 + kEmbed / 256 * 210 + kVectorBytes);
  // Q4_K_M: Q4_K, with attn_v and ffn_down of llama.cpp's use_more_bits layers at Q6_K, the output
  // at Q6_K; ffn_down's 13696 columns are not whole super-blocks, so it falls back to Q8_0 (Q6_K
  // layers) or Q5_0 (the others), as llama.cpp's quantize does.
  uint64_t q4km = kVectorBytes + kEmbed / 256 * 144 + kEmbed / 256 * 210;  // token_embd, output
  for (uint32_t l = 0; l < 40; ++l) {
    const bool more = model::use_more_bits(l, 40);
    q4km += (4096ull * 4096 * 2 + 4096ull * 256 + 4096ull * 13696 * 2) / 256 * 144;  // q, o, k, gate+up
    q4km += 4096ull * 256 / 256 * (more ? 210 : 144);                               // v
    q4km += 4096ull * (13696 / 32) * (more ? 34 : 22);                              // down
  }
  EXPECT_EQ(weight_bytes(s, Quant::q4_k), q4km);
  // Figures users know: ~18.8 GB in bf16, ~10 GB in Q8_0, ~6.2 GB in Q4_K_M.
  EXPECT_NEAR(static_cast<double>(weight_bytes(s, Quant::bf16)) / 1e9, 18.80, 0.01);
  EXPECT_NEAR(static_cast<double>(weight_bytes(s, Quant::q8_0)) / 1e9, 9.99, 0.01);
  EXPECT_NEAR(static_cast<double>(weight_bytes(s, Quant::q4_k)) / 1e9, 6.16, 0.01);
}

// The price of a quantization is what `quantize` writes: every tensor's bytes, for a model whose
// ffn_down rows are not whole super-blocks (the fallbacks) and an untied output.
TEST(Fit, WeightBytesAreWhatQuantizeWrites) {
  test::TempDir tmp;
  model::RandomModelSpec spec;
  spec.arch = "glm4";
  spec.n_layers = 8;
  spec.ffn_dim = 288;
  spec.vocab_size = 512;
  model::write_random_model(spec, tmp / "f32.gguf");
  const model::ModelShape shape = model::read_model_shape(tmp / "f32.gguf");
  for (const auto& [quant, type] : {std::pair{Quant::q8_0, kernels::DType::q8_0}, std::pair{Quant::q4_0, kernels::DType::q4_0},
                                    std::pair{Quant::q4_k, kernels::DType::q4_k}}) {
    model::QuantizeOptions o;
    o.type = type;
    o.threads = 2;
    const auto out = tmp / (std::string(quant_name(quant)) + ".gguf");
    model::quantize_model(tmp / "f32.gguf", out, o);
    uint64_t written = 0;
    for (const gguf::TensorInfo& t : gguf::read_file_header(out).tensors) written += t.nbytes;
    EXPECT_EQ(weight_bytes(shape, quant), written) << quant_name(quant);
  }
}

TEST(Fit, KvCacheBytes) {
  const model::ModelShape s = model::shape_from_hf_config(glm4_9b_config(), "config.json");
  // layers × 2 (K and V) × kv_heads × head_dim × context × batch × 2 bytes (f16)
  EXPECT_EQ(kv_cache_bytes(s, 32768, 1, KvType::f16), 40ull * 2 * 2 * 128 * 32768 * 2);
  EXPECT_EQ(kv_cache_bytes(s, 8192, 4, KvType::f16), 40ull * 2 * 2 * 128 * 8192 * 4 * 2);
  EXPECT_EQ(kv_cache_bytes(s, 32768, 1, KvType::q8_0), 40ull * 2 * 2 * 128 * 32768 / 32 * 34);
}

TEST(Fit, VerdictsFor9bOnCardsOfEachSize) {
  const model::ModelShape s = model::shape_from_hf_config(glm4_9b_config(), "config.json");
  FitRequest r;  // bf16 as stored, full 32k context, batch 1
  auto verdict = [&](uint64_t bytes) { return plan(s, {gpu(bytes)}, r).devices.at(0); };

  EXPECT_EQ(verdict(24 * GiB).outcome, Outcome::fits);  // 18.8 GB + 1.25 GiB KV + runtime
  const DeviceVerdict v16 = verdict(16 * GiB);
  EXPECT_EQ(v16.outcome, Outcome::fits_with_quant);
  EXPECT_EQ(v16.quant, Quant::q8_0);
  const DeviceVerdict v8 = verdict(8 * GiB);
  EXPECT_EQ(v8.outcome, Outcome::fits_with_quant);
  EXPECT_EQ(v8.quant, Quant::q4_k);
  const DeviceVerdict v6 = verdict(6 * GiB);
  EXPECT_EQ(v6.outcome, Outcome::fits_with_quant_and_context);
  EXPECT_EQ(v6.quant, Quant::q4_0);
  EXPECT_LT(v6.context, 32768u);
  EXPECT_LE(v6.alternative_need.total(), 6 * GiB);
  EXPECT_EQ(verdict(2 * GiB).outcome, Outcome::does_not_fit);
}

TEST(Fit, ContextIsReducedWhenOnlyTheKvCacheIsTooBig) {
  const model::ModelShape s = model::shape_from_hf_config(glm4_9b_config(), "config.json");
  FitRequest r;
  r.quant = Quant::q4_k;
  r.context = 131072;
  r.batch = 4;  // 4 × 128k tokens of KV: 21.5 GB
  const DeviceVerdict v = plan(s, {gpu(24 * GiB)}, r).devices.at(0);
  ASSERT_EQ(v.outcome, Outcome::fits_with_context);
  EXPECT_EQ(v.context, 65536u);
  EXPECT_EQ(v.quant, std::nullopt);
}

TEST(Fit, RequireGpuIgnoresTheCpuAndUnknownMemoryIsNotAFit) {
  const model::ModelShape s = model::shape_from_hf_config(glm4_9b_config(), "config.json");
  FitRequest r;
  r.quant = Quant::q4_k;
  const DeviceMemory cpu{"cpu", "system RAM", false, 64 * GiB, "MemAvailable"};
  const DeviceMemory unknown_gpu{"gpu0", "NVIDIA (no driver)", true, std::nullopt, "unknown"};

  EXPECT_TRUE(plan(s, {cpu, unknown_gpu}, r).requirement_met);  // runs on the CPU
  r.require_gpu = true;
  const FitReport gpu_only = plan(s, {cpu, unknown_gpu}, r);
  EXPECT_FALSE(gpu_only.requirement_met);
  EXPECT_EQ(gpu_only.devices.at(1).outcome, Outcome::unknown);
  const FitReport no_gpu = plan(s, {cpu}, r);
  EXPECT_FALSE(no_gpu.requirement_met);
  EXPECT_NE(no_gpu.recommendation.find("No usable GPU"), std::string::npos);
}

TEST(Fit, RecommendationPrefersAGpuThatFitsAndNamesTheFlagOtherwise) {
  const model::ModelShape s = model::shape_from_hf_config(glm4_9b_config(), "config.json");
  const DeviceMemory cpu{"cpu", "system RAM", false, 64 * GiB, "MemAvailable"};
  EXPECT_NE(plan(s, {cpu, gpu(24 * GiB)}, {}).recommendation.find("Run on gpu0"), std::string::npos);
  FitRequest gpu_only;
  gpu_only.require_gpu = true;
  const FitReport r = plan(s, {cpu, gpu(12 * GiB)}, gpu_only);
  EXPECT_NE(r.recommendation.find("--quantization q8_0"), std::string::npos) << r.recommendation;
  const nlohmann::json j = to_json(r);
  EXPECT_EQ(j["devices"][1]["verdict"], "fits_with_quantization");
  EXPECT_EQ(j["devices"][1]["quantization"], "q8_0");
  EXPECT_EQ(j["requirement_met"], false);
}

TEST(Fit, QuantNames) {
  EXPECT_EQ(parse_quant("Q4_K_M"), Quant::q4_k);
  EXPECT_EQ(parse_quant("q8_0"), Quant::q8_0);
  EXPECT_EQ(parse_quant("BF16"), Quant::bf16);
  EXPECT_EQ(parse_quant("q3_k"), std::nullopt);
}

TEST(ModelShape, FixtureHfFolderAndGgufAgree) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto dir = test::fixtures_dir();
  const model::ModelShape hf = model::read_model_shape(dir / "hf/tiny-glm4-hf");
  const model::ModelShape gguf = model::read_model_shape(dir / "models/tiny-glm4-BF16.gguf");
  for (const model::ModelShape* s : {&hf, &gguf}) {
    EXPECT_EQ(s->architecture, "glm4");
    EXPECT_EQ(s->n_layers, 2u);
    EXPECT_EQ(s->d_model, 256u);
    EXPECT_EQ(s->n_heads, 4u);
    EXPECT_EQ(s->n_kv_heads, 2u);
    EXPECT_EQ(s->head_dim, 64u);
    EXPECT_EQ(s->ffn_dim, 512u);
    EXPECT_EQ(s->vocab_size, 2048u);
  }
  EXPECT_EQ(hf.format, "hf");
  EXPECT_EQ(hf.n_params(), gguf.n_params());
  // The index says 4469760 bytes of tensors; the headers must add up to the same.
  EXPECT_EQ(hf.stored_bytes(), 4469760u);
  EXPECT_EQ(gguf.stored_type, "BF16");
}

TEST(ModelShape, FixtureGgufsOfEachArchitecture) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto dir = test::fixtures_dir() / "models";
  EXPECT_EQ(model::read_model_shape(dir / "tiny-llama-Q8_0.gguf").architecture, "llama");
  const model::ModelShape q = model::read_model_shape(dir / "tiny-qwen2-Q4_K_M.gguf");
  EXPECT_EQ(q.architecture, "qwen2");
  EXPECT_EQ(q.stored_type, "Q4_K_M");
  // A quantized file prices "as stored" at its real size on disk, minus the header.
  const uint64_t file_size = std::filesystem::file_size(dir / "tiny-qwen2-Q4_K_M.gguf");
  EXPECT_LT(q.stored_bytes(), file_size);
  EXPECT_GT(q.stored_bytes(), file_size / 2);
}

TEST(ModelShape, BrokenConfigsGiveClearErrors) {
  test::TempDir tmp;
  test::write_file(tmp / "config.json", R"({"model_type": "glm4", "hidden_size": 4096})");
  try {
    model::read_model_shape(tmp.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_hidden_layers"), std::string::npos) << e.what();
  }
  test::write_file(tmp / "config.json", "{not json");
  EXPECT_THROW(model::read_model_shape(tmp.path()), Error);
  auto cfg = glm4_9b_config();
  cfg["model_type"] = "mamba";
  EXPECT_THROW(model::shape_from_hf_config(cfg, "config.json"), Error);
  cfg = glm4_9b_config();
  cfg["num_key_value_heads"] = 3;  // 32 heads do not split into 3 groups
  EXPECT_THROW(model::shape_from_hf_config(cfg, "config.json"), Error);
  cfg = glm4_9b_config();
  cfg["hidden_size"] = -4096;
  EXPECT_THROW(model::shape_from_hf_config(cfg, "config.json"), Error);
  EXPECT_THROW(model::read_model_shape(tmp / "missing.gguf"), Error);
  std::filesystem::remove(tmp / "config.json");
  EXPECT_THROW(model::read_model_shape(tmp.path()), Error);  // folder without config.json
}

// A vision-language model: the tower's weights are priced with the decoder's, and its buffers for
// the largest image the processor allows; both forms describe the same tower.
TEST(Fit, VisionTowerAndItsImageArePriced) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto fx = test::fixtures_dir() / "glm4v";
  const model::ModelShape hf = model::read_model_shape(fx / "tiny-glm4v-hf");
  ASSERT_TRUE(hf.vision.has_value());
  EXPECT_EQ(hf.vision->depth, 2u);
  EXPECT_EQ(hf.vision->d_model, 128u);
  EXPECT_EQ(hf.vision->max_pixels, 150528u);         // preprocessor_config.json size.longest_edge
  EXPECT_EQ(hf.vision->tokens(150528), 192u);        // 150528 / 14^2 / 2^2
  model::ModelShape pair = model::read_model_shape(fx / "tiny-glm4v-F16.gguf");
  EXPECT_FALSE(pair.vision.has_value());
  const uint64_t text_only = pair.n_params();
  model::add_mmproj(pair, fx / "mmproj-tiny-glm4v-F16.gguf");
  ASSERT_TRUE(pair.vision.has_value());
  EXPECT_EQ(pair.vision->params, hf.vision->params);
  EXPECT_EQ(pair.n_params(), text_only + pair.vision->params);
  EXPECT_EQ(pair.n_params(), hf.n_params());

  const std::vector<DeviceMemory> cpu{{"cpu", "CPU RAM", false, 8ull << 30, "test"}};
  FitRequest request;
  const FitReport small = plan(hf, cpu, request);
  request.max_image_pixels = 4 * 150528;
  const FitReport large = plan(hf, cpu, request);
  ASSERT_EQ(small.devices.size(), 1u);
  EXPECT_GT(small.devices[0].need.vision, 0u);
  EXPECT_NEAR(static_cast<double>(large.devices[0].need.vision) / static_cast<double>(small.devices[0].need.vision), 4.0, 0.1)
      << "four times the pixels, four times the buffers";
  EXPECT_NE(render_text(small).find("vision tower"), std::string::npos) << render_text(small);
  EXPECT_EQ(to_json(small)["model"]["vision"]["max_image_tokens"], 192);
  EXPECT_THROW(model::add_mmproj(pair, fx / "tiny-glm4v-F16.gguf"), Error) << "a text GGUF is not an mmproj";
}
