// SHA-256 throughput (bytes/s): in memory (the ceiling), one file by read-buffer size with and
// without overlapped reads, and N files on N threads (sha256_files, what verify uses).
// Files live in AUTOGLM_BENCH_DIR (default: the temp folder), AUTOGLM_BENCH_MB MiB each (default
// 256); they are written once, so the runs measure hashing from the page cache.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "autoglm/integrity.h"
#include "internal.h"  // hash_file: to compare plain and overlapped reads

namespace {

namespace fs = std::filesystem;
namespace ig = autoglm::integrity;

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

unsigned max_threads() { return std::max(2u, std::thread::hardware_concurrency()); }

class BenchFiles {
 public:
  ~BenchFiles() {
    std::error_code ec;
    for (const fs::path& p : paths_) fs::remove(p, ec);
  }
  uint64_t size() const { return size_; }
  // The first n files, written on first use.
  std::vector<fs::path> first(size_t n) {
    while (paths_.size() < n) write_one();
    return {paths_.begin(), paths_.begin() + static_cast<std::ptrdiff_t>(n)};
  }

 private:
  void write_one() {
    const char* dir = std::getenv("AUTOGLM_BENCH_DIR");
    const fs::path p = fs::path(dir && *dir ? dir : fs::temp_directory_path().string()) /
                       ("autoglm-bench-sha256-" + std::to_string(::getpid()) + "-" + std::to_string(paths_.size()));
    std::mt19937_64 rng(paths_.size());
    std::string chunk(size_t{8} << 20, '\0');
    for (char& c : chunk) c = static_cast<char>(rng());
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    for (uint64_t left = size_; left > 0;) {
      const uint64_t n = std::min<uint64_t>(left, chunk.size());
      chunk[0] = static_cast<char>(left);  // no two chunks alike
      out.write(chunk.data(), static_cast<std::streamsize>(n));
      left -= n;
    }
    paths_.push_back(p);
  }

  uint64_t size_ = env_or("AUTOGLM_BENCH_MB", 256) << 20;
  std::vector<fs::path> paths_;
};

BenchFiles& files() {
  static BenchFiles f;
  return f;
}

void BM_sha256_memory(benchmark::State& state) {
  const std::string buf(static_cast<size_t>(state.range(0)), 'x');
  for (auto _ : state) benchmark::DoNotOptimize(ig::sha256_hex(buf));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_sha256_memory)->Arg(8 << 20)->Unit(benchmark::kMillisecond);

// Args: read buffer size in bytes; 1 = read the next chunk on a second thread while hashing.
void BM_sha256_file(benchmark::State& state) {
  const fs::path path = files().first(1).front();
  const auto buffer = static_cast<size_t>(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(ig::hash_file(path, {}, buffer, state.range(1) != 0));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * files().size()));
}
BENCHMARK(BM_sha256_file)
    ->ArgsProduct({{64 << 10, 1 << 20, 8 << 20}, {0, 1}})
    ->ArgNames({"buffer", "overlap"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Arg: N files hashed by sha256_files on N threads.
void BM_sha256_files(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  const std::vector<fs::path> paths = files().first(n);
  for (auto _ : state) benchmark::DoNotOptimize(ig::sha256_files(paths, static_cast<unsigned>(n)));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * files().size()));
}
BENCHMARK(BM_sha256_files)
    ->Apply([](benchmark::internal::Benchmark* b) {
      for (unsigned n = 1; n <= max_threads(); n *= 2) b->Arg(n);
    })
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
