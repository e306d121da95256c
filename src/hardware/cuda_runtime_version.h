#pragma once
// The CUDA runtime compiled into this binary. Plain C++17 so nvcc can compile the .cu side.
#include <optional>
#include <string>

namespace autoglm::hardware::detail {

// "13.0", or "none (built without CUDA)".
std::string compiled_cuda_runtime();
// 13000 for CUDA 13.0; nullopt when built without CUDA.
std::optional<int> compiled_cuda_runtime_version();
// Lowest compute capability (x10) this binary has GPU code for: 80; nullopt when unknown.
std::optional<int> compiled_cuda_min_arch();

}  // namespace autoglm::hardware::detail
