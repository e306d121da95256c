// Sampling: penalties, temperature, top-k / top-p / min-p on crafted logits, seeded draws, top
// log-probabilities, and stop strings over streamed text.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "autoglm/error.h"
#include "autoglm/sampling.h"

using namespace autoglm;
using namespace autoglm::sampling;

namespace {

const std::vector<int32_t> kNoHistory;

// Logits whose softmax is exactly `probs` (up to exp/log rounding).
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
  return out;
}

std::vector<int32_t> ids(const std::vector<Candidate>& candidates) {
  std::vector<int32_t> out;
  for (const Candidate& c : candidates) out.push_back(c.id);
  return out;
}

std::vector<Candidate> candidates_with(const SamplingParams& params, const std::vector<float>& logits,
                                       const std::vector<int32_t>& history = kNoHistory) {
  return Sampler(params).candidates(logits, history);
}

// Deterministic, spread-out logits in [0, 4) for larger vocabularies.
std::vector<float> spread_logits(size_t n) {
  std::vector<float> out(n);
  uint32_t x = 12345;
  for (float& v : out) {
    x = x * 1664525u + 1013904223u;
    v = static_cast<float>(x >> 8) / static_cast<float>(1u << 24) * 4.0f;
  }
  return out;
}

std::vector<double> frequencies(Sampler& sampler, const std::vector<float>& logits, int draws) {
  std::vector<double> counts(logits.size(), 0.0);
  for (int i = 0; i < draws; ++i) counts[static_cast<size_t>(sampler.sample(logits, kNoHistory))] += 1.0;
  for (double& c : counts) c /= draws;
  return counts;
}

}  // namespace

// ---- parameters ----

TEST(SamplingParams, DefaultsAreValid) { EXPECT_NO_THROW(validate(SamplingParams{})); }

TEST(SamplingParams, OutOfRangeNamesTheField) {
  struct Case {
    const char* field;
    SamplingParams params;
  };
  auto with = [](auto change) {
    SamplingParams p;
    change(p);
    return p;
  };
  const std::vector<Case> cases = {
      {"temperature", with([](SamplingParams& p) { p.temperature = -0.5f; })},
      {"temperature", with([](SamplingParams& p) { p.temperature = NAN; })},
      {"top_k", with([](SamplingParams& p) { p.top_k = -1; })},
      {"top_p", with([](SamplingParams& p) { p.top_p = 1.5f; })},
      {"top_p", with([](SamplingParams& p) { p.top_p = -0.1f; })},
      {"min_p", with([](SamplingParams& p) { p.min_p = 2.0f; })},
      {"repetition_penalty", with([](SamplingParams& p) { p.repetition_penalty = 0.0f; })},
      {"presence_penalty", with([](SamplingParams& p) { p.presence_penalty = 2.5f; })},
      {"frequency_penalty", with([](SamplingParams& p) { p.frequency_penalty = -3.0f; })},
      {"penalty_last_n", with([](SamplingParams& p) { p.penalty_last_n = -2; })},
  };
  for (const Case& c : cases) {
    try {
      Sampler sampler(c.params);
      ADD_FAILURE() << "expected an error for " << c.field;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), kExitUsage);
      EXPECT_NE(std::string(e.what()).find(std::string("sampling parameter ") + c.field + " = "), std::string::npos)
          << e.what();
    }
  }
}

// ---- greedy and seeded draws ----

TEST(Sampler, GreedyIsArgmaxTiesToLowestId) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler sampler(p);
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, 2.0f};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(sampler.sample(logits, kNoHistory), 1);
  const auto c = sampler.candidates(logits, kNoHistory);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].id, 1);
  EXPECT_EQ(c[0].probability, 1.0f);
  // Penalties still apply before the argmax.
  p.repetition_penalty = 2.0f;
  EXPECT_EQ(Sampler(p).sample(logits, std::vector<int32_t>{1, 2}), 3);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  const std::vector<float> logits = spread_logits(50);
  auto draw = [&](uint64_t seed) {
    SamplingParams p;
    p.seed = seed;
    Sampler sampler(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(sampler.sample(logits, kNoHistory));
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

// The RNG is ours (xoshiro256** seeded by splitmix64): these tokens are the same on every platform.
// Reference: the published xoshiro256** and splitmix64 written out in Python; over 10 equal logits the
// token is floor(10 * u) with u = (next() >> 11) * 2^-53.
TEST(Sampler, SeededSequenceIsPinned) {
  SamplingParams p;
  p.seed = 7;
  Sampler sampler(p);
  const std::vector<float> logits(10, 0.0f);
  std::vector<int32_t> got;
  for (int i = 0; i < 8; ++i) got.push_back(sampler.sample(logits, kNoHistory));
  EXPECT_EQ(got, (std::vector<int32_t>{7, 2, 8, 9, 9, 8, 0, 1}));
}

// probs 0.1, 0.2, 0.3, 0.4 at T = 1; p ∝ p^(1/T) otherwise.
TEST(Sampler, TemperatureShapesTheDistribution) {
  const std::vector<float> logits = logits_of({0.1, 0.2, 0.3, 0.4});
  for (float t : {1.0f, 0.5f, 2.0f}) {
    SamplingParams p;
    p.temperature = t;
    p.seed = 1234;
    Sampler sampler(p);
    const std::vector<double> freq = frequencies(sampler, logits, 20000);
    std::vector<double> expected;
    for (double q : {0.1, 0.2, 0.3, 0.4}) expected.push_back(std::pow(q, 1.0 / t));
    const double total = std::accumulate(expected.begin(), expected.end(), 0.0);
    for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(freq[i], expected[i] / total, 0.02) << "T=" << t << " token " << i;
  }
}

TEST(Sampler, TemperatureProbabilitiesInCandidates) {
  SamplingParams p;
  p.temperature = 2.0f;
  const auto c = candidates_with(p, logits_of({0.1, 0.2, 0.3, 0.4}));
  ASSERT_EQ(ids(c), (std::vector<int32_t>{3, 2, 1, 0}));
  const double total = std::sqrt(0.1) + std::sqrt(0.2) + std::sqrt(0.3) + std::sqrt(0.4);
  EXPECT_NEAR(c[0].probability, std::sqrt(0.4) / total, 1e-6);
  EXPECT_NEAR(c[3].probability, std::sqrt(0.1) / total, 1e-6);
}

// ---- filters ----

TEST(Sampler, TopKKeepsTheKMostProbableTiesToLowestId) {
  SamplingParams p;
  p.top_k = 2;
  const auto c = candidates_with(p, {3.0f, 2.0f, 2.0f, 2.0f, 0.0f});
  EXPECT_EQ(ids(c), (std::vector<int32_t>{0, 1}));
  EXPECT_NEAR(c[0].probability, std::exp(1.0) / (std::exp(1.0) + 1.0), 1e-6);
  p.top_k = 1;
  EXPECT_EQ(ids(candidates_with(p, {1.0f, 3.0f, 3.0f, 0.0f})), (std::vector<int32_t>{1}));
  p.top_k = 10;  // larger than the vocabulary: everything
  EXPECT_EQ(ids(candidates_with(p, {1.0f, 3.0f, 3.0f, 0.0f})), (std::vector<int32_t>{1, 2, 0, 3}));
}

// probs 0.125 (id 0), 0.5 (id 1), 0.125 (id 2), 0.25 (id 3): sorted 1, 3, 0, 2 with cumulative
// 0.5, 0.75, 0.875, 1.
TEST(Sampler, TopPSmallestSetReachingP) {
  const std::vector<float> logits = logits_of({0.125, 0.5, 0.125, 0.25});
  auto top_p = [&](float value) {
    SamplingParams p;
    p.top_p = value;
    return candidates_with(p, logits);
  };
  EXPECT_EQ(ids(top_p(0.0f)), (std::vector<int32_t>{1}));          // always at least one
  EXPECT_EQ(ids(top_p(0.5f)), (std::vector<int32_t>{1}));          // exactly at a boundary
  EXPECT_EQ(ids(top_p(0.51f)), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(ids(top_p(0.75f)), (std::vector<int32_t>{1, 3}));       // exactly at a boundary
  EXPECT_EQ(ids(top_p(0.76f)), (std::vector<int32_t>{1, 3, 0}));    // of the tied 0.125s, the lower id
  EXPECT_EQ(ids(top_p(0.9f)), (std::vector<int32_t>{1, 3, 0, 2}));
  EXPECT_EQ(ids(top_p(1.0f)), (std::vector<int32_t>{1, 3, 0, 2}));
  const auto c = top_p(0.75f);
  EXPECT_NEAR(c[0].probability, 2.0 / 3.0, 1e-6);  // renormalised over the kept set
  EXPECT_NEAR(c[1].probability, 1.0 / 3.0, 1e-6);
}

// Top-p is taken over the top-k set: 0.4, 0.3 renormalised are 4/7, 3/7.
TEST(Sampler, TopPAfterTopKAndTemperature) {
  const std::vector<float> logits = logits_of({0.1, 0.2, 0.3, 0.4});
  SamplingParams p;
  p.top_p = 0.5f;
  EXPECT_EQ(ids(candidates_with(p, logits)), (std::vector<int32_t>{3, 2}));
  p.top_k = 2;
  EXPECT_EQ(ids(candidates_with(p, logits)), (std::vector<int32_t>{3}));
  // T = 2 flattens to 0.325, 0.282, 0.230, 0.163: 0.65 now needs three tokens instead of two.
  SamplingParams q;
  q.top_p = 0.65f;
  EXPECT_EQ(ids(candidates_with(q, logits)), (std::vector<int32_t>{3, 2}));
  q.temperature = 2.0f;
  EXPECT_EQ(ids(candidates_with(q, logits)), (std::vector<int32_t>{3, 2, 1}));
}

TEST(Sampler, MinPKeepsTokensAboveAFractionOfTheBest) {
  const std::vector<float> logits = logits_of({0.125, 0.5, 0.125, 0.25});
  SamplingParams p;
  p.min_p = 0.3f;  // threshold 0.15
  EXPECT_EQ(ids(candidates_with(p, logits)), (std::vector<int32_t>{1, 3}));
  p.min_p = 0.6f;  // threshold 0.3
  EXPECT_EQ(ids(candidates_with(p, logits)), (std::vector<int32_t>{1}));
  p.min_p = 0.2f;  // threshold 0.1
  EXPECT_EQ(ids(candidates_with(p, logits)), (std::vector<int32_t>{1, 3, 0, 2}));
  p.min_p = 1.0f;  // exactly at the boundary: the tokens tied with the best stay
  EXPECT_EQ(ids(candidates_with(p, {2.0f, 1.0f, 2.0f})), (std::vector<int32_t>{0, 2}));
  // After top-p: top_p 0.9 keeps all four, min-p then keeps two, renormalised.
  p.top_p = 0.9f;
  p.min_p = 0.3f;
  const auto c = candidates_with(p, logits);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1, 3}));
  EXPECT_NEAR(c[0].probability, 2.0 / 3.0, 1e-6);
}

// A vocabulary large enough that top-p sorts in several chunks; checked against a full sort.
TEST(Sampler, TopPOnALargeVocabularyMatchesAFullSort) {
  const std::vector<float> logits = spread_logits(5000);
  SamplingParams p;
  p.top_p = 0.9f;
  const auto c = candidates_with(p, logits);

  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  double total = 0.0;
  for (float l : logits) total += std::exp(static_cast<double>(l));
  double cumulative = 0.0;
  std::vector<int32_t> expected;
  for (int32_t id : order) {
    expected.push_back(id);
    cumulative += std::exp(static_cast<double>(logits[static_cast<size_t>(id)])) / total;
    if (cumulative >= 0.9) break;
  }
  EXPECT_GT(expected.size(), 500u);
  EXPECT_EQ(ids(c), expected);
  double sum = 0.0;
  for (const Candidate& x : c) sum += x.probability;
  EXPECT_NEAR(sum, 1.0, 1e-4);
}

TEST(Sampler, DrawsOnlyFromTheCandidates) {
  SamplingParams p;
  p.top_k = 3;
  p.seed = 99;
  Sampler sampler(p);
  const std::vector<float> logits = {0.0f, 5.0f, 4.9f, 1.0f, 4.8f, 2.0f};
  const std::vector<double> freq = frequencies(sampler, logits, 3000);
  EXPECT_EQ(freq[0] + freq[3] + freq[5], 0.0);
  EXPECT_GT(freq[1], 0.2);
  EXPECT_GT(freq[2], 0.2);
  EXPECT_GT(freq[4], 0.2);
}

TEST(Sampler, BrokenLogitsAreErrors) {
  Sampler sampler(SamplingParams{});
  EXPECT_THROW(sampler.sample(std::vector<float>{}, kNoHistory), Error);
  EXPECT_THROW(sampler.sample(std::vector<float>{0.0f, NAN}, kNoHistory), Error);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_THROW(sampler.sample(std::vector<float>{-inf, -inf}, kNoHistory), Error);
  EXPECT_EQ(sampler.sample(std::vector<float>{-inf, 0.0f, -inf}, kNoHistory), 1);  // masked tokens are fine
}

// ---- penalties ----

TEST(Penalties, RepetitionDividesPositiveMultipliesNegative) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.0f, 3.0f};
  apply_penalties(logits, std::vector<int32_t>{0, 1, 0, 3}, p);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -4.0f, 1.0f, 0.0f, 3.0f}));
}

TEST(Penalties, PresenceOnceFrequencyPerOccurrence) {
  SamplingParams p;
  p.presence_penalty = 0.5f;
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.0f};
  const std::vector<int32_t> history = {0, 1, 0, 0};
  apply_penalties(logits, history, p);
  EXPECT_EQ(logits, (std::vector<float>{1.5f, -2.5f, 1.0f, 0.0f}));

  SamplingParams f;
  f.frequency_penalty = 0.25f;
  logits = {2.0f, -2.0f, 1.0f, 0.0f};
  apply_penalties(logits, history, f);
  EXPECT_EQ(logits, (std::vector<float>{1.25f, -2.25f, 1.0f, 0.0f}));

  // All three: repetition first, then the subtractions.
  SamplingParams all;
  all.repetition_penalty = 2.0f;
  all.presence_penalty = 0.5f;
  all.frequency_penalty = 0.25f;
  logits = {2.0f, -2.0f, 1.0f, 0.0f};
  apply_penalties(logits, history, all);
  EXPECT_EQ(logits, (std::vector<float>{2.0f / 2 - 0.75f - 0.5f, -2.0f * 2 - 0.25f - 0.5f, 1.0f, 0.0f}));
}

TEST(Penalties, OnlyTheLastNTokens) {
  SamplingParams p;
  p.presence_penalty = 1.0f;
  p.penalty_last_n = 2;
  const std::vector<int32_t> history = {4, 4, 0, 1};
  std::vector<float> logits(5, 0.0f);
  apply_penalties(logits, history, p);
  EXPECT_EQ(logits, (std::vector<float>{-1.0f, -1.0f, 0.0f, 0.0f, 0.0f}));
  p.penalty_last_n = -1;
  logits.assign(5, 0.0f);
  apply_penalties(logits, history, p);
  EXPECT_EQ(logits, (std::vector<float>{-1.0f, -1.0f, 0.0f, 0.0f, -1.0f}));
  p.penalty_last_n = 0;
  logits.assign(5, 0.0f);
  apply_penalties(logits, history, p);
  EXPECT_EQ(logits, std::vector<float>(5, 0.0f));
}

TEST(Penalties, HistoryOutsideTheVocabularyIsAnError) {
  SamplingParams p;
  p.repetition_penalty = 1.1f;
  std::vector<float> logits(4, 0.0f);
  EXPECT_THROW(apply_penalties(logits, std::vector<int32_t>{1, 4}, p), Error);
  EXPECT_THROW(apply_penalties(logits, std::vector<int32_t>{-1}, p), Error);
}

TEST(Penalties, SamplerAppliesThemFirst) {
  SamplingParams p;
  p.presence_penalty = 2.0f;
  p.top_k = 1;
  EXPECT_EQ(ids(candidates_with(p, {1.0f, 2.0f, 0.5f}, {1})), (std::vector<int32_t>{0}));
}

// ---- top log-probabilities ----

TEST(TopLogprobs, LogSoftmaxOfTheRawLogits) {
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, 0.0f};
  const double lse = std::log(std::exp(1.0) + 2 * std::exp(3.0) + 1.0);
  const auto top = top_logprobs(logits, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].id, 1);
  EXPECT_EQ(top[1].id, 2);
  EXPECT_EQ(top[2].id, 0);
  EXPECT_NEAR(top[0].logprob, 3.0 - lse, 1e-6);
  EXPECT_NEAR(top[2].logprob, 1.0 - lse, 1e-6);
  EXPECT_EQ(top_logprobs(logits, 10).size(), 4u);
  EXPECT_TRUE(top_logprobs(logits, 0).empty());
  double sum = 0.0;
  for (const TokenLogprob& t : top_logprobs(logits, 4)) sum += std::exp(static_cast<double>(t.logprob));
  EXPECT_NEAR(sum, 1.0, 1e-6);
}

// ---- stop strings ----

namespace {

struct Streamed {
  std::string text;
  bool stopped = false;
  std::string matched;
};

Streamed stream(const std::vector<std::string>& stops, const std::vector<std::string>& pieces) {
  StopMatcher matcher(stops);
  Streamed out;
  for (const std::string& piece : pieces) {
    const StopMatcher::Result r = matcher.feed(piece);
    out.text += r.text;
    if (r.stopped) {
      out.stopped = true;
      out.matched = r.matched;
      return out;
    }
  }
  out.text += matcher.flush();
  return out;
}

std::vector<std::string> bytes(const std::string& text) {
  std::vector<std::string> out;
  for (char c : text) out.emplace_back(1, c);
  return out;
}

}  // namespace

TEST(StopMatcher, HoldsAPossibleStartAndStopsAcrossFeeds) {
  StopMatcher m({"<|end|>"});
  auto r = m.feed("Hello <|");
  EXPECT_EQ(r.text, "Hello ");
  EXPECT_FALSE(r.stopped);
  r = m.feed("en");
  EXPECT_EQ(r.text, "");
  EXPECT_FALSE(r.stopped);
  r = m.feed("d|> ignored");
  EXPECT_EQ(r.text, "");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.matched, "<|end|>");
  EXPECT_TRUE(m.stopped());
  r = m.feed("more");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, TextBeforeTheStopIsEmitted) {
  const Streamed s = stream({"STOP"}, {"Hello wor", "ld, STOP here"});
  EXPECT_EQ(s.text, "Hello world, ");
  EXPECT_TRUE(s.stopped);
}

TEST(StopMatcher, OverlappingPrefix) {
  for (const auto& pieces : {bytes("ababc"), std::vector<std::string>{"ababc"}, std::vector<std::string>{"ab", "abc"}}) {
    const Streamed s = stream({"abc"}, pieces);
    EXPECT_EQ(s.text, "ab");
    EXPECT_TRUE(s.stopped);
  }
  StopMatcher m({"abc"});
  EXPECT_EQ(m.feed("aba").text, "ab");  // "a" may still start "abc"
}

TEST(StopMatcher, FirstCompletedStopWinsWhateverTheSplit) {
  for (const auto& pieces : {bytes("xabcd"), std::vector<std::string>{"xabcd"}, std::vector<std::string>{"xa", "bcd"}}) {
    const Streamed s = stream({"abcd", "bc"}, pieces);
    EXPECT_EQ(s.text, "xa");
    EXPECT_EQ(s.matched, "bc");
  }
  const Streamed s = stream({"world", "lo"}, {"hello world"});
  EXPECT_EQ(s.text, "hel");
  EXPECT_EQ(s.matched, "lo");
}

TEST(StopMatcher, NoFalseHolds) {
  StopMatcher m({"abc", "\n\n"});
  EXPECT_EQ(m.feed("hello").text, "hello");
  EXPECT_EQ(m.feed("x a b").text, "x a b");
  EXPECT_EQ(m.feed("cab").text, "c");  // "ab" held
  EXPECT_EQ(m.feed("d\n").text, "abd");  // "\n" held
  EXPECT_EQ(m.flush(), "\n");  // the end of generation: what was held is plain text
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, NoStopStrings) {
  EXPECT_EQ(stream({}, {"a", "b"}).text, "ab");
  EXPECT_EQ(stream({""}, {"a", "b"}).text, "ab");
}

// Every split of the text into two or three feeds gives the same result as one byte at a time.
TEST(StopMatcher, ResultDoesNotDependOnTheSplit) {
  const std::vector<std::string> stops = {"</s>", "<|user|>", "ss"};
  for (const std::string text : {"abc </ <|use <|user|> tail", "mess</s>", "plain text"}) {
    const Streamed reference = stream(stops, bytes(text));
    for (size_t i = 0; i <= text.size(); ++i)
      for (size_t j = i; j <= text.size(); ++j) {
        const Streamed s = stream(stops, {text.substr(0, i), text.substr(i, j - i), text.substr(j)});
        EXPECT_EQ(s.text, reference.text) << text << " split at " << i << ", " << j;
        EXPECT_EQ(s.stopped, reference.stopped);
        EXPECT_EQ(s.matched, reference.matched);
      }
  }
  EXPECT_EQ(stream(stops, bytes("abc </ <|use <|user|> tail")).text, "abc </ <|use ");
  EXPECT_EQ(stream(stops, bytes("mess</s>")).text, "me");
  EXPECT_EQ(stream(stops, bytes("plain text")).text, "plain text");
}
