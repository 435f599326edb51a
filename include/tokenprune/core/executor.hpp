#pragma once
#include <tokenprune/core/abi.hpp>
// Where the library's parallel loops run. By default, on OpenMP threads when the engine compiles with OpenMP,
// otherwise on the calling thread. An engine with a thread pool of its own (llama.cpp's, TBB, a job system)
// passes an Executor that forwards loops to it, so that tokenprune never starts threads beside the engine's.
//
// A loop is a number of independent tasks. Every task writes its own outputs and reads shared inputs, and each
// result is computed in an order fixed by the data, so which worker runs which task, and in which order, never
// changes an answer. The worker slot a task receives selects its scratch buffers (Gram packing buffers).
//
// The engine's side is one function:
//
//   void run(void* pool, index_t tasks, Executor::Task task, void* loop)
//     calls task(loop, t, worker) exactly once for every t in [0, tasks), each with a worker slot in
//     [0, workers) that no other task uses at the same time, and returns when all have finished.
//
// Tasks do not throw and do not allocate. The library checks the contract after each loop: a task that was
// skipped or run twice (also both at once, by the sums of the task numbers), given a slot out of range, or given
// a slot that another running task holds ends in an Error naming "executor"; a task with a bad or busy slot is
// not run at all, so a broken pool cannot corrupt memory.

#include <tokenprune/core/error.hpp>
#include <tokenprune/core/types.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace tokenprune::inline TOKENPRUNE_ABI {

class Executor {
 public:
  using Task = void (*)(void* loop, index_t t, int worker);
  using Run = void (*)(void* pool, index_t tasks, Task task, void* loop);

  // OpenMP threads when compiled with OpenMP (as many as omp_get_max_threads() allows), else the calling thread.
  constexpr Executor() noexcept = default;

  // The engine's pool: `run` as described above, `pool` passed back to it, `workers` slots (>= 1).
  Executor(Run run, void* pool, int workers) : run_(run), pool_(pool), workers_(workers), kind_(Kind::pool) {
    if (run == nullptr) fail("executor.run", "null", "an engine executor needs a run function");
    if (workers < 1) fail("executor.workers", workers, "must be >= 1");
  }

  // Every loop on the calling thread, even in an OpenMP build.
  static constexpr Executor sequential() noexcept { return Executor(Kind::sequential); }

  [[nodiscard]] bool is_pool() const noexcept { return kind_ == Kind::pool; }

  // The number of worker slots a loop may use now (sizes per-worker scratch).
  [[nodiscard]] int workers() const noexcept {
    switch (kind_) {
      case Kind::pool:
        return workers_;
      case Kind::sequential:
        return 1;
      case Kind::automatic:
        break;
    }
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
  }

  // Starts the OpenMP team now (its first parallel region allocates), so that later loops do not; reserve()
  // calls it. Nothing to do for an engine's pool or the calling thread.
  void warm_up() const {
#if defined(_OPENMP)
    if (kind_ == Kind::automatic && workers() > 1) {
#pragma omp parallel num_threads(workers())
      { [[maybe_unused]] volatile int started = omp_get_thread_num(); }
    }
#endif
  }

  // Runs body(t, worker) for t in [0, count), worker < workers(): one task per t, dynamically scheduled
  // (tasks of uneven size, such as Gram tiles). The caller has scratch for workers() slots.
  template <class Body>
  void for_each(index_t count, Body&& body) const {
    if (count <= 0) return;
    const int threads = workers();
    if (kind_ == Kind::pool && threads > 1 && count > 1) {
      run_checked(count, threads, body);
      return;
    }
#if defined(_OPENMP)
    if (kind_ == Kind::automatic && threads > 1 && count > 1) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
      for (index_t t = 0; t < count; ++t) body(t, omp_get_thread_num());
      return;
    }
#endif
    for (index_t t = 0; t < count; ++t) body(t, 0);
  }

  // Runs body(i) for every row i in [0, n): rows of equal cost, in contiguous blocks, a few per worker (so
  // that an uneven pool still balances), each block one task of for_each().
  template <class Body>
  void for_each_row(index_t n, Body&& body) const {
    if (n <= 0) return;
    const index_t blocks = std::min<index_t>(n, index_t{4} * workers());
    for_each(blocks, [&](index_t b, int) {
      for (index_t i = n * b / blocks; i < n * (b + 1) / blocks; ++i) body(i);
    });
  }

 private:
  enum class Kind { automatic, sequential, pool };
  constexpr explicit Executor(Kind kind) noexcept : kind_(kind) {}

  // Slots whose sharing by two running tasks is detected (pools with more workers are checked on these).
  static constexpr int kCheckedSlots = 64;

  template <class Body>
  struct Loop {
    Body* body;
    int workers;
    std::atomic<index_t> done{0};
    std::atomic<std::uint64_t> sum{0}, sum_of_squares{0};  // of the task numbers run: a skip plus a repeat shows
    std::atomic<bool> bad_worker{false}, shared_slot{false};
    std::atomic<bool> busy[kCheckedSlots] = {};
  };

  template <class Body>
  static void trampoline(void* loop, index_t t, int worker) {
    auto* l = static_cast<Loop<Body>*>(loop);
    if (worker < 0 || worker >= l->workers) {  // a slot out of range would share or overrun scratch
      l->bad_worker.store(true, std::memory_order_relaxed);
      return;
    }
    std::atomic<bool>* slot = worker < kCheckedSlots ? &l->busy[worker] : nullptr;
    if (slot != nullptr && slot->exchange(true, std::memory_order_acquire)) {  // another task runs in this slot
      l->shared_slot.store(true, std::memory_order_relaxed);
      return;
    }
    (*l->body)(t, worker);
    if (slot != nullptr) slot->store(false, std::memory_order_release);
    const auto u = static_cast<std::uint64_t>(t);
    l->done.fetch_add(1, std::memory_order_relaxed);
    l->sum.fetch_add(u, std::memory_order_relaxed);
    l->sum_of_squares.fetch_add(u * u, std::memory_order_relaxed);
  }

  template <class Body>
  void run_checked(index_t count, int threads, Body& body) const {
    Loop<Body> loop{&body, threads};
    run_(pool_, count, &trampoline<Body>, &loop);
    if (loop.bad_worker.load()) fail("executor", "worker slot", "out of [0, workers): that task was not run");
    if (loop.shared_slot.load())
      fail("executor", "worker slot", "given to two running tasks at once: the second one was not run");
    const index_t done = loop.done.load();
    if (done != count) fail("executor", done, "tasks ran, expected each task of the loop exactly once");
    // Sums of t and t^2 over [0, count) (mod 2^64): equal counts with a task skipped and another repeated differ.
    const auto n = static_cast<std::uint64_t>(count);
    const std::uint64_t sum = n % 2 == 0 ? n / 2 * (n - 1) : (n - 1) / 2 * n;
    std::uint64_t a = n - 1, b = n, c = 2 * n - 1;  // (n-1) n (2n-1) / 6 without overflowing before the division
    (a % 2 == 0 ? a : b) /= 2;
    (a % 3 == 0 ? a : b % 3 == 0 ? b : c) /= 3;
    if (loop.sum.load() != sum || loop.sum_of_squares.load() != a * b * c)
      fail("executor", "task numbers", "a task was skipped and another run more than once");
  }

  Run run_ = nullptr;
  void* pool_ = nullptr;
  int workers_ = 1;
  Kind kind_ = Kind::automatic;
};

}  // namespace tokenprune
