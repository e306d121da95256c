// Persistent worker threads. run() publishes a job as a new generation of the `ticket` word
// (generation | next chunk | chunk count); the caller and any worker that is awake claim chunks by
// compare-and-swap on it, so a worker that wakes late finds the generation gone or exhausted and
// never touches the job. The caller waits only for the chunks that were claimed, not for every
// worker to check in: a worker the OS has not scheduled yet costs nothing.
//
// Workers spin briefly and then sleep on a condition variable. An exception thrown by fn stops
// further chunks from running, and the first one is rethrown in the caller once every claimed chunk
// has finished.
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
constexpr size_t kMaxChunks = 0xFFFF;  // the chunk fields of the ticket are 16 bits

// ticket = generation << 32 | next chunk << 16 | chunk count
uint64_t make_ticket(uint32_t generation, uint32_t next, uint32_t count) {
  return (uint64_t{generation} << 32) | (uint64_t{next} << 16) | count;
}
uint32_t generation_of(uint64_t t) { return static_cast<uint32_t>(t >> 32); }

}  // namespace

struct ThreadPool::State {
  std::vector<std::thread> workers;
  std::mutex mutex;
  std::condition_variable wake;  // workers wait here for a new generation
  std::condition_variable done;  // the caller waits here for the last claimed chunk
  bool stop = false;             // guarded by mutex
  std::atomic<uint64_t> ticket{0};
  uint32_t generation = 0;       // the caller's count of runs

  // The current job: written before its ticket is published, read only by a chunk's claimant.
  const std::function<void(size_t, size_t)>* fn = nullptr;
  size_t n = 0;
  size_t step = 1;                    // elements per chunk, a multiple of the grain
  std::atomic<size_t> finished{0};    // chunks of this generation run to completion
  std::atomic<bool> failed{false};
  std::exception_ptr error;           // the first exception, guarded by mutex
  std::atomic<bool> busy{false};      // a run() is in progress (nested or concurrent calls run inline)

  // Claims the next chunk of generation `gen`: false once it is exhausted or superseded.
  bool claim(uint32_t gen, uint32_t& chunk, uint32_t& count) {
    uint64_t t = ticket.load(std::memory_order_acquire);
    for (;;) {
      const auto next = static_cast<uint32_t>((t >> 16) & 0xFFFF);
      count = static_cast<uint32_t>(t & 0xFFFF);
      if (generation_of(t) != gen || next >= count) return false;
      if (ticket.compare_exchange_weak(t, t + (uint64_t{1} << 16), std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        chunk = next;
        return true;
      }
    }
  }

  // Runs chunks of generation `gen` until none is left.
  void work(uint32_t gen) {
    uint32_t chunk = 0, count = 0;
    while (claim(gen, chunk, count)) {
      if (!failed.load(std::memory_order_relaxed)) {
        const size_t begin = chunk * step;
        try {
          (*fn)(begin, std::min(n, begin + step));
        } catch (...) {
          std::lock_guard lock(mutex);
          if (!error) error = std::current_exception();
          failed.store(true, std::memory_order_relaxed);
        }
      }
      if (finished.fetch_add(1, std::memory_order_acq_rel) + 1 == count) {
        std::lock_guard lock(mutex);  // pairs with the caller's predicate check: no lost wake-up
        done.notify_one();
      }
    }
  }

  void worker_loop() {
    uint32_t seen = 0;
    for (;;) {
      for (int i = 0; i < kSpinIterations && generation_of(ticket.load(std::memory_order_relaxed)) == seen; ++i)
        cpu_relax();
      if (generation_of(ticket.load(std::memory_order_relaxed)) == seen) {
        std::unique_lock lock(mutex);
        wake.wait(lock, [&] { return stop || generation_of(ticket.load(std::memory_order_relaxed)) != seen; });
        if (stop) return;
      }
      seen = generation_of(ticket.load(std::memory_order_acquire));
      work(seen);
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
  // Enough chunks (~8 per thread) to balance uneven progress, few enough to keep the ticket cold,
  // and never more than the ticket can count.
  const size_t grains_per_chunk = std::max({size_t{1}, grains / (threads * 8), (grains + kMaxChunks - 1) / kMaxChunks});
  const size_t step = grain * grains_per_chunk;
  const auto count = static_cast<uint32_t>((n + step - 1) / step);
  s.fn = &fn;
  s.n = n;
  s.step = step;
  s.finished.store(0, std::memory_order_relaxed);
  s.failed.store(false, std::memory_order_relaxed);
  const uint32_t gen = ++s.generation == 0 ? ++s.generation : s.generation;  // 0 means "no job yet"
  {
    std::lock_guard lock(s.mutex);  // sleeping workers check the ticket under the mutex
    s.ticket.store(make_ticket(gen, 0, count), std::memory_order_release);
  }
  s.wake.notify_all();
  s.work(gen);
  for (int i = 0; i < kSpinIterations && s.finished.load(std::memory_order_acquire) != count; ++i) cpu_relax();
  std::exception_ptr error;
  {
    std::unique_lock lock(s.mutex);
    s.done.wait(lock, [&] { return s.finished.load(std::memory_order_acquire) == count; });
    error = s.error;
    s.error = nullptr;
  }
  s.busy.store(false, std::memory_order_release);
  if (error) std::rethrow_exception(error);
}

}  // namespace autoglm::kernels
