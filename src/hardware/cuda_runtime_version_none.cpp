#include "cuda_runtime_version.h"

namespace autoglm::hardware::detail {

std::string compiled_cuda_runtime() { return "none (built without CUDA)"; }
std::optional<int> compiled_cuda_runtime_version() { return std::nullopt; }
std::optional<int> compiled_cuda_min_arch() { return std::nullopt; }

}  // namespace autoglm::hardware::detail
