// GPUs as the PCI bus sees them (/sys/bus/pci/devices), merged with what the driver reports.
#include <algorithm>
#include <array>
#include <cmath>

#include <fmt/format.h>

#include "internal.h"

namespace autoglm::hardware {

std::optional<int> pcie_generation(double speed_gts) {
  constexpr std::array<double, 6> rates{2.5, 5.0, 8.0, 16.0, 32.0, 64.0};
  for (size_t i = 0; i < rates.size(); ++i)
    if (std::fabs(speed_gts - rates[i]) < 0.05) return static_cast<int>(i + 1);
  return std::nullopt;
}

std::vector<std::string> throttle_reason_names(uint64_t mask) {
  struct Reason { uint64_t bit; const char* name; };
  static constexpr std::array<Reason, 9> reasons{{
      {0x1, "gpu_idle"}, {0x2, "applications_clocks_setting"}, {0x4, "sw_power_cap"},
      {0x8, "hw_slowdown"}, {0x10, "sync_boost"}, {0x20, "sw_thermal_slowdown"},
      {0x40, "hw_thermal_slowdown"}, {0x80, "hw_power_brake_slowdown"}, {0x100, "display_clock_setting"}}};
  std::vector<std::string> out;
  uint64_t known = 0;
  for (const Reason& r : reasons) {
    known |= r.bit;
    if (mask & r.bit) out.emplace_back(r.name);
  }
  // Newer drivers add bits; name them rather than drop them.
  if (mask & ~known) out.push_back(fmt::format("unknown_0x{:x}", mask & ~known));
  return out;
}

std::string normalize_pci_address(std::string_view bus_id) {
  std::vector<std::string_view> parts;
  std::string_view rest = detail::trim(bus_id);
  for (size_t colon; (colon = rest.find(':')) != std::string_view::npos; rest.remove_prefix(colon + 1))
    parts.push_back(rest.substr(0, colon));
  parts.push_back(rest);
  if (parts.size() == 2) parts.insert(parts.begin(), "0");  // "01:00.0" has no domain
  if (parts.size() != 3) return "";
  const size_t dot = parts[2].find('.');
  if (dot == std::string_view::npos) return "";
  const auto domain = detail::parse_hex(parts[0]);
  const auto bus = detail::parse_hex(parts[1]);
  const auto device = detail::parse_hex(parts[2].substr(0, dot));
  const auto function = detail::parse_hex(parts[2].substr(dot + 1));
  if (!domain || !bus || !device || !function || *domain > 0xffffffff || *bus > 0xff || *device > 0x1f ||
      *function > 7)
    return "";
  return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", *domain, *bus, *device, *function);
}

namespace detail {
namespace {

std::string vendor_name(uint32_t vendor_id) {
  switch (vendor_id) {
    case 0x10de: return "NVIDIA";
    case 0x1002: return "AMD";
    case 0x8086: return "Intel";
    default: return fmt::format("0x{:04x}", vendor_id);
  }
}

PcieLink read_link(const fs::path& dir, std::string_view kind) {
  PcieLink link;
  if (auto speed = read_line(dir / (std::string(kind) + "_link_speed"))) link.speed_gts = parse_leading_double(*speed);
  if (auto width = read_line(dir / (std::string(kind) + "_link_width"))) {
    std::string_view w = *width;
    if (!w.empty() && (w.front() == 'x' || w.front() == 'X')) w.remove_prefix(1);
    if (auto n = parse_int(w); n && *n > 0 && *n <= 32) link.width = static_cast<int>(*n);
  }
  if (link.speed_gts && *link.speed_gts <= 0) link.speed_gts.reset();
  return link;
}

std::optional<uint32_t> read_u32_hex(const fs::path& path) {
  auto v = read_hex(path);
  if (!v || *v > 0xffffffff) return std::nullopt;
  return static_cast<uint32_t>(*v);
}

GpuInfo read_pci_gpu(const fs::path& dir, uint32_t pci_class) {
  GpuInfo gpu;
  gpu.pci_address = normalize_pci_address(dir.filename().string());
  if (gpu.pci_address.empty()) gpu.pci_address = dir.filename().string();
  gpu.pci_class = pci_class;
  gpu.vendor_id = read_u32_hex(dir / "vendor");
  gpu.device_id = read_u32_hex(dir / "device");
  if (gpu.vendor_id) gpu.vendor = vendor_name(*gpu.vendor_id);
  gpu.link = read_link(dir, "current");
  gpu.max_link = read_link(dir, "max");
  if (auto node = read_int(dir / "numa_node"); node && *node >= 0 && *node < 4096) gpu.numa_node = static_cast<int>(*node);
  // amdgpu publishes VRAM in sysfs; NVIDIA needs NVML for the same.
  if (auto total = read_int(dir / "mem_info_vram_total"); total && *total > 0) {
    gpu.memory_total_bytes = static_cast<uint64_t>(*total);
    if (auto used = read_int(dir / "mem_info_vram_used"); used && *used >= 0 && *used <= *total) {
      gpu.memory_used_bytes = static_cast<uint64_t>(*used);
      gpu.memory_free_bytes = static_cast<uint64_t>(*total - *used);
    }
  }
  return gpu;
}

void apply(GpuInfo& gpu, const GpuRuntimeDevice& d) {
  if (!d.name.empty()) gpu.name = d.name;
  if (d.memory_total_bytes) gpu.memory_total_bytes = d.memory_total_bytes;
  if (d.memory_free_bytes) gpu.memory_free_bytes = d.memory_free_bytes;
  if (d.memory_used_bytes) gpu.memory_used_bytes = d.memory_used_bytes;
  if (d.temperature_c) gpu.temperature_c = d.temperature_c;
  if (d.power_limit_mw) gpu.power_limit_mw = d.power_limit_mw;
  if (d.throttle_reasons) gpu.throttle_reasons = d.throttle_reasons;
  if (d.compute_capability_major) gpu.compute_capability_major = d.compute_capability_major;
  if (d.compute_capability_minor) gpu.compute_capability_minor = d.compute_capability_minor;
}

}  // namespace

std::optional<std::vector<GpuInfo>> probe_pci_gpus(const fs::path& root) {
  const fs::path devices = under(root, "sys/bus/pci/devices");
  std::error_code ec;
  fs::directory_iterator it(devices, ec);
  if (ec) return std::nullopt;
  std::vector<GpuInfo> gpus;
  for (fs::directory_iterator end; !ec && it != end; it.increment(ec)) {
    auto pci_class = read_u32_hex(it->path() / "class");
    // Class 0x03xxxx: display controllers (VGA 0x0300, XGA 0x0301, 3D 0x0302, other 0x0380).
    if (!pci_class || (*pci_class >> 16) != 0x03) continue;
    gpus.push_back(read_pci_gpu(it->path(), *pci_class));
  }
  std::sort(gpus.begin(), gpus.end(), [](const GpuInfo& a, const GpuInfo& b) { return a.pci_address < b.pci_address; });
  return gpus;
}

void merge_gpu_runtime(std::vector<GpuInfo>& gpus, const GpuRuntimeInfo& runtime) {
  for (const GpuRuntimeDevice& d : runtime.devices) {
    const std::string address = normalize_pci_address(d.pci_bus_id);
    auto it = std::find_if(gpus.begin(), gpus.end(),
                           [&](const GpuInfo& g) { return !address.empty() && g.pci_address == address; });
    if (it != gpus.end()) {
      apply(*it, d);
      continue;
    }
    // Containers often hide /sys/bus/pci: still report what the driver sees.
    GpuInfo gpu;
    gpu.pci_address = address.empty() ? d.pci_bus_id : address;
    gpu.vendor_id = 0x10de;
    gpu.vendor = "NVIDIA";
    apply(gpu, d);
    gpus.push_back(std::move(gpu));
  }
}

}  // namespace detail
}  // namespace autoglm::hardware
