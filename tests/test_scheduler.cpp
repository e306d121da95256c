// The server's parts below HTTP: the continuous-batching scheduler (batching never changes results,
// cancellation frees the cache, admission limits), the OpenAI request checks, metrics, rate limits.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "autoglm/npy.h"
#include "autoglm/random_model.h"
#include "metrics.h"
#include "openai_api.h"
#include "rate_limit.h"
#include "scheduler.h"
#include "test_support.h"

namespace autoglm::server {
namespace {

using namespace std::chrono_literals;
using autoglm::test::TempDir;

// A small random llama-shaped model with a SentencePiece-style byte vocabulary, made once.
struct TinyModel {
  TempDir dir;
  std::unique_ptr<model::Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  TinyModel() {
    model::RandomModelSpec spec;
    spec.arch = "llama";
    spec.weight_type = kernels::DType::q8_0;
    spec.context_length = 1024;
    const auto path = dir / "tiny.gguf";
    model::write_random_model(spec, path);
    model = model::Model::load(path);
    tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_gguf_file(path));
  }
};

TinyModel& tiny() {
  static TinyModel m;
  return m;
}

SchedulerOptions options(size_t max_sequences, size_t kv_blocks = 256) {
  SchedulerOptions o;
  o.max_sequences = max_sequences;
  o.max_queued = 64;
  o.kv_blocks = kv_blocks;
  o.threads = 2;
  o.max_step_tokens = 64;              // small steps: prompts are prefilled in several chunks
  o.prefill_tokens_while_decoding = 8;
  return o;
}

GenerationRequest greedy(int seed_prompt, size_t prompt_len, size_t max_tokens) {
  GenerationRequest r;
  for (size_t i = 0; i < prompt_len; ++i) r.prompt.push_back(static_cast<int32_t>(3 + (seed_prompt * 131 + i * 17) % 2000));
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0;
  return r;
}

// Everything a generation produced, once it has finished.
struct Result {
  std::vector<int32_t> ids;
  std::string text;
  FinishReason reason;
};

Result collect(Generation& g) {
  Delta d;
  while (!g.wait(d, 50ms)) {
  }
  Result r{{}, d.text, g.finish_reason()};
  for (const GeneratedToken& t : d.tokens) r.ids.push_back(t.id);
  return r;
}

TEST(Scheduler, BatchingNeverChangesGreedyTokens) {
  TinyModel& m = tiny();
  std::vector<Result> alone;
  {
    Scheduler s(*m.model, *m.tokenizer, options(1));
    for (int i = 0; i < 16; ++i) alone.push_back(collect(*s.submit(greedy(i, 5 + 9 * static_cast<size_t>(i), 12), nullptr)));
  }
  Scheduler s(*m.model, *m.tokenizer, options(16));
  std::vector<std::shared_ptr<Generation>> gens;
  for (int i = 0; i < 16; ++i) {
    gens.push_back(s.submit(greedy(i, 5 + 9 * static_cast<size_t>(i), 12), nullptr));
    if (i == 7) std::this_thread::sleep_for(30ms);  // later ones join a running batch
  }
  for (int i = 0; i < 16; ++i) {
    const Result together = collect(*gens[static_cast<size_t>(i)]);
    EXPECT_EQ(together.ids, alone[static_cast<size_t>(i)].ids) << "request " << i;
    EXPECT_EQ(together.reason, FinishReason::length);
    EXPECT_EQ(together.ids.size(), 12u);
  }
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(s.stats().kv_blocks_used, 0u);
  EXPECT_EQ(s.stats().generated_tokens, 16u * 12);
}

TEST(Scheduler, SeededSamplingIsReproducible) {
  TinyModel& m = tiny();
  Scheduler s(*m.model, *m.tokenizer, options(4));
  auto request = [] {
    GenerationRequest r = greedy(1, 10, 20);
    r.sampling.temperature = 1.0f;
    r.sampling.seed = 42;
    return r;
  };
  const Result a = collect(*s.submit(request(), nullptr));
  const Result b = collect(*s.submit(request(), nullptr));
  EXPECT_EQ(a.ids, b.ids);
}

TEST(Scheduler, CancelFreesTheCacheAtOnce) {
  TinyModel& m = tiny();
  Scheduler s(*m.model, *m.tokenizer, options(2));
  auto g = s.submit(greedy(3, 20, 900), nullptr);
  Delta d;
  while (d.tokens.empty()) g->wait(d, 50ms);
  EXPECT_GT(s.stats().kv_blocks_used, 0u);
  g->cancel();
  while (!g->wait(d, 50ms)) {
  }
  EXPECT_EQ(g->finish_reason(), FinishReason::cancelled);
  for (int i = 0; i < 100 && !s.idle(); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(s.stats().kv_blocks_used, 0u);
  EXPECT_EQ(s.stats().running, 0u);
}

TEST(Scheduler, EndOfTurnIdsAndStopStringsEndTheAnswer) {
  TinyModel& m = tiny();
  Scheduler s(*m.model, *m.tokenizer, options(2));
  const Result free_run = collect(*s.submit(greedy(5, 8, 10), nullptr));
  ASSERT_EQ(free_run.ids.size(), 10u);

  GenerationRequest eot = greedy(5, 8, 10);
  eot.stop_ids = {free_run.ids[4]};
  const Result cut = collect(*s.submit(eot, nullptr));
  EXPECT_EQ(cut.reason, FinishReason::stop);
  const auto first = std::find(free_run.ids.begin(), free_run.ids.end(), free_run.ids[4]);
  EXPECT_EQ(cut.ids, std::vector<int32_t>(free_run.ids.begin(), first));  // the end token itself is not output

  ASSERT_GE(free_run.text.size(), 4u);
  GenerationRequest stop = greedy(5, 8, 10);
  const size_t at = free_run.text.size() / 2;
  stop.stop = {free_run.text.substr(at, 2)};
  const Result stopped = collect(*s.submit(stop, nullptr));
  EXPECT_EQ(stopped.reason, FinishReason::stop);
  EXPECT_EQ(stopped.text, free_run.text.substr(0, free_run.text.find(stop.stop[0])));
}

TEST(Scheduler, AdmissionLimits) {
  TinyModel& m = tiny();
  Scheduler::Refusal why{};
  {
    Scheduler small(*m.model, *m.tokenizer, options(1, 8));  // 8 blocks of 16 = 128 positions
    EXPECT_EQ(small.submit(greedy(1, 100, 29), &why), nullptr);  // 129 positions: never fits
    EXPECT_EQ(why, Scheduler::Refusal::too_long);
    EXPECT_EQ(collect(*small.submit(greedy(1, 100, 28), &why)).ids.size(), 28u);  // 128 do
  }
  SchedulerOptions o = options(1);
  o.max_queued = 1;
  Scheduler s(*m.model, *m.tokenizer, o);
  // The first request asks for 4000 tokens (~0.4 s of this tiny model in Release, far more under
  // ASan) and is cancelled once the checks are done: it is still running when the next two arrive
  // even if this thread is preempted between the submits (with 100 tokens, ~10 ms, a loaded CI
  // machine once let it finish in between).
  auto running = s.submit(greedy(1, 10, 4000), &why);
  ASSERT_NE(running, nullptr);
  auto queued = s.submit(greedy(2, 10, 5), &why);
  ASSERT_NE(queued, nullptr);
  EXPECT_EQ(s.submit(greedy(3, 10, 5), &why), nullptr);  // one running, one waiting: full
  EXPECT_EQ(why, Scheduler::Refusal::queue_full);
  running->cancel();
  EXPECT_EQ(collect(*running).reason, FinishReason::cancelled);
  EXPECT_EQ(collect(*queued).ids.size(), 5u);  // admitted once the first left
  s.stop_accepting();
  EXPECT_EQ(s.submit(greedy(4, 10, 5), &why), nullptr);
  EXPECT_EQ(why, Scheduler::Refusal::stopping);
}

TEST(Scheduler, DeadlineEndsARequest) {
  TinyModel& m = tiny();
  Scheduler s(*m.model, *m.tokenizer, options(1));
  // 4000 tokens take this tiny model ~0.4 s in Release (900, the earlier count, took ~80 ms once
  // the attention got faster: too close to the deadline)
  GenerationRequest r = greedy(1, 10, 4000);
  r.deadline = Clock::now() + 50ms;
  auto g = s.submit(r, nullptr);
  const Result out = collect(*g);
  EXPECT_EQ(out.reason, FinishReason::timeout);
  EXPECT_LT(out.ids.size(), 4000u);
}

TEST(Scheduler, LogprobsMatchTheTopList) {
  TinyModel& m = tiny();
  Scheduler s(*m.model, *m.tokenizer, options(1));
  GenerationRequest r = greedy(1, 10, 4);
  r.logprobs = 3;
  auto g = s.submit(r, nullptr);
  Delta d;
  while (!g->wait(d, 50ms)) {
  }
  ASSERT_EQ(d.tokens.size(), 4u);
  for (const GeneratedToken& t : d.tokens) {
    ASSERT_EQ(t.top.size(), 3u);
    EXPECT_EQ(t.top[0].id, t.id);  // greedy takes the most probable token
    EXPECT_EQ(t.top[0].logprob, t.logprob);
    EXPECT_LE(t.logprob, 0.0f);
  }
}

TEST(Scheduler, SharedPromptPrefixIsReusedAndChangesNothing) {
  TinyModel& m = tiny();
  Scheduler s(*m.model, *m.tokenizer, options(1, 8));  // 8 blocks of 16 positions
  const GenerationRequest first = greedy(7, 50, 10);
  auto g1 = s.submit(first, nullptr);
  const Result computed = collect(*g1);
  EXPECT_EQ(g1->cached_tokens(), 0u);

  auto g2 = s.submit(first, nullptr);
  const Result reused = collect(*g2);
  EXPECT_EQ(g2->cached_tokens(), 48u);  // 3 whole blocks; the last prompt token is always computed
  EXPECT_EQ(reused.ids, computed.ids);

  GenerationRequest branch = greedy(7, 50, 10);
  branch.prompt[20] += 1;  // the same first 20 tokens, then different
  auto g3 = s.submit(branch, nullptr);
  const Result branched = collect(*g3);
  EXPECT_EQ(g3->cached_tokens(), 20u);  // one whole block and 4 positions copied out of the next
  {
    SchedulerOptions off = options(1, 8);
    off.prefix_cache = false;
    Scheduler fresh(*m.model, *m.tokenizer, off);
    auto g = fresh.submit(branch, nullptr);
    EXPECT_EQ(collect(*g).ids, branched.ids);
    EXPECT_EQ(g->cached_tokens(), 0u);
    auto again = fresh.submit(branch, nullptr);
    collect(*again);
    EXPECT_EQ(again->cached_tokens(), 0u);  // prefix_cache off: nothing is shared
  }

  // a request that needs every block evicts the cached ones; the first prompt is then computed again
  auto big = s.submit(greedy(8, 100, 28), nullptr);
  EXPECT_EQ(collect(*big).ids.size(), 28u);
  auto g4 = s.submit(first, nullptr);
  EXPECT_EQ(collect(*g4).ids, computed.ids);
  EXPECT_EQ(g4->cached_tokens(), 0u);
  EXPECT_EQ(s.stats().cached_prompt_tokens, 68u);
  EXPECT_EQ(s.stats().kv_blocks_used, 0u);
}

TEST(KvCache, APrefixEndingInsideABlockCopiesItsPositions) {
  TinyModel& m = tiny();
  engine::KvCache cache(m.model->config, 4, 4);
  const std::vector<int32_t> a{1, 2, 3, 4, 5, 6, 7, 8, 9};
  engine::KvCache::Sequence s1;
  ASSERT_TRUE(cache.reserve(s1, a.size()));
  s1.length = a.size();
  const size_t row = m.model->config.n_kv_heads * cache.head_bytes();
  for (size_t layer = 0; layer < m.model->config.n_layers; ++layer)
    for (size_t pos = 0; pos < a.size(); ++pos) {
      std::fill_n(cache.k_row(s1, layer, pos), row, static_cast<uint8_t>(layer * 16 + pos));
      std::fill_n(cache.v_row(s1, layer, pos), row, static_cast<uint8_t>(200 - layer * 16 - pos));
    }
  cache.publish_prefix(s1, a);
  // shares block 0 (1 2 3 4), then 5 6 of block 1 (5 6 7 8); 9 differs
  const std::vector<int32_t> b{1, 2, 3, 4, 5, 6, 70, 80, 90};
  engine::KvCache::Sequence s2;
  EXPECT_EQ(cache.share_prefix(s2, b), 6u);
  ASSERT_EQ(s2.blocks.size(), 2u);
  EXPECT_EQ(s2.blocks[0], s1.blocks[0]);
  EXPECT_NE(s2.blocks[1], s1.blocks[1]);  // a copy: the sequence writes its own positions 6, 7
  for (size_t layer = 0; layer < m.model->config.n_layers; ++layer)
    for (size_t pos = 4; pos < 6; ++pos) {
      EXPECT_EQ(cache.k_row(s2, layer, pos)[row - 1], static_cast<uint8_t>(layer * 16 + pos));
      EXPECT_EQ(cache.v_row(s2, layer, pos)[0], static_cast<uint8_t>(200 - layer * 16 - pos));
    }
  cache.release(s1);
  cache.release(s2);
  // the copy needs a block that is not the source: with none left, only whole blocks are shared
  engine::KvCache::Sequence hold;
  ASSERT_TRUE(cache.reserve(hold, 4));  // one of the two unused blocks; the cached two stay
  engine::KvCache::Sequence s3;
  EXPECT_EQ(cache.share_prefix(s3, b), 6u);  // takes the last unused block for the copy
  engine::KvCache::Sequence s4;
  EXPECT_EQ(cache.share_prefix(s4, b), 4u);  // the source itself is the only cached block left
  cache.release(s3);
  cache.release(s4);
  cache.release(hold);
}

TEST(KvCache, PrefixBlocksAreMatchedByTokensAndParent) {
  TinyModel& m = tiny();
  engine::KvCache cache(m.model->config, 6, 4);
  const std::vector<int32_t> a{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  engine::KvCache::Sequence s1;
  ASSERT_TRUE(cache.reserve(s1, a.size()));
  s1.length = a.size();  // as if a step had written them
  cache.publish_prefix(s1, a);
  cache.release(s1);
  EXPECT_EQ(cache.free_blocks(), 6u);  // cached blocks still count as available

  engine::KvCache::Sequence s2;
  EXPECT_EQ(cache.share_prefix(s2, a), 8u);
  EXPECT_EQ(cache.free_blocks(), 4u);
  cache.release(s2);
  // same second block after a different first block: no match
  std::vector<int32_t> b = a;
  b[0] = 99;
  engine::KvCache::Sequence s3;
  EXPECT_EQ(cache.share_prefix(s3, b), 0u);
  // exactly two blocks of tokens: the last token is left to compute, so one block is shared and
  // three positions of the second are copied
  engine::KvCache::Sequence s4;
  EXPECT_EQ(cache.share_prefix(s4, std::span(a).first(8)), 7u);
  cache.release(s4);
  // taking every block evicts the cached ones; their prefix is gone afterwards
  engine::KvCache::Sequence all;
  ASSERT_TRUE(cache.reserve(all, 24));
  EXPECT_EQ(cache.free_blocks(), 0u);
  cache.release(all);
  engine::KvCache::Sequence s5;
  EXPECT_EQ(cache.share_prefix(s5, a), 0u);
}

// ---- request checks ----

int status_of(Endpoint e, const std::string& body, std::string* param = nullptr) {
  try {
    parse_request(e, body);
  } catch (const ApiError& err) {
    if (param) *param = err.param;
    return err.status;
  }
  return 200;
}

TEST(OpenAiRequest, ValidBodies) {
  const ApiRequest r = parse_request(Endpoint::chat, R"({"model":"m","messages":[{"role":"system","content":"s"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"temperature":0.5,"top_p":0.9,
      "top_k":40,"min_p":0.1,"max_tokens":7,"seed":-1,"stop":"x","logprobs":true,"top_logprobs":2,"stream":true,
      "stream_options":{"include_usage":true},"presence_penalty":0.5,"frequency_penalty":-0.5,"n":1,"user":"u"})");
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_EQ(r.max_tokens, 7u);
  EXPECT_TRUE(r.seed_given);
  EXPECT_EQ(r.sampling.seed, ~uint64_t{0});
  EXPECT_EQ(r.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_TRUE(r.stream && r.include_usage);
  const ApiRequest c = parse_request(Endpoint::completion, R"({"prompt":[[1,2,3]],"logprobs":0,"max_tokens":null})");
  EXPECT_EQ(c.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(c.logprobs, 0);
  EXPECT_FALSE(c.max_tokens);
}

TEST(OpenAiRequest, BadBodiesName400AndTheParameter) {
  std::string param;
  EXPECT_EQ(status_of(Endpoint::chat, "{", &param), 400);
  EXPECT_EQ(status_of(Endpoint::chat, "[]"), 400);
  EXPECT_EQ(status_of(Endpoint::chat, "{}", &param), 400);
  EXPECT_EQ(param, "messages");
  EXPECT_EQ(status_of(Endpoint::chat, R"({"messages":[{"role":"user","content":"x"}],"temperature":"hot"})", &param), 400);
  EXPECT_EQ(param, "temperature");
  EXPECT_EQ(status_of(Endpoint::chat, R"({"messages":[{"role":"user","content":"x"}],"max_tokens":-1})", &param), 400);
  EXPECT_EQ(param, "max_tokens");
  EXPECT_EQ(status_of(Endpoint::chat, R"({"messages":[{"role":"user","content":"x"}],"max_tokens":1.5})"), 400);
  EXPECT_EQ(status_of(Endpoint::chat, R"({"messages":[{"role":"user","content":"x"}],"n":2})"), 400);
  EXPECT_EQ(status_of(Endpoint::chat, R"({"messages":[{"role":"tool","content":"x"}]})"), 400);
  EXPECT_EQ(status_of(Endpoint::chat, R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]})"), 400);
  EXPECT_EQ(status_of(Endpoint::chat, R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]})", &param), 400);
  EXPECT_EQ(param, "tools");
  EXPECT_EQ(status_of(Endpoint::chat, R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})"), 400);
  EXPECT_EQ(status_of(Endpoint::chat, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}"), 400);  // invalid UTF-8
  EXPECT_EQ(status_of(Endpoint::completion, R"({"prompt":["a","b"]})", &param), 400);
  EXPECT_EQ(status_of(Endpoint::completion, R"({"prompt":[-1]})"), 400);
  EXPECT_EQ(status_of(Endpoint::completion, R"({"prompt":"x","echo":true})"), 400);
  EXPECT_EQ(status_of(Endpoint::completion, R"({"prompt":"x","logprobs":21})"), 400);
  EXPECT_EQ(status_of(Endpoint::completion, R"({"prompt":"x","top_p":0})"), 400);
}

TEST(OpenAiResponse, ErrorShapeAndInvalidUtf8) {
  const auto j = error_body(ApiError(400, "bad", "max_tokens"));
  EXPECT_EQ(j["error"]["message"], "bad");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "max_tokens");
  EXPECT_TRUE(j["error"]["code"].is_null());
  EXPECT_NO_THROW(dump(nlohmann::json{{"t", std::string("\xe4\xbd")}}));  // half a character
}

// ---- metrics and rate limits ----

TEST(Metrics, PrometheusText) {
  Metrics m;
  m.record_request("/v1/completions", 200, 0.3);
  m.record_request("/v1/completions", 200, 7);
  m.record_request("/health", 200, 0.001);
  m.record_time_to_first_token(0.2);
  LiveGauges g;
  g.scheduler.kv_blocks_total = 10;
  g.scheduler.kv_blocks_used = 3;
  const std::string text = m.render(g);
  EXPECT_NE(text.find("autoglm_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("autoglm_request_duration_seconds_bucket{endpoint=\"/v1/completions\",le=\"0.5\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("autoglm_request_duration_seconds_bucket{endpoint=\"/v1/completions\",le=\"+Inf\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("autoglm_request_duration_seconds_count{endpoint=\"/v1/completions\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("autoglm_time_to_first_token_seconds_count 1\n"), std::string::npos);
  EXPECT_NE(text.find("autoglm_kv_cache_blocks_used 3\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE autoglm_queue_depth gauge\n"), std::string::npos);
}

TEST(RateLimiter, TokenBucketPerClient) {
  RateLimiter limiter(2, std::chrono::minutes(1));
  const auto t0 = RateLimiter::Clock::now();
  EXPECT_EQ(limiter.acquire("a", t0), 0.0);
  EXPECT_EQ(limiter.acquire("a", t0), 0.0);
  const double wait = limiter.acquire("a", t0);
  EXPECT_NEAR(wait, 30.0, 0.01);                    // one token back every 30 s
  EXPECT_EQ(limiter.acquire("b", t0), 0.0);         // another client has its own bucket
  EXPECT_EQ(limiter.acquire("a", t0 + 31s), 0.0);   // refilled
  EXPECT_GT(limiter.acquire("a", t0 + 31s), 0.0);
}

}  // namespace
}  // namespace autoglm::server

// ---- images in the batch: the tiny GLM-4.1V ----------------------------------------------------

namespace autoglm::server {
namespace {

struct TinyVision {
  std::unique_ptr<model::Model> model;
  std::unique_ptr<vision::VisionModel> tower;
  std::unique_ptr<Tokenizer> tokenizer;
  TinyVision() {
    const auto dir = test::fixtures_dir() / "glm4v" / "tiny-glm4v-hf";
    model = model::Model::load(dir);
    tower = vision::VisionModel::load_hf(dir);
    tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_hf_folder(dir));
  }
};

// Prompt `a` of the fixture with the reference processor's pixels of its screenshot.
// negate: a different picture (every pixel value negated) in the same grid.
GenerationRequest screenshot_prompt(const vision::VisionModel& tower, size_t max_tokens, bool negate = false) {
  const auto refs = test::fixtures_dir() / "glm4v" / "refs";
  std::vector<int32_t> ids;
  for (int64_t id : npy::read_i64(refs / "a.input_ids.npy").data)
    if (id != 2062 || ids.empty() || ids.back() != 2062) ids.push_back(static_cast<int32_t>(id));
  PromptImage image;
  image.patches = npy::read_f32(refs / "screen_tall.pixel_values.npy").data;
  if (negate)
    for (float& v : image.patches) v = -v;
  image.grid = {1, 28, 12};
  const uint64_t hash = vision::image_hash(image.patches.data(), image.grid, tower.config.patch_dim());
  vision::MultimodalPrompt mp = vision::expand_prompt(ids, 2062, std::span(&image.grid, 1), std::span(&hash, 1), 2);
  image.place = mp.images[0];
  GenerationRequest r;
  r.prompt = mp.tokens;
  r.cache_key = mp.cache_key;
  r.rope = mp.positions.positions;
  r.rope_offset = mp.positions.next_offset;
  r.images.push_back(std::move(image));
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0;
  return r;
}

}  // namespace

// A screenshot prompt prefilled in chunks of 16 next to decoding text requests gives the reference
// engine's greedy answer; sent again, its image tokens come from the prefix cache and the tower
// does not run.
TEST(Scheduler, ImagePromptsBatchChunkAndShareTheirPrefix) {
  AUTOGLM_REQUIRE_FIXTURES();
  TinyVision m;
  SchedulerOptions o = options(4);
  o.max_step_tokens = 16;
  o.prefill_tokens_while_decoding = 16;
  Scheduler s(*m.model, *m.tokenizer, o, m.tower.get());
  std::vector<std::shared_ptr<Generation>> text;
  for (int i = 0; i < 3; ++i) text.push_back(s.submit(greedy(i, 20, 24), nullptr));
  std::this_thread::sleep_for(20ms);  // the text requests are decoding when the image arrives
  const auto first = s.submit(screenshot_prompt(*m.tower, 8), nullptr);
  ASSERT_TRUE(first);
  const Result a = collect(*first);
  const std::vector<int32_t> reference{466, 1416, 257, 1077, 944, 132, 944, 132};
  EXPECT_EQ(a.ids, reference);
  EXPECT_EQ(first->image_tokens(), 84u);
  for (auto& g : text) EXPECT_EQ(collect(*g).ids.size(), 24u);
  EXPECT_EQ(s.stats().images_encoded, 1u);

  const auto again = s.submit(screenshot_prompt(*m.tower, 8), nullptr);
  EXPECT_EQ(collect(*again).ids, reference);
  EXPECT_GE(again->cached_tokens(), 96u);
  EXPECT_EQ(s.stats().images_encoded, 1u) << "the image's tokens were all cached";
  EXPECT_EQ(s.stats().images_cached, 1u);

  // a different picture in the same grid: nothing past the text before it is shared
  const auto changed = s.submit(screenshot_prompt(*m.tower, 8, /*negate=*/true), nullptr);
  const Result c = collect(*changed);
  EXPECT_LT(changed->cached_tokens(), 16u);
  EXPECT_NE(c.ids, reference) << "a different image, a different answer";
  EXPECT_EQ(s.stats().images_encoded, 2u);
  EXPECT_TRUE(s.idle());
}

}  // namespace autoglm::server
