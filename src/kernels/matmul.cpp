// matvec / matmul: the row loop, its split across the thread pool, and the scalar reference dot
// products of float weights (their SIMD versions: matmul_avx2.cpp, matmul_avx512.cpp). Quantized
// weights go through qmatmul (int8 activations; qmatmul*.cpp).
//
// Determinism: every output element is one row's dot product with one activation vector, computed
// by the same code in the same order whatever the thread count, the chunking or the batch size;
// so threaded, single-threaded, matvec and matmul results are bit-identical for a given ISA.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <span>
#include <stdexcept>
#include <vector>

#include "autoglm/kernels.h"
#include "blocks.h"
#include "qmatmul.h"

namespace autoglm::kernels {
namespace {

constexpr size_t kRowGrain = 16;         // rows per scheduling unit (and per cache tile in matmul)
constexpr size_t kMinParallelMacs = 1u << 16;  // below this a wake-up costs more than it saves

// ---- scalar reference (float weight types) ----

float load_f32(const void* row, size_t j) {
  float v = 0;
  std::memcpy(&v, static_cast<const char*>(row) + j * sizeof(float), sizeof(v));
  return v;
}
float load_f16(const void* row, size_t j) { return f16_to_f32(static_cast<const uint16_t*>(row)[j]); }
float load_bf16(const void* row, size_t j) { return bf16_to_f32(static_cast<const uint16_t*>(row)[j]); }

template <float (*Load)(const void*, size_t)>
void row_dot_elements(const void* row, size_t cols, const float* x, size_t x_stride, size_t nb, float* out) {
  float acc[kMaxBatchTile] = {};
  for (size_t j = 0; j < cols; ++j) {
    const float w = Load(row, j);
    for (size_t b = 0; b < nb; ++b) acc[b] += w * x[b * x_stride + j];
  }
  std::copy(acc, acc + nb, out);
}

RowDot select_row_dot(DType type) {
  switch (active_isa()) {
    case Isa::avx512:
      if (RowDot f = row_dot_avx512(type)) return f;
      [[fallthrough]];
    case Isa::avx2:
      if (RowDot f = row_dot_avx2(type)) return f;
      [[fallthrough]];
    case Isa::scalar: break;
  }
  return row_dot_scalar(type);
}

// One matmul call; run_rows computes the outputs of rows [begin, end) for the whole batch.
struct MatmulJob {
  RowDot dot;
  const uint8_t* w;
  size_t stride;  // bytes per weight row
  size_t rows, cols, batch;
  const float* x;
  float* y;

  // For each tile of kRowGrain rows (kept in L1/L2), each group of up to kMaxBatchTile vectors:
  // every weight row comes from memory once per call, whatever the batch.
  void run_rows(size_t begin, size_t end) const {
    float out[kMaxBatchTile];
    for (size_t r0 = begin; r0 < end; r0 += kRowGrain) {
      const size_t r1 = std::min(end, r0 + kRowGrain);
      for (size_t b0 = 0; b0 < batch; b0 += kMaxBatchTile) {
        const size_t nb = std::min(kMaxBatchTile, batch - b0);
        for (size_t r = r0; r < r1; ++r) {
          dot(w + r * stride, cols, x + b0 * cols, cols, nb, out);
          for (size_t b = 0; b < nb; ++b) y[(b0 + b) * rows + r] = out[b];
        }
      }
    }
  }
};

}  // namespace

RowDot row_dot_scalar(DType type) {
  switch (type) {
    case DType::f32: return row_dot_elements<load_f32>;
    case DType::f16: return row_dot_elements<load_f16>;
    case DType::bf16: return row_dot_elements<load_bf16>;
    default: return nullptr;  // quantized types go through qmatmul
  }
}

namespace {

QRows select_qrows(DType type) {
  switch (active_isa()) {
    case Isa::avx512:
      if (QRows f = qrows_avx512(type)) return f;
      [[fallthrough]];
    case Isa::avx2:
      if (QRows f = qrows_avx2(type)) return f;
      [[fallthrough]];
    case Isa::scalar: break;
  }
  return qrows_scalar;
}

// Rows [r0, r1) of a panels16 matrix on an ISA without a panel kernel: each panel back to the
// stored format in a buffer, then the stored layout's path (tests force this; it is never fast).
void qrows_panels_unpacked(const QJob& job, size_t r0, size_t r1) {
  const QRows fn = select_qrows(job.type);
  const PanelFormat& f = *panel_format(job.type);
  const size_t full = std::min(r1, job.rows / kPanelRows * kPanelRows);
  thread_local std::vector<uint8_t> buffer;
  buffer.resize(kPanelRows * job.stride);
  size_t r = r0;
  for (; r < full; r += kPanelRows) {
    unpack_panel(f, job.w + r * job.stride, job.stride, buffer.data());
    QJob panel = job;  // rows stays: it is the stride of y
    panel.w = buffer.data();
    panel.y = job.y + r;
    fn(panel, 0, kPanelRows);
  }
  if (r < r1) fn(job, r, r1);  // the tail rows are stored as they were
}

QRows select_qrows(DType type, Layout layout) {
  if (layout == Layout::rows) return select_qrows(type);
  if (active_isa() == Isa::avx512)
    if (QRows f = qrows_panels_avx512(type)) return f;
  return qrows_panels_unpacked;
}

bool worth_threads(const ThreadPool* pool, size_t rows, size_t cols, size_t batch, size_t grain) {
  return pool && pool->size() > 1 && rows > grain && rows * cols * batch >= kMinParallelMacs;
}

// Below this many vectors every thread quantizes the activations itself, in its first chunk: a few
// microseconds of redundant work in parallel instead of the same time serial, with the pool idle.
constexpr size_t kSharedQuantizeBatch = 8;

// Several products of quantized weights with the same activations, as one row space: product i
// covers rows [offset, offset + job.rows), offsets rounded up to kQRowTile so that every range a
// chunk hands to a product starts at a multiple of it.
struct QProduct {
  QJob job;  // acts set per call
  QRows fn;
  size_t offset;
};

void run_products(const std::vector<QProduct>& products, const QActs* acts, size_t begin, size_t end) {
  for (const QProduct& p : products) {
    const size_t lo = std::max(begin, p.offset), hi = std::min(end, p.offset + p.job.rows);
    if (lo >= hi) continue;
    QJob job = p.job;
    job.acts = acts;
    p.fn(job, lo - p.offset, hi - p.offset);
  }
}

// One call whose threads each quantize the activations (x: batch x cols floats) for themselves.
struct OwnActsCall {
  const std::vector<QProduct>* products;
  const float* x;
  size_t batch;
  uint64_t id;  // distinct per call: a thread quantizes once per call, in its first chunk

  void run_rows(size_t begin, size_t end) const {
    thread_local QActsStorage storage;
    thread_local uint64_t quantized_call = 0;
    thread_local const QActs* acts = nullptr;
    if (quantized_call != id) {
      const QJob& first = products->front().job;
      acts = &storage.prepare(first.type, first.cols, batch);
      storage.quantize(x, 0, batch);
      quantized_call = id;
    }
    run_products(*products, acts, begin, end);
  }
};

// The products share one quantized form of x when their types quantize activations alike.
bool same_activations(DType a, DType b) {
  const QFormat fa = qformat(a), fb = qformat(b);
  return is_int8_type(a) && is_int8_type(b) && fa.group == fb.group && fa.zero == fb.zero;
}

// Quantized weights: activations to int8 first (once per call for every product), then integer dot
// products, the rows of all products split across the pool in one run.
void qmatmul(std::span<const Product> ps, size_t cols, const float* x, size_t batch, ThreadPool* pool) {
  static std::atomic<uint64_t> calls{0};
  thread_local std::vector<QProduct> products;  // read by the workers during this call only
  products.clear();
  size_t total = 0;
  for (const Product& p : ps) {
    if (p.rows == 0) continue;
    products.push_back({QJob{p.type, static_cast<const uint8_t*>(p.w), row_bytes(p.type, cols), p.rows, cols, nullptr, p.y},
                        select_qrows(p.type, p.layout), total});
    total += (p.rows + kQRowTile - 1) / kQRowTile * kQRowTile;
  }
  if (products.empty()) return;
  if (worth_threads(pool, total, cols, batch, kQRowTile) && batch < kSharedQuantizeBatch) {
    const OwnActsCall call{&products, x, batch, ++calls};
    pool->run(total, kQRowTile, [&call](size_t begin, size_t end) { call.run_rows(begin, end); });
    return;
  }
  thread_local QActsStorage caller_storage;
  QActsStorage* storage = &caller_storage;  // the workers must use this thread's, not their own
  const QActs& acts = storage->prepare(products.front().job.type, cols, batch);
  if (pool && pool->size() > 1 && batch >= kSharedQuantizeBatch)
    pool->run(batch, 1, [storage, x](size_t begin, size_t end) { storage->quantize(x, begin, end); });
  else
    storage->quantize(x, 0, batch);
  const QActs* shared = &acts;
  const std::vector<QProduct>* list = &products;  // this thread's: a worker naming `products` gets its own
  if (worth_threads(pool, total, cols, batch, kQRowTile))
    pool->run(total, kQRowTile, [list, shared](size_t begin, size_t end) { run_products(*list, shared, begin, end); });
  else
    run_products(products, shared, 0, total);
}

void check_product(const Product& p) {
  if (p.layout == Layout::panels16 && !panel_format(p.type))
    throw std::invalid_argument("matmul: this weight type has no panels16 layout");
  if (p.layout == Layout::tiles_bf16 && p.type != DType::bf16)
    throw std::invalid_argument("matmul: the tiles_bf16 layout holds BF16 weights only");
}

}  // namespace

void matmul(DType type, const void* w, size_t rows, size_t cols, const float* x, size_t batch, float* y,
            ThreadPool* pool) {
  if (rows == 0 || batch == 0) return;
  if (is_int8_type(type)) {
    const Product p{type, Layout::rows, w, rows, y};
    return qmatmul(std::span(&p, 1), cols, x, batch, pool);
  }
  const MatmulJob job{select_row_dot(type), static_cast<const uint8_t*>(w), row_bytes(type, cols), rows, cols,
                      batch, x, y};
  // A lambda holding one pointer fits std::function's inline buffer: no allocation per call.
  if (worth_threads(pool, rows, cols, batch, kRowGrain))
    pool->run(rows, kRowGrain, [&job](size_t begin, size_t end) { job.run_rows(begin, end); });
  else
    job.run_rows(0, rows);
}

void matmul(DType type, Layout layout, const void* w, size_t rows, size_t cols, const float* x, size_t batch,
            float* y, ThreadPool* pool) {
  if (layout == Layout::rows) return matmul(type, w, rows, cols, x, batch, y, pool);
  const Product p{type, layout, w, rows, y};
  check_product(p);
  if (rows == 0 || batch == 0) return;
  if (layout == Layout::tiles_bf16) return matmul_tiles_bf16(w, rows, cols, x, batch, y, pool);
  qmatmul(std::span(&p, 1), cols, x, batch, pool);
}

void matmul(std::span<const Product> products, size_t cols, const float* x, size_t batch, ThreadPool* pool) {
  for (const Product& p : products) check_product(p);
  if (batch == 0 || products.empty()) return;
  const bool shared = std::all_of(products.begin(), products.end(),
                                  [&](const Product& p) { return same_activations(p.type, products[0].type); });
  if (shared) return qmatmul(products, cols, x, batch, pool);
  for (const Product& p : products) matmul(p.type, p.layout, p.w, p.rows, cols, x, batch, p.y, pool);
}

void matvec(DType type, const void* w, size_t rows, size_t cols, const float* x, float* y, ThreadPool* pool) {
  matmul(type, w, rows, cols, x, 1, y, pool);
}

}  // namespace autoglm::kernels
