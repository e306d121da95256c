// The three renderings of a bench run: a table for people, JSON for programs, Markdown for reports;
// and the progress line shown while a run goes on.
#include <cstdio>
#include <fmt/format.h>
#include <optional>
#include <nlohmann/json.hpp>

#include "autoglm/benchmark.h"
#include "autoglm/units.h"
#include "status_line.h"

namespace autoglm::benchmark {
namespace {

using json = nlohmann::json;

double gb(uint64_t bytes) { return static_cast<double>(bytes) / 1e9; }

std::string tokens_cell(const Measurement& m) { return fmt::format("{:.2f} ± {:.2f}", m.tokens_per_second, m.stddev); }
std::string gbps_cell(const Measurement& m) { return m.gbps ? fmt::format("{:.2f}", *m.gbps) : ""; }
std::string share_cell(const Measurement& m) {
  return m.bandwidth_share ? fmt::format("{:.0f} %", *m.bandwidth_share * 100) : "";
}
std::string reference_cell(const Measurement& m) {
  return m.reference_gbps ? fmt::format("{:.2f}", *m.reference_gbps) : "";
}

// tokens/s of m over those of the same test at batch 1, when that was measured
std::optional<double> times_batch_1(const LocalReport& r, const Measurement& m) {
  for (const Measurement& one : r.measurements)
    if (one.test == m.test && one.batch == 1 && one.tokens_per_second > 0) return m.tokens_per_second / one.tokens_per_second;
  return std::nullopt;
}
std::string times_cell(const LocalReport& r, const Measurement& m) {
  const std::optional<double> x = times_batch_1(r, m);
  return x ? fmt::format("{:.2f}×", *x) : "–";
}

std::string memory_line(const LocalReport& r) {
  if (!r.memory) return "memory read bandwidth: not measured";
  const MemoryBandwidth& m = *r.memory;
  return fmt::format("memory read bandwidth: {:.2f} GB/s before the runs ({:.0f} MiB streamed sum on {} threads, best "
                     "of 5; plain loop {:.2f}, 512-bit loads {:.2f}); measured again around each tg run: generation's "
                     "share is of those (read GB/s)", m.gbps, static_cast<double>(m.bytes) / 1048576.0, m.threads,
                     m.plain_gbps, m.wide_gbps);
}

std::string local_table(const LocalReport& r) {
  std::string out = fmt::format("model: {} ({}, {}), backend {} ({}), {} threads, weights {}\n", r.model, r.type,
                                format_bytes(r.model_bytes), r.backend, r.isa, r.threads,
                                r.repacked ? "repacked for the kernels" : "as stored");
  out += memory_line(r) + "\n";
  out += fmt::format("weights read per decode step: {:.3f} GB at batch 1; tg sequences start from a {}-token prompt\n\n",
                     gb(r.bytes_per_token), r.tg_context);
  out += fmt::format("{:<8} {:>5} {:>22} {:>10} {:>8} {:>10} {:>12}\n", "test", "batch", "tokens/s", "× batch 1",
                     "GB/s", "read GB/s", "% of read BW");
  for (const Measurement& m : r.measurements)
    out += fmt::format("{:<8} {:>5} {:>22} {:>9} {:>8} {:>10} {:>12}\n", m.test, m.batch, tokens_cell(m),
                       times_cell(r, m), gbps_cell(m), reference_cell(m), share_cell(m));
  return out;
}

std::string local_markdown(const LocalReport& r) {
  std::string out = memory_line(r) + "\n\n";
  out += "| model | size (GB) | type | backend | threads | test | batch | tokens/s | × batch 1 | GB/s | read GB/s | % of read BW |\n";
  out += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const Measurement& m : r.measurements)
    out += fmt::format("| {} | {:.2f} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} |\n", r.model,
                       gb(r.model_bytes), r.type, r.backend, r.isa, r.threads, m.test, m.batch, tokens_cell(m),
                       times_cell(r, m),
                       m.gbps ? gbps_cell(m) : "–", m.reference_gbps ? reference_cell(m) : "–",
                       m.bandwidth_share ? share_cell(m) : "–");
  return out;
}

template <class T>
json optional_json(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

std::string local_json(const LocalReport& r) {
  json rows = json::array();
  for (const Measurement& m : r.measurements) {
    rows.push_back({{"test", m.test}, {"batch", m.batch}, {"tokens_per_second", m.tokens_per_second},
                    {"stddev", m.stddev}, {"samples", m.samples}, {"times_batch_1", optional_json(times_batch_1(r, m))},
                    {"gbps", optional_json(m.gbps)},
                    {"reference_gbps", optional_json(m.reference_gbps)}, {"bandwidth_share", optional_json(m.bandwidth_share)},
                    {"memory_gbps", r.memory ? json(r.memory->gbps) : json(nullptr)}, {"model", r.model},
                    {"type", r.type}, {"backend", r.backend}, {"isa", r.isa}, {"repacked", r.repacked}, {"threads", r.threads},
                    {"model_bytes", r.model_bytes}, {"weight_bytes_per_token", r.bytes_per_token},
                    {"tg_context", r.tg_context}});
  }
  return rows.dump(2) + "\n";
}

// ---- HTTP ----

std::string ms(double s) { return fmt::format("{:.1f}", s * 1e3); }

std::string dist_cell(const std::optional<Distribution>& d, bool p90_p95) {
  if (!d) return "–";
  if (p90_p95) return fmt::format("{} / {} / {} / {}", ms(d->p50), ms(d->p90), ms(d->p95), ms(d->p99));
  return fmt::format("{} / {}", ms(d->p50), ms(d->p99));
}

std::string itl_cell(const std::optional<Distribution>& d) {
  return d ? fmt::format("{} / {} / {}", ms(d->mean), ms(d->p50), ms(d->p99)) : "–";
}

std::string errors_cell(const LoadLevel& l) {
  std::string out;
  for (const auto& [what, count] : l.errors) out += fmt::format("{}{} × {}", out.empty() ? "" : ", ", what, count);
  return out.empty() ? "none" : out;
}

std::string http_header(const HttpReport& r) {
  std::string limit = r.requests ? fmt::format("{} requests", *r.requests) : "";
  if (r.duration) limit += fmt::format("{}{:.1f} s", limit.empty() ? "" : " or ", static_cast<double>(r.duration->count()) / 1e3);
  if (limit.empty()) limit = "4 requests per slot (at least 8)";
  return fmt::format("{} (model {}): streaming chat completions, prompt of {} words (about as many tokens), "
                     "max_tokens {}, temperature 0; at most {} per concurrency\n",
                     r.url, r.model.empty() ? "?" : r.model, r.prompt_tokens, r.max_tokens, limit);
}

// The prompt tokens the server counted, and how many of them its prefix cache served when it says.
std::string prompt_cell(const LoadLevel& l) {
  if (!l.prompt_tokens_mean) return "?";
  if (!l.cached_prompt_tokens_mean || *l.cached_prompt_tokens_mean < 0.5) return fmt::format("{:.0f}", *l.prompt_tokens_mean);
  return fmt::format("{:.0f} ({:.0f} cached)", *l.prompt_tokens_mean, *l.cached_prompt_tokens_mean);
}

// The engine's decode rate per sequence during the run, and what one stream received of it.
std::string engine_cell(const LoadLevel& l) {
  return l.engine_decode_steps_per_second ? fmt::format("{:.2f}", *l.engine_decode_steps_per_second) : "–";
}
std::optional<double> stream_share(const LoadLevel& l) {
  if (!l.engine_decode_steps_per_second || l.stream_tokens_per_second <= 0) return std::nullopt;
  return l.stream_tokens_per_second / *l.engine_decode_steps_per_second;
}
std::string share_of_engine_cell(const LoadLevel& l) {
  const std::optional<double> x = stream_share(l);
  return x ? fmt::format("{:.1f} %", *x * 100) : "–";
}

std::string http_table(const HttpReport& r) {
  std::string out = http_header(r) + "latencies in ms: latency p50/p90/p95/p99, TTFT p50/p99, ITL mean/p50/p99\n\n";
  out += fmt::format("{:>4} {:>5} {:>5} {:>6} {:>7} {:>7} {:>7} {:>16} {:>31} {:>17} {:>19} {:>8} {:>12} {:>12} {:>9}\n",
                     "conc", "sent", "ok", "failed", "aborted", "req/s", "success", "prompt", "latency", "TTFT", "ITL",
                     "tok/s", "stream tok/s", "engine tok/s", "stream/engine");
  for (const LoadLevel& l : r.levels) {
    out += fmt::format("{:>4} {:>5} {:>5} {:>6} {:>7} {:>7.2f} {:>6.1f}% {:>16} {:>31} {:>17} {:>19} {:>8.1f} {:>12.2f} {:>12} {:>9}\n",
                       l.concurrency, l.launched, l.succeeded, l.failed, l.aborted, l.requests_per_second,
                       l.success_rate * 100, prompt_cell(l), dist_cell(l.latency_s, true), dist_cell(l.ttft_s, false),
                       itl_cell(l.itl_s), l.tokens_per_second, l.stream_tokens_per_second, engine_cell(l),
                       share_of_engine_cell(l));
  }
  out += "engine tok/s: one sequence's decode rate inside the server's engine during the run (its /metrics: the steps that "
         "only generated); stream/engine: what one stream received of it (at concurrency 1, the cost of the HTTP path; "
         "above, streams also wait for steps shared with other requests' prompts)\n";
  for (const LoadLevel& l : r.levels)
    if (!l.errors.empty()) out += fmt::format("errors at concurrency {}: {}\n", l.concurrency, errors_cell(l));
  return out;
}

std::string http_markdown(const HttpReport& r) {
  std::string out = http_header(r) + "\n";
  out += "| concurrency | requests | ok | failed | aborted | req/s | success | prompt tokens | latency p50 / p90 / p95 / "
         "p99 (ms) | TTFT p50 / p99 (ms) | ITL mean / p50 / p99 (ms) | tokens/s | stream tokens/s | engine decode "
         "tokens/s per sequence | stream / engine | errors |\n";
  out += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const LoadLevel& l : r.levels)
    out += fmt::format("| {} | {} | {} | {} | {} | {:.2f} | {:.1f} % | {} | {} | {} | {} | {:.1f} | {:.2f} | {} | {} | {} |\n",
                       l.concurrency, l.launched, l.succeeded, l.failed, l.aborted, l.requests_per_second,
                       l.success_rate * 100, prompt_cell(l), dist_cell(l.latency_s, true), dist_cell(l.ttft_s, false),
                       itl_cell(l.itl_s), l.tokens_per_second, l.stream_tokens_per_second, engine_cell(l),
                       share_of_engine_cell(l), errors_cell(l));
  return out;
}

json dist_json(const std::optional<Distribution>& d) {
  if (!d) return nullptr;
  return {{"count", d->count}, {"mean", d->mean}, {"p50", d->p50}, {"p90", d->p90}, {"p95", d->p95}, {"p99", d->p99}};
}

std::string http_json(const HttpReport& r) {
  json rows = json::array();
  for (const LoadLevel& l : r.levels) {
    rows.push_back({{"url", r.url}, {"model", r.model}, {"concurrency", l.concurrency}, {"requests", l.launched},
                    {"succeeded", l.succeeded}, {"failed", l.failed}, {"aborted", l.aborted}, {"wall_seconds", l.wall_s},
                    {"requests_per_second", l.requests_per_second}, {"success_rate", l.success_rate},
                    {"latency_seconds", dist_json(l.latency_s)}, {"ttft_seconds", dist_json(l.ttft_s)},
                    {"itl_seconds", dist_json(l.itl_s)}, {"generated_tokens", l.generated_tokens},
                    {"tokens_per_second", l.tokens_per_second}, {"stream_tokens_per_second", l.stream_tokens_per_second},
                    {"engine_decode_steps_per_second", optional_json(l.engine_decode_steps_per_second)},
                    {"engine_decode_tokens_per_second", optional_json(l.engine_decode_tokens_per_second)},
                    {"stream_over_engine", optional_json(stream_share(l))},
                    {"prompt_tokens_mean", optional_json(l.prompt_tokens_mean)},
                    {"cached_prompt_tokens_mean", optional_json(l.cached_prompt_tokens_mean)}, {"prompt_words", r.prompt_tokens},
                    {"max_tokens", r.max_tokens}, {"errors", l.errors}});
  }
  return rows.dump(2) + "\n";
}

}  // namespace

std::string render_local(const LocalReport& report, Format format) {
  switch (format) {
    case Format::json: return local_json(report);
    case Format::markdown: return local_markdown(report);
    case Format::table: break;
  }
  return local_table(report);
}

std::string render_http(const HttpReport& report, Format format) {
  switch (format) {
    case Format::json: return http_json(report);
    case Format::markdown: return http_markdown(report);
    case Format::table: break;
  }
  return http_table(report);
}

namespace {

std::string opt_ms(const std::optional<double>& s) { return s ? fmt::format("{:.0f}", *s * 1000) : "-"; }
std::string opt_count(const std::optional<size_t>& n) { return n ? std::to_string(*n) : "-"; }

}  // namespace

std::string render_agent(const AgentReport& report, Format format) {
  if (format == Format::json) {
    nlohmann::json steps = nlohmann::json::array();
    for (const AgentStep& s : report.steps) {
      const RequestResult& r = s.result;
      auto opt = [](const auto& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
      steps.push_back({{"step", s.step}, {"ok", r.ok}, {"prompt_tokens", opt(r.prompt_tokens)},
                       {"cached_tokens", opt(r.cached_prompt_tokens)}, {"completion_tokens", r.tokens},
                       {"encode_seconds", opt(s.encode_s)}, {"ttft_seconds", opt(r.first_token_s)},
                       {"decode_tokens_per_second", opt(s.decode_tokens_per_second)}, {"latency_seconds", r.latency_s}});
    }
    return nlohmann::json{{"url", report.url}, {"model", report.model}, {"steps", steps}}.dump(2) + "\n";
  }
  const bool md = format == Format::markdown;
  std::string out = fmt::format("{}{} at {} ({} steps; the last request {:.1f} MiB)\n\n", md ? "" : "agent steps: ",
                                report.model.empty() ? "the model" : report.model, report.url, report.steps.size(),
                                static_cast<double>(report.request_bytes) / (1 << 20));
  out += md ? "| step | prompt tokens | cached tokens | encode (ms) | TTFT (ms) | decode (tok/s) | tokens |\n"
              "|---|---|---|---|---|---|---|\n"
            : fmt::format("{:>4}  {:>13}  {:>13}  {:>11}  {:>10}  {:>14}  {:>6}\n", "step", "prompt tokens",
                          "cached tokens", "encode (ms)", "TTFT (ms)", "decode (tok/s)", "tokens");
  for (const AgentStep& s : report.steps) {
    const RequestResult& r = s.result;
    const std::string tps = s.decode_tokens_per_second ? fmt::format("{:.1f}", *s.decode_tokens_per_second) : "-";
    out += md ? fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", s.step, opt_count(r.prompt_tokens),
                            opt_count(r.cached_prompt_tokens), opt_ms(s.encode_s), opt_ms(r.first_token_s), tps, r.tokens)
              : fmt::format("{:>4}  {:>13}  {:>13}  {:>11}  {:>10}  {:>14}  {:>6}\n", s.step, opt_count(r.prompt_tokens),
                            opt_count(r.cached_prompt_tokens), opt_ms(s.encode_s), opt_ms(r.first_token_s), tps, r.tokens);
  }
  return out;
}

namespace detail {

void StatusLine::show(const std::string& text) {
  if (!enabled_) return;
  std::fprintf(stderr, "\r%s\x1b[K", text.c_str());  // \x1b[K: erase what a longer previous line left
  std::fflush(stderr);
  shown_ = true;
}

void StatusLine::clear() {
  if (!enabled_ || !shown_) return;
  std::fputs("\r\x1b[K", stderr);
  std::fflush(stderr);
  shown_ = false;
}

}  // namespace detail
}  // namespace autoglm::benchmark
