#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "autoglm/error.h"
#include "autoglm/sampling.h"

namespace autoglm::sampling {
namespace {

// top_p counts as reached when the cumulative probability is within this of it, so that a top_p
// written at an exact cumulative boundary (0.75 over 0.5 + 0.25) does not depend on rounding in exp().
constexpr double kTopPSlack = 1e-6;

struct Weighted {
  int32_t id;
  float logit;    // after penalties
  double weight;  // exp((logit - max logit) / temperature): probability times the normaliser
};

// Most probable first, ties to the lowest id: a total order, so results never depend on the sort.
bool more_probable(const Weighted& a, const Weighted& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

void check_logits(std::span<const float> logits) {
  if (logits.empty()) throw Error(kExitCheckFailed, "sampling: the logits vector is empty");
  for (size_t i = 0; i < logits.size(); ++i)
    if (std::isnan(logits[i]) || logits[i] == std::numeric_limits<float>::infinity())
      throw Error(kExitCheckFailed, "sampling: the logit of token " + std::to_string(i) + " is " +
                                        (std::isnan(logits[i]) ? "NaN" : "+inf") + ": the model output is broken");
}

bool has_penalties(const SamplingParams& p) {
  return p.penalty_last_n != 0 &&
         (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f);
}

// The last penalty_last_n tokens of history (all of it for -1), sorted so equal ids are adjacent.
std::vector<int32_t> penalty_window(std::span<const int32_t> history, int last_n, size_t vocab) {
  const size_t n = last_n < 0 ? history.size() : std::min(history.size(), static_cast<size_t>(last_n));
  std::vector<int32_t> window(history.end() - static_cast<std::ptrdiff_t>(n), history.end());
  for (int32_t id : window)
    if (id < 0 || static_cast<size_t>(id) >= vocab)
      throw Error(kExitCheckFailed, "sampling: history token " + std::to_string(id) +
                                        " is outside the vocabulary of " + std::to_string(vocab) + " tokens");
  std::sort(window.begin(), window.end());
  return window;
}

// llama.cpp's penalties: repetition first (divide positive, multiply non-positive), then
// count * frequency + presence subtracted.
float penalize(float logit, int count, const SamplingParams& p) {
  logit = logit <= 0.0f ? logit * p.repetition_penalty : logit / p.repetition_penalty;
  return logit - static_cast<float>(count) * p.frequency_penalty - p.presence_penalty;
}

std::vector<float> penalized_logits(std::span<const float> logits, std::span<const int32_t> history,
                                    const SamplingParams& p) {
  check_logits(logits);
  std::vector<float> out(logits.begin(), logits.end());
  apply_penalties(out, history, p);
  return out;
}

// Highest logit, ties to the lowest id.
int32_t argmax(std::span<const float> logits) {
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  if (logits[best] == -std::numeric_limits<float>::infinity())
    throw Error(kExitCheckFailed, "sampling: every logit is -inf, no token can be chosen");
  return static_cast<int32_t>(best);
}

// The top-k survivors, sorted; the pool is unchanged when k is off or not smaller than it.
bool keep_top_k(std::vector<Weighted>& pool, int top_k) {
  if (top_k <= 0 || static_cast<size_t>(top_k) >= pool.size()) return false;
  std::partial_sort(pool.begin(), pool.begin() + top_k, pool.end(), more_probable);
  pool.resize(static_cast<size_t>(top_k));
  return true;
}

void set_weights(std::vector<Weighted>& pool, float temperature) {
  float max_logit = -std::numeric_limits<float>::infinity();
  for (const Weighted& w : pool) max_logit = std::max(max_logit, w.logit);
  if (max_logit == -std::numeric_limits<float>::infinity())
    throw Error(kExitCheckFailed, "sampling: every logit is -inf, no token can be chosen");
  for (Weighted& w : pool) w.weight = std::exp(static_cast<double>(w.logit - max_logit) / temperature);
}

// weight is p / p_max, so min-p keeps weight >= min_p. Order is preserved.
void keep_min_p(std::vector<Weighted>& pool, float min_p) {
  if (min_p <= 0.0f) return;
  std::erase_if(pool, [&](const Weighted& w) { return w.weight < static_cast<double>(min_p); });
}

// Brings the next most probable tokens to [begin, begin + count), sorted. A small first chunk is a
// heap pass (cheap when most tokens are rejected), later ones are linear nth_element passes, so a cut
// that needs few tokens never pays for sorting the whole vocabulary.
void sort_next(std::vector<Weighted>& pool, size_t begin, size_t count) {
  const auto first = pool.begin() + static_cast<std::ptrdiff_t>(begin);
  const auto middle = first + static_cast<std::ptrdiff_t>(count);
  if (begin == 0) return std::partial_sort(first, middle, pool.end(), more_probable);
  if (middle != pool.end()) std::nth_element(first, middle, pool.end(), more_probable);
  std::sort(first, middle, more_probable);
}

// The number of most probable tokens whose weights first reach `target`; sorts the pool as far as that.
size_t top_p_count(std::vector<Weighted>& pool, bool sorted, double target) {
  double cumulative = 0.0;
  size_t done = 0;
  for (size_t chunk = 64; done < pool.size(); chunk *= 4) {
    const size_t end = std::min(pool.size(), done + chunk);
    if (!sorted) sort_next(pool, done, end - done);
    for (; done < end; ++done) {
      cumulative += pool[done].weight;
      if (cumulative >= target) return done + 1;
    }
  }
  return pool.size();
}

double total_weight(const std::vector<Weighted>& pool) {
  double total = 0.0;
  for (const Weighted& w : pool) total += w.weight;
  return total;
}

struct Pool {
  std::vector<Weighted> tokens;
  bool sorted = false;  // most probable first; otherwise in id order
};

// Temperature, top-k, min-p, top-p over the penalised logits. Min-p runs before top-p here: both keep
// a most-probable prefix and top-p's normaliser is taken before min-p, so the result is the same as
// top-p then min-p, without sorting the tokens min-p drops.
Pool filter(std::span<const float> logits, const SamplingParams& p) {
  Pool pool;
  pool.tokens.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) pool.tokens.push_back({static_cast<int32_t>(i), logits[i], 0.0});
  pool.sorted = keep_top_k(pool.tokens, p.top_k);
  set_weights(pool.tokens, p.temperature);
  const double total = total_weight(pool.tokens);
  keep_min_p(pool.tokens, p.min_p);
  if (p.top_p < 1.0f) {
    const double target = (static_cast<double>(p.top_p) - kTopPSlack) * total;
    pool.tokens.resize(top_p_count(pool.tokens, pool.sorted, target));
    pool.sorted = true;
  }
  return pool;
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

void apply_penalties(std::span<float> logits, std::span<const int32_t> history, const SamplingParams& p) {
  if (!has_penalties(p)) return;
  const std::vector<int32_t> window = penalty_window(history, p.penalty_last_n, logits.size());
  for (size_t i = 0; i < window.size();) {
    size_t j = i;
    while (j < window.size() && window[j] == window[i]) ++j;
    float& logit = logits[static_cast<size_t>(window[i])];
    logit = penalize(logit, static_cast<int>(j - i), p);
    i = j;
  }
}

Sampler::Sampler(const SamplingParams& params) : params_(params) {
  validate(params_);
  uint64_t state = params_.seed;
  for (uint64_t& word : rng_) word = splitmix64(state);
}

// xoshiro256**, and its top 53 bits as a double in [0, 1).
double Sampler::next_uniform() {
  const uint64_t result = rotl(rng_[1] * 5, 7) * 9;
  const uint64_t t = rng_[1] << 17;
  rng_[2] ^= rng_[0];
  rng_[3] ^= rng_[1];
  rng_[1] ^= rng_[2];
  rng_[0] ^= rng_[3];
  rng_[2] ^= t;
  rng_[3] = rotl(rng_[3], 45);
  return static_cast<double>(result >> 11) * 0x1.0p-53;
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const std::vector<float> penalized = penalized_logits(logits, history, params_);
  if (params_.temperature == 0.0f) return argmax(penalized);
  const Pool pool = filter(penalized, params_);
  const double r = next_uniform() * total_weight(pool.tokens);
  double cumulative = 0.0;
  for (const Weighted& w : pool.tokens) {
    cumulative += w.weight;
    if (r < cumulative) return w.id;
  }
  return pool.tokens.back().id;
}

std::vector<Candidate> Sampler::candidates(std::span<const float> logits, std::span<const int32_t> history) const {
  const std::vector<float> penalized = penalized_logits(logits, history, params_);
  if (params_.temperature == 0.0f) return {{argmax(penalized), 1.0f}};
  Pool pool = filter(penalized, params_);
  if (!pool.sorted) std::sort(pool.tokens.begin(), pool.tokens.end(), more_probable);
  const double total = total_weight(pool.tokens);
  std::vector<Candidate> out;
  out.reserve(pool.tokens.size());
  for (const Weighted& w : pool.tokens) out.push_back({w.id, static_cast<float>(w.weight / total)});
  return out;
}

std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int n) {
  check_logits(logits);
  std::vector<Weighted> all;
  all.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) all.push_back({static_cast<int32_t>(i), logits[i], 0.0});
  set_weights(all, 1.0f);
  const double log_normaliser = static_cast<double>(*std::max_element(logits.begin(), logits.end())) +
                                std::log(total_weight(all));
  const size_t count = std::min(all.size(), static_cast<size_t>(std::max(n, 0)));
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(count), all.end(), more_probable);
  std::vector<TokenLogprob> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i)
    out.push_back({all[i].id, static_cast<float>(static_cast<double>(all[i].logit) - log_normaliser)});
  return out;
}

float token_logprob(std::span<const float> logits, int32_t id) {
  check_logits(logits);
  if (id < 0 || static_cast<size_t>(id) >= logits.size())
    throw Error(kExitUsage, fmt::format("token id {} is outside the vocabulary (0..{})", id, logits.size() - 1));
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - max));
  // the same arithmetic as top_logprobs, so a token has the same logprob in both
  const double log_normaliser = static_cast<double>(max) + std::log(sum);
  return static_cast<float>(static_cast<double>(logits[static_cast<size_t>(id)]) - log_normaliser);
}

}  // namespace autoglm::sampling
