#pragma once
// Shared by the hardware module's sources only: file helpers and the per-part probes.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "autoglm/hardware.h"

namespace autoglm::hardware::detail {

namespace fs = std::filesystem;

// <root>/<relative>. `relative` carries no leading slash, so it never escapes the root.
fs::path under(const fs::path& root, std::string_view relative);
bool is_live_root(const fs::path& root);

std::optional<std::string> read_text(const fs::path& path);  // nullopt when unreadable
std::optional<std::string> read_line(const fs::path& path);  // first line, trimmed
std::optional<int64_t> read_int(const fs::path& path);
std::optional<uint64_t> read_hex(const fs::path& path);      // "0x10de"

std::string_view trim(std::string_view s);
std::vector<std::string_view> split_ws(std::string_view s);
std::vector<std::string_view> split_lines(std::string_view s);
std::optional<int64_t> parse_int(std::string_view s);
std::optional<uint64_t> parse_uint(std::string_view s);
std::optional<uint64_t> parse_hex(std::string_view s);      // with or without "0x"
std::optional<double> parse_leading_double(std::string_view s);  // "8.0 GT/s PCIe" -> 8.0

// Entries of `dir` named `prefix` + digits ("cpu12"), sorted by the number. Empty if unreadable.
std::vector<std::pair<int, fs::path>> numbered_entries(const fs::path& dir, std::string_view prefix);
bool path_exists(const fs::path& path);

CpuInfo probe_cpu(const fs::path& root);
MemoryInfo probe_memory(const fs::path& root);
std::vector<ThermalZone> probe_thermal(const fs::path& root);
std::optional<std::vector<GpuInfo>> probe_pci_gpus(const fs::path& root);
void merge_gpu_runtime(std::vector<GpuInfo>& gpus, const GpuRuntimeInfo& runtime);
DiskInfo probe_disk(const fs::path& root, const fs::path& path);

std::string format_khz(uint64_t khz);              // "3.50 GHz"
std::string format_celsius(int64_t millicelsius);  // "97.0°C"
std::string format_link(const PcieLink& link);     // "Gen4 x16", "8.0 GT/s x?", "unknown"
std::string format_cuda_version(int version);      // 12040 -> "12.4"

}  // namespace autoglm::hardware::detail
