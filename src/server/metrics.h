#pragma once
// Prometheus metrics of the HTTP service, rendered in the text exposition format (version 0.0.4).
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "scheduler.h"

namespace autoglm::server {

// Cumulative buckets in seconds, as Prometheus histograms keep them.
class Histogram {
 public:
  explicit Histogram(std::initializer_list<double> bounds);
  void observe(double seconds);
  // "<name>_bucket{<labels>le="..."} n" lines, then _sum and _count; `labels` is "" or `a="b",`.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bound, not cumulative; one more for +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Values that live elsewhere (the scheduler), read when /metrics is rendered.
struct LiveGauges {
  bool ready = false;
  double uptime_seconds = 0;
  SchedulerStats scheduler;  // all zero until a model is attached
};

class Metrics {
 public:
  Metrics();
  // One finished HTTP request. `endpoint` is a route ("/v1/chat/completions") or "other".
  void record_request(const std::string& endpoint, int status, double seconds);
  void record_time_to_first_token(double seconds);
  void record_rejection(const std::string& reason);  // "queue_full", "rate_limited", "unauthorized"
  std::string render(const LiveGauges& live) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // (endpoint, status)
  std::map<std::string, Histogram> latency_;                  // by endpoint
  Histogram ttft_;
  std::map<std::string, uint64_t> rejections_;
};

}  // namespace autoglm::server
