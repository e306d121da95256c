// to_json: the stable machine-readable report, schema in docs/check-hardware.md.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "internal.h"

namespace autoglm::hardware {
namespace {

using nlohmann::json;

template <class T>
json opt(const std::optional<T>& value) {
  return value ? json(*value) : json(nullptr);
}

json text_or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

json hex_or_null(const std::optional<uint32_t>& v, int digits) {
  return v ? json(fmt::format("0x{:0{}x}", *v, digits)) : json(nullptr);
}

json link_json(const PcieLink& link) {
  json gen = nullptr;
  if (link.speed_gts)
    if (auto g = pcie_generation(*link.speed_gts)) gen = *g;
  return {{"generation", gen}, {"speed_gts", opt(link.speed_gts)}, {"width", opt(link.width)}};
}

json cpu_json(const CpuInfo& c) {
  return {{"model", text_or_null(c.model)},
          {"physical_cores", opt(c.physical_cores)},
          {"logical_threads", opt(c.logical_threads)},
          {"sockets", opt(c.sockets)},
          {"simd_flags", opt(c.simd_flags)},
          {"numa_nodes", opt(c.numa_nodes)},
          {"frequency",
           {{"current_avg_khz", opt(c.freq_current_avg_khz)},
            {"max_khz", opt(c.freq_max_khz)},
            {"ratio", opt(c.freq_ratio)},
            {"governor", text_or_null(c.governor)}}}};
}

json memory_json(const MemoryInfo& m) {
  return {{"total_bytes", opt(m.total_bytes)},
          {"available_bytes", opt(m.available_bytes)},
          {"swap_total_bytes", opt(m.swap_total_bytes)},
          {"swap_used_bytes", opt(m.swap_used_bytes)}};
}

json thermal_json(const std::vector<ThermalZone>& zones) {
  json out = json::array();
  for (const ThermalZone& z : zones) {
    json trips = json::array();
    for (const TripPoint& t : z.trips) trips.push_back({{"type", t.type}, {"temp_millicelsius", t.temp_millicelsius}});
    out.push_back({{"zone", z.zone}, {"type", text_or_null(z.type)}, {"temp_millicelsius", opt(z.temp_millicelsius)},
                   {"trip_points", trips}});
  }
  return out;
}

json gpu_json(const GpuInfo& g) {
  json cc = nullptr;
  if (g.compute_capability_major)
    cc = fmt::format("{}.{}", *g.compute_capability_major, g.compute_capability_minor.value_or(0));
  json reasons = nullptr;
  if (g.throttle_reasons) reasons = throttle_reason_names(*g.throttle_reasons);
  return {{"pci_address", g.pci_address},
          {"vendor", text_or_null(g.vendor)},
          {"vendor_id", hex_or_null(g.vendor_id, 4)},
          {"device_id", hex_or_null(g.device_id, 4)},
          {"pci_class", hex_or_null(g.pci_class, 6)},
          {"numa_node", opt(g.numa_node)},
          {"pcie", {{"current", link_json(g.link)}, {"max", link_json(g.max_link)}}},
          {"name", text_or_null(g.name)},
          {"memory_total_bytes", opt(g.memory_total_bytes)},
          {"memory_free_bytes", opt(g.memory_free_bytes)},
          {"memory_used_bytes", opt(g.memory_used_bytes)},
          {"temperature_c", opt(g.temperature_c)},
          {"power_limit_mw", opt(g.power_limit_mw)},
          {"throttle_reasons_mask", opt(g.throttle_reasons)},
          {"throttle_reasons", reasons},
          {"compute_capability", cc}};
}

json runtime_json(const HardwareReport& r) {
  const GpuRuntimeInfo& rt = r.gpu_runtime;
  json cuda = nullptr;
  if (rt.cuda_driver_version) cuda = detail::format_cuda_version(*rt.cuda_driver_version);
  return {{"queried", r.gpu_runtime_queried},
          {"nvml_loaded", rt.nvml_loaded},
          {"error", text_or_null(rt.error)},
          {"driver_version", text_or_null(rt.driver_version)},
          {"cuda_driver_version", cuda}};
}

json disk_json(const std::optional<DiskInfo>& d) {
  if (!d) return nullptr;
  return {{"path", d->path.string()},
          {"mount_point", text_or_null(d->mount_point)},
          {"fs_type", text_or_null(d->fs_type)},
          {"source", text_or_null(d->source)},
          {"block_device", text_or_null(d->block_device)},
          {"kind", to_string(d->kind)},
          {"virtual", d->virtual_disk},
          {"free_bytes", opt(d->free_bytes)},
          {"total_bytes", opt(d->total_bytes)},
          {"note", text_or_null(d->note)}};
}

}  // namespace

nlohmann::json to_json(const HardwareReport& r) {
  json gpus = json::array();
  for (const GpuInfo& g : r.gpus) gpus.push_back(gpu_json(g));
  json checks = json::array();
  for (const Check& c : r.checks)
    checks.push_back({{"name", c.name}, {"subject", text_or_null(c.subject)}, {"status", to_string(c.status)},
                      {"message", c.message}});
  json memory_for_models = json::array();
  for (const DeviceMemory& m : usable_memory(r))
    memory_for_models.push_back({{"device", m.device}, {"label", m.label}, {"bytes", opt(m.bytes)}, {"source", m.source}});
  return {{"schema_version", 1},
          {"overall", to_string(r.overall())},
          {"sysroot", r.sysroot.string()},
          {"cpu", cpu_json(r.cpu)},
          {"memory", memory_json(r.memory)},
          {"thermal", thermal_json(r.thermal)},
          {"gpus", r.pci_scanned || !r.gpus.empty() ? gpus : json(nullptr)},
          {"gpu_runtime", runtime_json(r)},
          {"cuda_runtime_compiled", r.cuda_runtime_compiled},
          {"cuda_min_arch", r.cuda_min_arch ? json(fmt::format("{}.{}", *r.cuda_min_arch / 10, *r.cuda_min_arch % 10)) : json(nullptr)},
          {"disk", disk_json(r.disk)},
          {"usable_memory", memory_for_models},
          {"checks", checks}};
}

}  // namespace autoglm::hardware
