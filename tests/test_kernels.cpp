// Kernels: block formats, f16/bf16 conversion, quantizers (bit-exact against llama.cpp's files),
// fused matvec/matmul on every ISA path, and the thread pool.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "autoglm/gguf.h"
#include "autoglm/kernels.h"
#include "test_support.h"

namespace autoglm::kernels {

// Readable test parameters in failure messages (found by argument-dependent lookup).
void PrintTo(Isa isa, std::ostream* os) { *os << isa_name(isa); }
void PrintTo(DType type, std::ostream* os) { *os << dtype_info(type).name; }

namespace {

constexpr DType kAllTypes[] = {DType::f32,  DType::f16,  DType::bf16, DType::q8_0, DType::q4_0,
                               DType::q4_1, DType::q5_0, DType::q5_1, DType::q2_k, DType::q3_k,
                               DType::q4_k, DType::q5_k, DType::q6_k, DType::iq4_nl, DType::iq4_xs};

constexpr Isa kAllIsas[] = {Isa::scalar, Isa::avx2, Isa::avx512};

bool is_block_type(DType t) { return dtype_info(t).block_size > 1; }

// The types with a panels16 layout: every block type (all are int8-activation products).
bool panels_kernel(DType t) { return is_block_type(t); }

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }
float from_bits(uint32_t u) { return std::bit_cast<float>(u); }

std::vector<float> random_floats(size_t n, std::mt19937& rng, float sigma = 1.0f) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// Restores the detected ISA when a test that forced one ends.
struct IsaGuard {
  ~IsaGuard() { set_isa(detected_isa()); }
};

// `rows` rows of random weights: block types get random bytes (every bit pattern of quants, scales
// and packing) with sane f16 scales; float types get normal values.
std::vector<uint8_t> random_weights(DType type, size_t rows, size_t cols, std::mt19937& rng) {
  const size_t rb = row_bytes(type, cols);
  std::vector<uint8_t> w(rows * rb);
  if (!is_block_type(type)) {
    for (size_t r = 0; r < rows; ++r) quantize_row(type, random_floats(cols, rng).data(), w.data() + r * rb, cols);
    return w;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.002f, 0.02f);
  for (uint8_t& b : w) b = static_cast<uint8_t>(byte(rng));
  const DTypeInfo& info = dtype_info(type);
  auto put_f16 = [](uint8_t* p, float f) {
    const uint16_t h = f32_to_f16(f);
    std::memcpy(p, &h, 2);
  };
  for (size_t i = 0; i < w.size() / info.block_bytes; ++i) {
    uint8_t* blk = w.data() + i * info.block_bytes;
    switch (type) {
      case DType::q8_0:
      case DType::q4_0:
      case DType::q5_0: put_f16(blk, scale(rng)); break;
      case DType::q4_k:
        put_f16(blk, scale(rng) / 8);  // d
        put_f16(blk + 2, scale(rng) / 8);  // dmin
        break;
      case DType::q6_k: put_f16(blk + 208, scale(rng) / 32); break;
      case DType::q4_1:
      case DType::q5_1:
        put_f16(blk, scale(rng));       // d
        put_f16(blk + 2, -scale(rng));  // m
        break;
      case DType::q5_k:
        put_f16(blk, scale(rng) / 8);
        put_f16(blk + 2, scale(rng) / 8);
        break;
      case DType::q2_k:
        put_f16(blk + 80, scale(rng) / 8);  // d
        put_f16(blk + 82, scale(rng) / 8);  // dmin
        break;
      case DType::q3_k: put_f16(blk + 108, scale(rng) / 32); break;
      case DType::iq4_xs: put_f16(blk, scale(rng) / 32); break;
      case DType::iq4_nl: put_f16(blk, scale(rng) / 32); break;
      default: break;
    }
  }
  return w;
}

// Quantized weight types multiply int8-quantized activations (as llama.cpp does): per block of 32,
// dx = max|x| / 127 and x ~ dx * round-half-even(x / dx). Written here independently of the kernels.
std::vector<float> int8_activations(const std::vector<float>& x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); i += 32) {
    float amax = 0;
    for (size_t l = 0; l < 32; ++l) amax = std::max(amax, std::fabs(x[i + l]));
    const float dx = amax / 127.0f, id = dx != 0 ? 1.0f / dx : 0.0f;
    for (size_t l = 0; l < 32; ++l) out[i + l] = dx * std::nearbyint(x[i + l] * id);
  }
  return out;
}

bool int8_type(DType t) { return is_block_type(t); }

// Reference: each row dequantized (the scalar definition), then a double-precision dot product with
// the activations (int8-quantized for block types, as they are meant to be).
struct Reference {
  std::vector<double> y;     // [batch][rows]
  std::vector<double> mass;  // sum |w_j x_j| per output: the scale of f32 rounding error
};
Reference reference_matmul(DType type, const std::vector<uint8_t>& w, size_t rows, size_t cols,
                           const std::vector<float>& x_in, size_t batch, bool quantize_acts = true) {
  const std::vector<float> x = int8_type(type) && quantize_acts ? int8_activations(x_in) : x_in;
  Reference ref{std::vector<double>(rows * batch), std::vector<double>(rows * batch)};
  const size_t rb = row_bytes(type, cols);
  std::vector<float> row(cols);
  for (size_t r = 0; r < rows; ++r) {
    dequantize_row(type, w.data() + r * rb, row.data(), cols);
    for (size_t b = 0; b < batch; ++b) {
      double s = 0, m = 0;
      for (size_t j = 0; j < cols; ++j) {
        s += double(row[j]) * x[b * cols + j];
        m += std::fabs(double(row[j]) * x[b * cols + j]);
      }
      ref.y[b * rows + r] = s;
      ref.mass[b * rows + r] = m;
    }
  }
  return ref;
}

// f32 accumulation over `cols` terms: a few ulps per term of the chain, relative to sum |w x|.
double tolerance(double mass, size_t cols) { return (1e-6 + 2e-8 * static_cast<double>(cols)) * mass + 1e-30; }

std::string shape_name(size_t rows, size_t cols, size_t batch) {
  return std::to_string(rows) + "x" + std::to_string(cols) + " batch " + std::to_string(batch);
}

// ---------------------------------------------------------------- types and conversions

TEST(KernelTypes, DtypeInfoKnownAndUnknown) {
  EXPECT_STREQ(dtype_info(0)->name, "F32");
  EXPECT_STREQ(dtype_info(1)->name, "F16");
  EXPECT_STREQ(dtype_info(30)->name, "BF16");
  EXPECT_EQ(dtype_info(8)->block_bytes, 34u);
  EXPECT_EQ(dtype_info(2)->block_bytes, 18u);
  EXPECT_EQ(dtype_info(6)->block_bytes, 22u);  // Q5_0
  EXPECT_EQ(dtype_info(6)->block_size, 32u);
  EXPECT_EQ(dtype_info(12)->block_bytes, 144u);
  EXPECT_EQ(dtype_info(14)->block_bytes, 210u);
  EXPECT_EQ(dtype_info(14)->block_size, 256u);
  // every type the engine computes with, at ggml's id and block size (ggml-common.h)
  const std::tuple<uint32_t, const char*, uint32_t, uint32_t> known[] = {
      {3, "Q4_1", 32, 20},    {7, "Q5_1", 32, 24},    {10, "Q2_K", 256, 84},
      {11, "Q3_K", 256, 110}, {13, "Q5_K", 256, 176}, {23, "IQ4_XS", 256, 136}, {20, "IQ4_NL", 32, 18}};
  for (const auto& [id, name, size, bytes] : known) {
    ASSERT_NE(dtype_info(id), nullptr) << name;
    EXPECT_STREQ(dtype_info(id)->name, name);
    EXPECT_EQ(dtype_info(id)->block_size, size) << name;
    EXPECT_EQ(dtype_info(id)->block_bytes, bytes) << name;
  }
  for (uint32_t id : {9u, 15u, 16u, 21u, 29u, 31u, 39u, 1000u, 0xFFFFFFFFu})
    EXPECT_EQ(dtype_info(id), nullptr) << id;
  EXPECT_THROW(dtype_info(static_cast<DType>(9)), std::invalid_argument);
}

TEST(KernelTypes, RowBytes) {
  EXPECT_EQ(row_bytes(DType::f32, 7), 28u);
  EXPECT_EQ(row_bytes(DType::bf16, 7), 14u);
  EXPECT_EQ(row_bytes(DType::q8_0, 4096), 4096u / 32 * 34);
  EXPECT_EQ(row_bytes(DType::q4_k, 4096), 16u * 144);
  EXPECT_EQ(row_bytes(DType::q6_k, 256), 210u);
  EXPECT_EQ(row_bytes(DType::q5_0, 13696), 13696u / 32 * 22);
  EXPECT_THROW(row_bytes(DType::q4_0, 48), std::invalid_argument);
  EXPECT_THROW(row_bytes(DType::q6_k, 128), std::invalid_argument);
}

TEST(KernelTypes, IsaSelection) {
  IsaGuard guard;
  std::printf("detected ISA: %s\n", isa_name(detected_isa()));
  EXPECT_EQ(active_isa(), detected_isa());
  set_isa(Isa::scalar);
  EXPECT_EQ(active_isa(), Isa::scalar);
  set_isa(Isa::avx512);  // clamped to what the CPU has
  EXPECT_EQ(active_isa(), detected_isa());
  EXPECT_STREQ(isa_name(Isa::avx2), "avx2");
}

TEST(KernelTypes, F16EdgeCases) {
  EXPECT_EQ(f32_to_f16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);                  // largest finite
  EXPECT_EQ(f32_to_f16(65519.996f), 0x7BFF);                // just below the rounding boundary
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);                  // the tie rounds to even: inf
  EXPECT_EQ(f32_to_f16(1e10f), 0x7C00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xFC00);
  EXPECT_EQ(f32_to_f16(0x1p-14f), 0x0400);                  // smallest normal
  EXPECT_EQ(f32_to_f16(0x1p-24f), 0x0001);                  // smallest subnormal
  EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000);                  // half of it: tie to even = 0
  EXPECT_EQ(f32_to_f16(from_bits(bits(0x1p-25f) + 1)), 0x0001);
  EXPECT_EQ(f32_to_f16(3 * 0x1p-25f), 0x0002);              // 1.5 units: tie to even = 2
  EXPECT_EQ(f32_to_f16(5 * 0x1p-25f), 0x0002);              // 2.5 units: tie to even = 2
  EXPECT_EQ(f32_to_f16(1023 * 0x1p-24f), 0x03FF);           // largest subnormal
  EXPECT_EQ(f32_to_f16(1023.5f * 0x1p-24f), 0x0400);        // rounds up into the normals
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3C00);           // tie, even mantissa stays
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);       // tie, odd mantissa rounds up
  EXPECT_EQ(f32_to_f16(from_bits(1)), 0x0000);              // f32 subnormal
  const uint16_t nan = f32_to_f16(NAN);
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  EXPECT_EQ(f32_to_f16(from_bits(0x7F800001)) & 0x7E00, 0x7E00);  // a signalling nan comes back quiet

  EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x03FF), 1023 * 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x8000), -0.0f);
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x7C00), INFINITY);
  EXPECT_EQ(f16_to_f32(0xFC00), -INFINITY);
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0xFC01)));
  EXPECT_EQ(bits(f16_to_f32(0x7C01)), 0x7FC02000u);  // signalling nan comes back quiet, payload kept
}

TEST(KernelTypes, F16RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << h;
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), h) << "half 0x" << std::hex << h;
  }
}

// Round to nearest even, checked against an independent formulation: the two neighbouring halves
// bracket the value, pick the nearer (the even one on a tie).
TEST(KernelTypes, F16RoundingMatchesNearestNeighbour) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 200000; ++i) {
    const float f = from_bits(any(rng) & 0x477FFFFF);  // finite, |f| < 65536, either sign
    if (std::fabs(f) >= 65520.0f) continue;
    const uint16_t h = f32_to_f16(f);
    const double v = f, got = f16_to_f32(h);
    const uint16_t up = static_cast<uint16_t>(h + 1), down = static_cast<uint16_t>(h - 1);
    for (uint16_t other : {up, down}) {
      if ((other & 0x7FFF) > 0x7BFF || ((other ^ h) & 0x8000)) continue;  // off the finite range or sign
      const double alt = f16_to_f32(other);
      const double e_got = std::fabs(got - v), e_alt = std::fabs(alt - v);
      ASSERT_TRUE(e_got < e_alt || (e_got == e_alt && (h & 1) == 0))
          << "f=" << f << " got 0x" << std::hex << h << " alt 0x" << other;
    }
  }
}

TEST(KernelTypes, F16cPathMatchesScalar) {
  if (detected_isa() < Isa::avx2) GTEST_SKIP() << "no F16C on this CPU (" << isa_name(detected_isa()) << ")";
  IsaGuard guard;
  std::mt19937 rng(2);
  std::uniform_int_distribution<uint32_t> any;
  std::vector<float> f(4099);
  for (float& v : f) v = from_bits(any(rng));
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65520.0f, 65519.99f, 0x1p-25f, 3 * 0x1p-25f,
                            0x1p-24f, 1023.5f * 0x1p-24f, from_bits(0x7F800001), from_bits(0xFFC12345)};
  std::copy(std::begin(specials), std::end(specials), f.begin());
  std::vector<uint16_t> simd(f.size()), scalar(f.size());
  set_isa(Isa::avx2);
  quantize_row(DType::f16, f.data(), simd.data(), f.size());
  set_isa(Isa::scalar);
  quantize_row(DType::f16, f.data(), scalar.data(), f.size());
  for (size_t i = 0; i < f.size(); ++i) ASSERT_EQ(simd[i], scalar[i]) << "value bits 0x" << std::hex << bits(f[i]);

  std::vector<uint16_t> all(0x10000);
  for (uint32_t h = 0; h < 0x10000; ++h) all[h] = static_cast<uint16_t>(h);
  std::vector<float> a(all.size()), b(all.size());
  set_isa(Isa::avx2);
  dequantize_row(DType::f16, all.data(), a.data(), all.size());
  set_isa(Isa::scalar);
  dequantize_row(DType::f16, all.data(), b.data(), all.size());
  for (size_t h = 0; h < all.size(); ++h) ASSERT_EQ(bits(a[h]), bits(b[h])) << "half 0x" << std::hex << h;
}

TEST(KernelTypes, Bf16EdgeCases) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F808000)), 0x3F80);  // tie, even stays
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F818000)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F808001)), 0x3F81);  // above the tie
  EXPECT_EQ(f32_to_bf16(from_bits(0x7F7FFFFF)), 0x7F80);  // largest f32 rounds to inf
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7F80);
  EXPECT_EQ(f32_to_bf16(-INFINITY), 0xFF80);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(from_bits(0x00012345)), 0x0001);  // subnormals round like normals
  const uint16_t nan = f32_to_bf16(from_bits(0x7F800001));  // would round to inf without the nan case
  EXPECT_TRUE(std::isnan(bf16_to_f32(nan)));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0xFFFFFFFF)))));
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) {
      ASSERT_EQ(f32_to_bf16(f), h) << h;
    }
  }
}

// ---------------------------------------------------------------- quantize / dequantize

// Largest |x - dequantize(quantize(x))| allowed for a block of 32 whose max |x| is amax.
double block_error_bound(DType type, double amax) {
  switch (type) {
    case DType::q8_0: return amax / 127 * 0.6;  // half a step, plus the f16 rounding of d
    case DType::q4_0: return amax / 8 * 1.05;   // a full step: +amax clamps from level 8 to 7
    case DType::q5_0: return amax / 16 * 1.05;  // likewise, from level 16 to 15
    default: return 0;
  }
}

TEST(KernelQuantize, FloatTypesRoundTrip) {
  std::mt19937 rng(3);
  const std::vector<float> x = random_floats(1000, rng, 3.0f);
  std::vector<uint8_t> buf(4000);
  std::vector<float> y(1000);
  quantize_row(DType::f32, x.data(), buf.data(), x.size());
  dequantize_row(DType::f32, buf.data(), y.data(), x.size());
  EXPECT_EQ(x, y);
  quantize_row(DType::f16, x.data(), buf.data(), x.size());
  dequantize_row(DType::f16, buf.data(), y.data(), x.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_LE(std::fabs(x[i] - y[i]), std::fabs(x[i]) * 0x1p-11f) << i;
  quantize_row(DType::bf16, x.data(), buf.data(), x.size());
  dequantize_row(DType::bf16, buf.data(), y.data(), x.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_LE(std::fabs(x[i] - y[i]), std::fabs(x[i]) * 0x1p-8f) << i;
}

TEST(KernelQuantize, BlockTypesRoundTripWithinBounds) {
  std::mt19937 rng(4);
  const size_t n = 256 * 64;
  std::vector<float> x = random_floats(n, rng);
  x[5] = 9.0f;  // outliers, as real weights have
  x[300] = -7.5f;
  std::vector<float> y(n);
  // Relative RMS error: what each format gives on Gaussian data (ggml's own figures are similar).
  const std::pair<DType, double> rms_bounds[] = {
      {DType::q8_0, 0.006}, {DType::q4_0, 0.12}, {DType::q5_0, 0.06}, {DType::q4_k, 0.10}, {DType::q6_k, 0.025},
      {DType::q4_1, 0.12},  {DType::q5_1, 0.06}, {DType::q5_k, 0.05}, {DType::q2_k, 0.40},
      {DType::q3_k, 0.22}, {DType::iq4_xs, 0.10}, {DType::iq4_nl, 0.10}};
  for (auto [type, rms_bound] : rms_bounds) {
    std::vector<uint8_t> q(row_bytes(type, n));
    quantize_row(type, x.data(), q.data(), n);
    dequantize_row(type, q.data(), y.data(), n);
    double err2 = 0, x2 = 0;
    for (size_t i = 0; i < n; ++i) {
      err2 += (x[i] - y[i]) * double(x[i] - y[i]);
      x2 += double(x[i]) * x[i];
    }
    const double rel_rms = std::sqrt(err2 / x2);
    std::printf("%s: relative RMS error %.4f\n", dtype_info(type).name, rel_rms);
    EXPECT_LT(rel_rms, rms_bound) << dtype_info(type).name;
    if (type == DType::q8_0 || type == DType::q4_0 || type == DType::q5_0) {
      for (size_t b = 0; b < n / 32; ++b) {
        double amax = 0;
        for (size_t j = 0; j < 32; ++j) amax = std::max(amax, double(std::fabs(x[b * 32 + j])));
        for (size_t j = 0; j < 32; ++j)
          ASSERT_LE(std::fabs(x[b * 32 + j] - y[b * 32 + j]), block_error_bound(type, amax))
              << dtype_info(type).name << " block " << b << " element " << j;
      }
    }
  }
}

TEST(KernelQuantize, ZerosAndConstants) {
  for (DType type : kAllTypes) {
    const size_t n = 512;
    std::vector<uint8_t> q(row_bytes(type, n));
    std::vector<float> y(n, 1.0f);
    const std::vector<float> zeros(n, 0.0f);
    quantize_row(type, zeros.data(), q.data(), n);
    dequantize_row(type, q.data(), y.data(), n);
    for (float v : y) ASSERT_EQ(v, 0.0f) << dtype_info(type).name;
    const std::vector<float> twos(n, -2.0f);
    quantize_row(type, twos.data(), q.data(), n);
    dequantize_row(type, q.data(), y.data(), n);
    for (float v : y) ASSERT_NEAR(v, -2.0f, 0.02) << dtype_info(type).name;
  }
}

// ---------------------------------------------------------------- matvec / matmul on every path

class KernelProduct : public ::testing::TestWithParam<std::tuple<Isa, DType>> {
 protected:
  void SetUp() override {
    isa_ = std::get<0>(GetParam());
    type_ = std::get<1>(GetParam());
    if (detected_isa() < isa_)
      GTEST_SKIP() << "this CPU's best path is " << isa_name(detected_isa()) << ", skipping " << isa_name(isa_);
    set_isa(isa_);
    ASSERT_EQ(active_isa(), isa_);
  }
  void TearDown() override { set_isa(detected_isa()); }

  // Column counts to try: one block, a few, an odd number; float types also non-multiples of 8.
  std::vector<size_t> col_counts() const {
    const size_t bs = dtype_info(type_).block_size;
    if (bs > 1) return {bs, 2 * bs, 5 * bs};
    return {1, 7, 16, 33, 100, 256, 257};
  }

  Isa isa_ = Isa::scalar;
  DType type_ = DType::f32;
};

TEST_P(KernelProduct, MatmulMatchesReference) {
  std::mt19937 rng(5);
  for (size_t cols : col_counts()) {
    for (size_t rows : {1, 17, 37}) {
      const std::vector<uint8_t> w = random_weights(type_, rows, cols, rng);
      for (size_t batch : {1, 3, 7, 16}) {
        const std::vector<float> x = random_floats(batch * cols, rng);
        std::vector<float> y(batch * rows, NAN);
        matmul(type_, w.data(), rows, cols, x.data(), batch, y.data(), nullptr);
        const Reference ref = reference_matmul(type_, w, rows, cols, x, batch);
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_NEAR(y[i], ref.y[i], tolerance(ref.mass[i], cols))
              << shape_name(rows, cols, batch) << " output " << i;
      }
    }
  }
}

// matvec, matmul with batch 1 and each vector of a larger batch: the same bits.
TEST_P(KernelProduct, BatchInvariant) {
  std::mt19937 rng(6);
  const size_t rows = 53, cols = col_counts().back(), batch = 24;  // the packed kernels too
  const std::vector<uint8_t> w = random_weights(type_, rows, cols, rng);
  const std::vector<float> x = random_floats(batch * cols, rng);
  std::vector<float> all(batch * rows), one(rows);
  matmul(type_, w.data(), rows, cols, x.data(), batch, all.data(), nullptr);
  for (size_t b = 0; b < batch; ++b) {
    matvec(type_, w.data(), rows, cols, x.data() + b * cols, one.data(), nullptr);
    for (size_t r = 0; r < rows; ++r)
      ASSERT_EQ(bits(one[r]), bits(all[b * rows + r])) << "vector " << b << " row " << r;
  }
}

// Threads change who computes a row, never how: bit-identical to single-threaded.
TEST_P(KernelProduct, ThreadedIsBitIdentical) {
  std::mt19937 rng(7);
  const size_t cols = is_block_type(type_) ? 2 * dtype_info(type_).block_size : 300;
  const size_t rows = 16 * 23 + 5;  // not a multiple of the grain; large enough to be split
  const std::vector<uint8_t> w = random_weights(type_, rows, cols, rng);
  for (size_t batch : {1, 5, 20}) {  // 20: activations quantized in parallel, packed kernels
    const std::vector<float> x = random_floats(batch * cols, rng);
    std::vector<float> single(batch * rows), threaded(batch * rows);
    matmul(type_, w.data(), rows, cols, x.data(), batch, single.data(), nullptr);
    for (int threads : {2, 3, 4}) {
      ThreadPool pool(threads);
      std::fill(threaded.begin(), threaded.end(), NAN);
      matmul(type_, w.data(), rows, cols, x.data(), batch, threaded.data(), &pool);
      for (size_t i = 0; i < single.size(); ++i)
        ASSERT_EQ(bits(single[i]), bits(threaded[i])) << threads << " threads, batch " << batch << ", output " << i;
    }
  }
}

// The SIMD path against the scalar path on the same data (both are also checked against the
// double-precision reference above; this catches a path drifting in the same direction).
// Quantized types: every path computes the same integer sums and the same float steps, so they
// agree to the bit.
TEST_P(KernelProduct, AgreesWithScalarPath) {
  if (isa_ == Isa::scalar) GTEST_SKIP() << "scalar is the baseline";
  std::mt19937 rng(8);
  const size_t rows = 53, cols = col_counts().back();  // 53 = 32 + 16 + 5: every kind of row tile
  const std::vector<uint8_t> w = random_weights(type_, rows, cols, rng);
  for (size_t batch : {5, 40}) {  // few vectors, and enough for the packed (prefill) kernels
    const std::vector<float> x = random_floats(batch * cols, rng);
    std::vector<float> simd(batch * rows), scalar(batch * rows);
    set_isa(isa_);
    matmul(type_, w.data(), rows, cols, x.data(), batch, simd.data(), nullptr);
    set_isa(Isa::scalar);
    matmul(type_, w.data(), rows, cols, x.data(), batch, scalar.data(), nullptr);
    const Reference ref = reference_matmul(type_, w, rows, cols, x, batch);
    for (size_t i = 0; i < simd.size(); ++i) {
      if (int8_type(type_))
        ASSERT_EQ(bits(simd[i]), bits(scalar[i])) << "batch " << batch << " output " << i << ": " << simd[i]
                                                  << " vs " << scalar[i];
      else
        ASSERT_NEAR(simd[i], scalar[i], 2 * tolerance(ref.mass[i], cols)) << i;
    }
  }
}

// Activations no random draw produces: every path quantizes them to the same bytes (zero blocks,
// NaN and infinities, subnormals, exact halves of a step, -0), so the products still agree to the bit.
TEST_P(KernelProduct, SpecialActivationsAgreeWithScalarPath) {
  if (isa_ == Isa::scalar || !int8_type(type_)) GTEST_SKIP() << "int8 paths against the scalar baseline";
  std::mt19937 rng(9);
  const size_t rows = 53, cols = 256;  // 8 activation blocks
  const std::vector<uint8_t> w = random_weights(type_, rows, cols, rng);
  std::vector<float> x = random_floats(cols, rng);
  for (size_t l = 0; l < 32; ++l) x[l] = 0.0f;                                 // block 0: zeros
  x[32 + 3] = NAN;                                                              // block 1: a NaN
  x[64 + 7] = INFINITY;                                                         // block 2: +inf
  x[96 + 31] = -INFINITY;                                                       // block 3: -inf
  for (size_t l = 0; l < 32; ++l) x[128 + l] = 1e-40f * static_cast<float>(l);  // block 4: subnormals
  for (size_t l = 0; l < 32; ++l) x[160 + l] = static_cast<float>(l) - 15.5f;   // block 5: halves
  x[160] = 127.0f;                                                              // amax 127: dx = 1
  x[192 + 5] = -0.0f;
  x[192 + 6] = 1e30f;                                                           // block 6: one huge value
  std::vector<float> simd(rows), scalar(rows);
  matmul(type_, w.data(), rows, cols, x.data(), 1, simd.data(), nullptr);
  set_isa(Isa::scalar);
  matmul(type_, w.data(), rows, cols, x.data(), 1, scalar.data(), nullptr);
  for (size_t i = 0; i < rows; ++i) {
    if (std::isnan(simd[i]) && std::isnan(scalar[i])) continue;
    ASSERT_EQ(bits(simd[i]), bits(scalar[i])) << "row " << i << ": " << simd[i] << " vs " << scalar[i];
  }
}

// Where a block type keeps its f16 scales (d, then dmin / m where it has one), by byte offset.
std::vector<size_t> f16_fields(DType t) {
  switch (t) {
    case DType::q8_0: case DType::q4_0: case DType::q5_0: case DType::iq4_nl: case DType::iq4_xs: return {0};
    case DType::q4_1: case DType::q5_1: case DType::q4_k: case DType::q5_k: return {0, 2};
    case DType::q6_k: return {208};
    case DType::q2_k: return {80, 82};
    case DType::q3_k: return {108};
    default: return {};
  }
}

// Edge weight blocks: all-zero bytes, all-ones bytes (every quant at its largest, scales included)
// with the f16 scales set to the largest finite half and to the smallest subnormal. Each path gives
// the scalar definition's bits, and the definition matches the dequantized weights in double.
TEST_P(KernelProduct, EdgeWeightBlocksAgreeWithTheDefinition) {
  if (!int8_type(type_)) GTEST_SKIP() << "block types only";
  std::mt19937 rng(13);
  const size_t bs = dtype_info(type_).block_size, cols = 2 * std::max<size_t>(bs, 256 / bs * bs), rows = 16;
  const size_t rb = row_bytes(type_, cols), blocks = rb / dtype_info(type_).block_bytes;
  const std::vector<float> x = random_floats(3 * cols, rng, 0.5f);
  for (uint8_t fill : {uint8_t{0x00}, uint8_t{0xFF}}) {
    for (uint16_t scale : {uint16_t{0x7BFF}, uint16_t{0x0001}}) {  // 65504, 2^-24
      std::vector<uint8_t> w(rows * rb, fill);
      if (fill != 0)
        for (size_t b = 0; b < rows * blocks; ++b)
          for (size_t at : f16_fields(type_)) std::memcpy(w.data() + b * dtype_info(type_).block_bytes + at, &scale, 2);
      std::vector<float> y(3 * rows), scalar(3 * rows);
      matmul(type_, w.data(), rows, cols, x.data(), 3, y.data(), nullptr);
      {
        IsaGuard guard;
        set_isa(Isa::scalar);
        matmul(type_, w.data(), rows, cols, x.data(), 3, scalar.data(), nullptr);
      }
      // and through the panel kernels (or their unpacking fallback)
      std::vector<uint8_t> packed = w;
      pack_weights(type_, Layout::panels16, packed.data(), rows, cols);
      std::vector<float> panels(3 * rows);
      matmul(type_, Layout::panels16, packed.data(), rows, cols, x.data(), 3, panels.data(), nullptr);
      const Reference ref = reference_matmul(type_, w, rows, cols, x, 3);
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_EQ(bits(y[i]), bits(scalar[i])) << "fill " << int(fill) << " scale " << scale << " output " << i;
        ASSERT_EQ(bits(panels[i]), bits(scalar[i])) << "panels, fill " << int(fill) << " scale " << scale << " output " << i;
        if (fill == 0) {
          ASSERT_EQ(y[i], 0.0f) << "all-zero blocks give 0, output " << i;
        }
        if (std::isfinite(ref.y[i])) {
          ASSERT_NEAR(scalar[i], ref.y[i], tolerance(ref.mass[i], cols)) << i;
        }
      }
    }
  }
}

// The int8 activations cost at most half a quantization step of x per element against the exact
// float product: |error| <= sum_j |w_j| * dx_j / 2 (plus f32 rounding).
TEST_P(KernelProduct, Int8ActivationErrorIsBounded) {
  if (!int8_type(type_)) GTEST_SKIP() << "float weights multiply float activations";
  std::mt19937 rng(11);
  const size_t rows = 24, cols = 8 * dtype_info(type_).block_size, batch = 3;
  const std::vector<uint8_t> w = random_weights(type_, rows, cols, rng);
  std::vector<float> x = random_floats(batch * cols, rng);
  x[5] = 40.0f;  // an outlier coarsens its block only
  std::vector<float> y(batch * rows);
  matmul(type_, w.data(), rows, cols, x.data(), batch, y.data(), nullptr);
  const Reference exact = reference_matmul(type_, w, rows, cols, x, batch, /*quantize_acts=*/false);
  std::vector<float> row(cols);
  for (size_t r = 0; r < rows; ++r) {
    dequantize_row(type_, w.data() + r * row_bytes(type_, cols), row.data(), cols);
    for (size_t b = 0; b < batch; ++b) {
      double bound = 0;
      for (size_t i = 0; i < cols; i += 32) {
        float amax = 0;
        for (size_t l = 0; l < 32; ++l) amax = std::max(amax, std::fabs(x[b * cols + i + l]));
        for (size_t l = 0; l < 32; ++l) bound += std::fabs(double(row[i + l])) * amax / 127.0 / 2;
      }
      const size_t k = b * rows + r;
      ASSERT_NEAR(y[k], exact.y[k], bound + tolerance(exact.mass[k], cols)) << "row " << r << " vector " << b;
    }
  }
}

// Several products with one x (q/k/v): each y equals that product's own matmul to the bit, whether x
// is quantized once for all (same type; rows not a multiple of the row tile; stored and panels16
// layouts mixed) or the types differ (one matmul each), with and without a pool.
TEST_P(KernelProduct, ProductsWithTheSameInputMatchTheirOwnMatmul) {
  std::mt19937 rng(10);
  const size_t cols = col_counts().back();
  const size_t rows[] = {64, 16, 53};
  std::vector<std::vector<uint8_t>> w;
  std::vector<Layout> layouts;
  for (size_t i = 0; i < 3; ++i) {
    w.push_back(random_weights(type_, rows[i], cols, rng));
    layouts.push_back(i == 2 ? preferred_layout(type_, rows[i]) : Layout::rows);
    pack_weights(type_, layouts[i], w[i].data(), rows[i], cols);
  }
  ThreadPool pool(2);
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
    for (size_t batch : {1, 3, 8, 13}) {
      const std::vector<float> x = random_floats(batch * cols, rng);
      std::vector<std::vector<float>> alone(3), together(3);
      std::vector<Product> products;
      for (size_t i = 0; i < 3; ++i) {
        alone[i].assign(batch * rows[i], NAN);
        together[i].assign(batch * rows[i], NAN);
        matmul(type_, layouts[i], w[i].data(), rows[i], cols, x.data(), batch, alone[i].data(), p);
        products.push_back({type_, layouts[i], w[i].data(), rows[i], together[i].data()});
      }
      matmul(products, cols, x.data(), batch, p);
      for (size_t i = 0; i < 3; ++i)
        for (size_t k = 0; k < alone[i].size(); ++k)
          ASSERT_EQ(bits(together[i][k]), bits(alone[i][k])) << "product " << i << " batch " << batch << " output " << k;
    }
  }
  if (!int8_type(type_)) return;
  // a product of another type next to this one: computed on its own, same bits
  const DType other = type_ == DType::q6_k ? DType::q4_k : DType::q6_k;
  const size_t ocols = std::lcm(dtype_info(type_).block_size, dtype_info(other).block_size);
  const std::vector<uint8_t> wa = random_weights(type_, 32, ocols, rng), wb = random_weights(other, 32, ocols, rng);
  const std::vector<float> x = random_floats(2 * ocols, rng);
  std::vector<float> ya(64), yb(64), ya1(64), yb1(64);
  const Product mixed[] = {{type_, Layout::rows, wa.data(), 32, ya.data()}, {other, Layout::rows, wb.data(), 32, yb.data()}};
  matmul(mixed, ocols, x.data(), 2, &pool);
  matmul(type_, wa.data(), 32, ocols, x.data(), 2, ya1.data(), &pool);
  matmul(other, wb.data(), 32, ocols, x.data(), 2, yb1.data(), &pool);
  for (size_t k = 0; k < 64; ++k) {
    ASSERT_EQ(bits(ya[k]), bits(ya1[k])) << k;
    ASSERT_EQ(bits(yb[k]), bits(yb1[k])) << k;
  }
}

// Weights produced by our quantizer (the realistic case) rather than random bytes.
TEST_P(KernelProduct, QuantizedWeightsMatchReference) {
  std::mt19937 rng(9);
  const size_t rows = 40, cols = is_block_type(type_) ? 4 * dtype_info(type_).block_size : 1000;
  const std::vector<float> wf = random_floats(rows * cols, rng, 0.05f);
  std::vector<uint8_t> w(rows * row_bytes(type_, cols));
  for (size_t r = 0; r < rows; ++r)
    quantize_row(type_, wf.data() + r * cols, w.data() + r * row_bytes(type_, cols), cols);
  const std::vector<float> x = random_floats(3 * cols, rng);
  std::vector<float> y(3 * rows);
  matmul(type_, w.data(), rows, cols, x.data(), 3, y.data(), nullptr);
  const Reference ref = reference_matmul(type_, w, rows, cols, x, 3);
  for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref.y[i], tolerance(ref.mass[i], cols)) << i;
}

// Weights repacked into panels of 16 rows give the stored layout's results to the bit, through the
// panel kernels (AVX-512 VNNI) and through the unpacking fallback (every other path), at the batch
// sizes of decode and of prefill, with rows past the last whole panel and with threads.
TEST_P(KernelProduct, PanelsLayoutIsBitIdentical) {
  if (!panels_kernel(type_)) GTEST_SKIP() << dtype_info(type_).name << " has no panels layout";
  std::mt19937 rng(12);
  const size_t bs = dtype_info(type_).block_size;
  for (size_t cols : {bs, 3 * bs}) {
    for (size_t rows : {16, 53, 96}) {  // one panel; 3 panels + 5 stored rows; 6 panels (pairs)
      const std::vector<uint8_t> w = random_weights(type_, rows, cols, rng);
      std::vector<uint8_t> packed = w;
      pack_weights(type_, Layout::panels16, packed.data(), rows, cols);
      EXPECT_NE(packed, w);
      for (size_t batch : {1, 2, 7, 8, 13, 40}) {
        const std::vector<float> x = random_floats(batch * cols, rng);
        std::vector<float> stored(batch * rows), panels(batch * rows, NAN);
        matmul(type_, w.data(), rows, cols, x.data(), batch, stored.data(), nullptr);
        ThreadPool pool(batch % 2 == 0 ? 2 : 1);
        matmul(type_, Layout::panels16, packed.data(), rows, cols, x.data(), batch, panels.data(), &pool);
        for (size_t i = 0; i < stored.size(); ++i)
          ASSERT_EQ(bits(stored[i]), bits(panels[i]))
              << shape_name(rows, cols, batch) << " output " << i << ": " << panels[i] << " vs " << stored[i];
      }
    }
  }
}

TEST(KernelLayout, PanelsArePreferredOnlyWhereAKernelUsesThem) {
  EXPECT_EQ(preferred_layout(DType::f16, 4096), Layout::rows);
  EXPECT_EQ(preferred_layout(DType::q8_0, 15), Layout::rows);  // not one whole panel
  IsaGuard guard;
  set_isa(Isa::avx2);
  EXPECT_EQ(preferred_layout(DType::q8_0, 4096), Layout::rows);
  set_isa(Isa::avx512);
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
  if (active_isa() == Isa::avx512) {  // the panel kernels need VNNI, which AVX-512 alone does not promise
    for (DType t : kAllTypes) {
      if (!is_block_type(t)) continue;
      EXPECT_EQ(preferred_layout(t, 4096) == Layout::panels16, vnni) << dtype_info(t).name;
    }
  }
#endif
  std::vector<uint8_t> w(34 * 16);
  EXPECT_THROW(pack_weights(DType::f16, Layout::panels16, w.data(), 16, 272), std::invalid_argument);
}

std::string product_name(const ::testing::TestParamInfo<std::tuple<Isa, DType>>& info) {
  return std::string(isa_name(std::get<0>(info.param))) + "_" + dtype_info(std::get<1>(info.param)).name;
}

INSTANTIATE_TEST_SUITE_P(AllPaths, KernelProduct,
                         ::testing::Combine(::testing::ValuesIn(kAllIsas), ::testing::ValuesIn(kAllTypes)),
                         product_name);

TEST(KernelProductEdge, EmptyShapesDoNothing) {
  std::vector<float> y(4, 7.0f);
  const std::vector<float> x(32, 1.0f);
  const std::vector<uint8_t> w(34 * 4);
  matmul(DType::q8_0, w.data(), 0, 32, x.data(), 1, y.data(), nullptr);
  matmul(DType::q8_0, w.data(), 4, 32, x.data(), 0, y.data(), nullptr);
  for (float v : y) EXPECT_EQ(v, 7.0f);
  EXPECT_THROW(matvec(DType::q8_0, w.data(), 4, 48, x.data(), y.data(), nullptr), std::invalid_argument);
}

// ---------------------------------------------------------------- thread pool

TEST(ThreadPoolTest, CoversRangeOnceInGrainAlignedChunks) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (size_t n : {1, 15, 16, 17, 1000, 4099}) {
      for (size_t grain : {1, 16, 64}) {
        std::vector<std::atomic<int>> hits(n);
        std::mutex m;
        std::vector<std::pair<size_t, size_t>> ranges;
        pool.run(n, grain, [&](size_t begin, size_t end) {
          for (size_t i = begin; i < end; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
          std::lock_guard lock(m);
          ranges.emplace_back(begin, end);
        });
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n " << n << " grain " << grain << " i " << i;
        for (auto [begin, end] : ranges) {
          ASSERT_EQ(begin % grain, 0u);
          ASSERT_TRUE(end == n || (end - begin) % grain == 0) << begin << ".." << end;
        }
      }
    }
  }
}

TEST(ThreadPoolTest, DefaultSizeAndEmptyRun) {
  ThreadPool pool(0);
  EXPECT_GE(pool.size(), 1);
  bool called = false;
  pool.run(0, 16, [&](size_t, size_t) { called = true; });
  EXPECT_FALSE(called);
}

TEST(ThreadPoolTest, ManyBackToBackRuns) {
  ThreadPool pool(3);
  std::atomic<uint64_t> total{0};
  for (int i = 0; i < 2000; ++i)
    pool.run(64, 1, [&](size_t begin, size_t end) { total.fetch_add(end - begin, std::memory_order_relaxed); });
  EXPECT_EQ(total.load(), 2000u * 64);
}

TEST(ThreadPoolTest, UsesWorkerThreads) {
  ThreadPool pool(2);
  std::mutex m;
  std::vector<std::thread::id> ids;
  for (int attempt = 0; attempt < 50; ++attempt) {
    pool.run(64, 1, [&](size_t, size_t) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      std::lock_guard lock(m);
      ids.push_back(std::this_thread::get_id());
    });
    std::sort(ids.begin(), ids.end());
    if (std::unique(ids.begin(), ids.end()) - ids.begin() >= 2) return;
  }
  FAIL() << "every chunk ran on one thread";
}

TEST(ThreadPoolTest, ExceptionIsRethrownAfterAllThreadsStop) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.run(1000, 1,
                        [](size_t begin, size_t end) {
                          if (begin <= 500 && 500 < end) throw std::runtime_error("chunk failed");
                        }),
               std::runtime_error);
  std::atomic<size_t> total{0};  // the pool still works afterwards
  pool.run(100, 1, [&](size_t begin, size_t end) { total += end - begin; });
  EXPECT_EQ(total.load(), 100u);
}

TEST(ThreadPoolTest, NestedRunExecutesInline) {
  ThreadPool pool(2);
  std::atomic<size_t> inner{0};
  pool.run(4, 1, [&](size_t, size_t) {
    pool.run(10, 1, [&](size_t begin, size_t end) { inner += end - begin; });
  });
  EXPECT_EQ(inner.load(), 40u);
}

// ---------------------------------------------------------------- llama.cpp fixtures

struct Tensor {
  gguf::TensorInfo info;
  std::vector<uint8_t> data;
};

std::vector<uint8_t> read_tensor_data(const gguf::File& file, const gguf::TensorInfo& t) {
  std::ifstream in(file.path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(file.data_offset + t.offset));
  std::vector<uint8_t> data(t.nbytes);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!in) throw std::runtime_error("short read of " + t.name + " in " + file.path.string());
  return data;
}

struct ExactnessCount {
  size_t tensors = 0, rows = 0, blocks = 0, mismatched_blocks = 0;
};

// Quantizes the f32 model's tensors with our quantizer and compares the bytes with llama.cpp's
// file: every tensor of a type we support that differs from the f32 one.
// `source`: the file llama.cpp quantized from (f32; F16 for the README's six newer files).
void compare_with_fixture(const std::string& arch, const std::string& qname,
                          std::map<std::string, ExactnessCount>& by_type, const std::string& source = "f32") {
  const auto models = test::fixtures_dir() / "models";
  const gguf::File f32 = gguf::read_file_header(models / ("tiny-" + arch + "-" + source + ".gguf"));
  const gguf::File qf = gguf::read_file_header(models / ("tiny-" + arch + "-" + qname + ".gguf"));
  for (const gguf::TensorInfo& t : qf.tensors) {
    const DTypeInfo* info = dtype_info(t.type);
    ASSERT_NE(info, nullptr) << t.name << " has a type we cannot compute with: " << t.type;
    if (t.type == 0) continue;
    const gguf::TensorInfo* src = f32.find_tensor(t.name);
    ASSERT_NE(src, nullptr) << t.name;
    ASSERT_TRUE(src->type == 0u || src->type == 1u) << t.name;
    ASSERT_EQ(src->dims, t.dims);
    const std::vector<uint8_t> ref = read_tensor_data(qf, t);
    const std::vector<uint8_t> raw = read_tensor_data(f32, *src);
    const size_t elem = src->type == 0u ? 4 : 2;
    std::vector<float> x(raw.size() / elem);
    dequantize_row(static_cast<DType>(src->type), raw.data(), x.data(), x.size());
    const size_t cols = t.dims[0], rows = x.size() / cols, rb = row_bytes(static_cast<DType>(t.type), cols);
    ASSERT_EQ(rows * rb, ref.size()) << t.name;
    std::vector<uint8_t> ours(rb);
    std::vector<float> deq(cols);
    ExactnessCount& count = by_type[info->name];
    ++count.tensors;
    double err2 = 0, x2 = 0;
    for (size_t r = 0; r < rows; ++r) {
      quantize_row(static_cast<DType>(t.type), x.data() + r * cols, ours.data(), cols);
      for (size_t b = 0; b < rb / info->block_bytes; ++b) {
        ++count.blocks;
        if (std::memcmp(ours.data() + b * info->block_bytes, ref.data() + r * rb + b * info->block_bytes,
                        info->block_bytes) != 0)
          ++count.mismatched_blocks;
      }
      ++count.rows;
      // llama.cpp's bytes, dequantized by us, are the f32 weights up to the format's error.
      dequantize_row(static_cast<DType>(t.type), ref.data() + r * rb, deq.data(), cols);
      for (size_t j = 0; j < cols; ++j) {
        err2 += (deq[j] - x[r * cols + j]) * double(deq[j] - x[r * cols + j]);
        x2 += double(x[r * cols + j]) * x[r * cols + j];
      }
    }
    const double rel_rms = std::sqrt(err2 / x2);
    const double bound = t.type == 12 || t.type == 3 ? 0.12 : t.type == 2 ? 0.14 : t.type == 14 ? 0.03
                         : t.type == 7 || t.type == 13 ? 0.06 : t.type == 10 ? 0.40 : t.type == 11 ? 0.22
                         : t.type == 23 ? 0.12 : 0.01;
    EXPECT_LT(rel_rms, bound) << arch << "-" << qname << " " << t.name << " (" << info->name << ")";
  }
}

TEST(KernelFixtures, QuantizerReproducesLlamaCppBytes) {
  AUTOGLM_REQUIRE_FIXTURES();
  std::map<std::string, ExactnessCount> by_type;
  for (const std::string arch : {"llama", "qwen2", "glm4"}) {
    for (const std::string q : {"F16", "Q8_0", "Q4_0", "Q4_K_M"}) compare_with_fixture(arch, q, by_type);
  }
  compare_with_fixture("glm4", "BF16", by_type);
  compare_with_fixture("glm4", "Q5_K_M", by_type, "F16");  // Q5_K and Q6_K
  compare_with_fixture("llama", "Q4_1", by_type, "F16");
  compare_with_fixture("llama", "Q5_1", by_type, "F16");
  compare_with_fixture("llama", "Q2_K", by_type, "F16");     // Q2_K, Q3_K and Q6_K
  compare_with_fixture("glm4", "Q3_K_M", by_type, "F16");    // Q3_K, Q4_K, Q5_K and Q6_K
  compare_with_fixture("glm4", "IQ4_XS", by_type, "F16");    // IQ4_XS and Q6_K
  for (const auto& [name, c] : by_type) {
    std::printf("%-5s %3zu tensors %6zu rows %8zu blocks: %zu differ from llama.cpp\n", name.c_str(), c.tensors,
                c.rows, c.blocks, c.mismatched_blocks);
    EXPECT_EQ(c.mismatched_blocks, 0u) << name;
  }
  for (const char* expected : {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"})
    EXPECT_TRUE(by_type.count(expected)) << "no " << expected << " tensor in the fixtures";
}

// SwiGLU's elementwise step against silu in double precision, on every path: large and tiny inputs
// of both signs, zeros, odd lengths (the vector loops' tails), and out written over up.
TEST(KernelActivation, SwigluMatchesSiluOnEveryPath) {
  IsaGuard guard;
  std::mt19937 rng(13);
  std::vector<float> gate = random_floats(1000, rng, 8.0f), up = random_floats(1000, rng, 2.0f);
  const float specials[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 20.0f, -20.0f, 80.0f, -80.0f, 100.0f, -100.0f, 1e30f, -1e30f};
  for (size_t i = 0; i < std::size(specials); ++i) gate[i] = specials[i];
  for (Isa isa : kAllIsas) {
    if (isa > detected_isa()) continue;
    set_isa(isa);
    for (size_t n : {size_t{1}, size_t{7}, size_t{33}, gate.size()}) {
      std::vector<float> out(n, NAN), in_place(up.begin(), up.begin() + static_cast<std::ptrdiff_t>(n));
      swiglu(gate.data(), up.data(), out.data(), n);
      swiglu(gate.data(), in_place.data(), in_place.data(), n);
      for (size_t i = 0; i < n; ++i) {
        const double g = gate[i], want = g / (1.0 + std::exp(-g)) * up[i];
        ASSERT_NEAR(out[i], want, 4e-7 * std::fabs(want) + 1e-37) << isa_name(isa) << " gate " << g << " up " << up[i];
        ASSERT_EQ(bits(in_place[i]), bits(out[i])) << isa_name(isa) << ": out over up gives the same";
      }
    }
  }
}

// softmax against double precision on every path: lengths around the 16-lane loops, a scale, large
// spreads (tiny probabilities), and rows that sum to 1.
TEST(KernelActivation, SoftmaxMatchesDoublePrecisionOnEveryPath) {
  IsaGuard guard;
  std::mt19937 rng(14);
  for (Isa isa : kAllIsas) {
    if (isa > detected_isa()) continue;
    set_isa(isa);
    for (size_t n : {size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{1000}}) {
      for (float spread : {1.0f, 30.0f}) {
        const std::vector<float> x = random_floats(n, rng, spread);
        std::vector<float> y = x;
        const float scale = 0.125f;
        softmax(y.data(), n, scale);
        const double top = *std::max_element(x.begin(), x.end());
        double z = 0, sum = 0;
        for (float v : x) z += std::exp(scale * (v - top));
        for (size_t i = 0; i < n; ++i) {
          const double want = std::exp(scale * (x[i] - top)) / z;
          // the float rounding of scale * (x - max) is about |that| ulp of relative error
          ASSERT_NEAR(y[i], want, 4e-6 * want + 1e-30) << isa_name(isa) << " n " << n << " i " << i;
          sum += y[i];
        }
        EXPECT_NEAR(sum, 1.0, 1e-5) << isa_name(isa) << " n " << n;
      }
    }
  }
}

// The numerators of a softmax in bf16: each the exact e^(scale (x - max)) to bf16's half ulp, and
// their sum (of the unrounded values) to float precision, on every path.
TEST(KernelActivation, SoftmaxNumeratorsInBf16OnEveryPath) {
  IsaGuard guard;
  std::mt19937 rng(15);
  for (Isa isa : kAllIsas) {
    if (isa > detected_isa()) continue;
    set_isa(isa);
    for (size_t n : {size_t{1}, size_t{17}, size_t{3268}}) {
      const std::vector<float> x = random_floats(n, rng, 20.0f);
      std::vector<uint16_t> p(n);
      const float sum = softmax_numerators_bf16(x.data(), n, 0.25f, p.data());
      const double top = *std::max_element(x.begin(), x.end());
      double want_sum = 0;
      for (size_t i = 0; i < n; ++i) {
        const double want = std::exp(0.25 * (x[i] - top));
        want_sum += want;
        ASSERT_NEAR(bf16_to_f32(p[i]), want, want / 256 + 1e-30) << isa_name(isa) << " i " << i;
      }
      EXPECT_NEAR(sum, want_sum, 1e-5 * want_sum) << isa_name(isa) << " n " << n;
    }
  }
}

// ---- bf16 products on AMX tiles ----

std::vector<uint16_t> random_bf16(size_t n, std::mt19937& rng) {
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = f32_to_bf16(random_floats(1, rng)[0]);
  return v;
}

// sum_k a[k] b[k] in double, and the sum of |a[k] b[k]| (the scale of the rounding error).
std::pair<double, double> dot_and_scale(const float* a, const uint16_t* b, size_t k, bool round_a) {
  double dot = 0, scale = 0;
  for (size_t j = 0; j < k; ++j) {
    const double av = round_a ? bf16_to_f32(f32_to_bf16(a[j])) : a[j], p = av * bf16_to_f32(b[j]);
    dot += p;
    scale += std::fabs(p);
  }
  return {dot, scale};
}

TEST(KernelTiles, PackUnpackRoundTripsAndKeepsTheSize) {
  std::mt19937 rng(40);
  const size_t rows = 64, cols = 96;
  const std::vector<uint16_t> w = random_bf16(rows * cols, rng);
  std::vector<uint16_t> packed(rows * cols), back(rows * cols);
  pack_tiles_bf16(w.data(), cols, rows, cols, packed.data());
  EXPECT_NE(packed, w);
  unpack_tiles_bf16(packed.data(), rows, cols, back.data());
  EXPECT_EQ(back, w);
  // in place through pack_weights, as the loader does
  std::vector<uint16_t> in_place = w;
  pack_weights(DType::bf16, Layout::tiles_bf16, in_place.data(), rows, cols);
  EXPECT_EQ(in_place, packed);
  // the transposed packer: the same tiles from the matrix stored column by column
  std::vector<uint16_t> transposed(rows * cols), from_transposed(rows * cols);
  for (size_t r = 0; r < rows; ++r)
    for (size_t k = 0; k < cols; ++k) transposed[k * rows + r] = w[r * cols + k];
  pack_tiles_bf16_transposed(transposed.data(), rows, rows, cols, from_transposed.data());
  EXPECT_EQ(from_transposed, packed);
  EXPECT_FALSE(tiles_fit(48, 96));
  EXPECT_FALSE(tiles_fit(64, 80));
  EXPECT_THROW(pack_tiles_bf16(w.data(), cols, 48, cols, packed.data()), std::invalid_argument);
  EXPECT_THROW(pack_weights(DType::f16, Layout::tiles_bf16, in_place.data(), rows, cols), std::invalid_argument);
}

// matmul on tiles_bf16 weights against double precision: batches below, at and past a 32-row block
// (the tail), K past one pass over the outputs (2048), threaded; with AMX the activations are bf16,
// without it (switched off, or another ISA forced) the float path runs on the same weights.
TEST(KernelTiles, MatmulMatchesDoublePrecisionWithAndWithoutAmx) {
  IsaGuard guard;
  struct AmxGuard {
    ~AmxGuard() { set_amx(true); }
  } amx_guard;
  std::mt19937 rng(41);
  ThreadPool pool(2);
  for (auto [rows, cols] : {std::pair<size_t, size_t>{64, 96}, {544, 2080}}) {
    const std::vector<uint16_t> w = random_bf16(rows * cols, rng);
    std::vector<uint16_t> packed = w;
    pack_weights(DType::bf16, Layout::tiles_bf16, packed.data(), rows, cols);
    for (size_t batch : {size_t{1}, size_t{32}, size_t{70}}) {
      const std::vector<float> x = random_floats(batch * cols, rng);
      for (bool amx : {true, false}) {
        if (amx && !amx_detected()) continue;
        set_amx(amx);
        std::vector<float> y(batch * rows, -1.0f);
        matmul(DType::bf16, Layout::tiles_bf16, packed.data(), rows, cols, x.data(), batch, y.data(), &pool);
        for (size_t b = 0; b < batch; ++b)
          for (size_t r = 0; r < rows; ++r) {
            const auto [want, scale] = dot_and_scale(x.data() + b * cols, w.data() + r * cols, cols, amx);
            ASSERT_NEAR(y[b * rows + r], want, 1e-5 * scale + 1e-6)
                << "amx " << amx << " " << rows << "x" << cols << " batch " << batch << " b " << b << " r " << r;
          }
      }
    }
  }
  if (!amx_detected()) GTEST_SKIP() << "this CPU has no AMX-BF16: only the float path ran";
}

// The one-thread GEMM the vision tower's attention uses, on strided A and C.
TEST(KernelTiles, GemmOnStridedOperands) {
  if (!amx_available()) GTEST_SKIP() << "this CPU has no AMX-BF16";
  std::mt19937 rng(42);
  const size_t m = 45, n = 64, k = 128, lda = 200, ldc = 100;
  const std::vector<uint16_t> a = random_bf16(m * lda, rng), w = random_bf16(n * k, rng);
  std::vector<uint16_t> b(n * k);
  pack_tiles_bf16(w.data(), k, n, k, b.data());
  std::vector<float> c(m * ldc, 7.0f);
  gemm_tiles_bf16(a.data(), lda, m, b.data(), n, k, c.data(), ldc);
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < n; ++j) {
      double want = 0, scale = 0;
      for (size_t q = 0; q < k; ++q) {
        const double p = double{bf16_to_f32(a[i * lda + q])} * bf16_to_f32(w[j * k + q]);
        want += p;
        scale += std::fabs(p);
      }
      ASSERT_NEAR(c[i * ldc + j], want, 1e-5 * scale) << i << " " << j;
    }
    for (size_t j = n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], 7.0f) << "wrote past the row";
  }
}

// Attention against a double-precision softmax: queries with different visible lengths (crossing
// key blocks) and runs of equal ones (the kernels take those two at a time), head sizes that are not
// a multiple of the vector width or exceed 128, every path.
TEST(KernelAttention, MatchesNaiveSoftmaxOnEveryPath) {
  IsaGuard guard;
  std::mt19937 rng(12);
  for (size_t hd : {8, 33, 128, 200}) {
    const size_t n_kv = 150;
    std::vector<uint16_t> k(n_kv * hd), v(n_kv * hd);
    for (uint16_t& h : k) h = f32_to_f16(std::normal_distribution<float>(0, 1)(rng));
    for (uint16_t& h : v) h = f32_to_f16(std::normal_distribution<float>(0, 1)(rng));
    std::vector<const void*> k_rows(n_kv), v_rows(n_kv);
    for (size_t p = 0; p < n_kv; ++p) k_rows[p] = k.data() + p * hd, v_rows[p] = v.data() + p * hd;
    const std::vector<size_t> visible = {1, 2, 2, 63, 64, 65, 65, 100, 17, 150, 150, 150};
    const std::vector<float> q = random_floats(visible.size() * hd, rng, 2.0f);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    for (Isa isa : kAllIsas) {
      if (isa > detected_isa()) continue;
      set_isa(isa);
      std::vector<float> out(visible.size() * hd, NAN);
      std::vector<AttentionQuery> queries;
      for (size_t i = 0; i < visible.size(); ++i) queries.push_back({q.data() + i * hd, out.data() + i * hd, visible[i]});
      attention(queries, hd, DType::f16, k_rows.data(), v_rows.data(), scale);
      for (size_t i = 0; i < visible.size(); ++i) {
        std::vector<double> score(visible[i]);
        double max = -INFINITY, sum = 0;
        for (size_t p = 0; p < visible[i]; ++p) {
          double d = 0;
          for (size_t e = 0; e < hd; ++e) d += double(q[i * hd + e]) * f16_to_f32(k[p * hd + e]);
          score[p] = d * scale;
          max = std::max(max, score[p]);
        }
        for (double& s : score) sum += s = std::exp(s - max);
        for (size_t e = 0; e < hd; ++e) {
          double want = 0;
          for (size_t p = 0; p < visible[i]; ++p) want += score[p] / sum * f16_to_f32(v[p * hd + e]);
          ASSERT_NEAR(out[i * hd + e], want, 2e-5) << isa_name(isa) << " head_dim " << hd << " query " << i;
        }
      }
    }
  }
}

TEST(KernelAttention, RejectsUnsupportedHeadDim) {
  std::vector<AttentionQuery> none;
  EXPECT_THROW(attention(none, kAttentionMaxHeadDim + 1, DType::f16, nullptr, nullptr, 1.0f), std::invalid_argument);
  EXPECT_THROW(attention(none, 48, DType::q8_0, nullptr, nullptr, 1.0f), std::invalid_argument);
  EXPECT_THROW(attention(none, 64, DType::q4_0, nullptr, nullptr, 1.0f), std::invalid_argument);
}

// A fixture tensor through matvec on every path agrees with the f32 weights' product up to the
// quantization error, and with our own dequantize-then-dot exactly up to f32 rounding.
TEST(KernelFixtures, MatvecOnFixtureTensors) {
  AUTOGLM_REQUIRE_FIXTURES();
  IsaGuard guard;
  const auto models = test::fixtures_dir() / "models";
  const gguf::File qf = gguf::read_file_header(models / "tiny-llama-Q4_K_M.gguf");
  std::mt19937 rng(10);
  for (const char* name : {"output.weight", "blk.0.ffn_down.weight", "blk.1.ffn_down.weight"}) {
    const gguf::TensorInfo* t = qf.find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    const auto type = static_cast<DType>(t->type);
    const std::vector<uint8_t> w = read_tensor_data(qf, *t);
    const size_t cols = t->dims[0], rows = t->dims[1];
    const std::vector<float> x = random_floats(cols, rng);
    const Reference ref = reference_matmul(type, w, rows, cols, x, 1);
    for (Isa isa : kAllIsas) {
      if (isa > detected_isa()) continue;
      set_isa(isa);
      std::vector<float> y(rows);
      matvec(type, w.data(), rows, cols, x.data(), y.data(), nullptr);
      for (size_t r = 0; r < rows; ++r)
        ASSERT_NEAR(y[r], ref.y[r], tolerance(ref.mass[r], cols)) << name << " " << isa_name(isa) << " row " << r;
    }
  }
}

}  // namespace
}  // namespace autoglm::kernels
