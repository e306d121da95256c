// Memory (/proc/meminfo, /proc/swaps) and thermal zones (/sys/class/thermal).
#include <algorithm>
#include <map>

#include "internal.h"

namespace autoglm::hardware::detail {
namespace {

// "MemTotal:       24684092 kB" -> {"MemTotal", bytes}.
std::map<std::string, uint64_t, std::less<>> parse_meminfo(std::string_view text) {
  std::map<std::string, uint64_t, std::less<>> out;
  for (std::string_view line : split_lines(text)) {
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const auto words = split_ws(line.substr(colon + 1));
    if (words.empty()) continue;
    auto value = parse_uint(words[0]);
    if (!value) continue;
    const bool kib = words.size() > 1 && words[1] == "kB";
    if (kib && *value > UINT64_MAX / 1024) continue;
    out.emplace(std::string(trim(line.substr(0, colon))), kib ? *value * 1024 : *value);
  }
  return out;
}

// /proc/swaps: a header, then "name type size used priority" with sizes in KiB.
bool read_swaps(const fs::path& root, MemoryInfo& mem) {
  auto text = read_text(under(root, "proc/swaps"));
  if (!text) return false;
  const auto lines = split_lines(*text);
  if (lines.empty() || trim(lines[0]).rfind("Filename", 0) != 0) return false;
  uint64_t total = 0, used = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    const auto words = split_ws(lines[i]);
    if (words.size() < 4) continue;
    auto size = parse_uint(words[2]);
    auto in_use = parse_uint(words[3]);
    if (!size || !in_use) return false;
    total += *size * 1024;
    used += *in_use * 1024;
  }
  mem.swap_total_bytes = total;
  mem.swap_used_bytes = used;
  return true;
}

std::optional<uint64_t> lookup(const std::map<std::string, uint64_t, std::less<>>& m, std::string_view key) {
  auto it = m.find(key);
  return it == m.end() ? std::nullopt : std::optional<uint64_t>(it->second);
}

}  // namespace

MemoryInfo probe_memory(const fs::path& root) {
  MemoryInfo mem;
  std::map<std::string, uint64_t, std::less<>> info;
  if (auto text = read_text(under(root, "proc/meminfo"))) info = parse_meminfo(*text);
  mem.total_bytes = lookup(info, "MemTotal");
  mem.available_bytes = lookup(info, "MemAvailable");
  if (!read_swaps(root, mem)) {
    auto total = lookup(info, "SwapTotal");
    auto free = lookup(info, "SwapFree");
    mem.swap_total_bytes = total;
    if (total && free && *free <= *total) mem.swap_used_bytes = *total - *free;
  }
  return mem;
}

std::vector<ThermalZone> probe_thermal(const fs::path& root) {
  std::vector<ThermalZone> zones;
  for (const auto& [n, dir] : numbered_entries(under(root, "sys/class/thermal"), "thermal_zone")) {
    ThermalZone zone;
    zone.zone = dir.filename().string();
    zone.type = read_line(dir / "type").value_or("");
    zone.temp_millicelsius = read_int(dir / "temp");
    for (int i = 0; i < 64; ++i) {
      const std::string prefix = "trip_point_" + std::to_string(i);
      auto type = read_line(dir / (prefix + "_type"));
      if (!type) break;  // the kernel numbers trip points without gaps
      auto temp = read_int(dir / (prefix + "_temp"));
      if (temp) zone.trips.push_back({*type, *temp});
    }
    zones.push_back(std::move(zone));
  }
  return zones;
}

}  // namespace autoglm::hardware::detail
