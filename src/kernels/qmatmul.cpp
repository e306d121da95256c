// The canonical int8-activation product (see qmatmul.h) in plain C++: the reference every SIMD path
// must reproduce bit for bit, and the path for rows that do not fill a SIMD tile.
#include "qmatmul.h"

#include <algorithm>
#include <cmath>

namespace autoglm::kernels {
namespace {

// Integer weights, scale and offset of group g of a row, per type.
struct GroupQ8_0 {
  static void get(const uint8_t* row, size_t g, int* wq, float& s, float&) {
    const auto& b = reinterpret_cast<const BlockQ8_0*>(row)[g];
    for (size_t l = 0; l < 32; ++l) wq[l] = b.qs[l];
    s = f16_to_f32(b.d);
  }
};
struct GroupQ4_0 {
  static void get(const uint8_t* row, size_t g, int* wq, float& s, float&) {
    const auto& b = reinterpret_cast<const BlockQ4_0*>(row)[g];
    for (size_t l = 0; l < 16; ++l) {
      wq[l] = (b.qs[l] & 0xF) - 8;
      wq[l + 16] = (b.qs[l] >> 4) - 8;
    }
    s = f16_to_f32(b.d);
  }
};
struct GroupQ5_0 {
  static void get(const uint8_t* row, size_t g, int* wq, float& s, float&) {
    const auto& b = reinterpret_cast<const BlockQ5_0*>(row)[g];
    for (size_t l = 0; l < 32; ++l) wq[l] = q5_0_value(b, l) - 16;
    s = f16_to_f32(b.d);
  }
};
struct GroupQ4K {
  static void get(const uint8_t* row, size_t g, int* wq, float& s, float& m) {
    const auto& b = reinterpret_cast<const BlockQ4K*>(row)[g / 8];
    const size_t j = g % 8;
    uint8_t sc = 0, mn = 0;
    q4k_scale_min(j, b.scales, sc, mn);
    const uint8_t* q = b.qs + 32 * (j / 2);
    for (size_t l = 0; l < 32; ++l) wq[l] = (j % 2 == 0) ? (q[l] & 0xF) : (q[l] >> 4);
    s = f16_to_f32(b.d) * static_cast<float>(sc);
    m = -(f16_to_f32(b.dmin) * static_cast<float>(mn));
  }
};
struct GroupQ6K {
  static void get(const uint8_t* row, size_t g, int* wq, float& s, float&) {
    const auto& b = reinterpret_cast<const BlockQ6K*>(row)[g / 16];
    const size_t j = g % 16;
    for (size_t l = 0; l < 16; ++l) wq[l] = q6k_value(b, 16 * j + l) - 32;
    s = f16_to_f32(b.d) * static_cast<float>(b.scales[j]);
  }
};

// The types defined by their groups (blocks.h's group_of): group g of a row of such blocks.
template <class Block>
struct GroupOf {
  static void get(const uint8_t* row, size_t g, int* wq, float& s, float& m) {
    constexpr size_t per_block = kBlockElems<Block> / kGroupOf<Block>;
    group_of(reinterpret_cast<const Block*>(row)[g / per_block], g % per_block, wq, s, m);
  }
};

template <class Group>
void rows_scalar(const QJob& job, size_t r0, size_t r1) {
  const QFormat f = qformat(job.type);
  const QActs& a = *job.acts;
  const size_t groups = job.cols / f.group, per_block = kActBlock / f.group;
  int wq[32] = {};
  for (size_t r = r0; r < r1; ++r) {
    const uint8_t* row = job.w + r * job.stride;
    for (size_t b = 0; b < a.batch; ++b) {
      const int8_t* q = a.q_row(b);
      const float* dx = a.dx_row(b);
      const float* t = a.t_row(b);
      const float* t16 = a.t16_row(b);
      float y = 0;
      for (size_t g = 0; g < groups; ++g) {
        float s = 0, m = 0;
        Group::get(row, g, wq, s, m);
        int32_t isum = 0;
        for (size_t l = 0; l < f.group; ++l) isum += wq[l] * q[g * f.group + l];
        y = std::fma(static_cast<float>(isum), s * dx[g / per_block], y);
        if (f.has_min) y = std::fma(m, f.group == kActBlock ? t[g] : t16[g], y);
      }
      job.y[b * job.rows + r] = y;
    }
  }
}

// Nearest integer, ties to even, of |v| <= 127: adding 1.5 * 2^23 pushes the fraction bits out
// under the default rounding mode (no libm call, vectorizes, and agrees with cvtps2dq).
int8_t round_to_int8(float v) {
  constexpr float kMagic = 12582912.0f;
  return static_cast<int8_t>(static_cast<int>((v + kMagic) - kMagic));
}

}  // namespace

void quantize_block_scalar(const float* x, int8_t* q, float& dx, float& t, int32_t* sum16) {
  float amax = 0;
  for (size_t l = 0; l < kActBlock; ++l) amax = std::max(amax, std::fabs(x[l]));
  dx = amax / 127.0f;
  const float id = dx != 0 ? 1.0f / dx : 0.0f;
  int32_t sum[2] = {0, 0};
  for (size_t l = 0; l < kActBlock; ++l) {
    // the clamp also maps NaN to -127 (as fmax would): the result is then garbage, never undefined;
    // written as comparisons, not std::fmin/fmax, so that it vectorizes instead of calling libm
    float v = x[l] * id;
    v = v > -127.0f ? v : -127.0f;
    v = v < 127.0f ? v : 127.0f;
    q[l] = round_to_int8(v);
    sum[l / 16] += q[l];
  }
  t = dx * static_cast<float>(sum[0] + sum[1]);
  sum16[0] = sum[0];
  sum16[1] = sum[1];
}

const QActs& QActsStorage::prepare(DType type, size_t cols, size_t batch) {
  const QFormat f = qformat(type);
  const size_t blocks = cols / kActBlock;
  if (q_.size() < cols * batch) q_.resize(cols * batch);
  if (dx_.size() < blocks * batch) {
    dx_.resize(blocks * batch);
    t_.resize(blocks * batch);
  }
  if (corr_.size() < 2 * blocks * batch) corr_.resize(2 * blocks * batch);
  if (t16_.size() < 2 * blocks * batch) t16_.resize(2 * blocks * batch);
  zero_ = f.zero;
  acts_ = QActs{cols, batch, f.group, q_.data(), dx_.data(), t_.data(), corr_.data(), t16_.data()};
  return acts_;
}

namespace {

QuantizeBlock select_quantize_block() {
  switch (active_isa()) {
    case Isa::avx512:
      if (QuantizeBlock f = quantize_block_avx512()) return f;
      [[fallthrough]];
    case Isa::avx2:
      if (QuantizeBlock f = quantize_block_avx2()) return f;
      [[fallthrough]];
    case Isa::scalar: break;
  }
  return quantize_block_scalar;
}

}  // namespace

void QActsStorage::quantize(const float* x, size_t begin, size_t end) {
  const size_t cols = acts_.cols, blocks = cols / kActBlock, per_block = kActBlock / acts_.group;
  const QuantizeBlock quantize_block = select_quantize_block();
  for (size_t b = begin; b < end; ++b) {
    for (size_t i = 0; i < blocks; ++i) {
      int32_t sum16[2];
      quantize_block(x + b * cols + i * kActBlock, q_.data() + b * cols + i * kActBlock, dx_[b * blocks + i],
                     t_[b * blocks + i], sum16);
      int32_t* corr = corr_.data() + b * blocks * per_block + i * per_block;
      const float dx = dx_[b * blocks + i];
      t16_[(b * blocks + i) * 2] = dx * static_cast<float>(sum16[0]);
      t16_[(b * blocks + i) * 2 + 1] = dx * static_cast<float>(sum16[1]);
      if (per_block == 2) {
        corr[0] = zero_ * sum16[0];
        corr[1] = zero_ * sum16[1];
      } else {
        corr[0] = zero_ * (sum16[0] + sum16[1]);
      }
    }
  }
}

bool is_int8_type(DType type) {
  switch (type) {
    case DType::q8_0: case DType::q4_0: case DType::q4_1: case DType::q5_0: case DType::q5_1:
    case DType::q2_k: case DType::q3_k: case DType::q4_k: case DType::q5_k: case DType::q6_k: case DType::iq4_nl:
    case DType::iq4_xs:
      return true;
    default: return false;
  }
}

QFormat qformat(DType type) {
  switch (type) {
    case DType::q8_0: return {32, 128, false};
    case DType::q4_0: return {32, 8, false};
    case DType::q5_0: return {32, 16, false};
    case DType::q4_k: return {32, 0, true};
    case DType::q6_k: return {16, 32, false};
    case DType::q4_1: return {32, 0, true};
    case DType::q5_1: return {32, 0, true};
    case DType::q2_k: return {16, 0, true};
    case DType::q3_k: return {16, 4, false};
    case DType::q5_k: return {32, 0, true};
    case DType::iq4_xs: return {32, 128, false};  // the levels + 128 (the AVX2 path multiplies them signed)
    case DType::iq4_nl: return {32, 128, false};
    default: return {32, 0, false};
  }
}

void qrows_scalar(const QJob& job, size_t r0, size_t r1) {
  switch (job.type) {
    case DType::q8_0: return rows_scalar<GroupQ8_0>(job, r0, r1);
    case DType::q4_0: return rows_scalar<GroupQ4_0>(job, r0, r1);
    case DType::q5_0: return rows_scalar<GroupQ5_0>(job, r0, r1);
    case DType::q4_k: return rows_scalar<GroupQ4K>(job, r0, r1);
    case DType::q6_k: return rows_scalar<GroupQ6K>(job, r0, r1);
    case DType::q4_1: return rows_scalar<GroupOf<BlockQ4_1>>(job, r0, r1);
    case DType::q5_1: return rows_scalar<GroupOf<BlockQ5_1>>(job, r0, r1);
    case DType::q2_k: return rows_scalar<GroupOf<BlockQ2K>>(job, r0, r1);
    case DType::q3_k: return rows_scalar<GroupOf<BlockQ3K>>(job, r0, r1);
    case DType::q5_k: return rows_scalar<GroupOf<BlockQ5K>>(job, r0, r1);
    case DType::iq4_xs: return rows_scalar<GroupOf<BlockIQ4XS>>(job, r0, r1);
    case DType::iq4_nl: return rows_scalar<GroupOf<BlockIQ4NL>>(job, r0, r1);
    default: return;
  }
}

}  // namespace autoglm::kernels
