// Kernel throughput. Decode is a matvec over every weight once per token, so it is bound by memory
// bandwidth: the figure that matters is bytes of weights read per second against what the machine
// can stream at all (BM_memory_read, a plain sum over the same amount of memory).
//
//   memory_read/threads:T             sum of a AUTOGLM_BENCH_MB buffer (default 1024 MiB) on T threads
//   matvec/TYPE/ISA[-panels16]/threads:T  one matvec over an AUTOGLM_BENCH_MB weight matrix, AUTOGLM_BENCH_COLS
//                                     columns (default 8192)
//   matmul/TYPE[/panels16]/batch:B/threads:T  4096 x 4096 weights times B vectors, best ISA; items = flops
//   pool_run/threads:T                one ThreadPool::run with a trivial job: the fixed cost per matvec
//   attention/ISA/keys:N              one kernels::attention call as a decode step of the 1 B model makes
//                                     it: 8 query heads of one KV head, head_dim 128, N cached f16 keys;
//                                     items = flops (4 x heads x N x head_dim)
//
// bytes_per_second is weight bytes (Google Benchmark prints it in GiB/s as "G/s").
// AUTOGLM_BENCH_HUGEPAGES=1 backs the large buffers with transparent huge pages (madvise).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <sys/mman.h>
#include <xmmintrin.h>
#include <thread>
#include <utility>
#include <vector>

#include "autoglm/kernels.h"
#include "memory_read.h"

namespace {

namespace k = autoglm::kernels;

size_t set_bytes() {
  const char* v = std::getenv("AUTOGLM_BENCH_MB");
  return (v && *v ? std::strtoull(v, nullptr, 10) : 1024) << 20;
}

// Columns of the matvec matrix: AUTOGLM_BENCH_COLS (default 8192; the 1 B model's are 2048 and 6912).
size_t set_cols() {
  const char* v = std::getenv("AUTOGLM_BENCH_COLS");
  const size_t cols = v && *v ? std::strtoull(v, nullptr, 10) : 8192;
  return std::max<size_t>(256, cols / 256 * 256);
}

int max_threads() { return static_cast<int>(std::max(2u, std::thread::hardware_concurrency())); }

// A large zeroed buffer from mmap: page-aligned, optionally on 2 MiB pages.
template <class T>
class BigBuffer {
 public:
  BigBuffer() = default;
  explicit BigBuffer(size_t count) : count_(count) {
    bytes_ = std::max<size_t>(count * sizeof(T), 1);
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    const char* huge = std::getenv("AUTOGLM_BENCH_HUGEPAGES");
    if (huge && *huge == '1') madvise(p, bytes_, MADV_HUGEPAGE);
    data_ = static_cast<T*>(p);
  }
  ~BigBuffer() { reset(); }
  BigBuffer(const BigBuffer&) = delete;
  BigBuffer& operator=(const BigBuffer&) = delete;
  BigBuffer(BigBuffer&& o) noexcept { *this = std::move(o); }
  BigBuffer& operator=(BigBuffer&& o) noexcept {
    reset();
    std::swap(data_, o.data_);
    std::swap(count_, o.count_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  T& operator[](size_t i) { return data_[i]; }

 private:
  void reset() {
    if (data_) munmap(data_, bytes_);
    data_ = nullptr;
    count_ = bytes_ = 0;
  }
  T* data_ = nullptr;
  size_t count_ = 0, bytes_ = 0;
};

// ---- memory read bandwidth: the ceiling for a matvec ----

using autoglm::bench::sum_words;

void BM_memory_read(benchmark::State& state) {
  static BigBuffer<uint64_t> buffer = [] {
    BigBuffer<uint64_t> b(set_bytes() / 8);
    for (size_t i = 0; i < b.size(); ++i) b[i] = i;  // touch every page before timing
    return b;
  }();
  k::ThreadPool pool(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    std::atomic<uint64_t> total{0};
    pool.run(buffer.size(), size_t{1} << 17, [&](size_t begin, size_t end) {
      total.fetch_add(sum_words(buffer.data() + begin, end - begin), std::memory_order_relaxed);
    });
    benchmark::DoNotOptimize(total.load());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * buffer.size() * 8));
}

// ---- weights: random blocks with sane scales, a 64 MiB pattern repeated (beyond any cache) ----

BigBuffer<uint8_t> make_weights(k::DType type, size_t rows, size_t cols) {
  const size_t rb = k::row_bytes(type, cols);
  const size_t pattern_rows = std::min(rows, std::max<size_t>(1, (size_t{64} << 20) / rb));
  BigBuffer<uint8_t> w(rows * rb);
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> row(cols);
  const k::DTypeInfo& info = k::dtype_info(type);
  if (info.block_size == 1 || type == k::DType::q8_0 || type == k::DType::q4_0) {
    for (size_t r = 0; r < pattern_rows; ++r) {  // these quantize fast enough to use real values
      for (float& f : row) f = normal(rng);
      k::quantize_row(type, row.data(), w.data() + r * rb, cols);
    }
  } else {
    std::uniform_int_distribution<int> byte(0, 255);
    for (size_t i = 0; i < pattern_rows * rb; ++i) w[i] = static_cast<uint8_t>(byte(rng));
    const uint16_t d = k::f32_to_f16(0.001f);
    for (size_t b = 0; b < pattern_rows * rb / info.block_bytes; ++b) {
      uint8_t* blk = w.data() + b * info.block_bytes;
      const size_t at = type == k::DType::q6_k ? 208 : 0;
      std::memcpy(blk + at, &d, 2);
      if (type == k::DType::q4_k) std::memcpy(blk + 2, &d, 2);
    }
  }
  for (size_t r = pattern_rows; r < rows; r += pattern_rows) {
    const size_t n = std::min(pattern_rows, rows - r);
    std::memcpy(w.data() + r * rb, w.data(), n * rb);
  }
  return w;
}

// The large matrix of the current type; rebuilt when a benchmark of another type starts.
struct BigMatrix {
  k::DType type = k::DType::f32;
  size_t rows = 0, cols = set_cols();
  BigBuffer<uint8_t> w;

  static BigMatrix& of(k::DType type) {
    static BigMatrix m;
    if (m.w.empty() || m.type != type) {
      m.w = BigBuffer<uint8_t>();
      m.type = type;
      m.rows = set_bytes() / k::row_bytes(type, m.cols);
      m.w = make_weights(type, m.rows, m.cols);
    }
    return m;
  }
};

// The big matrix of `type` in `layout` (panels16: repacked once, then kept for the next benchmark).
const BigBuffer<uint8_t>& weights_in(const BigMatrix& m, k::Layout layout) {
  static BigBuffer<uint8_t> packed;
  static const uint8_t* packed_from = nullptr;
  if (layout == k::Layout::rows) return m.w;
  if (packed_from != m.w.data() || packed.size() != m.w.size()) {
    packed = BigBuffer<uint8_t>(m.w.size());
    std::memcpy(packed.data(), m.w.data(), m.w.size());
    k::pack_weights(m.type, layout, packed.data(), m.rows, m.cols);
    packed_from = m.w.data();
  }
  return packed;
}

void BM_matvec(benchmark::State& state, k::DType type, k::Isa isa, k::Layout layout, int threads) {
  if (isa > k::detected_isa()) {
    state.SkipWithError("this CPU lacks the ISA");
    return;
  }
  const BigMatrix& m = BigMatrix::of(type);
  const BigBuffer<uint8_t>& w = weights_in(m, layout);
  std::vector<float> x(m.cols), y(m.rows);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  k::ThreadPool pool(threads);
  k::set_isa(isa);
  for (auto _ : state) {
    k::matmul(type, layout, w.data(), m.rows, m.cols, x.data(), 1, y.data(), &pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  k::set_isa(k::detected_isa());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * m.w.size()));
}

void BM_matmul(benchmark::State& state, k::DType type, k::Layout layout, size_t batch, int threads) {
  constexpr size_t rows = 4096, cols = 4096;
  static k::DType built_type = k::DType::f32;
  static k::Layout built_layout = k::Layout::rows;
  static BigBuffer<uint8_t> w;
  if (w.empty() || built_type != type || built_layout != layout) {
    w = make_weights(type, rows, cols);
    k::pack_weights(type, layout, w.data(), rows, cols);
    built_type = type;
    built_layout = layout;
  }
  std::vector<float> x(batch * cols), y(batch * rows);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  k::ThreadPool pool(threads);
  for (auto _ : state) {
    k::matmul(type, layout, w.data(), rows, cols, x.data(), batch, y.data(), &pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * 2 * rows * cols * batch));  // flops
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * w.size()));
}

void BM_attention(benchmark::State& state, k::Isa isa, size_t keys) {
  if (isa > k::detected_isa()) {
    state.SkipWithError("this CPU lacks the ISA");
    return;
  }
  constexpr size_t heads = 8, hd = 128, kv_heads = 2;  // rows interleave two KV heads, as the cache does
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> row(kv_heads * hd), q(heads * hd), out(heads * hd);
  std::vector<uint16_t> k_cache(keys * kv_heads * hd), v_cache(keys * kv_heads * hd);
  for (std::vector<uint16_t>* cache : {&k_cache, &v_cache})
    for (size_t p = 0; p < keys; ++p) {
      for (float& f : row) f = normal(rng);
      k::quantize_row(k::DType::f16, row.data(), cache->data() + p * row.size(), row.size());
    }
  for (float& f : q) f = normal(rng);
  std::vector<const void*> k_rows(keys), v_rows(keys);
  for (size_t p = 0; p < keys; ++p) k_rows[p] = &k_cache[p * row.size()], v_rows[p] = &v_cache[p * row.size()];
  std::vector<k::AttentionQuery> queries;
  for (size_t h = 0; h < heads; ++h) queries.push_back({&q[h * hd], &out[h * hd], keys});
  k::set_isa(isa);
  for (auto _ : state) {
    k::attention(queries, hd, k::DType::f16, k_rows.data(), v_rows.data(), 0.088f);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  k::set_isa(k::detected_isa());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * 4 * heads * keys * hd));
}

void BM_pool_run(benchmark::State& state) {
  k::ThreadPool pool(static_cast<int>(state.range(0)));
  std::atomic<size_t> sink{0};
  for (auto _ : state) pool.run(64, 16, [&](size_t begin, size_t end) { sink += end - begin; });
  benchmark::DoNotOptimize(sink.load());
}

}  // namespace

int main(int argc, char** argv) {
  const int threads_max = max_threads();
  benchmark::RegisterBenchmark("memory_read", BM_memory_read)
      ->ArgName("threads")
      ->DenseRange(1, threads_max, 1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  const k::DType types[] = {k::DType::q8_0, k::DType::q4_0, k::DType::q4_k, k::DType::q6_k,
                            k::DType::f16,  k::DType::bf16, k::DType::f32};
  const k::Isa isas[] = {k::Isa::scalar, k::Isa::avx2, k::Isa::avx512};
  for (k::DType type : types) {
    for (k::Isa isa : isas) {
      for (int threads = 1; threads <= threads_max; ++threads) {
        const std::string name = std::string("matvec/") + k::dtype_info(type).name + "/" + k::isa_name(isa) +
                                 "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), BM_matvec, type, isa, k::Layout::rows, threads)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
    if (k::preferred_layout(type, 4096) != k::Layout::panels16) continue;
    for (int threads = 1; threads <= threads_max; ++threads) {
      const std::string name =
          std::string("matvec/") + k::dtype_info(type).name + "/avx512-panels16/threads:" + std::to_string(threads);
      benchmark::RegisterBenchmark(name.c_str(), BM_matvec, type, k::Isa::avx512, k::Layout::panels16, threads)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  for (k::DType type : {k::DType::q8_0, k::DType::q4_0, k::DType::q4_k, k::DType::q6_k, k::DType::f16}) {
    for (k::Layout layout : {k::Layout::rows, k::Layout::panels16}) {
      if (layout != k::Layout::rows && k::preferred_layout(type, 4096) != layout) continue;
      for (size_t batch : {1, 4, 8, 16, 64}) {
        const std::string name = std::string("matmul/") + k::dtype_info(type).name +
                                 (layout == k::Layout::rows ? "" : "/panels16") + "/batch:" + std::to_string(batch) +
                                 "/threads:" + std::to_string(threads_max);
        benchmark::RegisterBenchmark(name.c_str(), BM_matmul, type, layout, batch, threads_max)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  for (k::Isa isa : isas)
    for (size_t keys : {16, 80, 512, 2048}) {
      const std::string name = std::string("attention/") + k::isa_name(isa) + "/keys:" + std::to_string(keys);
      benchmark::RegisterBenchmark(name.c_str(), BM_attention, isa, keys)->Unit(benchmark::kMicrosecond);
    }
  benchmark::RegisterBenchmark("pool_run", BM_pool_run)
      ->ArgName("threads")
      ->DenseRange(1, threads_max, 1)
      ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
