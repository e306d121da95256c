#include "autoglm/hardware.h"

#include <algorithm>

#include "autoglm/units.h"
#include "cuda_runtime_version.h"
#include "internal.h"

namespace autoglm::hardware {

std::string_view to_string(Status status) {
  switch (status) {
    case Status::ok: return "ok";
    case Status::warn: return "warn";
    case Status::fail: return "fail";
    case Status::unknown: break;
  }
  return "unknown";
}

std::string_view to_string(DiskKind kind) {
  switch (kind) {
    case DiskKind::nvme: return "nvme";
    case DiskKind::ssd: return "ssd";
    case DiskKind::rotational: return "rotational";
    case DiskKind::unknown: break;
  }
  return "unknown";
}

bool CpuInfo::has_flag(std::string_view flag) const {
  return simd_flags && std::find(simd_flags->begin(), simd_flags->end(), flag) != simd_flags->end();
}

Status HardwareReport::overall() const {
  auto rank = [](Status s) { return s == Status::fail ? 3 : s == Status::warn ? 2 : s == Status::ok ? 1 : 0; };
  Status worst = Status::unknown;
  for (const Check& c : checks)
    if (rank(c.status) > rank(worst)) worst = c.status;
  return worst;
}

HardwareReport probe(const ProbeOptions& options) {
  const std::filesystem::path& root = options.sysroot.empty() ? std::filesystem::path("/") : options.sysroot;
  HardwareReport r;
  r.sysroot = root;
  r.cpu = detail::probe_cpu(root);
  r.memory = detail::probe_memory(root);
  r.thermal = detail::probe_thermal(root);
  if (auto gpus = detail::probe_pci_gpus(root)) {
    r.pci_scanned = true;
    r.gpus = std::move(*gpus);
  }
  // Driver facts belong to this machine, so a fixture tree gets them only from a test's fake.
  if (options.gpu_runtime) {
    r.gpu_runtime = *options.gpu_runtime;
    r.gpu_runtime_queried = true;
  } else if (detail::is_live_root(root)) {
    r.gpu_runtime = query_gpu_runtime();
    r.gpu_runtime_queried = true;
  }
  detail::merge_gpu_runtime(r.gpus, r.gpu_runtime);
  if (options.disk_path) r.disk = detail::probe_disk(root, *options.disk_path);
  r.cuda_runtime_compiled = detail::compiled_cuda_runtime();
  r.cuda_runtime_compiled_version = detail::compiled_cuda_runtime_version();
  r.cuda_min_arch = detail::compiled_cuda_min_arch();
  r.checks = evaluate(r);
  return r;
}

namespace {

DeviceMemory gpu_memory(const GpuInfo& gpu) {
  DeviceMemory m;
  m.device = gpu.pci_address;
  m.label = "GPU " + gpu.pci_address + " " + (gpu.name.empty() ? gpu.vendor : gpu.name);
  if (gpu.memory_free_bytes) {
    m.bytes = gpu.memory_free_bytes;
    m.source = "free memory reported by the driver; other processes may take more";
  } else if (gpu.memory_total_bytes) {
    m.bytes = gpu.memory_total_bytes;
    m.source = "total memory (free memory unknown): other processes may already use some";
  } else {
    m.source = gpu.vendor_id == 0x10deu ? "unknown: install the NVIDIA driver so NVML can report it"
                                        : "unknown: no driver interface reports this GPU's memory";
  }
  return m;
}

}  // namespace

std::vector<DeviceMemory> usable_memory(const HardwareReport& report) {
  std::vector<DeviceMemory> out;
  DeviceMemory cpu{"cpu", "CPU RAM", report.memory.available_bytes, ""};
  cpu.source = cpu.bytes ? "MemAvailable: RAM usable without swapping; shrinks as other programs grow"
                         : "unknown: /proc/meminfo has no MemAvailable";
  out.push_back(std::move(cpu));
  for (const GpuInfo& gpu : report.gpus) out.push_back(gpu_memory(gpu));
  return out;
}

}  // namespace autoglm::hardware
