// The CUDA backend's matvec against a double-precision product of the dequantized weights and the
// activations quantized as the CPU kernels quantize them, for every supported type and odd shapes.
// Skipped, with the reason, where no GPU can be used (CI); the lent GPU machine runs them for real.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "autoglm/cuda.h"
#include "autoglm/error.h"
#include "autoglm/kernels.h"

using namespace autoglm;
using kernels::DType;

namespace {

#define REQUIRE_GPU()                                                   \
  do {                                                                  \
    const std::string why = cuda::unavailable_reason();                 \
    if (!why.empty()) GTEST_SKIP() << "no usable GPU: " << why;         \
  } while (0)

struct Case {
  DType type;
  size_t rows, cols;
};

std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = normal(rng);
  return v;
}

// x as the int8 activations the kernels multiply: per block of 32, d = max|x| / 127 and
// q = round-half-even(x * (1 / d)), returned dequantized (d * q).
std::vector<double> quantized_activations(const std::vector<float>& x) {
  std::vector<double> out(x.size());
  for (size_t b = 0; b < x.size(); b += 32) {
    float amax = 0;
    for (size_t i = b; i < b + 32; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    for (size_t i = b; i < b + 32; ++i)
      out[i] = static_cast<double>(d) * std::clamp(std::nearbyint(x[i] * id), -127.0f, 127.0f);
  }
  return out;
}

}  // namespace

TEST(Cuda, MatvecMatchesDequantizedWeights) {
  REQUIRE_GPU();
  const Case cases[] = {{DType::q8_0, 37, 96},   {DType::q8_0, 300, 4096}, {DType::q4_0, 1, 32},
                        {DType::q4_0, 129, 2080}, {DType::q4_k, 65, 256},   {DType::q4_k, 200, 6912},
                        {DType::q6_k, 3, 512},    {DType::q6_k, 257, 2048}};
  std::mt19937 rng(7);
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(kernels::dtype_info(c.type).name) + " " + std::to_string(c.rows) + "x" +
                 std::to_string(c.cols));
    const std::vector<float> w = random_floats(c.rows * c.cols, rng, 0.05f);
    const std::vector<float> x = random_floats(c.cols, rng, 1.0f);
    const size_t row_bytes = kernels::row_bytes(c.type, c.cols);
    std::vector<uint8_t> stored(c.rows * row_bytes);
    for (size_t r = 0; r < c.rows; ++r)
      kernels::quantize_row(c.type, w.data() + r * c.cols, stored.data() + r * row_bytes, c.cols);

    const cuda::DeviceWeights dw = cuda::upload_weights(c.type, stored.data(), c.rows, c.cols);
    cuda::DeviceArray dx(c.cols * sizeof(float)), dy(c.rows * sizeof(float));
    dx.upload(x.data(), c.cols * sizeof(float));
    cuda::DeviceActivations qx;
    qx.quantize(dx.as<const float>(), c.cols);
    cuda::matvec(dw, qx, dy.as<float>());
    std::vector<float> y(c.rows);
    dy.download(y.data(), c.rows * sizeof(float));

    const std::vector<double> xq = quantized_activations(x);
    std::vector<float> row(c.cols);
    for (size_t r = 0; r < c.rows; ++r) {
      kernels::dequantize_row(c.type, stored.data() + r * row_bytes, row.data(), c.cols);
      double want = 0, magnitude = 0;
      for (size_t i = 0; i < c.cols; ++i) {
        want += row[i] * xq[i];
        magnitude += std::fabs(row[i] * xq[i]);
      }
      // integer sums are exact; the float steps (one per group) round to a few ulp of the magnitude
      ASSERT_NEAR(y[r], want, 1e-5 * magnitude + 1e-6) << "row " << r;
    }
  }
}

TEST(Cuda, RejectsWhatItCannotCompute) {
  REQUIRE_GPU();
  std::vector<uint8_t> bytes(1024);
  EXPECT_THROW(cuda::upload_weights(DType::f32, bytes.data(), 2, 64), Error);
  EXPECT_THROW(cuda::upload_weights(DType::q4_k, bytes.data(), 1, 128), Error);  // not a whole super-block
  EXPECT_THROW(cuda::upload_weights(DType::q8_0, bytes.data(), 0, 32), Error);
  cuda::DeviceArray a(256);
  EXPECT_THROW(a.upload(bytes.data(), 257), Error);
  EXPECT_THROW(a.download(bytes.data(), 8, 252), Error);
  a.upload(bytes.data(), 256);  // zeros
  cuda::DeviceActivations x;
  EXPECT_THROW(x.quantize(a.as<const float>(), 8), Error);  // not a multiple of 32
  x.quantize(a.as<const float>(), 32);
  std::vector<uint8_t> q8(34 * 2);
  const cuda::DeviceWeights w = cuda::upload_weights(DType::q8_0, q8.data(), 1, 64);
  EXPECT_THROW(cuda::matvec(w, x, a.as<float>()), Error);  // 64 columns times 32 activations
}

TEST(Cuda, WithoutAGpuEveryCallSaysWhy) {
  const std::string why = cuda::unavailable_reason();
  if (why.empty()) GTEST_SKIP() << "a GPU is present: " << cuda::device_description();
  try {
    cuda::DeviceArray a(16);
    FAIL() << "allocated on a machine without a usable GPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
  }
}
