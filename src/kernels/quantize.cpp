// Quantization with ggml's reference (non-imatrix) algorithms, operation for operation, so a file we
// quantize is byte-identical to what llama-quantize writes from the same f32 weights. The float
// expressions keep ggml's evaluation order on purpose; this file is built with -ffp-contract=off so
// no fused multiply-add changes a rounding.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "autoglm/kernels.h"
#include "blocks.h"

namespace autoglm::kernels {
namespace {

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: a group below this is all zero

// Round to nearest, ties to even, via the float adder (ggml's nearest_int; |v| < 2^22).
int nearest_int(float v) {
  const float shifted = v + 12582912.f;  // 1.5 * 2^23: the integer lands in the low mantissa bits
  int32_t i = 0;
  std::memcpy(&i, &shifted, sizeof(i));
  return (i & 0x007FFFFF) - 0x00400000;
}

void quantize_q8_0(const float* x, BlockQ8_0* y, size_t nblocks) {
  for (size_t i = 0; i < nblocks; ++i, x += kQK) {
    float amax = 0.0f;
    for (size_t j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;  // from the f32 scale, not the stored f16
    y[i].d = f32_to_f16(d);
    for (size_t j = 0; j < kQK; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

// The value of largest magnitude in a block of kQK, with its sign (the first of equal magnitudes;
// NaNs skipped), as ggml's Q4_0/Q5_0 quantizers pick it.
float largest_magnitude(const float* x) {
  float amax = 0.0f, max = 0.0f;
  for (size_t j = 0; j < kQK; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void quantize_q4_0(const float* x, BlockQ4_0* y, size_t nblocks) {
  for (size_t i = 0; i < nblocks; ++i, x += kQK) {
    const float d = largest_magnitude(x) / -8;  // that value maps to -8
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    for (size_t j = 0; j < kQK / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>(x[j] * id + 8.5f));  // truncation of a value >= 0
      const int q1 = std::min(15, static_cast<int>(x[j + kQK / 2] * id + 8.5f));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

// ggml's quantize_row_q5_0_ref: as Q4_0 with 32 levels, the 5th bits gathered in qh.
void quantize_q5_0(const float* x, BlockQ5_0* y, size_t nblocks) {
  for (size_t i = 0; i < nblocks; ++i, x += kQK) {
    const float d = largest_magnitude(x) / -16;  // that value maps to -16
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    uint32_t qh = 0;
    for (size_t j = 0; j < kQK / 2; ++j) {
      const int q0 = std::min(31, static_cast<int>(x[j] * id + 16.5f));  // truncation of a value >= 0
      const int q1 = std::min(31, static_cast<int>(x[j + kQK / 2] * id + 16.5f));
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>((q0 & 0x10) >> 4) << j;
      qh |= static_cast<uint32_t>((q1 & 0x10) >> 4) << (j + kQK / 2);
    }
    std::memcpy(y[i].qh, &qh, sizeof(qh));
  }
}

// make_qkx2_quants: scale and min for n values with levels 0..nmax, minimizing the weighted squared
// error; tries iscale = (rmin + rdelta * is + nmax) / (max - min) for is = 0..nstep and refits
// scale and min by least squares for each. Returns the scale; *the_min receives -min (>= 0).
// use_mad: the error is the weighted absolute difference instead of the squared one (Q2_K).
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad = false) {
  auto error_of = [use_mad](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::clamp(l, 0, nmax));
    const float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * error_of(diff);
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const auto fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * Laux[i] + this_min - x[i];
        cur_error += weights[i] * error_of(diff);
      }
      if (cur_error < best_error) {
        std::copy(Laux, Laux + n, L);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// make_qx_quants with rmse_type 1 (weights x^2): symmetric levels -nmax..nmax-1 stored as 0..2nmax-1;
// tries iscale = -(nmax + 0.1 is) / max for is = -9..9 and keeps the least-squares best.
float make_qx_quants_rmse1(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    const auto fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      const auto fl = static_cast<float>(l);
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i)
        L[i] = static_cast<int8_t>(nmax + std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Packs sub-block j's 6-bit scale and min into the 12 scale bytes (inverse of q4k_scale_min).
void q4k_pack_scale_min(size_t j, uint8_t ls, uint8_t lm, uint8_t* scales) {
  if (j < 4) {
    scales[j] = ls;
    scales[j + 4] = lm;
  } else {
    scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    scales[j - 4] = static_cast<uint8_t>(scales[j - 4] | ((ls >> 4) << 6));
    scales[j] = static_cast<uint8_t>(scales[j] | ((lm >> 4) << 6));
  }
}

// Q4_K and Q5_K (ggml's quantize_row_q4_K_ref / q5_K_ref): per sub-block of 32 the best (scale,
// min) for nmax + 1 levels, weighting each value by rms + |x|; the scales and mins as 6-bit
// multiples of d and dmin; then every value requantized against the scales as stored (into L).
struct KScales {
  uint16_t d, dmin;
  uint8_t scales[12];
};
KScales quantize_k_scales_mins(const float* x, int nmax, float rmin, int nstep, uint8_t* L) {
  uint8_t Laux[32];
  float weights[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;
  for (size_t j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (size_t l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (size_t l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  KScales k{};
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (size_t j = 0; j < 8; ++j) {
    const auto ls = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    const auto lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    q4k_pack_scale_min(j, ls, lm, k.scales);
  }
  k.d = f32_to_f16(max_scale / 63.f);
  k.dmin = f32_to_f16(max_min / 63.f);
  for (size_t j = 0; j < 8; ++j) {
    uint8_t sc = 0, m = 0;
    q4k_scale_min(j, k.scales, sc, m);
    const float d = f16_to_f32(k.d) * sc;
    if (d == 0.0f) continue;
    const float dm = f16_to_f32(k.dmin) * m;
    for (size_t l = 0; l < 32; ++l)
      L[32 * j + l] = static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + l] + dm) / d), 0, nmax));
  }
  return k;
}

void quantize_q4_k(const float* x, BlockQ4K* y, size_t nblocks) {
  uint8_t L[kQK_K];
  for (size_t i = 0; i < nblocks; ++i, x += kQK_K) {
    const KScales k = quantize_k_scales_mins(x, 15, -1.f, 20, L);
    y[i].d = k.d;
    y[i].dmin = k.dmin;
    std::memcpy(y[i].scales, k.scales, sizeof(k.scales));
    for (size_t g = 0; g < 4; ++g)
      for (size_t l = 0; l < 32; ++l)
        y[i].qs[32 * g + l] = static_cast<uint8_t>(L[64 * g + l] | (L[64 * g + 32 + l] << 4));
  }
}

// Q4_K's scheme with 32 levels; the 5th bit of sub-block j's element l at bit j of qh[l].
void quantize_q5_k(const float* x, BlockQ5K* y, size_t nblocks) {
  uint8_t L[kQK_K];
  for (size_t i = 0; i < nblocks; ++i, x += kQK_K) {
    const KScales k = quantize_k_scales_mins(x, 31, -0.5f, 15, L);
    y[i].d = k.d;
    y[i].dmin = k.dmin;
    std::memcpy(y[i].scales, k.scales, sizeof(k.scales));
    std::memset(y[i].qh, 0, sizeof(y[i].qh));
    for (size_t g = 0; g < 4; ++g)
      for (size_t l = 0; l < 32; ++l) {
        const int lo = L[64 * g + l], hi = L[64 * g + 32 + l];
        y[i].qs[32 * g + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
        y[i].qh[l] = static_cast<uint8_t>(y[i].qh[l] | ((lo >> 4) << (2 * g)) | ((hi >> 4) << (2 * g + 1)));
      }
  }
}

// ggml's quantize_row_q2_K_ref: per sub-block of 16 the best (scale, min) for 4 levels by weighted
// absolute error (weights |x|), both as 4-bit multiples of d and dmin (15 levels), then requantized.
void quantize_q2_k(const float* x, BlockQ2K* y, size_t nblocks) {
  constexpr float kQ4Scale = 15.f;
  uint8_t L[kQK_K], Laux[16];
  float weights[16], mins[16], scales[16];
  for (size_t i = 0; i < nblocks; ++i, x += kQK_K) {
    float max_scale = 0, max_min = 0;
    for (size_t j = 0; j < 16; ++j) {
      for (size_t l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    std::memset(y[i].scales, 0, sizeof(y[i].scales));
    y[i].d = f32_to_f16(0.f);
    y[i].dmin = f32_to_f16(0.f);
    if (max_scale > 0) {
      const float iscale = kQ4Scale / max_scale;
      for (size_t j = 0; j < 16; ++j) y[i].scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      y[i].d = f32_to_f16(max_scale / kQ4Scale);
    }
    if (max_min > 0) {
      const float iscale = kQ4Scale / max_min;
      for (size_t j = 0; j < 16; ++j)
        y[i].scales[j] = static_cast<uint8_t>(y[i].scales[j] | (nearest_int(iscale * mins[j]) << 4));
      y[i].dmin = f32_to_f16(max_min / kQ4Scale);
    }
    for (size_t j = 0; j < 16; ++j) {
      const float d = f16_to_f32(y[i].d) * static_cast<float>(y[i].scales[j] & 0xF);
      if (d == 0.0f) continue;
      const float dm = f16_to_f32(y[i].dmin) * static_cast<float>(y[i].scales[j] >> 4);
      for (size_t l = 0; l < 16; ++l)
        L[16 * j + l] = static_cast<uint8_t>(std::clamp(nearest_int((x[16 * j + l] + dm) / d), 0, 3));
    }
    for (size_t h = 0; h < 2; ++h)
      for (size_t l = 0; l < 32; ++l) {
        const uint8_t* q = L + 128 * h + l;
        y[i].qs[32 * h + l] = static_cast<uint8_t>(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
      }
  }
}

// ggml's make_q3_quants with do_rmse: levels -nmax..nmax-1 from -nmax / (the value of largest
// magnitude), then up to 5 passes moving single values to the level that improves the weighted
// (x^2) least-squares fit. L receives the levels + nmax; returns the scale.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15f) {  // GROUP_MAX_EPS: all zero
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * static_cast<float>(L[i]);
      if (slx > 0) {
        float sl2 = suml2 - w * static_cast<float>(L[i]) * static_cast<float>(L[i]);
        const int new_l = std::clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
        if (new_l != L[i]) {
          slx += w * x[i] * static_cast<float>(new_l);
          sl2 += w * static_cast<float>(new_l) * static_cast<float>(new_l);
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return sumlx / suml2;
}

// ggml's quantize_row_q3_K_ref: per sub-block of 16 the best symmetric 3-bit scale, the scales as
// 6-bit signed multiples of d (the largest-magnitude one at -32), then every value requantized; the
// third bit of element e at bit e / 32 of hmask[e % 32].
void quantize_q3_k(const float* x, BlockQ3K* y, size_t nblocks) {
  int8_t L[kQK_K];
  float scales[16];
  for (size_t i = 0; i < nblocks; ++i, x += kQK_K) {
    float max_scale = 0, amax = 0;
    for (size_t j = 0; j < 16; ++j) {
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    std::memset(y[i].scales, 0, sizeof(y[i].scales));
    if (max_scale != 0) {
      const float iscale = -32.f / max_scale;
      for (size_t j = 0; j < 16; ++j) {
        const int l = std::clamp(static_cast<int>(static_cast<int8_t>(nearest_int(iscale * scales[j]))), -32, 31) + 32;
        if (j < 8)
          y[i].scales[j] = static_cast<uint8_t>(l & 0xF);
        else
          y[i].scales[j - 8] = static_cast<uint8_t>(y[i].scales[j - 8] | ((l & 0xF) << 4));
        y[i].scales[j % 4 + 8] = static_cast<uint8_t>(y[i].scales[j % 4 + 8] | ((l >> 4) << (2 * (j / 4))));
      }
      y[i].d = f32_to_f16(1 / iscale);
    } else {
      y[i].d = f32_to_f16(0.f);
    }
    for (size_t j = 0; j < 16; ++j) {
      const float d = f16_to_f32(y[i].d) * static_cast<float>(q3k_scale(y[i].scales, j) - 32);
      if (d == 0.0f) continue;
      for (size_t l = 0; l < 16; ++l)
        L[16 * j + l] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + l] / d), -4, 3) + 4);
    }
    std::memset(y[i].hmask, 0, sizeof(y[i].hmask));
    for (size_t e = 0; e < kQK_K; ++e)
      if (L[e] > 3) {
        y[i].hmask[e % 32] = static_cast<uint8_t>(y[i].hmask[e % 32] | (1 << (e / 32)));
        L[e] = static_cast<int8_t>(L[e] - 4);
      }
    for (size_t h = 0; h < 2; ++h)
      for (size_t l = 0; l < 32; ++l) {
        const int8_t* q = L + 128 * h + l;
        y[i].qs[32 * h + l] = static_cast<uint8_t>(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
      }
  }
}

// The index of the level of `levels` (16, ascending) nearest x; ties to the upper one (ggml's
// best_index_int8).
int nearest_level(const int8_t* levels, float x) {
  if (x <= levels[0]) return 0;
  if (x >= levels[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < levels[mid])
      hi = mid;
    else
      lo = mid;
  }
  return x - levels[hi - 1] < levels[hi] - x ? hi - 1 : hi;
}

// One block of 32 of ggml's quantize_row_iq4_nl_impl without an importance matrix (weights x^2,
// 7 tries each way): the scale that best fits the non-uniform levels; 0 for an all-zero block, whose
// Lb is then left as it was.
float iq4_block_scale(const float* xb, uint8_t* Lb) {
  constexpr int kTries = 7;
  float weight[32];
  for (size_t j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
  float amax = 0, max = 0;
  for (size_t j = 0; j < 32; ++j) {
    const float ax = std::fabs(xb[j]);
    if (ax > amax) {
      amax = ax;
      max = xb[j];
    }
  }
  if (amax < 1e-15f) return 0;  // GROUP_MAX_EPS
  float d = -max / kIq4nl[0];
  float id = 1 / d;
  float sumqx = 0, sumq2 = 0;
  for (size_t j = 0; j < 32; ++j) {
    const int l = nearest_level(kIq4nl, id * xb[j]);
    Lb[j] = static_cast<uint8_t>(l);
    const float q = kIq4nl[l], w = weight[j];
    sumqx += w * q * xb[j];
    sumq2 += w * q * q;
  }
  d = sumqx / sumq2;
  float best = d * sumqx;
  for (int itry = -kTries; itry <= kTries; ++itry) {
    id = static_cast<float>(itry + kIq4nl[0]) / max;
    sumqx = sumq2 = 0;
    for (size_t j = 0; j < 32; ++j) {
      const int l = nearest_level(kIq4nl, id * xb[j]);
      const float q = kIq4nl[l], w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

void pack_iq4_nibbles(const uint8_t* L, uint8_t* qs) {
  for (size_t j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(L[j] | (L[16 + j] << 4));
}

// ggml's quantize_iq4_xs without an importance matrix: each sub-block's best scale, the scales as
// 6-bit signed multiples of d (the largest-magnitude one at -32), then every value to its nearest
// level at the stored scale.
void quantize_iq4_xs(const float* x, BlockIQ4XS* y, size_t nblocks) {
  uint8_t L[kQK_K];
  float scales[8];
  for (size_t i = 0; i < nblocks; ++i, x += kQK_K) {
    float max_scale = 0, amax_scale = 0;
    for (size_t ib = 0; ib < 8; ++ib) {
      scales[ib] = iq4_block_scale(x + 32 * ib, L + 32 * ib);
      if (std::fabs(scales[ib]) > amax_scale) {
        amax_scale = std::fabs(scales[ib]);
        max_scale = scales[ib];
      }
    }
    y[i].scales_h = 0;
    std::memset(y[i].scales_l, 0, sizeof(y[i].scales_l));
    const float d = -max_scale / 32;
    y[i].d = f32_to_f16(d);
    const float id = d != 0 ? 1 / d : 0.f;
    for (size_t ib = 0; ib < 8; ++ib) {
      int l = std::clamp(nearest_int(id * scales[ib]), -32, 31);
      const float dl = d * static_cast<float>(l), idl = dl != 0 ? 1 / dl : 0.f;
      for (size_t j = 0; j < 32; ++j) L[32 * ib + j] = static_cast<uint8_t>(nearest_level(kIq4nl, idl * x[32 * ib + j]));
      l += 32;
      y[i].scales_l[ib / 2] = static_cast<uint8_t>(y[i].scales_l[ib / 2] | ((l & 0xF) << (4 * (ib % 2))));
      y[i].scales_h = static_cast<uint16_t>(y[i].scales_h | ((l >> 4) << (2 * ib)));
    }
    for (size_t ib = 0; ib < 8; ++ib) pack_iq4_nibbles(L + 32 * ib, y[i].qs + 16 * ib);
  }
}

// ggml's quantize_iq4_nl without an importance matrix: the block's best scale stored as d, then
// every value to its nearest level at that scale.
void quantize_iq4_nl(const float* x, BlockIQ4NL* y, size_t nblocks) {
  uint8_t L[kQK];
  for (size_t i = 0; i < nblocks; ++i, x += kQK) {
    const float scale = iq4_block_scale(x, L);
    y[i].d = f32_to_f16(scale);
    const float id = scale != 0 ? 1 / scale : 0.f;
    for (size_t j = 0; j < kQK; ++j) L[j] = static_cast<uint8_t>(nearest_level(kIq4nl, id * x[j]));
    pack_iq4_nibbles(L, y[i].qs);
  }
}

// ggml's quantize_row_q4_1_ref / q5_1_ref: d = (max - min) / (levels - 1), m = min, q = (x - min) / d
// rounded half up (as the cast after + 0.5 does), 4 or 5 bits.
template <int kBits>
void quantize_min_max(const float* x, uint16_t& d16, uint16_t& m16, uint8_t* q) {
  float lo = std::numeric_limits<float>::max(), hi = -std::numeric_limits<float>::max();  // FLT_MAX, as ggml
  for (size_t j = 0; j < kQK; ++j) {
    if (x[j] < lo) lo = x[j];
    if (x[j] > hi) hi = x[j];
  }
  const float d = (hi - lo) / ((1 << kBits) - 1), id = d != 0 ? 1.0f / d : 0.0f;
  d16 = f32_to_f16(d);
  m16 = f32_to_f16(lo);
  for (size_t j = 0; j < kQK; ++j) {
    const int v = static_cast<int>((x[j] - lo) * id + 0.5f);
    q[j] = static_cast<uint8_t>(std::min(v, (1 << kBits) - 1));
  }
}

void quantize_q4_1(const float* x, BlockQ4_1* y, size_t nblocks) {
  uint8_t q[kQK];
  for (size_t i = 0; i < nblocks; ++i, x += kQK) {
    quantize_min_max<4>(x, y[i].d, y[i].m, q);
    for (size_t j = 0; j < kQK / 2; ++j) y[i].qs[j] = static_cast<uint8_t>(q[j] | (q[j + kQK / 2] << 4));
  }
}

void quantize_q5_1(const float* x, BlockQ5_1* y, size_t nblocks) {
  uint8_t q[kQK];
  for (size_t i = 0; i < nblocks; ++i, x += kQK) {
    quantize_min_max<5>(x, y[i].d, y[i].m, q);
    uint32_t qh = 0;
    for (size_t j = 0; j < kQK / 2; ++j) {
      y[i].qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + kQK / 2] & 0xF) << 4));
      qh |= static_cast<uint32_t>(q[j] >> 4) << j;
      qh |= static_cast<uint32_t>(q[j + kQK / 2] >> 4) << (j + kQK / 2);
    }
    std::memcpy(y[i].qh, &qh, sizeof(qh));
  }
}

void quantize_q6_k(const float* x, BlockQ6K* y, size_t nblocks) {
  int8_t L[kQK_K];
  float scales[16];
  for (size_t i = 0; i < nblocks; ++i, x += kQK_K) {
    float max_scale = 0, max_abs_scale = 0;
    for (size_t j = 0; j < 16; ++j) {
      scales[j] = make_qx_quants_rmse1(16, 32, x + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(BlockQ6K));
      continue;
    }
    // 8-bit signed sub-block scales; the largest maps to -128 (so d may be negative).
    const float iscale = -128.f / max_scale;
    y[i].d = f32_to_f16(1 / iscale);
    for (size_t j = 0; j < 16; ++j)
      y[i].scales[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
    for (size_t j = 0; j < 16; ++j) {
      const float d = f16_to_f32(y[i].d) * y[i].scales[j];
      if (d == 0.0f) continue;
      for (size_t l = 0; l < 16; ++l)
        L[16 * j + l] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + l] / d), -32, 31) + 32);
    }
    // Pack: see q6k_value for the layout.
    for (size_t half = 0; half < 2; ++half) {
      const int8_t* Lh = L + 128 * half;
      uint8_t* ql = y[i].ql + 64 * half;
      uint8_t* qh = y[i].qh + 32 * half;
      for (size_t l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                     ((Lh[l + 96] >> 4) << 6));
      }
    }
  }
}

}  // namespace

void quantize_row(DType type, const float* src, void* dst, size_t n) {
  const size_t nblocks = n / dtype_info(type).block_size;
  (void)row_bytes(type, n);  // validates n
  switch (type) {
    case DType::f32: std::memcpy(dst, src, n * sizeof(float)); return;
    case DType::f16: {
      auto* h = static_cast<uint16_t*>(dst);
      if (active_isa() >= Isa::avx2) return f32_to_f16_row_f16c(src, h, n);
      for (size_t i = 0; i < n; ++i) h[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::bf16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) h[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::q8_0: return quantize_q8_0(src, static_cast<BlockQ8_0*>(dst), nblocks);
    case DType::q4_0: return quantize_q4_0(src, static_cast<BlockQ4_0*>(dst), nblocks);
    case DType::q5_0: return quantize_q5_0(src, static_cast<BlockQ5_0*>(dst), nblocks);
    case DType::q4_k: return quantize_q4_k(src, static_cast<BlockQ4K*>(dst), nblocks);
    case DType::q6_k: return quantize_q6_k(src, static_cast<BlockQ6K*>(dst), nblocks);
    case DType::q4_1: return quantize_q4_1(src, static_cast<BlockQ4_1*>(dst), nblocks);
    case DType::q5_1: return quantize_q5_1(src, static_cast<BlockQ5_1*>(dst), nblocks);
    case DType::q5_k: return quantize_q5_k(src, static_cast<BlockQ5K*>(dst), nblocks);
    case DType::q2_k: return quantize_q2_k(src, static_cast<BlockQ2K*>(dst), nblocks);
    case DType::q3_k: return quantize_q3_k(src, static_cast<BlockQ3K*>(dst), nblocks);
    case DType::iq4_xs: return quantize_iq4_xs(src, static_cast<BlockIQ4XS*>(dst), nblocks);
    case DType::iq4_nl: return quantize_iq4_nl(src, static_cast<BlockIQ4NL*>(dst), nblocks);
  }
}

}  // namespace autoglm::kernels
