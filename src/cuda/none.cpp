// A build without nvcc: the same interface, every call explains that the kernels are not compiled in.
#include "autoglm/cuda.h"
#include "autoglm/error.h"

namespace autoglm::cuda {
namespace {
[[noreturn]] void fail() { throw Error(kExitNotImplemented, unavailable_reason()); }
}  // namespace

bool compiled() { return false; }
std::string unavailable_reason() {
  return "this binary was built without CUDA (nvcc was not found at build time); rebuild with the CUDA "
         "toolkit installed to use the GPU";
}

DeviceArray::DeviceArray(size_t) { fail(); }
DeviceArray::~DeviceArray() = default;
DeviceArray::DeviceArray(DeviceArray&& other) noexcept : data_(other.data_), bytes_(other.bytes_) {
  other.data_ = nullptr;
  other.bytes_ = 0;
}
DeviceArray& DeviceArray::operator=(DeviceArray&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(bytes_, other.bytes_);
  return *this;
}
void DeviceArray::upload(const void*, size_t, size_t) { fail(); }
void DeviceArray::download(void*, size_t, size_t) const { fail(); }

bool supports(kernels::DType) { return false; }
DeviceWeights upload_weights(kernels::DType, const void*, size_t, size_t) { fail(); }
void DeviceActivations::quantize(const float*, size_t) { fail(); }
void matvec(const DeviceWeights&, const DeviceActivations&, float*) { fail(); }
void synchronize() { fail(); }
double mean_ms(const std::function<void()>&, int) { fail(); }
double copy_gbps(size_t, int) { fail(); }
std::string device_description() { fail(); }

}  // namespace autoglm::cuda
