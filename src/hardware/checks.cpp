// Turns a report's facts into checks. Each message says what was found and what to do next.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "autoglm/units.h"
#include "internal.h"

namespace autoglm::hardware {
namespace {

using detail::format_celsius;
using detail::format_cuda_version;
using detail::format_khz;
using detail::format_link;

// Below this share of the maximum clock, the average CPU clock is worth a warning.
constexpr double kCpuClockWarnRatio = 0.70;

Check make(std::string name, std::string subject, Status status, std::string message) {
  return {std::move(name), std::move(subject), status, std::move(message)};
}

std::string plural(int n, std::string_view word) { return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s"); }

Check cpu_cores(const CpuInfo& cpu) {
  if (!cpu.physical_cores && !cpu.logical_threads)
    return make("cpu.cores", "", Status::unknown, "core count unknown: /proc/cpuinfo and /sys/devices/system/cpu unreadable");
  auto count = [](const std::optional<int>& n) { return n ? std::to_string(*n) : std::string("?"); };
  std::string msg = fmt::format("{} physical cores, {} logical threads", count(cpu.physical_cores),
                                count(cpu.logical_threads));
  if (cpu.sockets) msg += fmt::format(" on {}", plural(*cpu.sockets, "socket"));
  if (cpu.numa_nodes && *cpu.numa_nodes > 1)
    msg += fmt::format(", {} NUMA nodes (pin inference to one node, e.g. `numactl --cpunodebind=0 --membind=0`, "
                       "unless the model needs the memory of both)", *cpu.numa_nodes);
  return make("cpu.cores", "", Status::ok, msg);
}

Check cpu_simd(const CpuInfo& cpu) {
  if (!cpu.simd_flags) return make("cpu.simd", "", Status::unknown, "CPU flags unknown: /proc/cpuinfo has no flags line");
  const auto& f = *cpu.simd_flags;
  std::string list;
  for (const auto& flag : f) list += (list.empty() ? "" : " ") + flag;
  if (f.empty()) list = "none of avx2/avx512/amx/asimd";
  const bool arm = cpu.has_flag("asimd");
  if (!arm && !cpu.has_flag("avx2"))
    return make("cpu.simd", "", Status::warn,
                "SIMD: " + list + ". Without AVX2, CPU inference falls back to much slower kernels: "
                "offload to a GPU (--gpu) or use a CPU with AVX2");
  std::string extra;
  if (cpu.has_flag("amx_int8") || cpu.has_flag("amx_bf16")) extra = " (AMX: fast int8/bf16 matrix math)";
  else if (cpu.has_flag("avx512_vnni")) extra = " (AVX-512 VNNI: fast int8 dot products)";
  return make("cpu.simd", "", Status::ok, "SIMD: " + list + extra);
}

Check cpu_frequency(const CpuInfo& cpu) {
  if (!cpu.freq_ratio || !cpu.freq_current_avg_khz || !cpu.freq_max_khz)
    return make("cpu.frequency", "", Status::unknown,
                "CPU clock unknown: no cpufreq in /sys/devices/system/cpu (common in VMs and containers)");
  const std::string governor = cpu.governor.empty() ? "" : fmt::format(", governor '{}'", cpu.governor);
  const int percent = static_cast<int>(std::lround(*cpu.freq_ratio * 100));
  const std::string found = fmt::format("average clock {}, {}% of the {} maximum{}", format_khz(*cpu.freq_current_avg_khz),
                                        percent, format_khz(*cpu.freq_max_khz), governor);
  if (*cpu.freq_ratio >= kCpuClockWarnRatio) return make("cpu.frequency", "", Status::ok, found);
  return make("cpu.frequency", "", Status::warn,
              found + fmt::format(" (below {:.0f}%). This may only be idle power saving: check again under load "
                                  "(e.g. while `autoglm-deploy bench` runs). If it stays low, the CPU is throttled: "
                                  "check cooling and power limits, and set the 'performance' governor "
                                  "(`sudo cpupower frequency-set -g performance`)",
                                  kCpuClockWarnRatio * 100));
}

// The hottest trip point a zone has reached, ignoring the 0/negative placeholders some firmware sets.
const TripPoint* reached_trip(const ThermalZone& zone) {
  const TripPoint* worst = nullptr;
  auto rank = [](const std::string& type) { return type == "critical" ? 3 : type == "hot" ? 2 : type == "passive" ? 1 : 0; };
  for (const TripPoint& trip : zone.trips) {
    if (trip.temp_millicelsius <= 0 || rank(trip.type) == 0 || *zone.temp_millicelsius < trip.temp_millicelsius) continue;
    if (!worst || rank(trip.type) > rank(worst->type)) worst = &trip;
  }
  return worst;
}

void thermal_checks(const std::vector<ThermalZone>& zones, std::vector<Check>& out) {
  const ThermalZone* hottest = nullptr;
  bool any_hot = false;
  for (const ThermalZone& zone : zones) {
    if (!zone.temp_millicelsius) continue;
    if (!hottest || *zone.temp_millicelsius > *hottest->temp_millicelsius) hottest = &zone;
    const TripPoint* trip = reached_trip(zone);
    if (!trip) continue;
    any_hot = true;
    const std::string found = fmt::format("{} sensor at {}, at or above its {} trip point ({})",
                                          zone.type.empty() ? "thermal" : zone.type,
                                          format_celsius(*zone.temp_millicelsius), trip->type,
                                          format_celsius(trip->temp_millicelsius));
    if (trip->type == "critical")
      out.push_back(make("thermal", zone.zone, Status::fail,
                         found + ": the machine may power off to protect itself. Stop the load and fix cooling "
                                 "(fans, airflow, heatsink, thermal paste) before running models"));
    else
      out.push_back(make("thermal", zone.zone, Status::warn,
                         found + ": the kernel slows the CPU to cool it, so inference runs slower. "
                                 "Check fans, airflow and dust before benchmarking"));
  }
  if (any_hot) return;
  if (!hottest) {
    out.push_back(make("thermal", "", Status::unknown,
                       "no readable thermal zones in /sys/class/thermal (common in VMs and containers)"));
    return;
  }
  out.push_back(make("thermal", "", Status::ok,
                     fmt::format("{} zones below their trip points; hottest {} ({}) at {}", zones.size(),
                                 hottest->zone, hottest->type, format_celsius(*hottest->temp_millicelsius))));
}

Check memory_ram(const MemoryInfo& m) {
  if (!m.total_bytes) return make("memory.ram", "", Status::unknown, "RAM unknown: /proc/meminfo unreadable");
  return make("memory.ram", "", Status::ok,
              fmt::format("{} total, {} available", format_bytes(*m.total_bytes),
                          m.available_bytes ? format_bytes(*m.available_bytes) : "? "));
}

Check memory_swap(const MemoryInfo& m) {
  if (!m.swap_total_bytes || !m.swap_used_bytes)
    return make("memory.swap", "", Status::unknown, "swap use unknown: /proc/swaps and /proc/meminfo unreadable");
  if (*m.swap_total_bytes == 0) return make("memory.swap", "", Status::ok, "no swap configured");
  if (*m.swap_used_bytes == 0)
    return make("memory.swap", "", Status::ok, fmt::format("{} of swap, none in use", format_bytes(*m.swap_total_bytes)));
  return make("memory.swap", "", Status::warn,
              fmt::format("{} of {} swap in use: memory is, or was recently, short. Model weights that get swapped "
                          "out make inference ~100x slower: close other programs or pick a smaller model/quantization "
                          "so it fits in available RAM",
                          format_bytes(*m.swap_used_bytes), format_bytes(*m.swap_total_bytes)));
}

// Usable bytes per second per lane: 8b/10b encoding up to Gen2, 128b/130b for Gen3-5, FLIT for Gen6.
double lane_bandwidth(double gts) {
  const double efficiency = gts < 8 ? 0.8 : gts < 64 ? 128.0 / 130.0 : 242.0 / 256.0;
  return gts * efficiency / 8;
}

Check pcie_link(const GpuInfo& gpu) {
  const PcieLink& cur = gpu.link;
  const PcieLink& max = gpu.max_link;
  if (!cur.speed_gts || !cur.width || !max.speed_gts || !max.width)
    return make("gpu.pcie_link", gpu.pci_address, Status::unknown,
                fmt::format("PCIe link {} (capable of {}): not fully exposed in sysfs", format_link(cur), format_link(max)));
  const bool slower = *cur.speed_gts + 0.05 < *max.speed_gts;
  const bool narrower = *cur.width < *max.width;
  if (!slower && !narrower)
    return make("gpu.pcie_link", gpu.pci_address, Status::ok, fmt::format("PCIe {}, full speed", format_link(cur)));
  const double share = lane_bandwidth(*cur.speed_gts) * *cur.width / (lane_bandwidth(*max.speed_gts) * *max.width);
  std::string msg = fmt::format("PCIe {}, capable of {}: host↔GPU transfers at ~{}% of the link's capacity",
                                format_link(cur), format_link(max), std::lround(share * 100));
  if (narrower)
    msg += fmt::format(". Reseat the card or move it to a x{} slot (check the board manual: some slots are "
                       "wired narrower or share lanes with M.2 slots)", *max.width);
  if (slower)
    msg += narrower ? ". The lower speed may only be idle power saving (NVIDIA GPUs drop the link speed when idle)"
                    : ". An idle GPU lowers its link speed to save power (NVIDIA cards do this), so this may be "
                      "harmless: check again under load (e.g. while `autoglm-deploy bench` runs). If it stays low, "
                      "reseat the card and check the BIOS PCIe generation setting and the slot's generation";
  return make("gpu.pcie_link", gpu.pci_address, Status::warn, msg);
}

Check gpu_throttle(const GpuInfo& gpu) {
  const uint64_t mask = *gpu.throttle_reasons;
  constexpr uint64_t kThermal = 0x20 | 0x40, kPowerCap = 0x4, kHardware = 0x8 | 0x80;
  std::string names;
  for (const auto& name : throttle_reason_names(mask)) names += (names.empty() ? "" : ", ") + name;
  if (!(mask & (kThermal | kPowerCap | kHardware)))
    return make("gpu.throttle", gpu.pci_address, Status::ok,
                names.empty() ? "clocks not held back" : "clocks held back only by: " + names);
  std::string msg = "clocks held back by: " + names;
  if (mask & kThermal) msg += ". Thermal slowdown: the GPU is too hot, check its fans, airflow and dust";
  if (mask & kPowerCap)
    msg += ". Power cap: normal at full load, but if the GPU is idle its power limit is set low "
           "(`nvidia-smi -q -d POWER`; raise it with `sudo nvidia-smi -pl <watts>` if the PSU allows)";
  if (mask & kHardware) msg += ". Hardware slowdown: check the PSU and the GPU's power cables";
  return make("gpu.throttle", gpu.pci_address, Status::warn, msg);
}

Check compute_capability(const GpuInfo& gpu, int min_arch) {
  const int cc = *gpu.compute_capability_major * 10 + gpu.compute_capability_minor.value_or(0);
  const std::string found = fmt::format("compute capability {}.{}", *gpu.compute_capability_major,
                                        gpu.compute_capability_minor.value_or(0));
  if (cc >= min_arch) return make("gpu.compute_capability", gpu.pci_address, Status::ok, found);
  return make("gpu.compute_capability", gpu.pci_address, Status::fail,
              fmt::format("{}, but this binary has GPU code for {}.{} and newer only: run on the CPU, or rebuild with "
                          "-DCMAKE_CUDA_ARCHITECTURES={}", found, min_arch / 10, min_arch % 10, cc));
}

bool has_nvidia(const std::vector<GpuInfo>& gpus) {
  return std::any_of(gpus.begin(), gpus.end(), [](const GpuInfo& g) { return g.vendor_id == 0x10deu; });
}

void gpu_checks(const HardwareReport& r, std::vector<Check>& out) {
  if (!r.pci_scanned && r.gpus.empty())
    out.push_back(make("gpu.present", "", Status::unknown, "GPUs unknown: /sys/bus/pci/devices unreadable"));
  else if (r.gpus.empty())
    out.push_back(make("gpu.present", "", Status::ok, "no GPU found: models run on the CPU only"));
  else
    out.push_back(make("gpu.present", "", Status::ok, fmt::format("{} found", plural(static_cast<int>(r.gpus.size()), "GPU"))));
  for (const GpuInfo& gpu : r.gpus) {
    if (gpu.link.speed_gts || gpu.link.width || gpu.max_link.speed_gts || gpu.max_link.width)
      out.push_back(pcie_link(gpu));  // integrated GPUs have no link to check
    if (gpu.throttle_reasons) out.push_back(gpu_throttle(gpu));
    if (gpu.compute_capability_major && r.cuda_min_arch) out.push_back(compute_capability(gpu, *r.cuda_min_arch));
  }
}

void driver_checks(const HardwareReport& r, std::vector<Check>& out) {
  const GpuRuntimeInfo& rt = r.gpu_runtime;
  if (!r.gpu_runtime_queried) {
    out.push_back(make("gpu.driver", "", Status::unknown, "NVIDIA driver not queried: probing a fixture tree (" +
                                                              r.sysroot.string() + "), not this machine"));
    return;
  }
  if (!rt.nvml_loaded) {
    const std::string error = rt.error.empty() ? "NVIDIA driver not available" : rt.error;
    out.push_back(make("gpu.driver", "", has_nvidia(r.gpus) ? Status::warn : Status::unknown, error));
    return;
  }
  out.push_back(make("gpu.driver", "", Status::ok,
                     fmt::format("NVIDIA driver {}, CUDA {} supported",
                                 rt.driver_version.empty() ? "?" : rt.driver_version,
                                 rt.cuda_driver_version ? format_cuda_version(*rt.cuda_driver_version) : "?")));
  if (!rt.cuda_driver_version || !r.cuda_runtime_compiled_version) return;
  const int driver = *rt.cuda_driver_version, runtime = *r.cuda_runtime_compiled_version;
  const std::string found = fmt::format("this binary uses the CUDA {} runtime; the driver supports CUDA {}",
                                        format_cuda_version(runtime), format_cuda_version(driver));
  if (driver >= runtime) out.push_back(make("gpu.cuda_compat", "", Status::ok, found));
  else if (driver / 1000 < runtime / 1000)
    out.push_back(make("gpu.cuda_compat", "", Status::fail,
                       found + ": GPU inference will not start. Update the NVIDIA driver to one that supports CUDA " +
                           format_cuda_version(runtime)));
  else
    out.push_back(make("gpu.cuda_compat", "", Status::warn,
                       found + ": this works through CUDA minor-version compatibility, but update the driver "
                               "if kernels fail to load"));
}

void disk_checks(const DiskInfo& d, std::vector<Check>& out) {
  const std::string where = d.path.string();
  const std::string device = d.block_device.empty() ? d.source : d.block_device;
  const std::string via = d.note.empty() ? "" : ", " + d.note;
  if (d.kind == DiskKind::unknown)
    out.push_back(make("disk.type", where, Status::unknown,
                       "disk type unknown" + via + ": model load time depends on it"));
  else if (d.virtual_disk)
    out.push_back(make("disk.type", where, Status::unknown,
                       fmt::format("virtual disk {} reports '{}'{}; virtual disks report this whatever the host's "
                                   "storage is. Measure the read speed if load time matters "
                                   "(`dd if=<model file> of=/dev/null bs=16M`)", device, to_string(d.kind), via)));
  else if (d.kind == DiskKind::rotational)
    out.push_back(make("disk.type", where, Status::warn,
                       fmt::format("on a rotational disk ({}){}: loading runs at ~150 MB/s, about 2 minutes for a "
                                   "20 GB model. Put models on an SSD or NVMe drive for fast start-up", device, via)));
  else
    out.push_back(make("disk.type", where, Status::ok, fmt::format("{} ({}){}", to_string(d.kind), device, via)));
  if (d.free_bytes && d.total_bytes)
    out.push_back(make("disk.space", where, Status::ok,
                       fmt::format("{} free of {}", format_bytes(*d.free_bytes), format_bytes(*d.total_bytes))));
  else
    out.push_back(make("disk.space", where, Status::unknown, "free space unknown: statvfs failed (does the path exist?)"));
}

}  // namespace

std::vector<Check> evaluate(const HardwareReport& r) {
  std::vector<Check> out;
  out.push_back(cpu_cores(r.cpu));
  out.push_back(cpu_simd(r.cpu));
  out.push_back(cpu_frequency(r.cpu));
  thermal_checks(r.thermal, out);
  out.push_back(memory_ram(r.memory));
  out.push_back(memory_swap(r.memory));
  gpu_checks(r, out);
  driver_checks(r, out);
  if (r.disk) disk_checks(*r.disk, out);
  return out;
}

}  // namespace autoglm::hardware
