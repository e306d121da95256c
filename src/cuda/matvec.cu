// The decode product y = W x on the GPU: weights dequantized in registers, activations quantized to
// int8 per block of 32 first (as the CPU kernels do), so the inner loop is dp4a integer dot
// products with one float step per group, like llama.cpp's MMVQ.
//
// A thread block computes kRows rows at once, its warps splitting each row's units (a unit is one
// 16-byte piece of a row's quants, or three for Q6_K): a lane loads kUnroll units of the kRows rows
// before using any (several 16-byte loads in flight per lane) and reads a unit's activations once
// for all kRows rows; warps sum their lanes with shuffles, then the block sums its warps. Consecutive
// lanes read consecutive 16-byte pieces: each warp-wide load is 512 contiguous bytes of a row. Rows
// per block rather than per warp: a 4096-row matrix still spreads over every SM.
#include <cuda_fp16.h>

#include <cstdint>

#include "launch.h"

namespace autoglm::cuda::detail {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kRows = 4;    // rows per block
constexpr int kUnroll = 2;  // units per lane loaded before any is used

__device__ __forceinline__ int4 load16(const void* p) { return __ldg(static_cast<const int4*>(p)); }
__device__ __forceinline__ int word(const int4& v, int k) { return k == 0 ? v.x : k == 1 ? v.y : k == 2 ? v.z : v.w; }
__device__ __forceinline__ float half_at(const uint8_t* p) {
  uint16_t bits;
  memcpy(&bits, p, 2);
  return __half2float(__ushort_as_half(bits));
}
constexpr int kLow4 = 0x0F0F0F0F;

// dp4a of the 4 words of w with the 16 activations at element e
__device__ __forceinline__ int dot16(const int4& w, const int4& xq) {
  return __dp4a(w.w, xq.w, __dp4a(w.z, xq.z, __dp4a(w.y, xq.y, __dp4a(w.x, xq.x, 0))));
}
__device__ __forceinline__ int4 x16(const QuantizedX& x, size_t e) { return load16(x.q + e); }

// ---- per type: a unit's loads and its dot product with the quantized activations ----

struct Q8_0 {  // unit: 16 quants, half a block
  static constexpr int kLoads = 1;
  static size_t units(size_t cols) { return cols / 16; }
  __device__ static void load(const uint8_t* q, size_t u, int4 (&r)[kLoads]) { r[0] = load16(q + 16 * u); }
  __device__ static float dot(const int4 (&r)[kLoads], const uint8_t* meta, const QuantizedX& x, size_t u) {
    const int isum = dot16(r[0], x16(x, 16 * u));
    return half_at(meta + 2 * (u / 2)) * (x.d[u / 2] * static_cast<float>(isum));
  }
};

struct Q4_0 {  // unit: one block of 32 (byte j: element j low, 16 + j high); quants are q + 8
  static constexpr int kLoads = 1;
  static size_t units(size_t cols) { return cols / 32; }
  __device__ static void load(const uint8_t* q, size_t u, int4 (&r)[kLoads]) { r[0] = load16(q + 16 * u); }
  __device__ static float dot(const int4 (&r)[kLoads], const uint8_t* meta, const QuantizedX& x, size_t u) {
    const int4 lo = x16(x, 32 * u), hi = x16(x, 32 * u + 16);
    int isum = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      isum = __dp4a(word(r[0], k) & kLow4, word(lo, k), isum);
      isum = __dp4a((word(r[0], k) >> 4) & kLow4, word(hi, k), isum);
    }
    isum -= 8 * (x.sum16[2 * u] + x.sum16[2 * u + 1]);
    return half_at(meta + 2 * u) * (x.d[u] * static_cast<float>(isum));
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
// unit is bytes t0..t0+15 of the run, t0 = 16 * (u % 2).
struct Q4K {
  static constexpr int kLoads = 1;
  static size_t units(size_t cols) { return cols / 32; }
  __device__ static void load(const uint8_t* q, size_t u, int4 (&r)[kLoads]) { r[0] = load16(q + 16 * u); }
  __device__ static float dot(const int4 (&r)[kLoads], const uint8_t* meta, const QuantizedX& x, size_t u) {
    const size_t sb = u / 8, c = (u % 8) / 2;
    const size_t e = 256 * sb + 64 * c + 16 * (u % 2);  // the low nibbles' elements; the high ones' at e + 32
    const int4 xlo = x16(x, e), xhi = x16(x, e + 32);
    int s_lo = 0, s_hi = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      s_lo = __dp4a(word(r[0], k) & kLow4, word(xlo, k), s_lo);
      s_hi = __dp4a((word(r[0], k) >> 4) & kLow4, word(xhi, k), s_hi);
    }
    const uint8_t* m = meta + 16 * sb;
    float sc_lo, m_lo, sc_hi, m_hi;
    q4k_scale_min(static_cast<int>(2 * c), m + 4, sc_lo, m_lo);
    q4k_scale_min(static_cast<int>(2 * c + 1), m + 4, sc_hi, m_hi);
    const float d_lo = x.d[e / 32], d_hi = x.d[e / 32 + 1];
    const float scaled = sc_lo * d_lo * static_cast<float>(s_lo) + sc_hi * d_hi * static_cast<float>(s_hi);
    const float mins = m_lo * d_lo * static_cast<float>(x.sum16[e / 16]) + m_hi * d_hi * static_cast<float>(x.sum16[e / 16 + 2]);
    return half_at(m) * scaled - half_at(m + 2) * mins;
  }
};

// unit: 64 elements of a super-block: half h = (u % 4) / 2, k = u % 2, l = 16k + j (j < 16):
// ql[64h + l] and ql[64h + 32 + l] give the low 4 bits of elements 128h + l, + 32, + 64, + 96 (low
// nibble, low, high, high), qh[32h + l] their top 2 bits (bits 0-1, 2-3, 4-5, 6-7); quants are
// q + 32.
struct Q6K {
  static constexpr int kLoads = 3;
  static size_t units(size_t cols) { return cols / 64; }
  __device__ static void load(const uint8_t* q, size_t u, int4 (&r)[kLoads]) {
    const uint8_t* sb = q + 192 * (u / 4);
    const size_t h = (u % 4) / 2, k = u % 2;
    r[0] = load16(sb + 64 * h + 16 * k);
    r[1] = load16(sb + 64 * h + 32 + 16 * k);
    r[2] = load16(sb + 128 + 32 * h + 16 * k);
  }
  __device__ static float dot(const int4 (&r)[kLoads], const uint8_t* meta, const QuantizedX& x, size_t u) {
    const size_t e = 256 * (u / 4) + 128 * ((u % 4) / 2) + 16 * (u % 2);  // run i at e + 32i
    const int4 xr[4] = {x16(x, e), x16(x, e + 32), x16(x, e + 64), x16(x, e + 96)};
    int s[4] = {0, 0, 0, 0};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int a = word(r[0], k), b = word(r[1], k), h = word(r[2], k);
      s[0] = __dp4a((a & kLow4) | ((h & 0x03030303) << 4), word(xr[0], k), s[0]);
      s[1] = __dp4a((b & kLow4) | (((h >> 2) & 0x03030303) << 4), word(xr[1], k), s[1]);
      s[2] = __dp4a(((a >> 4) & kLow4) | (((h >> 4) & 0x03030303) << 4), word(xr[2], k), s[2]);
      s[3] = __dp4a(((b >> 4) & kLow4) | (((h >> 6) & 0x03030303) << 4), word(xr[3], k), s[3]);
    }
    const uint8_t* m = meta + 18 * (u / 4);
    const auto* sc = reinterpret_cast<const int8_t*>(m) + 8 * ((u % 4) / 2) + (u % 2);
    float total = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int isum = s[i] - 32 * x.sum16[(e + 32 * i) / 16];
      total += static_cast<float>(sc[2 * i]) * (x.d[(e + 32 * i) / 32] * static_cast<float>(isum));
    }
    return half_at(m + 16) * total;
  }
};

template <class T>
__global__ void __launch_bounds__(kWarp* kWarpsPerBlock)
    matvec_kernel(const uint8_t* __restrict__ quants, const uint8_t* __restrict__ meta, size_t quant_row,
                  size_t meta_row, size_t rows, size_t units, QuantizedX x, float* __restrict__ y) {
  const size_t r0 = static_cast<size_t>(blockIdx.x) * kRows;
  const unsigned warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const uint8_t* q[kRows];
  const uint8_t* m[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const size_t row = min(r0 + r, rows - 1);  // past the end: recompute the last row, never store it
    q[r] = quants + row * quant_row;
    m[r] = meta + row * meta_row;
  }
  // the block's warps split the rows' units: warp w takes units w * 32 + lane, then every
  // kWarpsPerBlock * 32 on
  constexpr size_t kStride = kWarp * kWarpsPerBlock;
  float sum[kRows] = {};
  for (size_t u0 = warp * kWarp + lane; u0 < units; u0 += kStride * kUnroll) {
    int4 raw[kUnroll][kRows][T::kLoads];
#pragma unroll
    for (int i = 0; i < kUnroll; ++i)
      if (u0 + i * kStride < units)
#pragma unroll
        for (int r = 0; r < kRows; ++r) T::load(q[r], u0 + i * kStride, raw[i][r]);
#pragma unroll
    for (int i = 0; i < kUnroll; ++i)
      if (u0 + i * kStride < units)
#pragma unroll
        for (int r = 0; r < kRows; ++r) sum[r] += T::dot(raw[i][r], m[r], x, u0 + i * kStride);
  }
  __shared__ float partial[kWarpsPerBlock][kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    float s = sum[r];
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2) s += __shfl_xor_sync(0xFFFFFFFFu, s, offset);
    if (lane == 0) partial[warp][r] = s;
  }
  __syncthreads();
  if (threadIdx.x < kRows && r0 + threadIdx.x < rows) {
    float s = 0;
#pragma unroll
    for (int w = 0; w < kWarpsPerBlock; ++w) s += partial[w][threadIdx.x];
    y[r0 + threadIdx.x] = s;
  }
}

template <class T>
cudaError_t launch(const MatvecArgs& a) {
  const size_t blocks = (a.rows + kRows - 1) / kRows;
  matvec_kernel<T><<<static_cast<unsigned>(blocks), kWarp * kWarpsPerBlock>>>(
      a.quants, a.meta, a.quant_row, a.meta_row, a.rows, T::units(a.cols), a.x, a.y);
  return cudaGetLastError();
}

// One warp per block of 32 activations, one lane per element.
__global__ void quantize_kernel(const float* __restrict__ x, size_t blocks, QuantizedX out) {
  const size_t block = (static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const unsigned lane = threadIdx.x % kWarp;
  if (block >= blocks) return;
  const float v = x[32 * block + lane];
  float amax = fabsf(v);
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, offset));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const int q = isnan(v) ? -127 : min(127, max(-127, __float2int_rn(v * id)));  // as the CPU does
  out.q[32 * block + lane] = static_cast<int8_t>(q);
  int sum = q;  // over the lane's half of the block
#pragma unroll
  for (int offset = 8; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, offset);
  if (lane == 0) out.d[block] = d;
  if (lane % 16 == 0) out.sum16[2 * block + lane / 16] = sum;
}

}  // namespace

cudaError_t launch_quantize(const float* x, size_t cols, const QuantizedX& out) {
  const size_t blocks = cols / 32;
  const size_t per_block = kWarpsPerBlock;  // activation blocks per thread block
  quantize_kernel<<<static_cast<unsigned>((blocks + per_block - 1) / per_block), kWarp * kWarpsPerBlock>>>(x, blocks, out);
  return cudaGetLastError();
}

cudaError_t launch_matvec(MatvecType type, const MatvecArgs& a) {
  switch (type) {
    case MatvecType::q8_0: return launch<Q8_0>(a);
    case MatvecType::q4_0: return launch<Q4_0>(a);
    case MatvecType::q4_k: return launch<Q4K>(a);
    case MatvecType::q6_k: return launch<Q6K>(a);
  }
  return cudaErrorInvalidValue;
}

}  // namespace autoglm::cuda::detail
