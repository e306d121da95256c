// Type table, f16/bf16 conversion, ISA selection and dequantization (the scalar definition of
// each block format; the SIMD dot products in matmul_*.cpp must agree with these).
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

#include "autoglm/kernels.h"
#include "blocks.h"

namespace autoglm::kernels {
namespace {

static_assert(std::endian::native == std::endian::little, "block formats are little-endian");

constexpr std::array<DTypeInfo, 15> kTypes = {{
    {DType::f32, "F32", 1, 4},
    {DType::f16, "F16", 1, 2},
    {DType::q4_0, "Q4_0", 32, sizeof(BlockQ4_0)},
    {DType::q4_1, "Q4_1", 32, sizeof(BlockQ4_1)},
    {DType::q5_0, "Q5_0", 32, sizeof(BlockQ5_0)},
    {DType::q5_1, "Q5_1", 32, sizeof(BlockQ5_1)},
    {DType::q8_0, "Q8_0", 32, sizeof(BlockQ8_0)},
    {DType::q2_k, "Q2_K", 256, sizeof(BlockQ2K)},
    {DType::q3_k, "Q3_K", 256, sizeof(BlockQ3K)},
    {DType::q4_k, "Q4_K", 256, sizeof(BlockQ4K)},
    {DType::q5_k, "Q5_K", 256, sizeof(BlockQ5K)},
    {DType::q6_k, "Q6_K", 256, sizeof(BlockQ6K)},
    {DType::iq4_nl, "IQ4_NL", 32, sizeof(BlockIQ4NL)},
    {DType::iq4_xs, "IQ4_XS", 256, sizeof(BlockIQ4XS)},
    {DType::bf16, "BF16", 1, 2},
}};

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }
float float_of(uint32_t u) { return std::bit_cast<float>(u); }

// The best path this build and this CPU can run (the OS must also save the wide registers, which
// __builtin_cpu_supports checks through XGETBV).
Isa probe_isa() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return Isa::avx512;
  if (avx2) return Isa::avx2;
#endif
  return Isa::scalar;
}

std::atomic<Isa>& active() {
  static std::atomic<Isa> isa{detected_isa()};
  return isa;
}

// Whole-row dequantization: the per-block definitions from blocks.h, block after block.
template <class Block>
void dequantize_blocks(const void* src, float* y, size_t nblocks, size_t block_elems) {
  const auto* blocks = static_cast<const Block*>(src);
  for (size_t i = 0; i < nblocks; ++i) dequantize_block(blocks[i], y + i * block_elems);
}

}  // namespace

const DTypeInfo* dtype_info(uint32_t ggml_type) {
  for (const DTypeInfo& t : kTypes)
    if (static_cast<uint32_t>(t.type) == ggml_type) return &t;
  return nullptr;
}

const DTypeInfo& dtype_info(DType type) {
  const DTypeInfo* info = dtype_info(static_cast<uint32_t>(type));
  if (!info) throw std::invalid_argument("kernels: unknown dtype " + std::to_string(static_cast<uint32_t>(type)));
  return *info;
}

size_t row_bytes(DType type, size_t n) {
  const DTypeInfo& info = dtype_info(type);
  if (n % info.block_size != 0)
    throw std::invalid_argument(std::string("kernels: a row of ") + info.name + " must be a multiple of " +
                                std::to_string(info.block_size) + " elements, got " + std::to_string(n));
  return n / info.block_size * info.block_bytes;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in f32
    const float v = static_cast<float>(mant) * 0x1p-24f;
    return float_of(bits_of(v) | sign);
  }
  if (exp == 31 && mant == 0) return float_of(sign | 0x7F800000);  // inf
  if (exp == 31) return float_of(sign | 0x7FC00000 | (mant << 13));  // nan, made quiet like F16C does
  return float_of(sign | ((exp + 112) << 23) | (mant << 13));       // rebias 15 -> 127
}

uint16_t f32_to_f16(float f) {
  const uint32_t x = bits_of(f);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t a = x & 0x7FFFFFFF;
  if (a > 0x7F800000) return static_cast<uint16_t>(sign | 0x7E00 | ((a >> 13) & 0x3FF));  // quiet nan
  if (a >= 0x477FF000) return static_cast<uint16_t>(sign | 0x7C00);  // >= 65520 rounds to inf
  if (a >= 0x38800000) {  // normal half: rebias the exponent, round the 13 dropped bits to even
    const uint32_t r = a - 0x38000000;
    return static_cast<uint16_t>(sign | ((r + 0xFFF + ((r >> 13) & 1)) >> 13));
  }
  if (a <= 0x33000000) return sign;  // <= 2^-25 rounds (ties to even) to zero
  // Subnormal half: the value in units of 2^-24 is mant * 2^(e - 126); round that shift to even.
  const uint32_t e = a >> 23, m = (a & 0x7FFFFF) | 0x800000;
  const uint32_t shift = 126 - e;  // 14..24
  const uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
  const uint32_t rounded = q + ((rem > half || (rem == half && (q & 1))) ? 1 : 0);
  return static_cast<uint16_t>(sign | rounded);
}

float bf16_to_f32(uint16_t h) { return float_of(static_cast<uint32_t>(h) << 16); }

uint16_t f32_to_bf16(float f) {
  const uint32_t x = bits_of(f);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet nan
  return static_cast<uint16_t>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

Isa detected_isa() {
  static const Isa isa = probe_isa();
  return isa;
}

Isa active_isa() { return active().load(std::memory_order_relaxed); }

void set_isa(Isa isa) { active().store(std::min(isa, detected_isa()), std::memory_order_relaxed); }

void dequantize_row(DType type, const void* src, float* dst, size_t n) {
  const size_t nblocks = n / dtype_info(type).block_size;
  (void)row_bytes(type, n);  // validates n
  switch (type) {
    case DType::f32: std::memcpy(dst, src, n * sizeof(float)); return;
    case DType::f16: {
      const auto* h = static_cast<const uint16_t*>(src);
      if (active_isa() >= Isa::avx2) return f16_to_f32_row_f16c(h, dst, n);
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(h[i]);
      return;
    }
    case DType::bf16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(h[i]);
      return;
    }
    case DType::q8_0: return dequantize_blocks<BlockQ8_0>(src, dst, nblocks, kQK);
    case DType::q4_0: return dequantize_blocks<BlockQ4_0>(src, dst, nblocks, kQK);
    case DType::q5_0: return dequantize_blocks<BlockQ5_0>(src, dst, nblocks, kQK);
    case DType::q4_k: return dequantize_blocks<BlockQ4K>(src, dst, nblocks, kQK_K);
    case DType::q6_k: return dequantize_blocks<BlockQ6K>(src, dst, nblocks, kQK_K);
    case DType::q4_1: return dequantize_blocks<BlockQ4_1>(src, dst, nblocks, kQK);
    case DType::q5_1: return dequantize_blocks<BlockQ5_1>(src, dst, nblocks, kQK);
    case DType::q2_k: return dequantize_blocks<BlockQ2K>(src, dst, nblocks, kQK_K);
    case DType::q3_k: return dequantize_blocks<BlockQ3K>(src, dst, nblocks, kQK_K);
    case DType::q5_k: return dequantize_blocks<BlockQ5K>(src, dst, nblocks, kQK_K);
    case DType::iq4_xs: return dequantize_blocks<BlockIQ4XS>(src, dst, nblocks, kQK_K);
    case DType::iq4_nl: return dequantize_blocks<BlockIQ4NL>(src, dst, nblocks, kQK);
  }
}

}  // namespace autoglm::kernels
