#pragma once
// Internal to the kernels module: products of quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K,
// Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS) with activations quantized to int8, the way llama.cpp computes them, so that the inner loop is an
// integer dot product (VNNI vpdpbusd, AVX2 vpmaddubsw, AMX-INT8 tdpbsud) instead of dequantize-then-FMA.
//
// The canonical definition, which every path reproduces bit for bit (so results never depend on the
// ISA, the thread count, the batch, or whether a product ran as matvec or as a packed GEMM):
//
//  1. Each activation vector is cut into blocks of 32: dx = max|x| / 127, q = round-half-even(x / dx)
//     (as x * (1 / dx)), t = dx * sum(q) per block, and t16 = dx * sum(q) per half block.
//  2. Each weight row is cut into groups (32 elements; 16 for Q6_K, Q3_K and Q2_K). A group has
//     integer weights wq, a float scale s and, for the types with offsets (Q4_K, Q5_K, Q4_1, Q5_1,
//     Q2_K), a float offset m: w = s * wq + m.
//  3. y = 0; for every group g in order: isum = sum(wq * q) over the group (exact, in integers);
//     y = fma(float(isum), s * dx, y); and with an offset: y = fma(m, t, y) — dx and t of the
//     activation block that holds the group (t16 of its half for a 16-element group).
//
// On AVX-512, every type has a panels16 kernel (VNNI, and AMX-INT8 tiles from 16 vectors on); the
// stored-row layout of Q4_1, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL and IQ4_XS runs the AVX2 kernel there.
//
// Only the integer sums may be computed in any order; the float steps are the same operations in
// the same order on every path.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "blocks.h"

namespace autoglm::kernels {

constexpr size_t kActBlock = 32;  // activation elements per int8 block

// The quantized form of `batch` activation vectors of `cols` elements (cols a multiple of 32).
struct QActs {
  size_t cols = 0, batch = 0;
  size_t group = 32;        // weight group size of the type these were prepared for (32 or 16)
  const int8_t* q = nullptr;     // [batch][cols]
  const float* dx = nullptr;     // [batch][cols / 32]
  const float* t = nullptr;      // [batch][cols / 32]: dx * sum(q) over the block
  // [batch][cols / group]: zero * sum(q) over each group, where `zero` is the offset that turns the
  // type's integer weights into the unsigned bytes the SIMD kernels multiply (q8_0: 128, q4_0: 8, q5_0: 16,
  // q6_k: 32, q4_k: 0): sum(wq * q) = sum(u * q) - corr.
  const int32_t* corr = nullptr;
  const float* t16 = nullptr;    // [batch][cols / 16]: dx * sum(q) over each half block (Q2_K's offsets)

  const int8_t* q_row(size_t b) const { return q + b * cols; }
  const float* dx_row(size_t b) const { return dx + b * (cols / kActBlock); }
  const float* t_row(size_t b) const { return t + b * (cols / kActBlock); }
  const int32_t* corr_row(size_t b) const { return corr + b * (cols / group); }
  const float* t16_row(size_t b) const { return t16 + b * (cols / 16); }
};

// Quantizes one activation block (kActBlock floats x): q = round(x / dx) clamped to [-127, 127]
// (NaN to -127), dx = max |x| / 127 (NaNs skipped), t = dx * sum(q), sum16 = the sums of q over each
// half. The SIMD forms give the same bytes and floats as the scalar one.
using QuantizeBlock = void (*)(const float* x, int8_t* q, float& dx, float& t, int32_t* sum16);
void quantize_block_scalar(const float* x, int8_t* q, float& dx, float& t, int32_t* sum16);
QuantizeBlock quantize_block_avx512();  // nullptr when the build or the CPU has no AVX-512 BW
QuantizeBlock quantize_block_avx2();    // nullptr when the build has no x86 SIMD path

// Owns the arrays of a QActs; reused from call to call (grows, never shrinks).
class QActsStorage {
 public:
  // Sizes the arrays for `batch` vectors of `cols` elements for weights of `type`; the QActs it
  // returns is filled by quantize().
  const QActs& prepare(DType type, size_t cols, size_t batch);
  // Quantizes vectors [begin, end) of x ([batch][cols] floats); ranges may run on different threads.
  void quantize(const float* x, size_t begin, size_t end);

 private:
  std::vector<int8_t> q_;
  std::vector<float> dx_, t_;
  std::vector<int32_t> corr_;
  std::vector<float> t16_;
  int32_t zero_ = 0;
  QActs acts_;
};

// Per-type constants of the canonical definition.
struct QFormat {
  size_t group;     // weight elements per group
  int32_t zero;     // offset of the unsigned byte form, see QActs::corr
  bool has_min;     // groups carry an offset m (Q4_K)
};
bool is_int8_type(DType type);   // the types computed this way
QFormat qformat(DType type);

// One product over rows [r0, r1): y[b * rows + r] for every b < acts.batch.
struct QJob {
  DType type;
  const uint8_t* w;  // row r at w + r * stride
  size_t stride;
  size_t rows, cols;
  const QActs* acts;
  float* y;
};

using QRows = void (*)(const QJob& job, size_t r0, size_t r1);
void qrows_scalar(const QJob& job, size_t r0, size_t r1);
QRows qrows_avx2(DType type);    // nullptr when this build has no x86 SIMD path
QRows qrows_avx512(DType type);  // nullptr without one, or when the CPU lacks VNNI

// The rows a path's tile covers: ranges handed to a QRows function start at a multiple of this.
constexpr size_t kQRowTile = 32;

// ---- Layout::panels16 ----
//
// Rows 16p..16p+15 (a panel) occupy the 16 * stride bytes the stored rows would, cut into "blocks":
// a block covers the same elements of the 16 rows as one stored block of the type covers of one row
// (Q8_0/Q4_0: 32 elements, Q4_K/Q6_K: a super-block of 256). Each row's stored block is first
// rewritten into its "panel bytes" (same size; see below), which are then cut into segments of
// units, and each unit is stored for rows 0..15 in turn: the panel block is, segment after segment,
// unit after unit, [row 0's unit][row 1's unit]...[row 15's unit].
//
// Panel bytes per type (units: header, then the quants in 4-byte units, so that unit k of the quants
// is one 64-byte load holding 4 consecutive bytes of each of the 16 rows). "As stored" types keep
// their bytes; their quant units already hold 4 consecutive elements (or 4 elements of several
// groups at different bit positions):
//  Q8_0  d (one 2-byte unit); quants q ^ 0x80 (= q + 128, the unsigned bytes vpdpbusd multiplies):
//        unit k = elements 4k..4k+3.
//  Q4_0, IQ4_NL  d; the stored quants: unit k < 4 holds elements 4k.. in its low nibbles, 16 + 4k..
//        in its high nibbles. Q4_1: as Q4_0 with one 4-byte unit d|m.
//  Q5_0, Q5_1  as Q4_0 / Q4_1, then qh as one unit rewritten so that its byte k, bit i is the fifth
//        bit of element 4i + k.
//  Q4_K  d|dmin, scales[0..3], scales[4..7], scales[8..11] (four 4-byte units); each 32-byte run of
//        quants (groups A and B) regrouped as bytes 0..15 = A[t] | A[16 + t] << 4 and bytes 16..31 =
//        B[t] | B[16 + t] << 4: group j's unit i holds elements 4i.. (low) and 16 + 4i.. (high).
//  Q5_K  Q4_K's header, then qh as 8 units, unit j holding group j's fifth bits as Q5_0's unit, then
//        the quants regrouped as Q4_K's.
//  Q6_K  d (2-byte unit); scales (sixteen 1-byte units: one int8 per row and group of 16); then per
//        64 elements e..e+63 of the super-block, 32 bytes of low nibbles (byte t: e + t low, e + 32 + t
//        high) and 16 bytes of high 2-bit pairs (byte t: bits 2s..2s+1 = high bits of e + 16s + t).
//  Q2_K  as stored: scales (4 units), qs (16 units), d|dmin (one unit).
//  Q3_K  as stored: hmask (8 units), qs (16 units), scales (3 units), d (one 2-byte unit).
//  IQ4_XS  as stored: d|scales_h, scales_l (two units), qs (32 units; group j = units 4j.. as Q4_0's).
// Rows after the last whole panel stay in the stored format.
constexpr size_t kPanelRows = 16;
struct PanelFormat {
  size_t block_bytes;             // bytes of one stored block (one row)
  struct Segment {
    size_t unit, count;           // unit bytes, units
  } segments[4];
  void (*to_panel)(uint8_t* block);    // a stored block to its panel bytes, in place
  void (*from_panel)(uint8_t* block);  // and back
};
// nullptr for a type without a panels16 form.
const PanelFormat* panel_format(DType type);
// One panel: 16 stored rows (row r at src + r * stride) to the packed form, and back.
void pack_panel(const PanelFormat& f, const uint8_t* src, size_t stride, uint8_t* dst);
void unpack_panel(const PanelFormat& f, const uint8_t* src, size_t stride, uint8_t* dst);
// Rows [r0, r1) of a panels16 matrix (r0 a multiple of 16; rows of the stored-format tail included).
QRows qrows_panels_avx512(DType type);  // nullptr without VNNI or for a type without panels

// AMX-INT8 as well as amx_available() (the panel kernels' products of 16 vectors at a time; set_amx
// switches both).
bool amx_int8_available();

// ---- Layout::tiles_bf16 (tiles_amx.cpp) ----
void matmul_tiles_bf16(const void* w, size_t rows, size_t cols, const float* x, size_t batch, float* y,
                       ThreadPool* pool);
// softmax_numerators_bf16 in AVX-512 intrinsics with AVX512-BF16's conversion (where amx_available()).
float softmax_numerators_bf16_amx(const float* x, size_t n, float scale, uint16_t* p);

}  // namespace autoglm::kernels
