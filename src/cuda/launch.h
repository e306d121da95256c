#pragma once
// Internal to the cuda module: the boundary between the host code (C++20, the .cpp files) and the
// kernels (matvec.cu, compiled by nvcc as C++17), so this header includes neither side's headers.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace autoglm::cuda::detail {

// Activations quantized as the CPU kernels do (src/kernels/qmatmul.h): blocks of 32, d = max|x| / 127,
// q = round-half-even(x * (1 / d)); plus each run of 16's integer sum of q.
struct QuantizedX {
  int8_t* q;      // [cols]
  float* d;       // [cols / 32]
  int32_t* sum16; // [cols / 16]
};
cudaError_t launch_quantize(const float* x, size_t cols, const QuantizedX& out);

enum class MatvecType { q8_0, q4_0, q4_k, q6_k };

struct MatvecArgs {
  const uint8_t* quants;  // [rows][quant_row bytes]
  const uint8_t* meta;    // [rows][meta_row bytes]
  size_t quant_row, meta_row, rows, cols;
  QuantizedX x;
  float* y;               // rows floats
};

// Queues y = W x on the default stream; returns the launch's status.
cudaError_t launch_matvec(MatvecType type, const MatvecArgs& args);

}  // namespace autoglm::cuda::detail
