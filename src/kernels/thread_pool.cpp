// Persistent worker threads. run() publishes a job under the mutex (a new generation), workers
// spin briefly and then sleep on a condition variable until they see it, take grain-aligned
// chunks from an atomic counter, and report completion; the caller works too and returns when
// every worker has reported. An exception thrown by fn stops the handing out of chunks and the
// first one is rethrown in the caller once all threads have stopped touching the job.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "autoglm/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace autoglm::kernels {
namespace {

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// ~10-50 us of polling before sleeping: back-to-back matvecs of one decode step then skip the
// futex wake-up, while an idle pool costs no CPU.
constexpr int kSpinIterations = 2000;

}  // namespace

struct ThreadPool::State {
  std::vector<std::thread> workers;
  std::mutex mutex;
  std::condition_variable wake;   // workers wait here for a new generation
  std::condition_variable done;   // the caller waits here for `pending` to reach 0
  std::atomic<uint64_t> generation{0};
  bool stop = false;              // guarded by mutex

  // The current job, written under the mutex before `generation` is bumped.
  const std::function<void(size_t, size_t)>* fn = nullptr;
  size_t n = 0;
  size_t step = 1;                     // elements per chunk, a multiple of the grain
  std::atomic<size_t> next{0};         // index of the next chunk to hand out
  std::atomic<int> pending{0};         // workers that have not finished this generation
  std::atomic<bool> failed{false};
  std::exception_ptr error;            // the first exception, guarded by mutex
  std::atomic<bool> busy{false};       // a run() is in progress (nested or concurrent calls run inline)

  void work() {
    const size_t chunks = (n + step - 1) / step;
    for (;;) {
      const size_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks || failed.load(std::memory_order_relaxed)) return;
      const size_t begin = c * step;
      try {
        (*fn)(begin, std::min(n, begin + step));
      } catch (...) {
        std::lock_guard lock(mutex);
        if (!error) error = std::current_exception();
        failed.store(true, std::memory_order_relaxed);
      }
    }
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      for (int i = 0; i < kSpinIterations && generation.load(std::memory_order_acquire) == seen; ++i) cpu_relax();
      if (generation.load(std::memory_order_acquire) == seen) {
        std::unique_lock lock(mutex);
        wake.wait(lock, [&] { return stop || generation.load(std::memory_order_relaxed) != seen; });
        if (stop) return;
      }
      seen = generation.load(std::memory_order_acquire);
      work();
      if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard lock(mutex);  // pairs with the caller's predicate check: no lost wake-up
        done.notify_one();
      }
    }
  }
};

ThreadPool::ThreadPool(int threads) : state_(std::make_unique<State>()) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  state_->workers.reserve(static_cast<size_t>(threads - 1));
  for (int i = 1; i < threads; ++i) state_->workers.emplace_back([s = state_.get()] { s->worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(state_->mutex);
    state_->stop = true;
  }
  state_->wake.notify_all();
  for (std::thread& t : state_->workers) t.join();
}

int ThreadPool::size() const { return static_cast<int>(state_->workers.size()) + 1; }

void ThreadPool::run(size_t n, size_t grain, const std::function<void(size_t begin, size_t end)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  State& s = *state_;
  const size_t threads = s.workers.size() + 1;
  const size_t grains = (n + grain - 1) / grain;
  if (threads == 1 || grains == 1 || s.busy.exchange(true, std::memory_order_acquire)) {
    fn(0, n);  // one chunk, no workers, or a nested/concurrent call: run inline
    return;
  }
  // Enough chunks (~8 per thread) to balance uneven progress, few enough to keep the counter cold.
  const size_t chunks_wanted = threads * 8;
  const size_t step = grain * std::max<size_t>(1, grains / chunks_wanted);
  {
    std::lock_guard lock(s.mutex);
    s.fn = &fn;
    s.n = n;
    s.step = step;
    s.next.store(0, std::memory_order_relaxed);
    s.failed.store(false, std::memory_order_relaxed);
    s.error = nullptr;
    s.pending.store(static_cast<int>(s.workers.size()), std::memory_order_relaxed);
    s.generation.fetch_add(1, std::memory_order_release);
  }
  s.wake.notify_all();
  s.work();
  for (int i = 0; i < kSpinIterations && s.pending.load(std::memory_order_acquire) != 0; ++i) cpu_relax();
  std::exception_ptr error;
  {
    std::unique_lock lock(s.mutex);
    s.done.wait(lock, [&] { return s.pending.load(std::memory_order_acquire) == 0; });
    error = s.error;
    s.error = nullptr;
    s.fn = nullptr;
  }
  s.busy.store(false, std::memory_order_release);
  if (error) std::rethrow_exception(error);
}

}  // namespace autoglm::kernels
