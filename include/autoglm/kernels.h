#pragma once
// CPU kernels: the weight block formats (ggml-compatible layouts), fused dequantize-in-dot-product
// matrix-vector and matrix-matrix products, and the persistent thread pool they run on.
// Weights are never expanded to f32 in memory: each block is dequantized in registers.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <span>
#include <vector>

namespace autoglm::kernels {

// ggml type ids, as stored in GGUF files.
enum class DType : uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8,
  q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, iq4_nl = 20, iq4_xs = 23, bf16 = 30
};

struct DTypeInfo {
  DType type;
  const char* name;      // "F32", "Q4_K", ...
  uint32_t block_size;   // elements per block
  uint32_t block_bytes;  // bytes per block
};
// nullptr for a ggml type the engine cannot compute with.
const DTypeInfo* dtype_info(uint32_t ggml_type);
const DTypeInfo& dtype_info(DType type);
// Bytes of a row of n elements; n must be a multiple of the block size.
size_t row_bytes(DType type, size_t n);

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);    // round to nearest even
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);   // round to nearest even

// n elements of one row (n a multiple of the block size).
void dequantize_row(DType type, const void* src, float* dst, size_t n);
// Quantizes with ggml's reference (non-imatrix) algorithms, so our files match llama.cpp's.
// Supported: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k.
void quantize_row(DType type, const float* src, void* dst, size_t n);

// Instruction-set paths. The fastest one the CPU has is chosen at start-up; tests force each.
enum class Isa { scalar, avx2, avx512 };
const char* isa_name(Isa isa);
Isa detected_isa();         // the best this CPU (and this build) supports
Isa active_isa();
void set_isa(Isa isa);      // clamped to detected_isa(); for tests and benchmarks

// A fixed set of worker threads, created once; run() splits [0, n) into chunks across them and
// the calling thread, and returns when all are done. Not re-entrant.
class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // total threads including the caller; <= 0 = hardware threads
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  int size() const;
  // fn(begin, end) over disjoint ranges covering [0, n), each a multiple of `grain` except the last.
  // A nested run() (from inside fn) or one concurrent with another runs inline on its caller.
  // fn is not expected to throw; if it does, no further chunks start and the first exception is
  // rethrown here after every thread has left fn.
  void run(size_t n, size_t grain, const std::function<void(size_t begin, size_t end)>& fn);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Both products: w at least 2-byte aligned (GGUF tensor data is 32-byte aligned); y must not overlap
// w or x. Each y element is computed by the same code in the same order whatever the pool's size and
// the batch, so results are bit-identical across thread counts and between matvec and matmul (for a
// given active_isa(); for float weights the scalar and SIMD paths differ in rounding only).
// Quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K, IQ4_XS) multiply activations quantized to int8 per block of 32,
// as llama.cpp does; their results are bit-identical on every ISA as well (src/kernels/qmatmul.h).
// y[r] = dot(W[r, :], x) for r < rows. W: `rows` rows of `cols` elements of `type`, each row
// row_bytes(type, cols) bytes, contiguous. x: cols floats. Rows split across `pool` (may be null).
void matvec(DType type, const void* w, size_t rows, size_t cols, const float* x, float* y, ThreadPool* pool);

// Y[b, r] = dot(W[r, :], X[b, :]) for b < batch: X is [batch][cols], Y is [batch][rows]. Each weight
// block is read once per step for the whole batch (prefill and batched decode).
void matmul(DType type, const void* w, size_t rows, size_t cols, const float* x, size_t batch, float* y,
            ThreadPool* pool);

// ---- weights repacked for the matmul kernels ----
//
// `rows` is the stored format (GGUF/ggml blocks, row after row). `panels16` rearranges the same bytes
// in panels of 16 rows so that one 64-byte load holds 4 consecutive elements of 16 rows and each
// group's scales are one contiguous vector: the AVX-512 VNNI kernels then need no transposes or
// gathers at any batch size (llama.cpp's "repack" does the same for its CPU kernels). A panels16
// matrix has the size of the stored one; rows past the last whole panel stay in the stored format.
// Results are bit-identical to the stored layout's.
//
// `tiles_bf16` (BF16 weights whose rows and columns are multiples of 32) is AMX's B operand: see
// "bf16 products on AMX tiles" below. preferred_layout never returns it: a caller picks it where
// rounding the activations to bf16 is acceptable (the vision tower).
enum class Layout { rows, panels16, tiles_bf16 };
// The layout matmul is fastest with for these weights on the active ISA: panels16 for Q8_0, Q4_0,
// Q4_K and Q6_K with AVX-512 VNNI and at least 16 rows, rows otherwise.
Layout preferred_layout(DType type, size_t rows);
// Rewrites rows x cols weights of `type` in place from the stored format into `layout` (a layout
// preferred_layout can return for the type; rows is a no-op), through a buffer of one panel.
void pack_weights(DType type, Layout layout, void* w, size_t rows, size_t cols);
// matmul on weights in `layout` (any ISA: panels16 falls back to unpacking panel by panel where the
// active ISA has no kernel for it).
void matmul(DType type, Layout layout, const void* w, size_t rows, size_t cols, const float* x, size_t batch,
            float* y, ThreadPool* pool);

// Several products with the same x, [batch][cols] (the q/k/v projections; gate and up): where their
// types quantize activations the same way (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K: one type for all, in practice),
// x is quantized once for all of them and their rows are split across the pool in one run; otherwise
// one matmul each. Each y is bit-identical to what matmul on that product alone gives.
struct Product {
  DType type;
  Layout layout;
  const void* w;  // rows x cols weights of `type` in `layout`
  size_t rows;
  float* y;       // [batch][rows]
};
void matmul(std::span<const Product> products, size_t cols, const float* x, size_t batch, ThreadPool* pool);

// ---- bf16 products on AMX tiles ----
//
// Intel AMX (Sapphire Rapids and later) multiplies 16 x 32 bf16 tiles into 16 x 16 f32 tiles at
// ~1 TFLOP/s a core, against ~0.25 for the VNNI int8 kernels. Layout::tiles_bf16 stores an
// n x k bf16 matrix (n, k multiples of 32) as AMX's B operand: for each panel of 16 rows, for each
// 32 columns, one 1 KiB tile whose row j holds elements 2j and 2j + 1 of each of the 16 rows in
// turn. Same size as the stored matrix. The activations are rounded to bf16 (nearest even) and the
// products summed in f32 by the tiles; results do not depend on the thread count or the batch.
// Buffers that tile loads and stores read and write: at a 64-byte boundary, as a tile row that
// straddles two cache lines halves a product's speed (measured).
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
};
template <class T>
using aligned_vector = std::vector<T, CacheLineAllocator<T>>;

bool amx_detected();          // the CPU has AMX-BF16 and Linux granted this process the tile state
bool amx_available();         // detected, not switched off, and active_isa() is avx512
void set_amx(bool on);        // for tests and benchmarks (clamped to amx_detected)
bool tiles_fit(size_t rows, size_t cols);
void to_bf16(const float* x, uint16_t* y, size_t n);  // round to nearest even
// src: rows x cols bf16, row r at src + r * ld; dst: rows * cols elements in tiles_bf16.
void pack_tiles_bf16(const uint16_t* src, size_t ld, size_t rows, size_t cols, uint16_t* dst);
// The same for the n x k matrix src^T: src is cols x rows, element (k, r) at src + k * ld + r.
void pack_tiles_bf16_transposed(const uint16_t* src, size_t ld, size_t rows, size_t cols, uint16_t* dst);
void unpack_tiles_bf16(const uint16_t* src, size_t rows, size_t cols, uint16_t* dst);
// C[i][j] = sum_k A[i][k] B[j][k] for i < m, j < n, on this thread: A bf16 (row i at a + i * lda),
// B n x k in tiles_bf16, C f32 (row i at c + i * ldc). Needs amx_available(); safe on several
// threads at once.
void gemm_tiles_bf16(const uint16_t* a, size_t lda, size_t m, const uint16_t* b, size_t n, size_t k, float* c,
                     size_t ldc);

// ---- activations ----

// SwiGLU's elementwise step: out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x) with e^x to
// ~2 ulp (no libm call, vectorized on the active ISA). out may be up.
void swiglu(const float* gate, const float* up, float* out, size_t n);
// x[i] = e^(scale (x[i] - max x)) / sum_j e^(scale (x[j] - max x)) over n > 0 values, e^ as swiglu's.
void softmax(float* x, size_t n, float scale);
// p[i] = bf16(e^(scale (x[i] - max x))) over n > 0 values; returns the sum of the unrounded values
// (the caller divides by it): softmax's numerators for a bf16 product with the values.
float softmax_numerators_bf16(const float* x, size_t n, float scale, uint16_t* p);
// GELU, the exact (erf) form: out[i] = x/2 (1 + erf(x / sqrt 2)). out may be x.
void gelu(const float* x, float* out, size_t n);
// y = x / rms(x) * w over d values (sums in double); y may be x.
void rms_norm(const float* x, const float* w, float* y, size_t d, float eps);
// y = (x - mean) / sqrt(var + eps) * w + b over d values (LayerNorm); y may be x.
void layer_norm(const float* x, const float* w, const float* b, float* y, size_t d, float eps);

// ---- attention over an f16 or q8_0 KV cache (or f32 keys and values: the vision tower) ----

constexpr size_t kAttentionMaxHeadDim = 256;

// One query vector (one head of one token) and what it attends to: the first `visible` keys.
struct AttentionQuery {
  const float* q;   // head_dim floats
  float* out;       // head_dim floats: sum_p softmax_p(scale * q . k_p) * v_p
  size_t visible;   // keys 0..visible-1 (causal: the token's position + 1)
};

// All the queries that share one KV head (the query heads of a GQA group, for one token or a tile
// of prompt tokens) in one pass over its keys and values: each cached row is converted from f16
// once per call, scores go through an online softmax block by block (never an [n_ctx] buffer).
// k_rows[p] / v_rows[p]: the key/value rows (head_dim elements of kv_type: F16, F32 or Q8_0) of
// position p, for p below the largest `visible`. head_dim <= kAttentionMaxHeadDim (and a multiple
// of 32 for Q8_0). Safe to call from several threads at once.
void attention(std::span<const AttentionQuery> queries, size_t head_dim, DType kv_type, const void* const* k_rows,
               const void* const* v_rows, float scale);

}  // namespace autoglm::kernels
