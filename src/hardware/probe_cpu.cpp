#include <algorithm>
#include <array>
#include <set>

#include "internal.h"

namespace autoglm::hardware::detail {
namespace {

// The flags that decide which CPU inference kernels can run, in the order we print them.
constexpr std::array<std::string_view, 13> kSimdFlags{
    "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
    "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve", "sve2"};

struct CpuinfoBlock {
  std::string physical_id;
  std::string core_id;
};

struct CpuinfoSummary {
  std::string model_name;  // x86 "model name"
  std::string model;       // ARM "Model" (board name), used only when there is no model name
  std::optional<std::string> flags;
  int processors = 0;
  std::optional<int> cores_per_package;
  std::set<std::pair<std::string, std::string>> cores;  // (physical id, core id)
  std::set<std::string> packages;
};

void finish_block(CpuinfoBlock& block, CpuinfoSummary& s) {
  if (!block.physical_id.empty()) s.packages.insert(block.physical_id);
  if (!block.core_id.empty()) s.cores.insert({block.physical_id, block.core_id});
  block = {};
}

// /proc/cpuinfo: "key<tabs>: value" lines, one blank-line-separated block per logical CPU.
CpuinfoSummary parse_cpuinfo(std::string_view text) {
  CpuinfoSummary s;
  CpuinfoBlock block;
  for (std::string_view line : split_lines(text)) {
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = trim(line.substr(0, colon));
    const std::string_view value = trim(line.substr(colon + 1));
    if (key == "processor") {
      finish_block(block, s);
      ++s.processors;
    } else if (key == "model name" && s.model_name.empty()) {
      s.model_name = value;
    } else if (key == "Model" && s.model.empty()) {
      s.model = value;
    } else if ((key == "flags" || key == "Features") && !s.flags) {
      s.flags = std::string(value);
    } else if (key == "physical id") {
      block.physical_id = value;
    } else if (key == "core id") {
      block.core_id = value;
    } else if (key == "cpu cores" && !s.cores_per_package) {
      if (auto n = parse_int(value); n && *n > 0 && *n < 100'000) s.cores_per_package = static_cast<int>(*n);
    }
  }
  finish_block(block, s);
  return s;
}

std::vector<std::string> simd_flags_in(std::string_view flags_line) {
  const auto words = split_ws(flags_line);
  const std::set<std::string_view> present(words.begin(), words.end());
  std::vector<std::string> out;
  for (std::string_view flag : kSimdFlags)
    if (present.count(flag)) out.emplace_back(flag);
  return out;
}

// "0-3,8-11" -> 8. nullopt when it does not parse.
std::optional<int> count_cpu_list(std::string_view list) {
  int count = 0;
  std::string_view rest = trim(list);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view part = rest.substr(0, comma);
    const size_t dash = part.find('-');
    auto lo = parse_int(part.substr(0, dash));
    auto hi = dash == std::string_view::npos ? lo : parse_int(part.substr(dash + 1));
    if (!lo || !hi || *hi < *lo || *hi - *lo > 100'000) return std::nullopt;
    count += static_cast<int>(*hi - *lo + 1);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return count > 0 ? std::optional<int>(count) : std::nullopt;
}

// Topology from sysfs, for kernels/architectures whose /proc/cpuinfo lacks core ids (ARM).
void topology_from_sysfs(const fs::path& root, CpuInfo& cpu) {
  std::set<std::pair<int64_t, int64_t>> cores;
  std::set<int64_t> packages;
  for (const auto& [n, dir] : numbered_entries(under(root, "sys/devices/system/cpu"), "cpu")) {
    auto package = read_int(dir / "topology/physical_package_id");
    auto core = read_int(dir / "topology/core_id");
    if (!package || !core) continue;
    packages.insert(*package);
    cores.insert({*package, *core});
  }
  if (!cpu.physical_cores && !cores.empty()) cpu.physical_cores = static_cast<int>(cores.size());
  if (!cpu.sockets && !packages.empty()) cpu.sockets = static_cast<int>(packages.size());
}

void read_frequencies(const fs::path& root, CpuInfo& cpu) {
  uint64_t sum_cur = 0, count_cur = 0, paired_cur = 0, paired_max = 0, max_of_max = 0;
  for (const auto& [n, dir] : numbered_entries(under(root, "sys/devices/system/cpu"), "cpu")) {
    const fs::path freq = dir / "cpufreq";
    auto cur = read_int(freq / "scaling_cur_freq");
    if (!cur) cur = read_int(freq / "cpuinfo_cur_freq");
    auto max = read_int(freq / "cpuinfo_max_freq");
    if (!max) max = read_int(freq / "scaling_max_freq");
    const bool max_known = max && *max > 0;
    if (max_known) max_of_max = std::max(max_of_max, static_cast<uint64_t>(*max));
    if (!cur || *cur <= 0) continue;
    sum_cur += static_cast<uint64_t>(*cur);
    ++count_cur;
    // The ratio uses only CPUs with both numbers, so a CPU without cpufreq cannot skew it.
    if (max_known) {
      paired_cur += static_cast<uint64_t>(*cur);
      paired_max += static_cast<uint64_t>(*max);
    }
    if (cpu.governor.empty()) cpu.governor = read_line(freq / "scaling_governor").value_or("");
  }
  if (count_cur > 0) cpu.freq_current_avg_khz = sum_cur / count_cur;
  if (max_of_max > 0) cpu.freq_max_khz = max_of_max;
  if (paired_max > 0) cpu.freq_ratio = static_cast<double>(paired_cur) / static_cast<double>(paired_max);
}

}  // namespace

CpuInfo probe_cpu(const fs::path& root) {
  CpuInfo cpu;
  if (auto text = read_text(under(root, "proc/cpuinfo"))) {
    const CpuinfoSummary s = parse_cpuinfo(*text);
    cpu.model = !s.model_name.empty() ? s.model_name : s.model;
    if (s.flags) cpu.simd_flags = simd_flags_in(*s.flags);
    if (s.processors > 0) cpu.logical_threads = s.processors;
    if (!s.packages.empty()) cpu.sockets = static_cast<int>(s.packages.size());
    if (!s.cores.empty()) cpu.physical_cores = static_cast<int>(s.cores.size());
    else if (s.cores_per_package) cpu.physical_cores = *s.cores_per_package * cpu.sockets.value_or(1);
  }
  if (!cpu.logical_threads)
    if (auto online = read_line(under(root, "sys/devices/system/cpu/online"))) cpu.logical_threads = count_cpu_list(*online);
  topology_from_sysfs(root, cpu);
  const fs::path nodes = under(root, "sys/devices/system/node");
  if (const size_t n = numbered_entries(nodes, "node").size(); n > 0) cpu.numa_nodes = static_cast<int>(n);
  read_frequencies(root, cpu);
  return cpu;
}

}  // namespace autoglm::hardware::detail
