#pragma once
// Internal to the cuda module: the boundary between the host code (C++20, the .cpp files) and the
// kernels (matvec.cu, compiled by nvcc as C++17), so this header includes neither side's headers.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace autoglm::cuda::detail {

enum class MatvecType { q8_0, q4_0, q4_k, q6_k };

struct MatvecArgs {
  const uint8_t* quants;  // [rows][quant_row bytes]
  const uint8_t* meta;    // [rows][meta_row bytes]
  size_t quant_row, meta_row, rows, cols;
  const float* x;         // cols floats
  float* y;               // rows floats
};

// Queues y = W x on the default stream; returns the launch's status.
cudaError_t launch_matvec(MatvecType type, const MatvecArgs& args);

}  // namespace autoglm::cuda::detail
