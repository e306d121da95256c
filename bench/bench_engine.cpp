// End-to-end engine throughput on the 1 B benchmark model (model::benchmark_1b_spec, GLM-4 layer
// shape): prompt processing (pp512) and generation (tg128) in tokens/s, and the weight-read
// bandwidth generation achieves against what this machine can stream at all, measured here.
// Then where a decode step goes: the matvecs over every weight alone against the whole step.
// pp512 / tg128, the weight bytes per token and the read bandwidth come from the benchmark module
// (what `autoglm-deploy bench` runs); the breakdown is this program's own.
//
//   AUTOGLM_BENCH_DIR   where the models are written once and reused (default /tmp/autoglm-bench)
//   AUTOGLM_BENCH_TYPES comma list of q8_0,q4_0,q4_k_m (default all three)
//   AUTOGLM_BENCH_REPS  repetitions of pp512 and tg128 (default 3)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "autoglm/benchmark.h"
#include "autoglm/engine.h"
#include "autoglm/kernels.h"
#include "autoglm/model.h"
#include "autoglm/random_model.h"

namespace {

namespace fs = std::filesystem;
namespace k = autoglm::kernels;
namespace m = autoglm::model;
namespace e = autoglm::engine;
namespace b = autoglm::benchmark;
using Clock = std::chrono::steady_clock;

constexpr size_t kPrompt = 512, kGen = 128, kShortPrompt = 16, kBlock = 16;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Stats {
  double mean = 0, sd = 0;
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// ---- the model ----

struct ModelKind {
  const char* key;    // file name part and AUTOGLM_BENCH_TYPES entry
  const char* label;  // table
  k::DType type;
  bool q4_k_m_mix;
};
constexpr ModelKind kKinds[] = {
    {"q8_0", "Q8_0", k::DType::q8_0, false},
    {"q4_0", "Q4_0", k::DType::q4_0, false},
    {"q4_k_m", "Q4_K_M", k::DType::q4_k, true},
};

fs::path ensure_model(const fs::path& dir, const ModelKind& kind) {
  const fs::path path = dir / (std::string("bench-1b-glm4-") + kind.key + ".gguf");
  if (!fs::exists(path)) {
    std::printf("writing %s ...\n", path.c_str());
    std::fflush(stdout);
    const auto t0 = Clock::now();
    m::write_random_model(m::benchmark_1b_spec("glm4", kind.type, kind.q4_k_m_mix), path);
    std::printf("  %.1f s\n", seconds_since(t0));
  }
  return path;
}

std::vector<int32_t> random_tokens(std::mt19937& rng, size_t n, uint32_t vocab) {
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab) - 1);
  std::vector<int32_t> t(n);
  for (int32_t& v : t) v = id(rng);
  return t;
}

// One step of `tokens` on `seq` (reserved here), logits of the last token only.
void step(e::Engine& engine, e::KvCache& cache, e::KvCache::Sequence& seq, std::span<const int32_t> tokens,
          std::vector<float>& logits) {
  if (!cache.reserve(seq, seq.length + tokens.size())) throw std::runtime_error("KV cache too small");
  e::StepItem item{&seq, tokens, false};
  engine.step(std::span<e::StepItem>(&item, 1), logits);
}

struct Row {
  std::string label;
  double size_gb = 0;
  Stats pp, tg;
  double gbs = 0;
  double around_gbs = 0, around_share = 0;  // the read bandwidth measured around the tg runs, and the share of it
};

struct Breakdown {
  std::string label;
  double matvec_ms = 0;       // every weight matrix once, batch 1
  double step_short_ms = 0;   // a decode step at position ~kShortPrompt + kGen / 2
  double step_long_ms = 0;    // a decode step at position kPrompt
  double matmul_pp_ms = 0;    // every weight matrix once, batch kPrompt
  double pp_ms = 0;           // the pp512 step
  double matvec_gbs = 0;
};

// Fastest of `passes` runs of fn, in ms: the least disturbed by other work on the machine.
template <class F>
double time_ms(int passes, F&& fn) {
  fn();  // warm
  double best = INFINITY;
  for (int i = 0; i < passes; ++i) {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, seconds_since(t0) * 1e3);
  }
  return best;
}

}  // namespace

int main() {
  const fs::path dir = env_or("AUTOGLM_BENCH_DIR", "/tmp/autoglm-bench");
  const std::string types = "," + env_or("AUTOGLM_BENCH_TYPES", "q8_0,q4_0,q4_k_m") + ",";
  const int reps = std::max(1, std::atoi(env_or("AUTOGLM_BENCH_REPS", "3").c_str()));
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  fs::create_directories(dir);

  double mem_plain = 0, mem_avx512 = 0, mem_gbs = 0;
  {
    k::ThreadPool pool(threads);
    const b::MemoryBandwidth mem = b::measure_memory_read(pool);  // 1 GiB, best of 5
    mem_plain = mem.plain_gbps;
    mem_avx512 = mem.wide_gbps;
    mem_gbs = mem.gbps;
  }
  std::printf("memory read bandwidth (1 GiB, %d threads, best of 5): %.2f GB/s (bench_kernels loop), %.2f GB/s "
              "(512-bit loads)\n", threads, mem_plain, mem_avx512);
  std::fflush(stdout);

  std::vector<Row> rows;
  std::vector<Breakdown> breakdowns;
  std::mt19937 rng(42);
  for (const ModelKind& kind : kKinds) {
    if (types.find(std::string(",") + kind.key + ",") == std::string::npos) continue;
    const fs::path path = ensure_model(dir, kind);
    auto model = m::Model::load(path);
    const m::ArchConfig& c = model->config;
    e::KvCache cache(c, (kPrompt + kGen + kBlock - 1) / kBlock, kBlock);
    e::Engine engine(*model, cache, {threads, kPrompt});
    std::vector<float> logits;
    Row row;
    row.label = kind.label;
    row.size_gb = static_cast<double>(fs::file_size(path)) / 1e9;
    const size_t bpt = b::weight_bytes_per_step(*model, 1);
    std::printf("%s: %s, %.3f GB, %.3f GB of weights read per decoded token\n", kind.label, path.c_str(),
                row.size_gb, static_cast<double>(bpt) / 1e9);
    std::fflush(stdout);

    // pp512 (one step over 512 tokens) and tg128 (a 16-token prompt, then 128 steps of one token),
    // each after a warm-up run, as `bench -b 1` measures them
    b::LocalOptions options;
    options.prompt_tokens = kPrompt;
    options.gen_tokens = kGen;
    options.repetitions = reps;
    options.threads = threads;
    // the read bandwidth is measured again around each tg128 run (it drifts on a shared machine)
    const b::LocalReport local = b::run_local(*model, kind.label, options);
    const b::Measurement& pp = local.measurements.at(0);
    const b::Measurement& tg = local.measurements.at(1);
    row.pp = {pp.tokens_per_second, pp.stddev};
    row.tg = {tg.tokens_per_second, tg.stddev};
    row.gbs = tg.gbps.value_or(0);
    row.around_gbs = tg.reference_gbps.value_or(0);
    row.around_share = tg.bandwidth_share.value_or(0);
    rows.push_back(row);
    std::printf("  pp512 %.1f +- %.1f t/s, tg128 %.2f +- %.2f t/s, %.2f GB/s\n", row.pp.mean, row.pp.sd,
                row.tg.mean, row.tg.sd, row.gbs);
    std::fflush(stdout);

    // where a decode step goes: the weight matvecs alone, against whole steps at two context lengths
    Breakdown b;
    b.label = kind.label;
    const std::vector<const m::Matrix*> mats = b::weight_matrices(*model);
    const std::vector<int32_t> prompt = random_tokens(rng, kPrompt, c.vocab_size);
    const std::vector<int32_t> gen = random_tokens(rng, kShortPrompt + kGen, c.vocab_size);
    size_t max_rows = 0, max_cols = 0, weight_bytes = 0;
    for (const m::Matrix* w : mats) {
      max_rows = std::max(max_rows, w->rows);
      max_cols = std::max(max_cols, w->cols);
      weight_bytes += w->rows * w->row_bytes();
    }
    std::normal_distribution<float> normal;
    std::vector<float> x(kPrompt * max_cols), y(kPrompt * max_rows);
    for (float& v : x) v = normal(rng);
    b.matvec_ms = time_ms(10, [&] {
      for (const m::Matrix* w : mats)
        k::matmul(w->type, w->layout, w->data, w->rows, w->cols, x.data(), 1, y.data(), &engine.pool());
    });
    b.matvec_gbs = static_cast<double>(weight_bytes) / (b.matvec_ms / 1e3) / 1e9;
    {
      e::KvCache::Sequence seq;
      step(engine, cache, seq, std::span<const int32_t>(gen).first(kShortPrompt + kGen / 2), logits);
      size_t i = kShortPrompt + kGen / 2;
      b.step_short_ms = time_ms(10, [&] {
        step(engine, cache, seq, std::span<const int32_t>(gen).subspan(i++, 1), logits);
      });
      cache.release(seq);
    }
    {
      e::KvCache::Sequence seq;
      step(engine, cache, seq, prompt, logits);
      size_t i = 0;
      b.step_long_ms = time_ms(10, [&] {
        step(engine, cache, seq, std::span<const int32_t>(gen).subspan(i++, 1), logits);
      });
      cache.release(seq);
    }
    if (kind.type == k::DType::q8_0 || kind.q4_k_m_mix) {  // prefill: the matmuls alone (batch 512)
      b.matmul_pp_ms = time_ms(1, [&] {
        for (const m::Matrix* w : mats) {
          const size_t batch = w == &model->output ? 1 : kPrompt;  // logits of the last token only
          k::matmul(w->type, w->layout, w->data, w->rows, w->cols, x.data(), batch, y.data(), &engine.pool());
        }
      });
    }
    b.pp_ms = 1e3 * static_cast<double>(kPrompt) / row.pp.mean;
    breakdowns.push_back(b);
  }

  std::printf("\nmemory read bandwidth: %.2f GB/s (1 GiB, %d threads, best of 5; bench_kernels loop %.2f, 512-bit %.2f)\n\n",
              mem_gbs, threads, mem_plain, mem_avx512);
  std::printf("| model | size (GB) | threads | ISA | pp512 (t/s) | tg128 (t/s) | gen GB/s | %% of read BW before |"
              " read GB/s around tg | %% of it |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows)
    std::printf("| %s | %.2f | %d | %s | %.1f ± %.1f | %.2f ± %.2f | %.2f | %.0f %% | %.2f | %.0f %% |\n", r.label.c_str(),
                r.size_gb, threads, k::isa_name(k::active_isa()), r.pp.mean, r.pp.sd, r.tg.mean, r.tg.sd, r.gbs,
                100.0 * r.gbs / mem_gbs, r.around_gbs, 100.0 * r.around_share);
  std::printf("\n| model | matvecs alone (ms) | matvec GB/s | step @%zu (ms) | rest @%zu | step @%zu (ms) | rest @%zu |"
              " pp512 matmuls alone (ms) | pp512 step (ms) |\n",
              kShortPrompt + kGen / 2, kShortPrompt + kGen / 2, kPrompt, kPrompt);
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const Breakdown& b : breakdowns) {
    std::printf("| %s | %.1f | %.2f | %.1f | %.1f (%.0f %%) | %.1f | %.1f (%.0f %%) | ", b.label.c_str(), b.matvec_ms,
                b.matvec_gbs, b.step_short_ms, b.step_short_ms - b.matvec_ms,
                100.0 * (b.step_short_ms - b.matvec_ms) / b.step_short_ms, b.step_long_ms,
                b.step_long_ms - b.matvec_ms, 100.0 * (b.step_long_ms - b.matvec_ms) / b.step_long_ms);
    if (b.matmul_pp_ms > 0)
      std::printf("%.0f | %.0f |\n", b.matmul_pp_ms, b.pp_ms);
    else
      std::printf("- | %.0f |\n", b.pp_ms);
  }
  return 0;
}
