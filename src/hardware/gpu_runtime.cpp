// NVML and the CUDA driver API through dlopen: the binary never links the driver, so it starts
// (and check-hardware reports) on machines without one. The few NVML/CUDA types are declared
// here from NVIDIA's public API reference; function pointers use int for the enum return types.
#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <string>

#include "internal.h"

namespace autoglm::hardware {
namespace {

using NvmlDevice = void*;  // nvmlDevice_t: an opaque pointer
struct NvmlMemory {        // nvmlMemory_t (v1)
  unsigned long long total, free, used;
};
struct NvmlPciInfo {  // nvmlPciInfo_t as filled by nvmlDeviceGetPciInfo_v3
  char busIdLegacy[16];
  unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
};
constexpr int kNvmlSuccess = 0;
constexpr int kNvmlTemperatureGpu = 0;
constexpr int kCudaSuccess = 0;
constexpr int kCuAttrComputeCapabilityMajor = 75;
constexpr int kCuAttrComputeCapabilityMinor = 76;

struct NvmlApi {
  int (*init)() = nullptr;
  int (*shutdown)() = nullptr;
  int (*device_count)(unsigned int*) = nullptr;
  int (*device_handle)(unsigned int, NvmlDevice*) = nullptr;
  int (*device_name)(NvmlDevice, char*, unsigned int) = nullptr;
  int (*memory)(NvmlDevice, NvmlMemory*) = nullptr;
  int (*temperature)(NvmlDevice, int, unsigned int*) = nullptr;
  int (*enforced_power_limit)(NvmlDevice, unsigned int*) = nullptr;
  int (*power_management_limit)(NvmlDevice, unsigned int*) = nullptr;
  int (*throttle_reasons)(NvmlDevice, unsigned long long*) = nullptr;
  int (*driver_version)(char*, unsigned int) = nullptr;
  int (*cuda_driver_version)(int*) = nullptr;
  int (*pci_info)(NvmlDevice, NvmlPciInfo*) = nullptr;
};

struct CudaApi {
  int (*init)(unsigned int) = nullptr;
  int (*driver_version)(int*) = nullptr;
  int (*device_count)(int*) = nullptr;
  int (*device_get)(int*, int) = nullptr;
  int (*attribute)(int*, int, int) = nullptr;
  int (*pci_bus_id)(char*, int, int) = nullptr;
};

template <class Fn>
void bind(void* library, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(library, name));
}

// Loaded once per process and never unloaded: driver libraries start threads that outlive dlclose.
void* open_library(const char* name) { return dlopen(name, RTLD_NOW | RTLD_LOCAL); }

std::string c_string(const char* buffer, size_t size) {
  return std::string(buffer, std::find(buffer, buffer + size, '\0'));
}

bool bind_nvml(void* lib, NvmlApi& api) {
  bind(lib, "nvmlInit_v2", api.init);
  bind(lib, "nvmlShutdown", api.shutdown);
  bind(lib, "nvmlDeviceGetCount_v2", api.device_count);
  bind(lib, "nvmlDeviceGetHandleByIndex_v2", api.device_handle);
  bind(lib, "nvmlDeviceGetName", api.device_name);
  bind(lib, "nvmlDeviceGetMemoryInfo", api.memory);
  bind(lib, "nvmlDeviceGetTemperature", api.temperature);
  bind(lib, "nvmlDeviceGetEnforcedPowerLimit", api.enforced_power_limit);
  bind(lib, "nvmlDeviceGetPowerManagementLimit", api.power_management_limit);
  bind(lib, "nvmlDeviceGetCurrentClocksThrottleReasons", api.throttle_reasons);
  // Drivers from R535 rename it; same bitmask.
  if (!api.throttle_reasons) bind(lib, "nvmlDeviceGetCurrentClocksEventReasons", api.throttle_reasons);
  bind(lib, "nvmlSystemGetDriverVersion", api.driver_version);
  bind(lib, "nvmlSystemGetCudaDriverVersion_v2", api.cuda_driver_version);
  bind(lib, "nvmlDeviceGetPciInfo_v3", api.pci_info);
  return api.init && api.shutdown && api.device_count && api.device_handle;
}

GpuRuntimeDevice read_nvml_device(const NvmlApi& api, NvmlDevice handle) {
  GpuRuntimeDevice d;
  NvmlPciInfo pci{};
  if (api.pci_info && api.pci_info(handle, &pci) == kNvmlSuccess) d.pci_bus_id = c_string(pci.busId, sizeof pci.busId);
  std::array<char, 96> name{};
  if (api.device_name && api.device_name(handle, name.data(), name.size()) == kNvmlSuccess)
    d.name = c_string(name.data(), name.size());
  NvmlMemory memory{};
  if (api.memory && api.memory(handle, &memory) == kNvmlSuccess) {
    d.memory_total_bytes = memory.total;
    d.memory_free_bytes = memory.free;
    d.memory_used_bytes = memory.used;
  }
  unsigned int value = 0;
  if (api.temperature && api.temperature(handle, kNvmlTemperatureGpu, &value) == kNvmlSuccess && value < 1000)
    d.temperature_c = static_cast<int>(value);
  if (api.enforced_power_limit && api.enforced_power_limit(handle, &value) == kNvmlSuccess)
    d.power_limit_mw = value;
  else if (api.power_management_limit && api.power_management_limit(handle, &value) == kNvmlSuccess)
    d.power_limit_mw = value;
  unsigned long long reasons = 0;
  if (api.throttle_reasons && api.throttle_reasons(handle, &reasons) == kNvmlSuccess) d.throttle_reasons = reasons;
  return d;
}

void query_nvml(GpuRuntimeInfo& info) {
  void* lib = open_library("libnvidia-ml.so.1");
  if (!lib) {
    info.error = "NVIDIA driver not found (libnvidia-ml.so.1): install the driver to use --gpu";
    return;
  }
  NvmlApi api;
  if (!bind_nvml(lib, api)) {
    info.error = "libnvidia-ml.so.1 lacks nvmlInit_v2/nvmlDeviceGetCount_v2: the NVIDIA driver is too old, update it";
    return;
  }
  if (const int rc = api.init(); rc != kNvmlSuccess) {
    info.error = "libnvidia-ml.so.1 is installed but nvmlInit_v2 failed (NVML error " + std::to_string(rc) +
                 "): is the nvidia kernel module loaded? Run `nvidia-smi` to see why";
    return;
  }
  info.nvml_loaded = true;
  std::array<char, 96> version{};
  if (api.driver_version && api.driver_version(version.data(), version.size()) == kNvmlSuccess)
    info.driver_version = c_string(version.data(), version.size());
  int cuda_version = 0;
  if (api.cuda_driver_version && api.cuda_driver_version(&cuda_version) == kNvmlSuccess && cuda_version > 0)
    info.cuda_driver_version = cuda_version;
  unsigned int count = 0;
  if (api.device_count(&count) != kNvmlSuccess) count = 0;
  for (unsigned int i = 0; i < count && i < 1024; ++i) {
    NvmlDevice handle = nullptr;
    if (api.device_handle(i, &handle) == kNvmlSuccess) info.devices.push_back(read_nvml_device(api, handle));
  }
  api.shutdown();
}

bool bind_cuda(void* lib, CudaApi& api) {
  bind(lib, "cuInit", api.init);
  bind(lib, "cuDriverGetVersion", api.driver_version);
  bind(lib, "cuDeviceGetCount", api.device_count);
  bind(lib, "cuDeviceGet", api.device_get);
  bind(lib, "cuDeviceGetAttribute", api.attribute);
  bind(lib, "cuDeviceGetPCIBusId", api.pci_bus_id);
  return api.init && api.device_count && api.device_get && api.attribute && api.pci_bus_id;
}

// Compute capability is not in NVML's older API; the CUDA driver has it for every GPU it sees.
void query_cuda(GpuRuntimeInfo& info) {
  void* lib = open_library("libcuda.so.1");
  CudaApi api;
  if (!lib || !bind_cuda(lib, api) || api.init(0) != kCudaSuccess) return;
  int version = 0;
  if (!info.cuda_driver_version && api.driver_version && api.driver_version(&version) == kCudaSuccess && version > 0)
    info.cuda_driver_version = version;
  int count = 0;
  if (api.device_count(&count) != kCudaSuccess) return;
  for (int i = 0; i < count && i < 1024; ++i) {
    int device = 0, major = 0, minor = 0;
    std::array<char, 32> bus_id{};
    if (api.device_get(&device, i) != kCudaSuccess) continue;
    if (api.pci_bus_id(bus_id.data(), static_cast<int>(bus_id.size()), device) != kCudaSuccess) continue;
    if (api.attribute(&major, kCuAttrComputeCapabilityMajor, device) != kCudaSuccess ||
        api.attribute(&minor, kCuAttrComputeCapabilityMinor, device) != kCudaSuccess)
      continue;
    const std::string address = normalize_pci_address(c_string(bus_id.data(), bus_id.size()));
    auto it = std::find_if(info.devices.begin(), info.devices.end(),
                           [&](const GpuRuntimeDevice& d) { return normalize_pci_address(d.pci_bus_id) == address; });
    if (it == info.devices.end()) {
      info.devices.push_back({});
      it = std::prev(info.devices.end());
      it->pci_bus_id = address;
    }
    it->compute_capability_major = major;
    it->compute_capability_minor = minor;
  }
}

}  // namespace

GpuRuntimeInfo query_gpu_runtime() {
  GpuRuntimeInfo info;
  query_nvml(info);
  query_cuda(info);
  return info;
}

}  // namespace autoglm::hardware
