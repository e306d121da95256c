#pragma once
// Internal to the cuda module: CUDA runtime errors as autoglm::Error.
#include <cuda_runtime_api.h>

#include <string>

#include "autoglm/error.h"

namespace autoglm::cuda::detail {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw Error(kExitCheckFailed, std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
}
// Throws with unavailable_reason() when no GPU can be used.
void require_device();

}  // namespace autoglm::cuda::detail
