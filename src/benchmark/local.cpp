// Local throughput: prompt processing and generation on the engine at several batch sizes, with
// the weight-read bandwidth generation achieves.
#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "autoglm/benchmark.h"
#include "autoglm/engine.h"
#include "autoglm/error.h"
#include "status_line.h"

namespace autoglm::benchmark {
namespace {

using Clock = std::chrono::steady_clock;
using Sequence = engine::KvCache::Sequence;

constexpr size_t kBlock = 16;          // KV cache block, as the server uses
constexpr size_t kStepTokens = 512;    // tokens per step: the server's prefill step when nothing generates
constexpr size_t kTgWarmupSteps = 8;
constexpr int kProbePasses = 2;        // read-bandwidth passes around each tg repetition (best of)

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

uint64_t matrix_bytes(const model::Matrix& w) { return w.data ? uint64_t{w.rows} * w.row_bytes() : 0; }

uint64_t floats_bytes(const std::vector<float>& v) { return v.size() * sizeof(float); }

size_t blocks_for(size_t positions) { return (positions + kBlock - 1) / kBlock; }

// Random token ids: the engine's cost does not depend on which ids they are.
std::vector<int32_t> random_tokens(std::mt19937& rng, size_t n, uint32_t vocab) {
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab) - 1);
  std::vector<int32_t> t(n);
  for (int32_t& v : t) v = id(rng);
  return t;
}

void check_options(const model::Model& m, const LocalOptions& o) {
  // -p 0 / -n 0 skip that test, as llama-bench users type it
  if (o.prompt_tokens == 0 && o.gen_tokens == 0)
    throw Error(kExitUsage, "-p 0 and -n 0 leave nothing to measure: give -p N (prefill) and/or -n N (generation)");
  if (o.repetitions < 1) throw Error(kExitUsage, "-r must be at least 1");
  if (o.batches.empty() || std::find(o.batches.begin(), o.batches.end(), size_t{0}) != o.batches.end())
    throw Error(kExitUsage, "-b takes batch sizes of at least 1, e.g. -b 1,4,8,16");
  const size_t ctx = m.config.context_length;
  if (ctx && o.prompt_tokens > ctx)
    throw Error(kExitUsage, fmt::format("-p {} exceeds the model's context of {} tokens; lower -p", o.prompt_tokens, ctx));
  if (o.tg_context == 0) throw Error(kExitUsage, "--tg-context must be at least 1");
  if (ctx && o.tg_context + o.gen_tokens > ctx)
    throw Error(kExitUsage, fmt::format("-n {} plus the {}-token tg prompt exceeds the model's context of {} tokens; lower -n",
                                        o.gen_tokens, o.tg_context, ctx));
}

// One engine and KV cache, big enough for the largest batch of either test.
class Bench {
 public:
  Bench(const model::Model& m, const LocalOptions& o)
      : model_(m),
        cache_(m.config, *std::max_element(o.batches.begin(), o.batches.end()) *
                             blocks_for(std::max(o.prompt_tokens, o.tg_context + o.gen_tokens)), kBlock),
        engine_(m, cache_, {o.threads, kStepTokens}),
        rng_(42) {}

  engine::Engine& engine() { return engine_; }

  // Seconds to prefill `batch` fresh sequences with `tokens` tokens each.
  double prefill(size_t batch, size_t tokens) {
    std::vector<std::vector<int32_t>> prompts(batch);
    for (auto& p : prompts) p = random_tokens(rng_, tokens, model_.config.vocab_size);
    std::vector<Sequence> seqs(batch);
    reserve(seqs, tokens);
    const auto t0 = Clock::now();
    prefill_packed(seqs, prompts);
    const double s = seconds_since(t0);
    release(seqs);
    return s;
  }

  // Seconds for `steps` decode steps of `batch` sequences (one token each per step), after an
  // untimed `context`-token prompt on each.
  double generate(size_t batch, size_t context, size_t steps) {
    std::vector<std::vector<int32_t>> prompts(batch), next(batch);
    for (size_t b = 0; b < batch; ++b) {
      prompts[b] = random_tokens(rng_, context, model_.config.vocab_size);
      next[b] = random_tokens(rng_, steps, model_.config.vocab_size);
    }
    std::vector<Sequence> seqs(batch);
    reserve(seqs, context + steps);
    prefill_packed(seqs, prompts);
    std::vector<engine::StepItem> items(batch);
    const auto t0 = Clock::now();
    for (size_t i = 0; i < steps; ++i) {
      for (size_t b = 0; b < batch; ++b) items[b] = {&seqs[b], std::span<const int32_t>(next[b]).subspan(i, 1), false};
      engine_.step(items, logits_);
    }
    const double s = seconds_since(t0);
    release(seqs);
    return s;
  }

 private:
  void reserve(std::vector<Sequence>& seqs, size_t length) {
    for (Sequence& s : seqs)
      if (!cache_.reserve(s, length)) throw Error(kExitCheckFailed, "bench: the KV cache is too small for the batch");
  }
  void release(std::vector<Sequence>& seqs) {
    for (Sequence& s : seqs) cache_.release(s);
  }

  // All prompts, in steps of up to kStepTokens tokens taken from the sequences in order (a prompt
  // may be split across steps), as the server's scheduler fills a step.
  void prefill_packed(std::vector<Sequence>& seqs, const std::vector<std::vector<int32_t>>& prompts) {
    std::vector<size_t> done(seqs.size(), 0);
    size_t next = 0;
    std::vector<engine::StepItem> items;
    while (next < seqs.size()) {
      items.clear();
      size_t budget = kStepTokens;
      for (size_t b = next; b < seqs.size() && budget > 0; ++b) {
        const size_t take = std::min(budget, prompts[b].size() - done[b]);
        items.push_back({&seqs[b], std::span<const int32_t>(prompts[b]).subspan(done[b], take), false});
        done[b] += take;
        budget -= take;
      }
      engine_.step(items, logits_);
      while (next < seqs.size() && done[next] == prompts[next].size()) ++next;
    }
  }

  const model::Model& model_;
  engine::KvCache cache_;
  engine::Engine engine_;
  std::mt19937 rng_;
  std::vector<float> logits_;
};

// One (test, batch) pair: its repetitions and, for tg, the read bandwidth around each one.
struct Series {
  Measurement m;
  size_t tokens = 0;                  // per sequence and repetition
  std::function<double()> run;        // seconds of one repetition
  bool generation = false;
  std::vector<double> before, after;  // read GB/s just before and just after each repetition
};

}  // namespace

void compare_with_reads(Measurement& r, double gb_per_token, std::span<const double> before,
                        std::span<const double> after) {
  if (before.size() != r.samples.size() || after.size() != r.samples.size() || r.samples.empty()) return;
  std::vector<double> refs, shares;
  for (size_t i = 0; i < r.samples.size(); ++i) {
    refs.push_back((before[i] + after[i]) / 2);
    if (refs.back() <= 0) return;
    shares.push_back(gb_per_token * r.samples[i] / refs.back());
  }
  r.reference_gbps = mean(refs);
  r.bandwidth_share = mean(shares);
}

std::vector<const model::Matrix*> weight_matrices(const model::Model& m) {
  std::vector<const model::Matrix*> out;
  for (const model::Layer& l : m.layers) {
    for (const model::Matrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      if (w->data && w->rows && !(m.config.fused_gate_up && w == &l.w_gate)) out.push_back(w);
  }
  out.push_back(&m.output);
  return out;
}

uint64_t weight_bytes_per_step(const model::Model& m, size_t batch) {
  uint64_t bytes = uint64_t{batch} * m.token_embd.row_bytes();
  for (const model::Matrix* w : weight_matrices(m)) bytes += matrix_bytes(*w);
  return bytes;
}

uint64_t model_bytes(const model::Model& m) {
  uint64_t bytes = matrix_bytes(m.token_embd) + floats_bytes(m.output_norm);
  if (m.output.data != m.token_embd.data) bytes += matrix_bytes(m.output);  // tied: the same bytes
  for (const model::Layer& l : m.layers) {
    for (const model::Matrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) bytes += matrix_bytes(*w);
    for (const std::vector<float>* v : {&l.attn_norm, &l.bq, &l.bk, &l.bv, &l.post_attn_norm, &l.ffn_norm, &l.post_ffn_norm})
      bytes += floats_bytes(*v);
  }
  return bytes;
}

LocalReport run_local(const model::Model& m, const std::string& model_name, const LocalOptions& o) {
  check_options(m, o);
  Bench bench(m, o);
  detail::StatusLine status(o.progress);

  LocalReport report;
  report.model = model_name;
  report.type = m.weight_type;
  report.isa = kernels::isa_name(kernels::active_isa());
  report.repacked = !m.layers.empty() && m.layers[0].wq.layout != kernels::Layout::rows;
  report.threads = bench.engine().pool().size();
  report.model_bytes = model_bytes(m);
  report.bytes_per_token = weight_bytes_per_step(m, 1);
  report.tg_context = o.tg_context;
  std::optional<ReadProbe> probe;
  if (o.memory_bytes > 0) {
    status.show("bench: measuring the memory read bandwidth");
    probe.emplace(bench.engine().pool(), o.memory_bytes);
    report.memory = probe->measure(5);
  }

  const std::string pp = fmt::format("pp{}", o.prompt_tokens), tg = fmt::format("tg{}", o.gen_tokens);
  std::vector<Series> series;
  for (const bool generation : {false, true}) {  // every pp series, then every tg one; a 0 length skips the test
    const size_t tokens = generation ? o.gen_tokens : o.prompt_tokens;
    for (const size_t batch : o.batches) {
      if (tokens == 0) break;
      Series& s = series.emplace_back();
      s.m.test = generation ? tg : pp;
      s.m.batch = batch;
      s.tokens = tokens;
      s.generation = generation;
      if (generation) s.run = [&bench, batch, &o] { return bench.generate(batch, o.tg_context, o.gen_tokens); };
      else s.run = [&bench, batch, &o] { return bench.prefill(batch, o.prompt_tokens); };
    }
  }

  status.show("bench: warm-up");  // pages of the weights, activation buffers, each batch's shapes
  for (const Series& s : series) {
    if (s.generation) bench.generate(s.m.batch, o.tg_context, std::min(o.gen_tokens, kTgWarmupSteps));
    else bench.prefill(1, o.prompt_tokens);
  }
  // Rounds: one repetition of every series per round, so each batch size meets the same minutes of
  // the machine (its memory bandwidth and clock drift) and ratios between batch sizes are fair.
  double last_read = -1;  // a reading with nothing run since; negative: none
  for (int round = 0; round < o.repetitions; ++round) {
    for (Series& s : series) {
      status.show(fmt::format("bench: round {}/{}: {} at batch {}", round + 1, o.repetitions, s.m.test, s.m.batch));
      if (s.generation && probe) s.before.push_back(last_read >= 0 ? last_read : probe->measure(kProbePasses).gbps);
      last_read = -1;
      s.m.samples.push_back(static_cast<double>(s.m.batch * s.tokens) / s.run());
      if (s.generation && probe) s.after.push_back(last_read = probe->measure(kProbePasses).gbps);
    }
  }
  for (Series& s : series) {
    Measurement& r = s.m;
    r.tokens_per_second = mean(r.samples);
    r.stddev = stddev(r.samples);
    if (s.generation) {
      const double bytes = static_cast<double>(weight_bytes_per_step(m, r.batch));
      r.gbps = bytes * r.tokens_per_second / static_cast<double>(r.batch) / 1e9;
      compare_with_reads(r, bytes / static_cast<double>(r.batch) / 1e9, s.before, s.after);
    }
    report.measurements.push_back(std::move(r));
  }
  return report;
}

}  // namespace autoglm::benchmark
