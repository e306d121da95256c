// Device selection, memory and timing (host code on the runtime API). The runtime is linked
// statically and finds libcuda with dlopen on first use, so all of this fails politely
// (unavailable_reason) without a driver.
#include <algorithm>
#include <string>
#include <utility>

#include "autoglm/cuda.h"
#include "check.h"

namespace autoglm::cuda {

using detail::check;

bool compiled() { return true; }

std::string unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaErrorInsufficientDriver)
    return "the NVIDIA driver is missing or older than this binary's CUDA runtime; `autoglm-deploy "
           "check-hardware` shows both versions";
  if (status == cudaErrorNoDevice || (status == cudaSuccess && count == 0)) return "no NVIDIA GPU found";
  if (status != cudaSuccess) return std::string("the CUDA runtime cannot start: ") + cudaGetErrorString(status);
  return "";
}

void detail::require_device() {
  static const std::string reason = unavailable_reason();  // asked once per process
  if (!reason.empty()) throw Error(kExitCheckFailed, "CUDA backend: " + reason);
}

DeviceArray::DeviceArray(size_t bytes) {
  detail::require_device();
  if (bytes == 0) return;
  const cudaError_t status = cudaMalloc(&data_, bytes);
  if (status != cudaSuccess) {
    data_ = nullptr;
    size_t free = 0, total = 0;
    cudaGetLastError();  // clear the sticky-free error state of the failed allocation
    cudaMemGetInfo(&free, &total);
    throw Error(kExitCheckFailed, "CUDA: cannot allocate " + std::to_string(bytes >> 20) + " MiB on the GPU (" +
                                      std::to_string(free >> 20) + " MiB free of " + std::to_string(total >> 20) +
                                      "): " + cudaGetErrorString(status));
  }
  bytes_ = bytes;
}

DeviceArray::~DeviceArray() {
  if (data_) cudaFree(data_);
}

DeviceArray::DeviceArray(DeviceArray&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceArray& DeviceArray::operator=(DeviceArray&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(bytes_, other.bytes_);
  return *this;
}

namespace {
void check_range(size_t array_bytes, size_t bytes, size_t offset) {
  if (offset > array_bytes || bytes > array_bytes - offset)
    throw Error(kExitCheckFailed, "CUDA: copy of " + std::to_string(bytes) + " bytes at " + std::to_string(offset) +
                                      " is outside a device array of " + std::to_string(array_bytes));
}
}  // namespace

void DeviceArray::upload(const void* src, size_t bytes, size_t offset) {
  check_range(bytes_, bytes, offset);
  if (bytes) check(cudaMemcpy(static_cast<char*>(data_) + offset, src, bytes, cudaMemcpyHostToDevice), "upload");
}

void DeviceArray::download(void* dst, size_t bytes, size_t offset) const {
  check_range(bytes_, bytes, offset);
  if (bytes) check(cudaMemcpy(dst, static_cast<const char*>(data_) + offset, bytes, cudaMemcpyDeviceToHost), "download");
}

void synchronize() { check(cudaDeviceSynchronize(), "synchronize"); }

double mean_ms(const std::function<void()>& work, int reps) {
  detail::require_device();
  reps = std::max(reps, 1);
  work();  // warm-up
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  check(cudaEventRecord(start), "event record");
  for (int i = 0; i < reps; ++i) work();
  check(cudaEventRecord(stop), "event record");
  check(cudaEventSynchronize(stop), "event synchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, start, stop), "event time");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  check(cudaGetLastError(), "timed work");
  return static_cast<double>(ms) / reps;
}

double copy_gbps(size_t bytes, int reps) {
  DeviceArray a(bytes), b(bytes);
  check(cudaMemset(a.data(), 1, bytes), "memset");
  const double ms = mean_ms([&] { cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice); }, reps);
  return 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
}

std::string device_description() {
  detail::require_device();
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0), "device properties");
  return std::string(p.name) + ", " + std::to_string(p.multiProcessorCount) + " SMs, compute capability " +
         std::to_string(p.major) + "." + std::to_string(p.minor);
}

}  // namespace autoglm::cuda
