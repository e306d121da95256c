// The decode product y = W x on the GPU, weights dequantized in registers.
//
// A warp computes kRows rows at once: lane l takes units l, l + 32, ... of every row (a unit is
// one 16-byte piece of a row's quants, or three for Q6_K), loads the kRows rows' pieces before
// using any (several 16-byte loads in flight per lane), reads the unit's activations once for all
// kRows rows, and the warp then sums its lanes with shuffles. Consecutive lanes read consecutive
// 16-byte pieces: each warp-wide load is 512 contiguous bytes of a row.
#include <cuda_fp16.h>

#include <cstdint>

#include "launch.h"

namespace autoglm::cuda::detail {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kRows = 2;  // rows per warp

__device__ __forceinline__ uint4 load16(const uint8_t* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }
__device__ __forceinline__ float half_at(const uint8_t* p) {
  uint16_t bits;
  memcpy(&bits, p, 2);
  return __half2float(__ushort_as_half(bits));
}
// n floats of x from `at` (a multiple of 4)
template <int N>
__device__ __forceinline__ void load_x(const float* x, size_t at, float (&v)[N]) {
#pragma unroll
  for (int i = 0; i < N; i += 4) {
    const float4 f = __ldg(reinterpret_cast<const float4*>(x + at + i));
    v[i] = f.x, v[i + 1] = f.y, v[i + 2] = f.z, v[i + 3] = f.w;
  }
}
__device__ __forceinline__ const uint8_t* bytes_of(const uint4& v) { return reinterpret_cast<const uint8_t*>(&v); }

// ---- per type: a unit's elements, its loads, and its dot product with x ----

struct Q8_0 {  // unit: 16 quants, half a block
  static constexpr int kElems = 16, kLoads = 1;
  __device__ static void load(const uint8_t* q, size_t u, uint4 (&r)[kLoads]) { r[0] = load16(q + 16 * u); }
  __device__ static size_t x_at(size_t u, int) { return 16 * u; }
  __device__ static float dot(const uint4 (&r)[kLoads], const uint8_t* meta, const float (&x)[kElems], size_t u) {
    const auto* q = reinterpret_cast<const int8_t*>(bytes_of(r[0]));
    float s = 0;
#pragma unroll
    for (int i = 0; i < 16; ++i) s += static_cast<float>(q[i]) * x[i];
    return half_at(meta + 2 * (u / 2)) * s;
  }
};

struct Q4_0 {  // unit: one block of 32 (byte j: element j low, 16 + j high)
  static constexpr int kElems = 32, kLoads = 1;
  __device__ static void load(const uint8_t* q, size_t u, uint4 (&r)[kLoads]) { r[0] = load16(q + 16 * u); }
  __device__ static size_t x_at(size_t u, int run) { return 32 * u + 16 * run; }
  __device__ static float dot(const uint4 (&r)[kLoads], const uint8_t* meta, const float (&x)[kElems], size_t u) {
    const uint8_t* q = bytes_of(r[0]);
    float s = 0;
#pragma unroll
    for (int j = 0; j < 16; ++j)
      s += static_cast<float>((q[j] & 0xF) - 8) * x[j] + static_cast<float>((q[j] >> 4) - 8) * x[16 + j];
    return half_at(meta + 2 * u) * s;
  }
};

// ggml's get_scale_min_k4
__device__ __forceinline__ void q4k_scale_min(int j, const uint8_t* s, float& sc, float& m) {
  if (j < 4) {
    sc = static_cast<float>(s[j] & 63), m = static_cast<float>(s[j + 4] & 63);
  } else {
    sc = static_cast<float>((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
    m = static_cast<float>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

// unit: 16 bytes of a super-block's 128 quant bytes: run c = (u % 8) / 2 of 32 bytes holds
// elements 64c.. (low nibbles, sub-block 2c) and 64c + 32.. (high nibbles, sub-block 2c + 1); the
// unit is bytes t0..t0+15 of it, t0 = 16 * (u % 2).
struct Q4K {
  static constexpr int kElems = 32, kLoads = 1;
  __device__ static void load(const uint8_t* q, size_t u, uint4 (&r)[kLoads]) { r[0] = load16(q + 16 * u); }
  // x: elements 64c + t0 .. +15 (run 0), then 64c + 32 + t0 .. +15 (run 1)
  __device__ static size_t x_at(size_t u, int half) {
    const size_t sb = u / 8, c = (u % 8) / 2, t0 = 16 * (u % 2);
    return 256 * sb + 64 * c + 32 * half + t0;
  }
  __device__ static float dot(const uint4 (&r)[kLoads], const uint8_t* meta, const float (&x)[kElems], size_t u) {
    const uint8_t* q = bytes_of(r[0]);
    const uint8_t* m = meta + 16 * (u / 8);
    const int c = static_cast<int>((u % 8) / 2);
    float s_lo = 0, s_hi = 0, x_lo = 0, x_hi = 0;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      s_lo += static_cast<float>(q[j] & 0xF) * x[j];
      s_hi += static_cast<float>(q[j] >> 4) * x[16 + j];
      x_lo += x[j];
      x_hi += x[16 + j];
    }
    float sc_lo, m_lo, sc_hi, m_hi;
    q4k_scale_min(2 * c, m + 4, sc_lo, m_lo);
    q4k_scale_min(2 * c + 1, m + 4, sc_hi, m_hi);
    const float d = half_at(m), dmin = half_at(m + 2);
    return d * (sc_lo * s_lo + sc_hi * s_hi) - dmin * (m_lo * x_lo + m_hi * x_hi);
  }
};

// unit: 64 elements of a super-block: half h = (u % 4) / 2, k = u % 2, l = 16k + j (j < 16):
// ql[64h + l] and ql[64h + 32 + l] give the low 4 bits of elements 128h + l, + 32, + 64, + 96 (low
// nibble, low, high, high), qh[32h + l] their top 2 bits (bits 0-1, 2-3, 4-5, 6-7).
struct Q6K {
  static constexpr int kElems = 64, kLoads = 3;
  __device__ static void load(const uint8_t* q, size_t u, uint4 (&r)[kLoads]) {
    const uint8_t* sb = q + 192 * (u / 4);
    const size_t h = (u % 4) / 2, k = u % 2;
    r[0] = load16(sb + 64 * h + 16 * k);
    r[1] = load16(sb + 64 * h + 32 + 16 * k);
    r[2] = load16(sb + 128 + 32 * h + 16 * k);
  }
  // x: the 4 runs of 16 at 128h + 16k + {0, 32, 64, 96}
  __device__ static size_t x_at(size_t u, int run) { return 256 * (u / 4) + 128 * ((u % 4) / 2) + 16 * (u % 2) + 32 * run; }
  __device__ static float dot(const uint4 (&r)[kLoads], const uint8_t* meta, const float (&x)[kElems], size_t u) {
    const uint8_t *a = bytes_of(r[0]), *b = bytes_of(r[1]), *hb = bytes_of(r[2]);
    float s[4] = {0, 0, 0, 0};
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int h = hb[j];
      s[0] += static_cast<float>(((a[j] & 0xF) | ((h & 3) << 4)) - 32) * x[j];
      s[1] += static_cast<float>(((b[j] & 0xF) | (((h >> 2) & 3) << 4)) - 32) * x[16 + j];
      s[2] += static_cast<float>(((a[j] >> 4) | (((h >> 4) & 3) << 4)) - 32) * x[32 + j];
      s[3] += static_cast<float>(((b[j] >> 4) | (((h >> 6) & 3) << 4)) - 32) * x[48 + j];
    }
    const uint8_t* m = meta + 18 * (u / 4);
    const auto* sc = reinterpret_cast<const int8_t*>(m) + 8 * ((u % 4) / 2) + (u % 2);
    const float total = static_cast<float>(sc[0]) * s[0] + static_cast<float>(sc[2]) * s[1] +
                        static_cast<float>(sc[4]) * s[2] + static_cast<float>(sc[6]) * s[3];
    return half_at(m + 16) * total;
  }
};

// The unit's activations, in the order dot() reads them: kElems / 16 runs of 16, run i at x_at(u, i).
template <class T>
__device__ __forceinline__ void unit_x(const float* x, size_t u, float (&v)[T::kElems]) {
#pragma unroll
  for (int run = 0; run < T::kElems / 16; ++run) {
    float part[16];
    load_x(x, T::x_at(u, run), part);
#pragma unroll
    for (int i = 0; i < 16; ++i) v[16 * run + i] = part[i];
  }
}

template <class T>
__global__ void __launch_bounds__(kWarp* kWarpsPerBlock)
    matvec_kernel(const uint8_t* __restrict__ quants, const uint8_t* __restrict__ meta, size_t quant_row,
                  size_t meta_row, size_t rows, size_t units, const float* __restrict__ x, float* __restrict__ y) {
  const size_t warp = (static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const unsigned lane = threadIdx.x % kWarp;
  const size_t r0 = warp * kRows;
  if (r0 >= rows) return;
  const uint8_t* q[kRows];
  const uint8_t* m[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const size_t row = min(r0 + r, rows - 1);  // past the end: recompute the last row, never store it
    q[r] = quants + row * quant_row;
    m[r] = meta + row * meta_row;
  }
  float sum[kRows] = {};
  for (size_t u = lane; u < units; u += kWarp) {
    uint4 raw[kRows][T::kLoads];
#pragma unroll
    for (int r = 0; r < kRows; ++r) T::load(q[r], u, raw[r]);
    float xv[T::kElems];
    unit_x<T>(x, u, xv);
#pragma unroll
    for (int r = 0; r < kRows; ++r) sum[r] += T::dot(raw[r], m[r], xv, u);
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    float s = sum[r];
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2) s += __shfl_xor_sync(0xFFFFFFFFu, s, offset);
    if (lane == 0 && r0 + r < rows) y[r0 + r] = s;
  }
}

template <class T>
cudaError_t launch(const MatvecArgs& a, size_t units) {
  const size_t warps = (a.rows + kRows - 1) / kRows;
  const size_t blocks = (warps + kWarpsPerBlock - 1) / kWarpsPerBlock;
  matvec_kernel<T><<<static_cast<unsigned>(blocks), kWarp * kWarpsPerBlock>>>(a.quants, a.meta, a.quant_row, a.meta_row,
                                                                              a.rows, units, a.x, a.y);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_matvec(MatvecType type, const MatvecArgs& a) {
  switch (type) {
    case MatvecType::q8_0: return launch<Q8_0>(a, a.cols / 16);
    case MatvecType::q4_0: return launch<Q4_0>(a, a.cols / 32);
    case MatvecType::q4_k: return launch<Q4K>(a, a.cols / 32);
    case MatvecType::q6_k: return launch<Q6K>(a, a.cols / 64);
  }
  return cudaErrorInvalidValue;
}

}  // namespace autoglm::cuda::detail
