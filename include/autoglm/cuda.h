#pragma once
// The CUDA backend's building blocks: device memory, quantized weights uploaded once in a layout
// made for coalesced 16-byte loads (still quantized: never expanded to f16/f32 on the device), and
// the decode matrix-vector product that dequantizes in registers and multiplies int8 activations.
//
// This header has no CUDA types, so any module can include it. In a binary built without nvcc, or
// on a machine without an NVIDIA driver or GPU, unavailable_reason() says why and every other call
// throws autoglm::Error with that reason: the binary still starts and runs on the CPU.
#include <cstddef>
#include <functional>
#include <string>

#include "autoglm/kernels.h"

namespace autoglm::cuda {

// Whether this binary has the CUDA kernels compiled in.
bool compiled();
// Empty when GPU 0 can be used; otherwise why not, in words a user can act on.
std::string unavailable_reason();

// Bytes on the device, freed on destruction.
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t bytes);  // throws Error when the device has no room
  ~DeviceArray();
  DeviceArray(DeviceArray&& other) noexcept;
  DeviceArray& operator=(DeviceArray&& other) noexcept;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  template <class T>
  T* as() const { return static_cast<T*>(data_); }
  // Synchronous copies of `bytes` bytes at `offset` (checked against the array's size).
  void upload(const void* src, size_t bytes, size_t offset = 0);
  void download(void* dst, size_t bytes, size_t offset = 0) const;

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// A weight matrix on the device. Each row's quants are contiguous and 16-byte aligned, all rows'
// quants first, then every row's scales ("meta"), so that a warp reads a row in 16-byte pieces
// (src/cuda/weights.h gives each type's piece). Same bytes as the stored blocks, reordered.
struct DeviceWeights {
  kernels::DType type = kernels::DType::f32;
  size_t rows = 0, cols = 0;
  size_t quant_row_bytes = 0, meta_row_bytes = 0;
  DeviceArray quants, meta;
  size_t bytes() const { return quants.bytes() + meta.bytes(); }
};

// Types the device matvec computes with.
bool supports(kernels::DType type);
// Uploads rows x cols weights stored as in GGUF (row after row of blocks; cols a multiple of the
// type's block). Q8_0, Q4_0, Q4_K, Q6_K; anything else throws Error naming the type.
DeviceWeights upload_weights(kernels::DType type, const void* stored, size_t rows, size_t cols);

// Activations quantized on the device the way the CPU kernels quantize them (src/kernels/qmatmul.h:
// int8 per block of 32, d = max|x| / 127), so that the products are integer dot products. One
// quantization serves every product with the same input (q, k and v; gate and up). Grows to the
// largest vector it is given.
class DeviceActivations {
 public:
  // x: `cols` floats in device memory, cols a multiple of 32. Queued on the default stream.
  void quantize(const float* x, size_t cols);
  size_t cols() const { return cols_; }

 private:
  friend void matvec(const DeviceWeights& w, const DeviceActivations& x, float* y);
  DeviceArray q_, d_, sum16_;
  size_t cols_ = 0;
};

// y = W x, y[r] = dot(W[r, :], x) for x quantized above (x.cols() must be w.cols); y is rows floats
// in device memory. Queued on the default stream; synchronize() (or a download) waits for it.
void matvec(const DeviceWeights& w, const DeviceActivations& x, float* y);
void synchronize();

// For benchmarks: the mean milliseconds of `work` (which queues device work) over `reps` runs,
// timed with CUDA events after one warm-up run.
double mean_ms(const std::function<void()>& work, int reps);
// Device-to-device copy bandwidth of a `bytes` buffer, counting the bytes read and written, GB/s.
double copy_gbps(size_t bytes, int reps);
// "NVIDIA H100 80GB HBM3, 132 SMs, compute capability 9.0"
std::string device_description();

}  // namespace autoglm::cuda
