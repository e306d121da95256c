#pragma once
// Choosing the next token from a logits vector (penalties, temperature, top-k, top-p, min-p, a seeded
// draw), the top log-probabilities the API reports, and stop strings over streamed text.
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace autoglm::sampling {

struct SamplingParams {
  float temperature = 1.0f;         // logits are divided by it; 0 = greedy (argmax, ties to the lowest id)
  int top_k = 0;                    // keep the k most probable tokens; 0 = off
  float top_p = 1.0f;               // keep the smallest most-probable set whose probability reaches top_p; 1 = off
  float min_p = 0.0f;               // keep tokens with p >= min_p * p_max; 0 = off
  float repetition_penalty = 1.0f;  // seen tokens: positive logits divided by it, negative multiplied; 1 = off
  float presence_penalty = 0.0f;    // subtracted once from the logit of every seen token
  float frequency_penalty = 0.0f;   // subtracted count times from the logit of a token seen count times
  uint64_t seed = 0;                // same seed, logits and history => same tokens, on every platform
  int penalty_last_n = 64;          // how many of the latest history tokens the penalties look at; -1 = all
};

// Throws autoglm::Error naming the field for a value out of range: temperature >= 0, top_k >= 0,
// top_p and min_p in [0, 1], repetition_penalty > 0, presence/frequency_penalty in [-2, 2],
// penalty_last_n >= -1 (and every float finite).
void validate(const SamplingParams& params);

// The penalties alone, in place: for every token among the last penalty_last_n of `history` seen
// `count` times, logit = (logit > 0 ? logit / repetition_penalty : logit * repetition_penalty)
// - count * frequency_penalty - presence_penalty (llama.cpp's order). A history token outside the
// vocabulary throws autoglm::Error.
void apply_penalties(std::span<float> logits, std::span<const int32_t> history, const SamplingParams& params);

struct Candidate {
  int32_t id;
  float probability;  // renormalised over the candidate set
};

struct TokenLogprob {
  int32_t id;
  float logprob;
};

// The n most probable tokens of the raw logits (no penalties, temperature or filters) with their
// log-softmax, most probable first, ties to the lowest id; fewer when the vocabulary is smaller.
std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int n);

// The log-softmax of the raw logits at `id` (the logprob the API reports for a sampled token).
float token_logprob(std::span<const float> logits, int32_t id);

// Order of operations: apply_penalties, temperature, top-k, top-p (over the top-k set), min-p, then a draw from the rest.
// A logit that is NaN, or a history token outside the vocabulary, throws autoglm::Error.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);  // validates

  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

  // The set sample() draws from, most probable first (ties to the lowest id); for greedy, the one
  // argmax token with probability 1.
  std::vector<Candidate> candidates(std::span<const float> logits, std::span<const int32_t> history) const;

  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::array<uint64_t, 4> rng_;  // xoshiro256** state, seeded by splitmix64 from params.seed
  double next_uniform();
};

// Stop strings over streamed text. feed() returns the part of the text that can be emitted now: it
// holds back any tail that could be the beginning of a stop string. When a stop string completes,
// the text before it is returned with `stopped` set, and the stop string is never emitted. Among stop
// strings in the same text, the one that completes first wins (as if fed one byte at a time), so the
// result does not depend on how the text was split into feed() calls. Empty stop strings are ignored.
class StopMatcher {
 public:
  struct Result {
    std::string text;     // safe to emit
    bool stopped = false;  // a stop string completed: generation ends
    std::string matched;  // the stop string that completed, when stopped
  };

  explicit StopMatcher(std::vector<std::string> stops);

  // After a stop, returns {"", true, matched} again and ignores the text.
  Result feed(std::string_view text);
  // At the end of generation (not stopped): the text held back, which is no stop string after all.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
  std::string matched_;
  size_t held_length(std::string_view text) const;
};

}  // namespace autoglm::sampling
