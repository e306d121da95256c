#pragma once
// The hardware probe behind `autoglm-deploy check-hardware`: CPU, memory, cooling, GPUs and disk,
// read from procfs/sysfs under a root prefix (so tests run on fixture trees), plus NVML/CUDA facts
// on the live machine. Findings become checks (OK/WARN/FAIL/UNKNOWN) that say what to do next.
// JSON schema: docs/check-hardware.md.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace autoglm::hardware {

enum class Status { ok, warn, fail, unknown };
std::string_view to_string(Status status);  // "ok", "warn", "fail", "unknown"

struct Check {
  std::string name;     // stable id: "memory.swap", "gpu.pcie_link", ... (docs/check-hardware.md)
  std::string subject;  // what it is about: "0000:b1:00.0", "thermal_zone1"; empty = the machine
  Status status = Status::unknown;
  std::string message;  // what was found and what to do next
};

struct CpuInfo {
  std::string model;                     // empty = unknown
  std::optional<int> physical_cores;
  std::optional<int> logical_threads;
  std::optional<int> sockets;
  // The SIMD flags we look for (avx2, fma, f16c, avx512*, amx_*, asimd, sve) that the CPU has.
  // nullopt = /proc/cpuinfo has no flags line.
  std::optional<std::vector<std::string>> simd_flags;
  std::optional<int> numa_nodes;
  std::optional<uint64_t> freq_current_avg_khz;  // mean scaling_cur_freq
  std::optional<uint64_t> freq_max_khz;          // highest cpuinfo_max_freq
  std::optional<double> freq_ratio;              // sum(cur) / sum(max) over CPUs that have both
  std::string governor;                          // cpu0's scaling_governor; empty = unknown
  bool has_flag(std::string_view flag) const;
};

struct MemoryInfo {
  std::optional<uint64_t> total_bytes;      // MemTotal
  std::optional<uint64_t> available_bytes;  // MemAvailable
  std::optional<uint64_t> swap_total_bytes;
  std::optional<uint64_t> swap_used_bytes;
};

struct TripPoint {
  std::string type;  // "passive", "active", "hot", "critical"
  int64_t temp_millicelsius = 0;
};

struct ThermalZone {
  std::string zone;  // "thermal_zone0"
  std::string type;  // "x86_pkg_temp", "acpitz", ...
  std::optional<int64_t> temp_millicelsius;
  std::vector<TripPoint> trips;
};

struct PcieLink {
  std::optional<double> speed_gts;  // per-lane rate: 16.0 for "16.0 GT/s PCIe"
  std::optional<int> width;         // lanes: 16
};
// 2.5 -> 1, 5 -> 2, 8 -> 3, 16 -> 4, 32 -> 5, 64 -> 6; nullopt for other rates.
std::optional<int> pcie_generation(double speed_gts);

struct GpuInfo {
  std::string pci_address;  // "0000:01:00.0": lower-case hex, 4-digit domain
  std::optional<uint32_t> vendor_id, device_id, pci_class;
  std::string vendor;  // "NVIDIA", "AMD", "Intel", else "0x1a03"; empty = unknown
  PcieLink link;       // current_link_speed / current_link_width
  PcieLink max_link;   // max_link_speed / max_link_width
  std::optional<int> numa_node;
  // From the driver: NVML/CUDA for NVIDIA, amdgpu's sysfs VRAM files for AMD. Unknown without it.
  std::string name;
  std::optional<uint64_t> memory_total_bytes, memory_free_bytes, memory_used_bytes;
  std::optional<int> temperature_c;
  std::optional<uint32_t> power_limit_mw;
  std::optional<uint64_t> throttle_reasons;  // NVML clocks-throttle-reasons bitmask
  std::optional<int> compute_capability_major, compute_capability_minor;
};

// NVML throttle-reason bits by name: 0x41 -> {"gpu_idle", "hw_thermal_slowdown"}.
std::vector<std::string> throttle_reason_names(uint64_t mask);

// "00000000:01:00.0", "0000:01:00.0", "01:00.0" (any case) -> "0000:01:00.0"; empty if unparsable.
std::string normalize_pci_address(std::string_view bus_id);

// What NVML and the CUDA driver API say about one GPU (the live machine, or a test's fake).
struct GpuRuntimeDevice {
  std::string pci_bus_id;  // as the driver spells it; matched with normalize_pci_address
  std::string name;
  std::optional<uint64_t> memory_total_bytes, memory_free_bytes, memory_used_bytes;
  std::optional<int> temperature_c;
  std::optional<uint32_t> power_limit_mw;
  std::optional<uint64_t> throttle_reasons;
  std::optional<int> compute_capability_major, compute_capability_minor;
};

struct GpuRuntimeInfo {
  bool nvml_loaded = false;  // libnvidia-ml.so.1 opened and nvmlInit_v2 succeeded
  std::string error;         // why NVML gave nothing: shown to the user as is
  std::string driver_version;                // "550.54.14"; empty = unknown
  std::optional<int> cuda_driver_version;    // 12040 = CUDA 12.4
  std::vector<GpuRuntimeDevice> devices;
};

// Asks NVML (libnvidia-ml.so.1) and the CUDA driver (libcuda.so.1), both through dlopen; never
// throws: without the driver, nvml_loaded is false and `error` says what to install.
GpuRuntimeInfo query_gpu_runtime();

enum class DiskKind { nvme, ssd, rotational, unknown };
std::string_view to_string(DiskKind kind);  // "nvme", "ssd", "rotational", "unknown"

struct DiskInfo {
  std::filesystem::path path;  // the path asked about, absolute
  std::string mount_point;     // "/"; empty = no mount table
  std::string fs_type;         // "ext4"
  std::string source;          // "/dev/nvme0n1p2"
  std::string block_device;    // the whole disk whose type was read: "nvme0n1"
  DiskKind kind = DiskKind::unknown;
  bool virtual_disk = false;   // virtio/Xen: its rotational flag says little about the host's storage
  std::optional<uint64_t> free_bytes, total_bytes;  // statvfs of `path` (on the real filesystem)
  std::string note;            // how the type was found, e.g. "device-mapper volume on nvme0n1"
};

struct HardwareReport {
  std::filesystem::path sysroot;
  CpuInfo cpu;
  MemoryInfo memory;
  std::vector<ThermalZone> thermal;
  std::vector<GpuInfo> gpus;          // display/3D-class PCI devices, then driver-only GPUs
  bool pci_scanned = false;           // false: /sys/bus/pci/devices unreadable, GPUs unknown
  bool gpu_runtime_queried = false;   // false: NVML not asked (fixture tree without a fake)
  GpuRuntimeInfo gpu_runtime;
  std::optional<DiskInfo> disk;
  std::string cuda_runtime_compiled;  // "13.0", or "none (built without CUDA)"
  std::optional<int> cuda_runtime_compiled_version;  // 13000
  std::optional<int> cuda_min_arch;   // lowest compute capability with code in this binary: 80
  std::vector<Check> checks;
  // The worst of the ok/warn/fail checks; unknown when every check is unknown.
  Status overall() const;
};

struct ProbeOptions {
  std::filesystem::path sysroot = "/";
  std::optional<std::filesystem::path> disk_path = ".";  // nullopt = no disk probe
  // Set: use these driver facts (tests). Unset: ask NVML/CUDA, but only when sysroot is "/".
  std::optional<GpuRuntimeInfo> gpu_runtime;
};

// Never throws for missing or odd files: what cannot be read stays unknown.
HardwareReport probe(const ProbeOptions& options = {});

// The checks for a report's facts (probe() fills report.checks with this).
std::vector<Check> evaluate(const HardwareReport& report);

// Memory each device can offer a model now, for the fit calculation.
struct DeviceMemory {
  std::string device;             // "cpu", or the GPU's PCI address
  std::string label;              // "CPU RAM", "GPU 0000:17:00.0 NVIDIA GeForce RTX 4090"
  std::optional<uint64_t> bytes;  // nullopt = unknown
  std::string source;             // where the number comes from and its caveat
};
std::vector<DeviceMemory> usable_memory(const HardwareReport& report);

nlohmann::json to_json(const HardwareReport& report);

struct TextOptions {
  bool color = false;  // ANSI colours on the status marks
};
std::string render_text(const HardwareReport& report, const TextOptions& options = {});

}  // namespace autoglm::hardware
