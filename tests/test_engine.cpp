// The engine against the reference engine's logits (../shared/fixtures/refs), through every
// kernel path; and the invariances the server relies on: batching, KV block size, prefill chunks.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <sstream>

#include "autoglm/engine.h"
#include "autoglm/npy.h"
#include "logits_compare.h"
#include "test_support.h"

using namespace autoglm;
namespace fs = std::filesystem;
using test::LogitDiff;
using test::read_prompts;

namespace {

std::vector<float> run(const model::Model& m, const std::vector<int32_t>& tokens, size_t block_size = 16,
                       size_t step_tokens = 512, int threads = 2, kernels::DType kv = kernels::DType::f16) {
  engine::KvCache cache(m.config, (tokens.size() + block_size - 1) / block_size + 1, block_size, kv);
  engine::Engine engine(m, cache, {threads, step_tokens});
  engine::KvCache::Sequence seq;
  return engine.eval_all_logits(seq, tokens);
}

struct Case {
  std::string model;  // "tiny-glm4-Q8_0"
  kernels::Isa isa;
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  std::string n = info.param.model + "_" + kernels::isa_name(info.param.isa);
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  const std::pair<const char*, std::vector<const char*>> files[] = {
      {"glm4", {"f32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q3_K_M", "IQ4_XS"}},
      {"llama", {"f32", "F16", "Q8_0", "Q4_0", "Q4_K_M", "Q2_K", "Q4_1", "Q5_1"}},
      {"qwen2", {"f32", "F16", "Q8_0", "Q4_0", "Q4_K_M"}}};
  for (const auto& [arch, types] : files)
    for (const char* type : types)
      for (kernels::Isa isa : {kernels::Isa::scalar, kernels::Isa::avx2, kernels::Isa::avx512})
        cases.push_back({std::string("tiny-") + arch + "-" + type, isa});
  return cases;
}

class Parity : public testing::TestWithParam<Case> {
 protected:
  void SetUp() override { saved_ = kernels::active_isa(); }
  void TearDown() override { kernels::set_isa(saved_); }
  kernels::Isa saved_ = kernels::Isa::scalar;
};

}  // namespace

TEST_P(Parity, LogitsMatchTheReferenceEngine) {
  AUTOGLM_REQUIRE_FIXTURES();
  const Case& c = GetParam();
  if (static_cast<int>(c.isa) > static_cast<int>(kernels::detected_isa()))
    GTEST_SKIP() << "this CPU has no " << kernels::isa_name(c.isa) << " path";
  kernels::set_isa(c.isa);
  const fs::path dir = test::fixtures_dir();
  const auto m = model::Model::load_gguf(dir / "models" / (c.model + ".gguf"));
  const std::string arch = m->config.arch;
  const auto prompts = read_prompts(dir / "refs" / (arch + ".prompts"));
  ASSERT_EQ(prompts.size(), 2u);
  const std::string type = c.model.substr(c.model.rfind('-') + 1);
  const bool quantized = type != "f32" && type != "F16" && type != "BF16";  // the README's quantized row
  const double max_rms = quantized ? 5e-2 : 1e-2, max_abs = quantized ? 0.3 : 5e-2, max_kl = quantized ? 1e-3 : 1e-4;
  for (size_t p = 0; p < prompts.size(); ++p) {
    const npy::ArrayF32 ref = npy::read_f32(dir / "refs" / (c.model + ".p" + std::to_string(p) + ".npy"));
    ASSERT_EQ(ref.shape, (std::vector<uint64_t>{prompts[p].size(), m->config.vocab_size}));
    const LogitDiff d = test::compare_logits(run(*m, prompts[p]), ref.data, m->config.vocab_size);
    EXPECT_LE(d.rms, max_rms) << c.model << " p" << p;
    EXPECT_LE(d.max_abs, max_abs) << c.model << " p" << p;
    EXPECT_LE(d.mean_kl, max_kl) << c.model << " p" << p;
    RecordProperty("p" + std::to_string(p) + "_rms", std::to_string(d.rms));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Parity, testing::ValuesIn(all_cases()), case_name);

// The HF folder holds the same weights as tiny-glm4-BF16.gguf, so the BF16 references apply.
TEST(HfParity, FolderAsStoredMatchesTheReference) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path dir = test::fixtures_dir();
  const auto prompts = read_prompts(dir / "refs/glm4.prompts");
  const auto m = model::Model::load(dir / "hf/tiny-glm4-hf");
  EXPECT_EQ(m->format, "hf");
  EXPECT_EQ(m->layers[0].wq.type, kernels::DType::bf16);  // kept as stored, mapped
  for (size_t p = 0; p < prompts.size(); ++p) {
    const npy::ArrayF32 ref = npy::read_f32(dir / "refs" / ("tiny-glm4-BF16.p" + std::to_string(p) + ".npy"));
    const LogitDiff d = test::compare_logits(run(*m, prompts[p]), ref.data, m->config.vocab_size);
    EXPECT_LE(d.rms, 1e-2) << "p" << p;
    EXPECT_LE(d.max_abs, 5e-2) << "p" << p;
    EXPECT_LE(d.mean_kl, 1e-4) << "p" << p;
  }
}

// Quantized while loading, the model must stay close to its float source. Q8_0 meets the quantized
// tolerances outright. At 4 bits no engine can on these random weights (the reference engine's own
// Q4_0 logits are 0.23-0.25 rms from its BF16 ones), so there the bar is: no further from the float
// reference than llama.cpp's own file of that type, within 10 %.
TEST(HfParity, QuantizedAtLoadStaysCloseToTheFloatSource) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path dir = test::fixtures_dir();
  const auto prompts = read_prompts(dir / "refs/glm4.prompts");
  struct Variant {
    kernels::DType quant;
    std::string llama_cpp_file;  // references of llama.cpp's file of this type
  };
  for (const Variant& v : {Variant{kernels::DType::q8_0, "tiny-glm4-Q8_0"}, Variant{kernels::DType::q4_0, "tiny-glm4-Q4_0"},
                           Variant{kernels::DType::q4_k, "tiny-glm4-Q4_K_M"}}) {
    const auto m = model::Model::load(dir / "hf/tiny-glm4-hf", {v.quant});
    const size_t vocab = m->config.vocab_size;
    for (size_t p = 0; p < prompts.size(); ++p) {
      const std::string suffix = ".p" + std::to_string(p) + ".npy";
      const npy::ArrayF32 source = npy::read_f32(dir / "refs" / ("tiny-glm4-BF16" + suffix));
      const npy::ArrayF32 theirs = npy::read_f32(dir / "refs" / (v.llama_cpp_file + suffix));
      const LogitDiff ours = test::compare_logits(run(*m, prompts[p]), source.data, vocab);
      const std::string what = v.llama_cpp_file + " p" + std::to_string(p);
      if (v.quant == kernels::DType::q8_0) {
        EXPECT_LE(ours.rms, 5e-2) << what;
        EXPECT_LE(ours.max_abs, 0.3) << what;
        EXPECT_LE(ours.mean_kl, 1e-3) << what;
      } else {
        const LogitDiff bar = test::compare_logits(theirs.data, source.data, vocab);
        EXPECT_LE(ours.rms, 1.1 * bar.rms) << what;
        EXPECT_LE(ours.mean_kl, 1.1 * bar.mean_kl) << what;
      }
    }
  }
}

namespace {

std::unique_ptr<model::Model> load_fixture(const std::string& name) {
  return model::Model::load_gguf(test::fixtures_dir() / "models" / (name + ".gguf"));
}

std::vector<int32_t> prompt(const std::string& arch, size_t i) {
  return read_prompts(test::fixtures_dir() / "refs" / (arch + ".prompts")).at(i);
}

}  // namespace

// Repacking the matrices for the kernels (the default where the CPU has a kernel for it) moves bytes
// in memory only: every logit is the stored layout's to the bit, and the file is untouched.
TEST(Engine, RepackedWeightsGiveTheStoredLayoutsLogits) {
  AUTOGLM_REQUIRE_FIXTURES();
  if (kernels::preferred_layout(kernels::DType::q8_0, 4096) == kernels::Layout::rows)
    GTEST_SKIP() << "this CPU has no kernel for repacked weights (AVX-512 VNNI): nothing is repacked";
  const fs::path dir = test::fixtures_dir();
  const auto file_bytes = [](const fs::path& f) {
    std::ifstream in(f, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  model::LoadOptions as_stored;
  as_stored.repack = false;
  for (const std::string name : {"tiny-glm4-Q8_0", "tiny-llama-Q4_0", "tiny-qwen2-Q4_K_M", "hf:q4_k"}) {
    const bool hf = name == "hf:q4_k";
    const fs::path path = hf ? dir / "hf/tiny-glm4-hf" : dir / "models" / (name + ".gguf");
    const std::string before = hf ? "" : file_bytes(path);
    model::LoadOptions repacked;
    if (hf) repacked.quantize_to = as_stored.quantize_to = kernels::DType::q4_k;
    const auto packed = model::Model::load(path, repacked);
    const auto stored = model::Model::load(path, as_stored);
    EXPECT_EQ(packed->layers[0].wq.layout, kernels::Layout::panels16) << name;
    EXPECT_EQ(stored->layers[0].wq.layout, kernels::Layout::rows) << name;
    EXPECT_EQ(packed->token_embd.layout, kernels::Layout::rows) << name << ": the embedding is read by rows";
    const std::vector<int32_t> tokens = prompt(packed->config.arch, 1);
    const std::vector<float> a = run(*packed, tokens), b = run(*stored, tokens);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(a[i]), std::bit_cast<uint32_t>(b[i])) << name << " logit " << i;
    if (!hf) {
      EXPECT_EQ(file_bytes(path), before) << name;
    }
  }
}

// A Q8_0 cache halves the KV memory and stays within the quantized tolerances of the reference,
// for float and quantized weights alike.
TEST(Engine, Q8_0KvCacheStaysCloseToTheReference) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path dir = test::fixtures_dir();
  for (const std::string name : {"tiny-glm4-f32", "tiny-qwen2-Q4_K_M"}) {
    const auto m = model::Model::load_gguf(dir / "models" / (name + ".gguf"));
    const auto prompts = read_prompts(dir / "refs" / (m->config.arch + ".prompts"));
    const npy::ArrayF32 ref = npy::read_f32(dir / "refs" / (name + ".p1.npy"));
    const LogitDiff d = test::compare_logits(run(*m, prompts[1], 16, 512, 2, kernels::DType::q8_0), ref.data,
                                             m->config.vocab_size);
    EXPECT_LE(d.rms, 5e-2) << name;
    EXPECT_LE(d.max_abs, 0.3) << name;
    EXPECT_LE(d.mean_kl, 1e-3) << name;
    const LogitDiff f16 = test::compare_logits(run(*m, prompts[1]), ref.data, m->config.vocab_size);
    EXPECT_GT(d.rms, 0.0) << "the q8_0 cache was not used";
    EXPECT_NE(d.rms, f16.rms);
  }
  engine::KvCache cache(load_fixture("tiny-glm4-f32")->config, 4, 16, kernels::DType::q8_0);
  EXPECT_EQ(cache.type(), kernels::DType::q8_0);
  EXPECT_EQ(cache.head_bytes(), 68u);  // 64 values in two Q8_0 blocks
}

TEST(Engine, KvCacheRejectsUnsupportedTypes) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto m = load_fixture("tiny-glm4-f32");
  EXPECT_THROW(engine::KvCache(m->config, 4, 16, kernels::DType::q4_0), Error);
  model::ArchConfig odd = m->config;
  odd.head_dim = 48;
  EXPECT_THROW(engine::KvCache(odd, 4, 16, kernels::DType::q8_0), Error);
}

TEST(Engine, KvBlockSizeDoesNotChangeTheLogits) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto m = load_fixture("tiny-glm4-Q4_K_M");
  const auto tokens = prompt("glm4", 1);
  const auto base = run(*m, tokens, 16);
  for (size_t bs : {1, 7, 64, 512}) EXPECT_EQ(run(*m, tokens, bs), base) << "block size " << bs;
}

TEST(Engine, ChunkedPrefillAndThreadCountDoNotChangeTheLogits) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto m = load_fixture("tiny-qwen2-Q8_0");
  const auto tokens = prompt("qwen2", 1);
  const auto base = run(*m, tokens, 16, 512, 2);
  EXPECT_EQ(run(*m, tokens, 16, 5, 2), base);
  EXPECT_EQ(run(*m, tokens, 16, 1, 1), base);  // token by token, one thread
}

TEST(Engine, BatchedStepGivesEachSequenceItsOwnLogits) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto m = load_fixture("tiny-llama-Q4_0");
  const auto a = prompt("llama", 0), b = prompt("llama", 1);
  const size_t vocab = m->config.vocab_size;
  engine::KvCache cache(m->config, 64, 8);
  engine::Engine engine(*m, cache, {2, 512});
  engine::KvCache::Sequence sa, sb;
  ASSERT_TRUE(cache.reserve(sa, a.size()));
  ASSERT_TRUE(cache.reserve(sb, b.size()));
  std::vector<engine::StepItem> batch{{&sa, a, true}, {&sb, b, false}};
  std::vector<float> logits;
  engine.step(batch, logits);
  ASSERT_EQ(logits.size(), (a.size() + 1) * vocab);
  const auto alone_a = run(*m, a), alone_b = run(*m, b);
  const std::vector<float> got_a(logits.begin(), logits.begin() + static_cast<long>(a.size() * vocab));
  const std::vector<float> got_b(logits.begin() + static_cast<long>(a.size() * vocab), logits.end());
  const std::vector<float> want_b(alone_b.end() - static_cast<long>(vocab), alone_b.end());
  EXPECT_LT(test::compare_logits(got_a, alone_a, vocab).max_abs, 1e-4);
  EXPECT_LT(test::compare_logits(got_b, want_b, vocab).max_abs, 1e-4);
  EXPECT_EQ(sa.length, a.size());
  EXPECT_EQ(sb.length, b.size());

  // Decode one more token for both, at different positions, in one step.
  const int32_t next[2] = {3, 4};
  ASSERT_TRUE(cache.reserve(sa, a.size() + 1));
  ASSERT_TRUE(cache.reserve(sb, b.size() + 1));
  std::vector<engine::StepItem> decode{{&sa, std::span(next, 1), false}, {&sb, std::span(next + 1, 1), false}};
  engine.step(decode, logits);
  auto a2 = a;
  a2.push_back(3);
  const auto alone_a2 = run(*m, a2);
  const std::vector<float> want_a2(alone_a2.end() - static_cast<long>(vocab), alone_a2.end());
  const std::vector<float> got_a2(logits.begin(), logits.begin() + static_cast<long>(vocab));
  EXPECT_LT(test::compare_logits(got_a2, want_a2, vocab).max_abs, 1e-4);
}

TEST(Engine, KvCachePoolHandsOutAndTakesBackBlocks) {
  model::ArchConfig c;
  c.n_layers = 1;
  c.n_kv_heads = 1;
  c.head_dim = 4;
  engine::KvCache cache(c, 4, 8);
  engine::KvCache::Sequence a, b;
  EXPECT_TRUE(cache.reserve(a, 17));  // 3 blocks
  EXPECT_EQ(cache.free_blocks(), 1u);
  EXPECT_FALSE(cache.reserve(b, 9));  // needs 2: nothing allocated
  EXPECT_TRUE(b.blocks.empty());
  cache.release(a);
  EXPECT_EQ(cache.free_blocks(), 4u);
  EXPECT_TRUE(cache.reserve(b, 9));
}

TEST(Engine, BadTokenIdsAndBrokenModelsAreErrors) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto m = load_fixture("tiny-qwen2-f32");
  EXPECT_THROW(run(*m, {1, static_cast<int32_t>(m->config.vocab_size)}), Error);
  EXPECT_THROW(run(*m, {-1}), Error);
  test::TempDir tmp;
  const fs::path src = test::fixtures_dir() / "models/tiny-llama-Q8_0.gguf";
  fs::copy_file(src, tmp / "cut.gguf");
  fs::resize_file(tmp / "cut.gguf", fs::file_size(src) / 2);
  EXPECT_THROW(model::Model::load_gguf(tmp / "cut.gguf"), Error);
}
