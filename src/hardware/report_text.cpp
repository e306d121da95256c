// render_text: the report a person reads, with aligned tables and OK/WARN/FAIL marks.
#include <algorithm>

#include <fmt/format.h>

#include "autoglm/units.h"
#include "internal.h"

namespace autoglm::hardware {
namespace {

using detail::format_celsius;
using detail::format_cuda_version;
using detail::format_khz;
using detail::format_link;

constexpr size_t kLineWidth = 100;

// Columns line up by characters, not bytes ("°", "↔" are multi-byte in UTF-8).
size_t display_width(std::string_view s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string pad(const std::string& s, size_t width) {
  const size_t w = display_width(s);
  return w >= width ? s : s + std::string(width - w, ' ');
}

// Greedy word wrap; continuation lines start at `indent` columns.
std::string wrap(const std::string& text, size_t first_column, size_t indent) {
  std::string out, line;
  size_t column = first_column;
  for (std::string_view word : detail::split_ws(text)) {
    const size_t w = display_width(word);
    if (!line.empty() && column + 1 + w > kLineWidth) {
      out += line + "\n" + std::string(indent, ' ');
      line.clear();
      column = indent;
    }
    if (!line.empty()) {
      line += ' ';
      ++column;
    }
    line += word;
    column += w;
  }
  return out + line;
}

class Table {
 public:
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string render(const std::string& indent = "  ") const {
    std::vector<size_t> widths;
    for (const auto& row : rows_)
      for (size_t i = 0; i < row.size(); ++i) {
        if (widths.size() <= i) widths.push_back(0);
        widths[i] = std::max(widths[i], display_width(row[i]));
      }
    std::string out;
    for (const auto& row : rows_) {
      std::string line = indent;
      for (size_t i = 0; i + 1 < row.size(); ++i) line += pad(row[i], widths[i]) + "  ";
      const size_t last_column = display_width(line);
      line += row.empty() ? "" : wrap(row.back(), last_column, last_column);
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + "\n";
    }
    return out;
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string or_unknown(const std::string& s) { return s.empty() ? "unknown" : s; }

template <class T>
std::string num(const std::optional<T>& v) {
  return v ? fmt::format("{}", *v) : "?";
}

std::string bytes_or_unknown(const std::optional<uint64_t>& v) { return v ? format_bytes(*v) : "unknown"; }

std::string cpu_section(const CpuInfo& c) {
  Table t;
  t.add({"Model", or_unknown(c.model)});
  std::string cores = fmt::format("{} physical, {} logical", num(c.physical_cores), num(c.logical_threads));
  if (c.sockets) cores += fmt::format(", {} socket{}", *c.sockets, *c.sockets == 1 ? "" : "s");
  t.add({"Cores", cores});
  std::string flags = "unknown";
  if (c.simd_flags) {
    flags.clear();
    for (const auto& f : *c.simd_flags) flags += (flags.empty() ? "" : " ") + f;
    if (flags.empty()) flags = "none of interest";
  }
  t.add({"SIMD", flags});
  t.add({"NUMA nodes", num(c.numa_nodes)});
  std::string clock = "unknown (no cpufreq)";
  if (c.freq_current_avg_khz && c.freq_max_khz)
    clock = fmt::format("average {} of max {}", format_khz(*c.freq_current_avg_khz), format_khz(*c.freq_max_khz));
  if (c.freq_ratio) clock += fmt::format(" ({:.0f}%)", *c.freq_ratio * 100);
  if (!c.governor.empty()) clock += ", governor " + c.governor;
  t.add({"Clock", clock});
  return "CPU\n" + t.render();
}

std::string memory_section(const MemoryInfo& m) {
  Table t;
  t.add({"RAM", fmt::format("{} total, {} available", bytes_or_unknown(m.total_bytes), bytes_or_unknown(m.available_bytes))});
  std::string swap = "unknown";
  if (m.swap_total_bytes && *m.swap_total_bytes == 0) swap = "none";
  else if (m.swap_total_bytes)
    swap = fmt::format("{} total, {} used", format_bytes(*m.swap_total_bytes), bytes_or_unknown(m.swap_used_bytes));
  t.add({"Swap", swap});
  return "Memory\n" + t.render();
}

std::string thermal_section(const std::vector<ThermalZone>& zones) {
  if (zones.empty()) return "Thermal zones\n  none readable\n";
  Table t;
  t.add({"Zone", "Type", "Temp", "Trip points"});
  for (const ThermalZone& z : zones) {
    std::string trips;
    for (const TripPoint& p : z.trips)
      if (p.temp_millicelsius > 0) trips += (trips.empty() ? "" : ", ") + p.type + " " + format_celsius(p.temp_millicelsius);
    t.add({z.zone, or_unknown(z.type), z.temp_millicelsius ? format_celsius(*z.temp_millicelsius) : "?",
           trips.empty() ? "-" : trips});
  }
  return "Thermal zones\n" + t.render();
}

std::string gpu_memory_text(const GpuInfo& g) {
  if (g.memory_free_bytes && g.memory_total_bytes)
    return format_bytes(*g.memory_free_bytes) + " free of " + format_bytes(*g.memory_total_bytes);
  if (g.memory_total_bytes) return format_bytes(*g.memory_total_bytes) + " total";
  return "unknown";
}

std::string gpu_section(const HardwareReport& r) {
  std::string out = "GPUs\n";
  if (r.gpus.empty()) out += r.pci_scanned ? "  none found\n" : "  unknown (/sys/bus/pci/devices unreadable)\n";
  else {
    Table t;
    t.add({"PCI address", "Vendor", "Name", "Memory", "PCIe now", "PCIe max", "NUMA", "Temp", "CC"});
    for (const GpuInfo& g : r.gpus) {
      const std::string name = !g.name.empty() ? g.name : g.device_id ? fmt::format("device 0x{:04x}", *g.device_id) : "?";
      const std::string cc = g.compute_capability_major
                                 ? fmt::format("{}.{}", *g.compute_capability_major, g.compute_capability_minor.value_or(0))
                                 : "?";
      t.add({g.pci_address, or_unknown(g.vendor), name, gpu_memory_text(g), format_link(g.link), format_link(g.max_link),
             num(g.numa_node), g.temperature_c ? fmt::format("{}°C", *g.temperature_c) : "?", cc});
    }
    out += t.render();
  }
  Table d;
  const GpuRuntimeInfo& rt = r.gpu_runtime;
  std::string driver = "not queried (fixture tree)";
  if (r.gpu_runtime_queried && rt.nvml_loaded)
    driver = fmt::format("{} (supports CUDA {})", or_unknown(rt.driver_version),
                         rt.cuda_driver_version ? format_cuda_version(*rt.cuda_driver_version) : "?");
  else if (r.gpu_runtime_queried)
    driver = rt.error.empty() ? "not available" : rt.error;
  d.add({"NVIDIA driver", driver});
  d.add({"CUDA runtime in this binary", r.cuda_runtime_compiled});
  return out + d.render();
}

std::string disk_section(const DiskInfo& disk) {
  Table t;
  std::string mount = "unknown (no mount table)";
  if (!disk.mount_point.empty())
    mount = fmt::format("{} ({} on {})", disk.mount_point, or_unknown(disk.fs_type), or_unknown(disk.source));
  t.add({"Mount", mount});
  std::string kind(to_string(disk.kind));
  if (!disk.block_device.empty()) kind += " (" + disk.block_device + (disk.virtual_disk ? ", virtual" : "") + ")";
  if (!disk.note.empty()) kind += "; " + disk.note;
  t.add({"Type", kind});
  t.add({"Space", disk.free_bytes && disk.total_bytes
                      ? fmt::format("{} free of {}", format_bytes(*disk.free_bytes), format_bytes(*disk.total_bytes))
                      : "unknown"});
  return "Disk (" + disk.path.string() + ")\n" + t.render();
}

std::string usable_section(const HardwareReport& r) {
  Table t;
  t.add({"Device", "Usable now", "Source"});
  for (const DeviceMemory& m : usable_memory(r)) t.add({m.label, bytes_or_unknown(m.bytes), m.source});
  return "Memory a model can use\n" + t.render();
}

std::string mark(Status s, bool color) {
  const std::string text = s == Status::ok ? "OK" : s == Status::warn ? "WARN" : s == Status::fail ? "FAIL" : "??";
  if (!color) return pad(text, 4);
  const char* code = s == Status::ok ? "32" : s == Status::warn ? "33" : s == Status::fail ? "31" : "90";
  return fmt::format("\033[{}m{}\033[0m", code, pad(text, 4));
}

std::string checks_section(const HardwareReport& r, bool color) {
  size_t name_width = 0;
  for (const Check& c : r.checks) name_width = std::max(name_width, c.name.size());
  const size_t message_column = 2 + 4 + 2 + name_width + 2;
  std::string out = "Checks\n";
  for (const Check& c : r.checks) {
    const std::string message = c.subject.empty() ? c.message : c.subject + ": " + c.message;
    out += "  " + mark(c.status, color) + "  " + pad(c.name, name_width) + "  " +
           wrap(message, message_column, message_column) + "\n";
  }
  return out;
}

std::string overall_line(const HardwareReport& r, bool color) {
  int warn = 0, fail = 0, unknown = 0;
  for (const Check& c : r.checks) {
    warn += c.status == Status::warn;
    fail += c.status == Status::fail;
    unknown += c.status == Status::unknown;
  }
  std::string text = r.overall() == Status::unknown ? "UNKNOWN" : mark(r.overall(), color);
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return fmt::format("Overall: {} ({} failed, {} warning{}, {} unknown)\n", text, fail, warn, warn == 1 ? "" : "s", unknown);
}

}  // namespace

std::string render_text(const HardwareReport& r, const TextOptions& options) {
  std::string out = "Hardware (sysroot " + r.sysroot.string() + ")\n\n";
  out += cpu_section(r.cpu) + "\n";
  out += memory_section(r.memory) + "\n";
  out += thermal_section(r.thermal) + "\n";
  out += gpu_section(r) + "\n";
  if (r.disk) out += disk_section(*r.disk) + "\n";
  out += usable_section(r) + "\n";
  out += checks_section(r, options.color) + "\n";
  out += overall_line(r, options.color);
  return out;
}

}  // namespace autoglm::hardware
