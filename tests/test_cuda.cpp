// The CUDA backend's matvec against a double-precision product of the dequantized weights, for
// every supported type and odd shapes. Skipped, with the reason, where no GPU can be used (CI); the
// lent GPU machine runs them for real.
#include <gtest/gtest.h>

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
    cuda::matvec(dw, dx.as<const float>(), dy.as<float>());
    std::vector<float> y(c.rows);
    dy.download(y.data(), c.rows * sizeof(float));

    std::vector<float> row(c.cols);
    for (size_t r = 0; r < c.rows; ++r) {
      kernels::dequantize_row(c.type, stored.data() + r * row_bytes, row.data(), c.cols);
      double want = 0, magnitude = 0;
      for (size_t i = 0; i < c.cols; ++i) {
        want += static_cast<double>(row[i]) * x[i];
        magnitude += std::fabs(static_cast<double>(row[i]) * x[i]);
      }
      // f32 sums over at most a few thousand terms: a few ulp of the magnitude
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
  cuda::DeviceArray a(64);
  EXPECT_THROW(a.upload(bytes.data(), 65), Error);
  EXPECT_THROW(a.download(bytes.data(), 8, 60), Error);
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
