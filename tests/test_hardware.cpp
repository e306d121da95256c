// The hardware probe on fixture machines (tests/fixtures/sysroot/<machine>), on fake NVML results,
// and once on this machine.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "autoglm/hardware.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace autoglm::hardware;
using autoglm::test::TempDir;
using autoglm::test::write_file;

namespace {

fs::path sysroot(const std::string& machine) {
  return autoglm::test::source_dir() / "tests" / "fixtures" / "sysroot" / machine;
}

// Probes a fixture machine; the disk probe looks at `disk_path` through the fixture's mount table.
HardwareReport probe_fixture(const std::string& machine, std::optional<fs::path> disk_path = std::nullopt,
                             std::optional<GpuRuntimeInfo> runtime = std::nullopt) {
  const fs::path root = sysroot(machine);
  EXPECT_TRUE(fs::is_directory(root)) << "fixture missing: " << root << " (set AUTOGLM_SOURCE_DIR)";
  ProbeOptions options;
  options.sysroot = root;
  options.disk_path = disk_path;
  options.gpu_runtime = std::move(runtime);
  return probe(options);
}

const Check* find_check(const HardwareReport& r, const std::string& name, const std::string& subject = "") {
  for (const Check& c : r.checks)
    if (c.name == name && c.subject == subject) return &c;
  return nullptr;
}

int count_status(const HardwareReport& r, const std::string& name, Status status) {
  return static_cast<int>(std::count_if(r.checks.begin(), r.checks.end(),
                                        [&](const Check& c) { return c.name == name && c.status == status; }));
}

const GpuInfo* find_gpu(const HardwareReport& r, const std::string& address) {
  for (const GpuInfo& g : r.gpus)
    if (g.pci_address == address) return &g;
  return nullptr;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

GpuRuntimeInfo fake_nvml_two_gpus() {
  GpuRuntimeInfo rt;
  rt.nvml_loaded = true;
  rt.driver_version = "580.65.06";
  rt.cuda_driver_version = 13000;
  // NVML spells bus ids with an 8-digit domain and upper-case hex, and in its own order.
  GpuRuntimeDevice hot;
  hot.pci_bus_id = "00000000:B1:00.0";
  hot.name = "NVIDIA GeForce RTX 4090 (slot 2)";
  hot.memory_total_bytes = 25757220864ULL;
  hot.memory_free_bytes = 25262096384ULL;
  hot.memory_used_bytes = 495124480ULL;
  hot.temperature_c = 87;
  hot.power_limit_mw = 450000;
  hot.throttle_reasons = 0x40;  // hw_thermal_slowdown
  hot.compute_capability_major = 8;
  hot.compute_capability_minor = 9;
  GpuRuntimeDevice cool = hot;
  cool.pci_bus_id = "00000000:17:00.0";
  cool.name = "NVIDIA GeForce RTX 4090 (slot 1)";
  cool.memory_free_bytes = 20000000000ULL;
  cool.temperature_c = 34;
  cool.throttle_reasons = 0x1;  // gpu_idle only
  rt.devices = {hot, cool};
  return rt;
}

// ---------------------------------------------------------------- helpers

TEST(HardwareHelpers, NormalizesPciAddresses) {
  EXPECT_EQ(normalize_pci_address("00000000:B1:00.0"), "0000:b1:00.0");
  EXPECT_EQ(normalize_pci_address("0000:01:00.0"), "0000:01:00.0");
  EXPECT_EQ(normalize_pci_address("01:00.1"), "0000:01:00.1");
  EXPECT_EQ(normalize_pci_address("0001:C3:1F.7\n"), "0001:c3:1f.7");
  EXPECT_EQ(normalize_pci_address("garbage"), "");
  EXPECT_EQ(normalize_pci_address("0000:01:00"), "");
  EXPECT_EQ(normalize_pci_address("0000:01:20.0"), "");  // device numbers stop at 0x1f
}

TEST(HardwareHelpers, PcieGenerationFromSpeed) {
  EXPECT_EQ(pcie_generation(2.5), 1);
  EXPECT_EQ(pcie_generation(8.0), 3);
  EXPECT_EQ(pcie_generation(16.0), 4);
  EXPECT_EQ(pcie_generation(32.0), 5);
  EXPECT_EQ(pcie_generation(12.0), std::nullopt);
}

TEST(HardwareHelpers, DecodesThrottleReasons) {
  EXPECT_EQ(throttle_reason_names(0), std::vector<std::string>{});
  EXPECT_EQ(throttle_reason_names(0x41), (std::vector<std::string>{"gpu_idle", "hw_thermal_slowdown"}));
  EXPECT_EQ(throttle_reason_names(0x4 | 0x8 | 0x20 | 0x80 | 0x100),
            (std::vector<std::string>{"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_power_brake_slowdown",
                                      "display_clock_setting"}));
  EXPECT_EQ(throttle_reason_names(0x2 | 0x10), (std::vector<std::string>{"applications_clocks_setting", "sync_boost"}));
  EXPECT_EQ(throttle_reason_names(0x400), std::vector<std::string>{"unknown_0x400"});
}

// ---------------------------------------------------------------- workstation-2gpu

TEST(HardwareWorkstation, CpuTopologyFlagsAndNuma) {
  const HardwareReport r = probe_fixture("workstation-2gpu");
  EXPECT_EQ(r.cpu.model, "Intel(R) Xeon(R) Gold 5415+");
  EXPECT_EQ(r.cpu.physical_cores, 8);
  EXPECT_EQ(r.cpu.logical_threads, 16);
  EXPECT_EQ(r.cpu.sockets, 2);
  EXPECT_EQ(r.cpu.numa_nodes, 2);
  ASSERT_TRUE(r.cpu.simd_flags);
  for (const char* flag : {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile",
                           "amx_int8", "amx_bf16"})
    EXPECT_TRUE(r.cpu.has_flag(flag)) << flag;
  EXPECT_FALSE(r.cpu.has_flag("sve"));
  EXPECT_FALSE(r.cpu.has_flag("avx512vl"));  // not one of the flags we report
  EXPECT_EQ(find_check(r, "cpu.simd")->status, Status::ok);
  EXPECT_EQ(find_check(r, "cpu.frequency")->status, Status::ok);
  EXPECT_EQ(r.cpu.governor, "performance");
  EXPECT_EQ(r.cpu.freq_max_khz, 4100000u);
  EXPECT_TRUE(contains(find_check(r, "cpu.cores")->message, "2 NUMA nodes"));
}

TEST(HardwareWorkstation, SwapInUseWarns) {
  const HardwareReport r = probe_fixture("workstation-2gpu");
  EXPECT_EQ(r.memory.total_bytes, 263842760ULL * 1024);
  EXPECT_EQ(r.memory.available_bytes, 214318920ULL * 1024);
  EXPECT_EQ(r.memory.swap_total_bytes, 8388604ULL * 1024);
  EXPECT_EQ(r.memory.swap_used_bytes, 1258292ULL * 1024);
  const Check* swap = find_check(r, "memory.swap");
  ASSERT_NE(swap, nullptr);
  EXPECT_EQ(swap->status, Status::warn);
  EXPECT_TRUE(contains(swap->message, "1.2 GiB of 8.0 GiB swap in use")) << swap->message;
}

TEST(HardwareWorkstation, FindsBothGpusAndFlagsTheDowngradedLink) {
  const HardwareReport r = probe_fixture("workstation-2gpu");
  ASSERT_EQ(r.gpus.size(), 2u);  // the GPUs' HDMI audio functions (class 0x0403) are not GPUs
  EXPECT_EQ(r.gpus[0].pci_address, "0000:17:00.0");
  EXPECT_EQ(r.gpus[1].pci_address, "0000:b1:00.0");
  EXPECT_EQ(r.gpus[1].vendor, "NVIDIA");
  EXPECT_EQ(r.gpus[1].device_id, 0x2684u);
  EXPECT_EQ(r.gpus[1].numa_node, 1);
  EXPECT_EQ(r.gpus[1].link.width, 8);
  EXPECT_EQ(r.gpus[1].max_link.width, 16);

  const Check* good = find_check(r, "gpu.pcie_link", "0000:17:00.0");
  ASSERT_NE(good, nullptr);
  EXPECT_EQ(good->status, Status::ok);
  EXPECT_TRUE(contains(good->message, "Gen4 x16")) << good->message;

  const Check* bad = find_check(r, "gpu.pcie_link", "0000:b1:00.0");
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(bad->status, Status::warn);
  EXPECT_TRUE(contains(bad->message, "PCIe Gen3 x8, capable of Gen4 x16")) << bad->message;
  EXPECT_TRUE(contains(bad->message, "~25% of the link's capacity")) << bad->message;
  EXPECT_TRUE(contains(bad->message, "x16 slot")) << bad->message;
  EXPECT_TRUE(contains(bad->message, "idle")) << bad->message;  // honest about power-saving link drops
  EXPECT_EQ(count_status(r, "gpu.pcie_link", Status::warn), 1);
}

TEST(HardwareWorkstation, SpeedOnlyDowngradeSaysItMayBeIdle) {
  TempDir root;
  const std::string dev = "sys/bus/pci/devices/0000:01:00.0/";
  write_file(root / (dev + "class"), "0x030200\n");
  write_file(root / (dev + "vendor"), "0x10de\n");
  write_file(root / (dev + "current_link_speed"), "2.5 GT/s PCIe\n");
  write_file(root / (dev + "current_link_width"), "16\n");
  write_file(root / (dev + "max_link_speed"), "32.0 GT/s PCIe\n");
  write_file(root / (dev + "max_link_width"), "16\n");
  ProbeOptions options;
  options.sysroot = root.path();
  options.disk_path.reset();
  const HardwareReport r = probe(options);
  const Check* link = find_check(r, "gpu.pcie_link", "0000:01:00.0");
  ASSERT_NE(link, nullptr);
  EXPECT_EQ(link->status, Status::warn);
  EXPECT_TRUE(contains(link->message, "PCIe Gen1 x16, capable of Gen5 x16")) << link->message;
  EXPECT_TRUE(contains(link->message, "~6%")) << link->message;
  EXPECT_TRUE(contains(link->message, "may be harmless")) << link->message;
  EXPECT_FALSE(contains(link->message, "slot (check")) << link->message;  // the width is fine
}

TEST(HardwareWorkstation, DiskOnNvmeAndOnRotationalData) {
  TempDir models;
  const HardwareReport r = probe_fixture("workstation-2gpu", models.path());
  ASSERT_TRUE(r.disk);
  EXPECT_EQ(r.disk->mount_point, "/");
  EXPECT_EQ(r.disk->source, "/dev/nvme0n1p2");
  EXPECT_EQ(r.disk->block_device, "nvme0n1");
  EXPECT_EQ(r.disk->kind, DiskKind::nvme);
  EXPECT_TRUE(r.disk->free_bytes.has_value());  // statvfs of the real temp folder
  EXPECT_GT(r.disk->total_bytes.value_or(0), 0u);
  EXPECT_EQ(find_check(r, "disk.type", r.disk->path.string())->status, Status::ok);

  const HardwareReport data = probe_fixture("workstation-2gpu", fs::path("/data/autoglm-no-such-dir-7f3a/model.gguf"));
  ASSERT_TRUE(data.disk);
  EXPECT_EQ(data.disk->mount_point, "/data");
  EXPECT_EQ(data.disk->block_device, "sda");
  EXPECT_EQ(data.disk->kind, DiskKind::rotational);
  const Check* type = find_check(data, "disk.type", data.disk->path.string());
  ASSERT_NE(type, nullptr);
  EXPECT_EQ(type->status, Status::warn);
  EXPECT_TRUE(contains(type->message, "SSD or NVMe")) << type->message;
  EXPECT_EQ(find_check(data, "disk.space", data.disk->path.string())->status, Status::unknown);
}

TEST(HardwareWorkstation, MountPointsWithEscapedSpaces) {
  const HardwareReport r = probe_fixture("workstation-2gpu", fs::path("/tmp/ram disk/autoglm-no-such-dir"));
  ASSERT_TRUE(r.disk);
  EXPECT_EQ(r.disk->mount_point, "/tmp/ram disk");
  EXPECT_EQ(r.disk->fs_type, "tmpfs");
  EXPECT_EQ(r.disk->kind, DiskKind::unknown);
  EXPECT_TRUE(contains(r.disk->note, "not on a block device")) << r.disk->note;
}

TEST(HardwareWorkstation, WithoutDriverFactsTheDriverIsNotQueried) {
  const HardwareReport r = probe_fixture("workstation-2gpu");
  EXPECT_FALSE(r.gpu_runtime_queried);
  EXPECT_EQ(find_check(r, "gpu.driver")->status, Status::unknown);
  EXPECT_TRUE(r.gpus[0].name.empty());
  EXPECT_FALSE(r.gpus[0].memory_total_bytes);
  EXPECT_EQ(r.overall(), Status::warn);
  const auto memory = usable_memory(r);
  ASSERT_EQ(memory.size(), 3u);
  EXPECT_EQ(memory[0].device, "cpu");
  EXPECT_EQ(memory[0].bytes, 214318920ULL * 1024);
  EXPECT_FALSE(memory[1].bytes);
  EXPECT_TRUE(contains(memory[1].source, "install the NVIDIA driver")) << memory[1].source;
}

// ---------------------------------------------------------------- fake NVML

TEST(HardwareFakeNvml, MergesDriverFactsByBusId) {
  const HardwareReport r = probe_fixture("workstation-2gpu", std::nullopt, fake_nvml_two_gpus());
  ASSERT_EQ(r.gpus.size(), 2u);
  const GpuInfo* slot1 = find_gpu(r, "0000:17:00.0");
  const GpuInfo* slot2 = find_gpu(r, "0000:b1:00.0");
  ASSERT_TRUE(slot1 && slot2);
  EXPECT_EQ(slot1->name, "NVIDIA GeForce RTX 4090 (slot 1)");
  EXPECT_EQ(slot2->name, "NVIDIA GeForce RTX 4090 (slot 2)");
  EXPECT_EQ(slot1->memory_free_bytes, 20000000000ULL);
  EXPECT_EQ(slot2->memory_free_bytes, 25262096384ULL);
  EXPECT_EQ(slot2->temperature_c, 87);
  EXPECT_EQ(slot2->compute_capability_major, 8);
  EXPECT_EQ(slot2->link.width, 8);  // PCI facts survive the merge

  const auto memory = usable_memory(r);
  ASSERT_EQ(memory.size(), 3u);
  EXPECT_EQ(memory[1].device, "0000:17:00.0");
  EXPECT_EQ(memory[1].bytes, 20000000000ULL);
  EXPECT_EQ(memory[2].bytes, 25262096384ULL);
  EXPECT_EQ(find_check(r, "gpu.driver")->status, Status::ok);
  EXPECT_TRUE(contains(find_check(r, "gpu.driver")->message, "580.65.06"));
}

TEST(HardwareFakeNvml, ThermalThrottleWarnsOnTheRightGpu) {
  const HardwareReport r = probe_fixture("workstation-2gpu", std::nullopt, fake_nvml_two_gpus());
  const Check* hot = find_check(r, "gpu.throttle", "0000:b1:00.0");
  const Check* idle = find_check(r, "gpu.throttle", "0000:17:00.0");
  ASSERT_TRUE(hot && idle);
  EXPECT_EQ(hot->status, Status::warn);
  EXPECT_TRUE(contains(hot->message, "hw_thermal_slowdown")) << hot->message;
  EXPECT_TRUE(contains(hot->message, "too hot")) << hot->message;
  EXPECT_EQ(idle->status, Status::ok);
  EXPECT_TRUE(contains(idle->message, "gpu_idle")) << idle->message;
}

TEST(HardwareFakeNvml, PowerCapAndHardwareSlowdownWarn) {
  GpuRuntimeInfo rt = fake_nvml_two_gpus();
  rt.devices[0].throttle_reasons = 0x4 | 0x80;
  const HardwareReport r = probe_fixture("workstation-2gpu", std::nullopt, rt);
  const Check* c = find_check(r, "gpu.throttle", "0000:b1:00.0");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->status, Status::warn);
  EXPECT_TRUE(contains(c->message, "sw_power_cap")) << c->message;
  EXPECT_TRUE(contains(c->message, "power cables")) << c->message;
}

TEST(HardwareFakeNvml, DriverMissingSaysWhatToInstall) {
  GpuRuntimeInfo rt;
  rt.error = "NVIDIA driver not found (libnvidia-ml.so.1): install the driver to use --gpu";
  const HardwareReport r = probe_fixture("workstation-2gpu", std::nullopt, rt);
  const Check* driver = find_check(r, "gpu.driver");
  ASSERT_NE(driver, nullptr);
  EXPECT_EQ(driver->status, Status::warn);  // NVIDIA cards are in the machine
  const std::string text = render_text(r);
  EXPECT_TRUE(contains(text, "NVIDIA driver not found (libnvidia-ml.so.1): install the driver to use --gpu")) << text;
  EXPECT_FALSE(r.gpus[0].memory_total_bytes);
}

TEST(HardwareFakeNvml, DriverOnlyGpusAreStillReported) {
  GpuRuntimeInfo rt = fake_nvml_two_gpus();
  rt.devices[0].pci_bus_id = "00000000:CA:00.0";  // e.g. a container that hides this GPU's sysfs entry
  const HardwareReport r = probe_fixture("workstation-2gpu", std::nullopt, rt);
  ASSERT_EQ(r.gpus.size(), 3u);
  const GpuInfo* extra = find_gpu(r, "0000:ca:00.0");
  ASSERT_NE(extra, nullptr);
  EXPECT_EQ(extra->vendor, "NVIDIA");
  EXPECT_EQ(extra->name, "NVIDIA GeForce RTX 4090 (slot 2)");
  EXPECT_TRUE(find_gpu(r, "0000:b1:00.0")->name.empty());
}

TEST(HardwareFakeNvml, CudaDriverOlderThanTheCompiledRuntime) {
  HardwareReport r;
  r.sysroot = "/";
  r.gpu_runtime_queried = true;
  r.gpu_runtime.nvml_loaded = true;
  r.cuda_runtime_compiled_version = 13000;
  r.gpu_runtime.cuda_driver_version = 12040;
  const auto fail = evaluate(r);
  auto compat = std::find_if(fail.begin(), fail.end(), [](const Check& c) { return c.name == "gpu.cuda_compat"; });
  ASSERT_NE(compat, fail.end());
  EXPECT_EQ(compat->status, Status::fail);
  EXPECT_TRUE(contains(compat->message, "Update the NVIDIA driver")) << compat->message;

  r.cuda_runtime_compiled_version = 12060;
  const auto warn = evaluate(r);
  compat = std::find_if(warn.begin(), warn.end(), [](const Check& c) { return c.name == "gpu.cuda_compat"; });
  ASSERT_NE(compat, warn.end());
  EXPECT_EQ(compat->status, Status::warn);

  r.gpu_runtime.cuda_driver_version = 13000;
  const auto ok = evaluate(r);
  compat = std::find_if(ok.begin(), ok.end(), [](const Check& c) { return c.name == "gpu.cuda_compat"; });
  ASSERT_NE(compat, ok.end());
  EXPECT_EQ(compat->status, Status::ok);
}

TEST(HardwareFakeNvml, GpuOlderThanTheCompiledArchitecturesFails) {
  HardwareReport r;
  r.cuda_min_arch = 80;
  GpuInfo old;
  old.pci_address = "0000:03:00.0";
  old.compute_capability_major = 7;
  old.compute_capability_minor = 5;
  GpuInfo fine = old;
  fine.pci_address = "0000:04:00.0";
  fine.compute_capability_major = 9;
  fine.compute_capability_minor = 0;
  r.gpus = {old, fine};
  r.pci_scanned = true;
  r.checks = evaluate(r);
  const Check* c = find_check(r, "gpu.compute_capability", "0000:03:00.0");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->status, Status::fail);
  EXPECT_TRUE(contains(c->message, "-DCMAKE_CUDA_ARCHITECTURES=75")) << c->message;
  EXPECT_EQ(find_check(r, "gpu.compute_capability", "0000:04:00.0")->status, Status::ok);
  EXPECT_EQ(r.overall(), Status::fail);
}

// ---------------------------------------------------------------- throttling-cpu

TEST(HardwareThrottling, LowClockWarnsHonestly) {
  const HardwareReport r = probe_fixture("throttling-cpu");
  EXPECT_EQ(r.cpu.physical_cores, 4);
  EXPECT_EQ(r.cpu.logical_threads, 8);
  EXPECT_TRUE(r.cpu.has_flag("avx2"));
  EXPECT_FALSE(r.cpu.has_flag("avx512f"));
  ASSERT_TRUE(r.cpu.freq_ratio);
  EXPECT_LT(*r.cpu.freq_ratio, 0.25);
  const Check* freq = find_check(r, "cpu.frequency");
  ASSERT_NE(freq, nullptr);
  EXPECT_EQ(freq->status, Status::warn);
  EXPECT_TRUE(contains(freq->message, "21% of the 4.00 GHz maximum")) << freq->message;
  EXPECT_TRUE(contains(freq->message, "idle power saving")) << freq->message;
  EXPECT_TRUE(contains(freq->message, "'powersave'")) << freq->message;
}

TEST(HardwareThrottling, ZoneAbovePassiveTripWarns) {
  const HardwareReport r = probe_fixture("throttling-cpu");
  ASSERT_EQ(r.thermal.size(), 4u);
  EXPECT_EQ(r.thermal[0].type, "acpitz");
  EXPECT_FALSE(r.thermal[3].temp_millicelsius);  // unreadable temp: kept, not fatal
  const Check* hot = find_check(r, "thermal", "thermal_zone0");
  ASSERT_NE(hot, nullptr);
  EXPECT_EQ(hot->status, Status::warn);
  EXPECT_TRUE(contains(hot->message, "98.0°C")) << hot->message;
  EXPECT_TRUE(contains(hot->message, "passive trip point (95.0°C)")) << hot->message;
  // x86_pkg_temp's 0 °C placeholder trips must not count as reached.
  EXPECT_EQ(find_check(r, "thermal", "thermal_zone2"), nullptr);
  EXPECT_EQ(find_check(r, "thermal"), nullptr);  // no "all fine" line when a zone is hot
  EXPECT_EQ(r.overall(), Status::warn);
}

TEST(HardwareThrottling, SwapConfiguredButUnusedIsOk) {
  const HardwareReport r = probe_fixture("throttling-cpu");
  EXPECT_EQ(r.memory.swap_used_bytes, 0u);
  EXPECT_EQ(find_check(r, "memory.swap")->status, Status::ok);
}

TEST(HardwareThrottling, IntegratedGpuAndLvmOnNvme) {
  TempDir models;
  const HardwareReport r = probe_fixture("throttling-cpu", models.path());
  ASSERT_EQ(r.gpus.size(), 1u);
  EXPECT_EQ(r.gpus[0].vendor, "Intel");
  EXPECT_EQ(find_check(r, "gpu.pcie_link", "0000:00:02.0"), nullptr);  // no PCIe link to judge
  ASSERT_TRUE(r.disk);
  EXPECT_EQ(r.disk->source, "/dev/mapper/vgubuntu-root");
  EXPECT_EQ(r.disk->block_device, "nvme0n1");
  EXPECT_EQ(r.disk->kind, DiskKind::nvme);
  EXPECT_TRUE(contains(r.disk->note, "device-mapper")) << r.disk->note;
}

TEST(HardwareThrottling, CriticalTripFails) {
  TempDir root;
  write_file(root / "sys/class/thermal/thermal_zone0/type", "acpitz\n");
  write_file(root / "sys/class/thermal/thermal_zone0/temp", "106000\n");
  write_file(root / "sys/class/thermal/thermal_zone0/trip_point_0_type", "passive\n");
  write_file(root / "sys/class/thermal/thermal_zone0/trip_point_0_temp", "95000\n");
  write_file(root / "sys/class/thermal/thermal_zone0/trip_point_1_type", "critical\n");
  write_file(root / "sys/class/thermal/thermal_zone0/trip_point_1_temp", "105000\n");
  ProbeOptions options;
  options.sysroot = root.path();
  options.disk_path.reset();
  const HardwareReport r = probe(options);
  const Check* c = find_check(r, "thermal", "thermal_zone0");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->status, Status::fail);
  EXPECT_TRUE(contains(c->message, "critical")) << c->message;
  EXPECT_EQ(r.overall(), Status::fail);
}

// ---------------------------------------------------------------- no-gpu

TEST(HardwareNoGpu, CpuOnlyServer) {
  TempDir models;
  const HardwareReport r = probe_fixture("no-gpu", models.path());
  EXPECT_EQ(r.cpu.model, "AMD EPYC 7232P 8-Core Processor");
  EXPECT_EQ(r.cpu.physical_cores, 8);
  EXPECT_EQ(r.cpu.logical_threads, 16);
  EXPECT_EQ(r.cpu.numa_nodes, 1);
  EXPECT_TRUE(r.cpu.has_flag("avx2"));
  EXPECT_FALSE(r.cpu.has_flag("avx512f"));
  EXPECT_EQ(find_check(r, "cpu.frequency")->status, Status::ok);

  EXPECT_TRUE(r.pci_scanned);
  EXPECT_TRUE(r.gpus.empty());  // the network card's narrowed link is not a GPU's problem
  EXPECT_EQ(find_check(r, "gpu.pcie_link", "0000:41:00.0"), nullptr);
  EXPECT_EQ(find_check(r, "gpu.present")->status, Status::ok);
  EXPECT_TRUE(contains(find_check(r, "gpu.present")->message, "CPU only"));

  EXPECT_EQ(r.memory.swap_total_bytes, 0u);
  EXPECT_EQ(find_check(r, "memory.swap")->status, Status::ok);
  EXPECT_EQ(find_check(r, "thermal")->status, Status::unknown);

  ASSERT_TRUE(r.disk);  // found through /proc/mounts: this fixture has no mountinfo
  EXPECT_EQ(r.disk->source, "/dev/sda2");
  EXPECT_EQ(r.disk->block_device, "sda");
  EXPECT_EQ(r.disk->kind, DiskKind::rotational);
  EXPECT_EQ(find_check(r, "disk.type", r.disk->path.string())->status, Status::warn);
  EXPECT_EQ(r.overall(), Status::warn);
  EXPECT_EQ(usable_memory(r).size(), 1u);
}

// ---------------------------------------------------------------- empty and odd trees

TEST(HardwareEmpty, EverythingUnknownNothingCrashes) {
  TempDir models;
  const HardwareReport r = probe_fixture("empty", models.path());
  EXPECT_TRUE(r.cpu.model.empty());
  EXPECT_FALSE(r.cpu.physical_cores);
  EXPECT_FALSE(r.cpu.logical_threads);
  EXPECT_FALSE(r.cpu.simd_flags);
  EXPECT_FALSE(r.memory.total_bytes);
  EXPECT_FALSE(r.memory.swap_used_bytes);
  EXPECT_TRUE(r.thermal.empty());
  EXPECT_FALSE(r.pci_scanned);
  EXPECT_TRUE(r.gpus.empty());
  ASSERT_TRUE(r.disk);
  EXPECT_EQ(r.disk->kind, DiskKind::unknown);
  EXPECT_TRUE(r.disk->mount_point.empty());
  for (const Check& c : r.checks) {
    if (c.name != "disk.space") {
      EXPECT_EQ(c.status, Status::unknown) << c.name << ": " << c.message;
    }
  }
  EXPECT_EQ(r.overall(), Status::ok);  // only the real free space of the temp folder is known

  ProbeOptions no_disk;
  no_disk.sysroot = sysroot("empty");
  no_disk.disk_path.reset();
  const HardwareReport bare = probe(no_disk);
  EXPECT_EQ(bare.overall(), Status::unknown);
  const nlohmann::json j = to_json(bare);
  EXPECT_TRUE(j["gpus"].is_null());
  EXPECT_TRUE(j["disk"].is_null());
  EXPECT_TRUE(j["cpu"]["physical_cores"].is_null());
  EXPECT_EQ(j["overall"], "unknown");
  const std::string text = render_text(bare);
  EXPECT_TRUE(contains(text, "Overall: UNKNOWN")) << text;
  EXPECT_TRUE(contains(text, "unknown")) << text;
}

TEST(HardwareOddTrees, OldCpuWithoutAvx2Warns) {
  TempDir root;
  write_file(root / "proc/cpuinfo",
             "processor\t: 0\nmodel name\t: Old CPU\ncpu cores\t: 2\nflags\t\t: fpu sse sse2 ssse3\n\n"
             "processor\t: 1\nmodel name\t: Old CPU\ncpu cores\t: 2\nflags\t\t: fpu sse sse2 ssse3\n");
  ProbeOptions options;
  options.sysroot = root.path();
  options.disk_path.reset();
  const HardwareReport r = probe(options);
  EXPECT_EQ(r.cpu.physical_cores, 2);  // from "cpu cores": no physical/core ids in this cpuinfo
  EXPECT_EQ(r.cpu.logical_threads, 2);
  const Check* simd = find_check(r, "cpu.simd");
  ASSERT_NE(simd, nullptr);
  EXPECT_EQ(simd->status, Status::warn);
  EXPECT_TRUE(contains(simd->message, "Without AVX2")) << simd->message;
}

TEST(HardwareOddTrees, ArmTopologyFromSysfsAndSwapFromMeminfo) {
  TempDir root;
  std::string cpuinfo;
  for (int i = 0; i < 4; ++i) {
    cpuinfo += "processor\t: " + std::to_string(i) + "\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes sve\n\n";
    const std::string cpu = "sys/devices/system/cpu/cpu" + std::to_string(i) + "/topology/";
    write_file(root / (cpu + "physical_package_id"), "0\n");
    write_file(root / (cpu + "core_id"), std::to_string(i) + "\n");
  }
  write_file(root / "proc/cpuinfo", cpuinfo);
  write_file(root / "proc/meminfo", "MemTotal:  8000 kB\nMemAvailable:  6000 kB\nSwapTotal:  1000 kB\nSwapFree:  400 kB\n");
  ProbeOptions options;
  options.sysroot = root.path();
  options.disk_path.reset();
  const HardwareReport r = probe(options);
  EXPECT_EQ(r.cpu.physical_cores, 4);
  EXPECT_EQ(r.cpu.logical_threads, 4);
  EXPECT_TRUE(r.cpu.has_flag("asimd"));
  EXPECT_TRUE(r.cpu.has_flag("sve"));
  EXPECT_EQ(find_check(r, "cpu.simd")->status, Status::ok);  // ARM has no AVX2 and needs none
  EXPECT_EQ(r.memory.swap_used_bytes, 600u * 1024);
  EXPECT_EQ(find_check(r, "memory.swap")->status, Status::warn);
}

// ---------------------------------------------------------------- output formats

TEST(HardwareOutput, JsonFollowsTheSchema) {
  TempDir models;
  const HardwareReport r = probe_fixture("workstation-2gpu", models.path(), fake_nvml_two_gpus());
  const nlohmann::json j = to_json(r);
  EXPECT_EQ(j["schema_version"], 1);
  EXPECT_EQ(j["overall"], "warn");
  EXPECT_EQ(j["cpu"]["physical_cores"], 8);
  EXPECT_EQ(j["cpu"]["logical_threads"], 16);
  EXPECT_EQ(j["cpu"]["numa_nodes"], 2);
  EXPECT_NE(std::find(j["cpu"]["simd_flags"].begin(), j["cpu"]["simd_flags"].end(), "amx_int8"),
            j["cpu"]["simd_flags"].end());
  EXPECT_EQ(j["memory"]["swap_used_bytes"], 1258292ULL * 1024);
  ASSERT_EQ(j["gpus"].size(), 2u);
  const auto& slot2 = j["gpus"][1];
  EXPECT_EQ(slot2["pci_address"], "0000:b1:00.0");
  EXPECT_EQ(slot2["vendor_id"], "0x10de");
  EXPECT_EQ(slot2["device_id"], "0x2684");
  EXPECT_EQ(slot2["pci_class"], "0x030000");
  EXPECT_EQ(slot2["pcie"]["current"]["generation"], 3);
  EXPECT_EQ(slot2["pcie"]["current"]["width"], 8);
  EXPECT_EQ(slot2["pcie"]["max"]["generation"], 4);
  EXPECT_EQ(slot2["pcie"]["max"]["width"], 16);
  EXPECT_EQ(slot2["throttle_reasons"], nlohmann::json::array({"hw_thermal_slowdown"}));
  EXPECT_EQ(slot2["compute_capability"], "8.9");
  EXPECT_EQ(slot2["memory_free_bytes"], 25262096384ULL);
  EXPECT_EQ(j["gpu_runtime"]["driver_version"], "580.65.06");
  EXPECT_EQ(j["gpu_runtime"]["cuda_driver_version"], "13.0");
  EXPECT_EQ(j["disk"]["kind"], "nvme");
  EXPECT_EQ(j["thermal"][2]["trip_points"][0]["type"], "critical");
  EXPECT_EQ(j["thermal"][2]["trip_points"][0]["temp_millicelsius"], 105000);
  EXPECT_EQ(j["usable_memory"][0]["device"], "cpu");
  EXPECT_TRUE(j["cuda_runtime_compiled"].is_string());
  bool found = false;
  for (const auto& c : j["checks"])
    if (c["name"] == "gpu.pcie_link" && c["subject"] == "0000:b1:00.0") {
      found = true;
      EXPECT_EQ(c["status"], "warn");
    }
  EXPECT_TRUE(found);
}

TEST(HardwareOutput, TextReportHasMarksAndValues) {
  const HardwareReport r = probe_fixture("workstation-2gpu", std::nullopt, fake_nvml_two_gpus());
  const std::string text = render_text(r);
  for (const char* expected : {"Intel(R) Xeon(R) Gold 5415+", "8 physical, 16 logical, 2 sockets", "avx512_vnni",
                               "0000:b1:00.0", "NVIDIA GeForce RTX 4090 (slot 2)", "Gen3 x8", "Gen4 x16",
                               "WARN  gpu.pcie_link", "WARN  memory.swap", "OK    cpu.simd", "580.65.06",
                               "Overall: WARN"})
    EXPECT_TRUE(contains(text, expected)) << "missing '" << expected << "' in:\n" << text;
  EXPECT_FALSE(contains(text, "\033[")) << "no colour codes unless asked";
  const std::string colored = render_text(r, TextOptions{true});
  EXPECT_TRUE(contains(colored, "\033[33mWARN\033[0m"));
  // Wrapped lines stay within 100 columns (counting characters, not bytes).
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    if (line.rfind("  OK", 0) == 0 || line.rfind("  WARN", 0) == 0 || line.rfind("        ", 0) == 0) {
      const auto chars = std::count_if(line.begin(), line.end(), [](char c) { return (c & 0xC0) != 0x80; });
      EXPECT_LE(chars, 100) << line;
    }
    start = end + 1;
  }
}

// ---------------------------------------------------------------- this machine

TEST(HardwareLive, ProbesThisMachine) {
  ProbeOptions options;  // sysroot "/", disk ".", real NVML if present
  const HardwareReport r = probe(options);
  ASSERT_TRUE(r.cpu.logical_threads);
  EXPECT_GT(*r.cpu.logical_threads, 0);
  ASSERT_TRUE(r.cpu.physical_cores);
  EXPECT_GT(*r.cpu.physical_cores, 0);
  EXPECT_TRUE(r.memory.total_bytes);
  EXPECT_TRUE(r.gpu_runtime_queried);
  if (!r.gpu_runtime.nvml_loaded) {
    EXPECT_FALSE(r.gpu_runtime.error.empty());
  }
  ASSERT_TRUE(r.disk);
  EXPECT_TRUE(r.disk->free_bytes);
  EXPECT_FALSE(render_text(r).empty());
  EXPECT_EQ(to_json(r)["schema_version"], 1);
}

}  // namespace
