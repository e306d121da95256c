#include "cuda_runtime_version.h"

#include <cuda_runtime_api.h>

namespace autoglm::hardware::detail {

std::optional<int> compiled_cuda_runtime_version() {
  int version = 0;
  // Static cudart answers this without loading the driver, so it works on GPU-less machines.
  if (cudaRuntimeGetVersion(&version) != cudaSuccess || version <= 0) return CUDART_VERSION;
  return version;
}

std::string compiled_cuda_runtime() {
  const int v = compiled_cuda_runtime_version().value_or(CUDART_VERSION);
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

std::optional<int> compiled_cuda_min_arch() {
#ifdef AUTOGLM_CUDA_MIN_ARCH
  return AUTOGLM_CUDA_MIN_ARCH;
#else
  return std::nullopt;
#endif
}

}  // namespace autoglm::hardware::detail
