// Mean, sample standard deviation and percentiles (definitions in autoglm/benchmark.h).
#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <vector>

#include "autoglm/benchmark.h"
#include "autoglm/error.h"

namespace autoglm::benchmark {
namespace {

void require_values(std::span<const double> values, const char* what) {
  if (values.empty()) throw Error(kExitCheckFailed, fmt::format("{} of no values: measure at least one sample first", what));
}

// Percentile of values already sorted ascending.
double sorted_percentile(const std::vector<double>& x, double p) {
  const double rank = p / 100.0 * static_cast<double>(x.size() - 1);
  const auto below = static_cast<size_t>(std::floor(rank));
  if (below + 1 >= x.size()) return x.back();
  return x[below] + (rank - static_cast<double>(below)) * (x[below + 1] - x[below]);
}

}  // namespace

double mean(std::span<const double> values) {
  require_values(values, "mean");
  double sum = 0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

double stddev(std::span<const double> values) {
  require_values(values, "standard deviation");
  if (values.size() == 1) return 0;
  const double m = mean(values);
  double squares = 0;
  for (double v : values) squares += (v - m) * (v - m);
  return std::sqrt(squares / static_cast<double>(values.size() - 1));
}

double percentile(std::span<const double> values, double p) {
  require_values(values, "percentile");
  if (!(p >= 0 && p <= 100)) throw Error(kExitCheckFailed, fmt::format("percentile {} is outside 0..100", p));
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  return sorted_percentile(sorted, p);
}

std::optional<Distribution> describe(std::span<const double> values) {
  if (values.empty()) return std::nullopt;
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  Distribution d;
  d.count = sorted.size();
  d.mean = mean(sorted);
  d.p50 = sorted_percentile(sorted, 50);
  d.p90 = sorted_percentile(sorted, 90);
  d.p95 = sorted_percentile(sorted, 95);
  d.p99 = sorted_percentile(sorted, 99);
  return d;
}

}  // namespace autoglm::benchmark
