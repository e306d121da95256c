#include "metrics.h"

#include <algorithm>
#include <fmt/format.h>

namespace autoglm::server {
namespace {

// Latency of whole requests (generation included) and of the first token.
const std::initializer_list<double> kLatencyBounds{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
const std::initializer_list<double> kTtftBounds{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

std::string number(double v) { return fmt::format("{}", v); }

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void gauge(std::string& out, const char* name, const char* help, double value) {
  header(out, name, "gauge", help);
  out += fmt::format("{} {}\n", name, number(value));
}

void counter(std::string& out, const char* name, const char* help, double value) {
  header(out, name, "counter", help);
  out += fmt::format("{} {}\n", name, number(value));
}

}  // namespace

Histogram::Histogram(std::initializer_list<double> bounds) : bounds_(bounds), counts_(bounds.size() + 1, 0) {}

void Histogram::observe(double seconds) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), seconds) - bounds_.begin());
  ++counts_[i];
  sum_ += seconds;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name, labels, number(bounds_[i]), cumulative);
  }
  out += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n", name, labels, count_);
  const std::string plain = labels.empty() ? std::string() : fmt::format("{{{}}}", std::string_view(labels).substr(0, labels.size() - 1));
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, plain, number(sum_), name, plain, count_);
}

Metrics::Metrics() : ttft_(kTtftBounds) {}

void Metrics::record_request(const std::string& endpoint, int status, double seconds) {
  std::lock_guard lock(mu_);
  ++requests_[{endpoint, status}];
  latency_.try_emplace(endpoint, kLatencyBounds).first->second.observe(seconds);
}

void Metrics::record_time_to_first_token(double seconds) {
  std::lock_guard lock(mu_);
  ttft_.observe(seconds);
}

void Metrics::record_rejection(const std::string& reason) {
  std::lock_guard lock(mu_);
  ++rejections_[reason];
}

std::string Metrics::render(const LiveGauges& live) const {
  std::string out;
  std::lock_guard lock(mu_);
  header(out, "autoglm_requests_total", "counter", "HTTP requests by endpoint and status code.");
  for (const auto& [key, n] : requests_)
    out += fmt::format("autoglm_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  header(out, "autoglm_request_duration_seconds", "histogram", "HTTP request latency, generation included.");
  for (const auto& [endpoint, h] : latency_)
    h.render(out, "autoglm_request_duration_seconds", fmt::format("endpoint=\"{}\",", endpoint));
  header(out, "autoglm_time_to_first_token_seconds", "histogram", "Time from a request's arrival to its first generated token.");
  ttft_.render(out, "autoglm_time_to_first_token_seconds", "");
  header(out, "autoglm_rejected_requests_total", "counter", "Requests turned away, by reason.");
  for (const auto& [reason, n] : rejections_)
    out += fmt::format("autoglm_rejected_requests_total{{reason=\"{}\"}} {}\n", reason, n);

  counter(out, "autoglm_prompt_tokens_total", "Prompt tokens computed (cached ones excluded).", static_cast<double>(live.scheduler.prompt_tokens));
  counter(out, "autoglm_prompt_tokens_cached_total", "Prompt tokens whose KV came from the prefix cache.",
          static_cast<double>(live.scheduler.cached_prompt_tokens));
  counter(out, "autoglm_generation_tokens_total", "Tokens generated.", static_cast<double>(live.scheduler.generated_tokens));
  counter(out, "autoglm_images_encoded_total", "Images run through the vision tower.",
          static_cast<double>(live.scheduler.images_encoded));
  counter(out, "autoglm_images_cached_total", "Images whose tokens all came from the prefix cache (not encoded).",
          static_cast<double>(live.scheduler.images_cached));
  counter(out, "autoglm_image_encoder_cache_hits_total",
          "Images whose vision tower output came from the encoder cache (same image content seen before).",
          static_cast<double>(live.scheduler.encoder_cache_hits));
  gauge(out, "autoglm_image_encoder_cache_bytes", "Bytes of image embeddings held by the encoder cache.",
        static_cast<double>(live.scheduler.encoder_cache_bytes));
  counter(out, "autoglm_image_encode_seconds_total", "Seconds spent in the vision tower.", live.scheduler.image_encode_seconds);
  counter(out, "autoglm_engine_step_seconds_total", "Seconds spent in engine steps.", live.scheduler.engine_seconds);
  counter(out, "autoglm_decode_steps_total", "Engine steps that only generated (no prompt tokens).",
          static_cast<double>(live.scheduler.decode_steps));
  counter(out, "autoglm_decode_step_tokens_total", "Tokens generated by those steps.",
          static_cast<double>(live.scheduler.decode_step_tokens));
  counter(out, "autoglm_decode_step_seconds_total", "Seconds spent in those steps.", live.scheduler.decode_step_seconds);
  gauge(out, "autoglm_generation_tokens_per_second", "Tokens generated per second over the last 10 seconds.",
        live.scheduler.generation_tokens_per_second);
  gauge(out, "autoglm_queue_depth", "Requests waiting for a batch slot.", static_cast<double>(live.scheduler.waiting));
  gauge(out, "autoglm_running_sequences", "Sequences in the running batch.", static_cast<double>(live.scheduler.running));
  gauge(out, "autoglm_kv_cache_blocks_used", "KV cache blocks held by sequences.", static_cast<double>(live.scheduler.kv_blocks_used));
  gauge(out, "autoglm_kv_cache_blocks_capacity", "KV cache blocks in the pool.", static_cast<double>(live.scheduler.kv_blocks_total));
  gauge(out, "autoglm_model_ready", "1 once the model is loaded and requests are served.", live.ready ? 1 : 0);
  gauge(out, "autoglm_uptime_seconds", "Seconds since the server started.", live.uptime_seconds);
  return out;
}

}  // namespace autoglm::server
