#pragma once
// Comparing logits the way the fixtures README states its tolerances, and reading its prompt files.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace autoglm::test {

struct LogitDiff {
  double rms = 0, max_abs = 0, mean_kl = 0;
};

// d = ours - ref over all positions and vocab entries; KL(softmax(ref) || softmax(ours)) averaged
// over positions.
inline LogitDiff compare_logits(const std::vector<float>& ours, const std::vector<float>& ref, size_t vocab) {
  LogitDiff d;
  const size_t rows = ref.size() / vocab;
  for (size_t r = 0; r < rows; ++r) {
    const float* a = ours.data() + r * vocab;
    const float* b = ref.data() + r * vocab;
    double max_a = -INFINITY, max_b = -INFINITY;
    for (size_t i = 0; i < vocab; ++i) {
      const double e = double{a[i]} - b[i];
      d.rms += e * e;
      d.max_abs = std::max(d.max_abs, std::abs(e));
      max_a = std::max(max_a, double{a[i]});
      max_b = std::max(max_b, double{b[i]});
    }
    double za = 0, zb = 0;
    for (size_t i = 0; i < vocab; ++i) {
      za += std::exp(a[i] - max_a);
      zb += std::exp(b[i] - max_b);
    }
    double kl = 0;
    for (size_t i = 0; i < vocab; ++i) {
      const double lp = b[i] - max_b - std::log(zb), lq = a[i] - max_a - std::log(za);
      kl += std::exp(lp) * (lp - lq);
    }
    d.mean_kl += kl / static_cast<double>(rows);
  }
  d.rms = std::sqrt(d.rms / static_cast<double>(ref.size()));
  return d;
}

// refs/{arch}.prompts: one prompt per line, comma-separated token ids.
inline std::vector<std::vector<int32_t>> read_prompts(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::vector<int32_t>> prompts;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    std::vector<int32_t> ids;
    std::stringstream ss(line);
    for (std::string id; std::getline(ss, id, ',');) ids.push_back(std::stoi(id));
    prompts.push_back(ids);
  }
  return prompts;
}

}  // namespace autoglm::test
