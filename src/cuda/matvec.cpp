// Host side of the device matvec: uploading weights in the device layout and choosing the kernel.
#include <string>

#include "autoglm/cuda.h"
#include "check.h"
#include "launch.h"
#include "weights.h"

namespace autoglm::cuda {

using detail::check;

bool supports(kernels::DType type) { return detail::split_of(type) != nullptr; }

DeviceWeights upload_weights(kernels::DType type, const void* stored, size_t rows, size_t cols) {
  const detail::Split* split = detail::split_of(type);
  const std::string name = kernels::dtype_info(type).name;
  if (!split)
    throw Error(kExitNotImplemented, "CUDA backend: unsupported weight type " + name + " (supported: Q8_0, Q4_0, Q4_K, Q6_K)");
  if (rows == 0 || cols == 0 || cols % split->block_elems != 0)
    throw Error(kExitCheckFailed, "CUDA backend: a " + name + " matrix needs rows and a column count that is a multiple of " +
                                      std::to_string(split->block_elems) + ", got " + std::to_string(rows) + " x " +
                                      std::to_string(cols));
  detail::require_device();
  const detail::HostLayout host = detail::split_rows(*split, static_cast<const uint8_t*>(stored), rows, cols);
  DeviceWeights w;
  w.type = type;
  w.rows = rows;
  w.cols = cols;
  w.quant_row_bytes = host.quant_row_bytes;
  w.meta_row_bytes = host.meta_row_bytes;
  w.quants = DeviceArray(host.quants.size());
  w.quants.upload(host.quants.data(), host.quants.size());
  w.meta = DeviceArray(host.meta.size());
  w.meta.upload(host.meta.data(), host.meta.size());
  return w;
}

void DeviceActivations::quantize(const float* x, size_t cols) {
  if (cols == 0 || cols % 32 != 0)
    throw Error(kExitCheckFailed, "CUDA backend: activations of " + std::to_string(cols) +
                                      " elements; a multiple of 32 is needed");
  if (q_.bytes() < cols) {
    q_ = DeviceArray(cols);
    d_ = DeviceArray(cols / 32 * sizeof(float));
    sum16_ = DeviceArray(cols / 16 * sizeof(int32_t));
  }
  cols_ = cols;
  check(detail::launch_quantize(x, cols, {q_.as<int8_t>(), d_.as<float>(), sum16_.as<int32_t>()}), "quantize launch");
}

void matvec(const DeviceWeights& w, const DeviceActivations& x, float* y) {
  using kernels::DType;
  if (x.cols() != w.cols)
    throw Error(kExitCheckFailed, "CUDA backend: a matrix of " + std::to_string(w.cols) + " columns times a vector of " +
                                      std::to_string(x.cols()));
  detail::MatvecType type;
  switch (w.type) {
    case DType::q8_0: type = detail::MatvecType::q8_0; break;
    case DType::q4_0: type = detail::MatvecType::q4_0; break;
    case DType::q4_k: type = detail::MatvecType::q4_k; break;
    case DType::q6_k: type = detail::MatvecType::q6_k; break;
    default:
      throw Error(kExitNotImplemented, std::string("CUDA backend: no matvec for ") + kernels::dtype_info(w.type).name);
  }
  const detail::QuantizedX qx{x.q_.as<int8_t>(), x.d_.as<float>(), x.sum16_.as<int32_t>()};
  const detail::MatvecArgs args{w.quants.as<const uint8_t>(), w.meta.as<const uint8_t>(), w.quant_row_bytes,
                                w.meta_row_bytes, w.rows, w.cols, qx, y};
  check(detail::launch_matvec(type, args), "matvec launch");
}

}  // namespace autoglm::cuda
