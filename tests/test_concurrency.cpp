// Separate pruner instances used from several threads at once give exactly the answers of a sequential run.
// Run under ThreadSanitizer in CI (scripts/test.sh), where it also shows that instances share no state.

#include "catch.hpp"

#include <tokenprune/tokenprune.hpp>

#include <atomic>
#include <barrier>
#include <limits>
#include <random>
#include <thread>
#include <vector>

using namespace tokenprune;

namespace {

struct Job {
  RowMatrix<float> features;
  std::vector<float> maps;  // [heads, n, n]
  index_t n = 0;
};

Job make_job(unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  Job job;
  job.n = 100 + static_cast<index_t>(seed % 7) * 20;
  job.features.resize(job.n, 16);
  Eigen::RowVectorXf drift = Eigen::RowVectorXf::Zero(16);
  for (index_t i = 0; i < job.n; ++i) {
    for (auto& v : drift) v += 0.4f * normal(rng);
    job.features.row(i) = drift;
  }
  job.maps.resize(static_cast<std::size_t>(2 * job.n * job.n));
  for (float& a : job.maps) a = std::abs(normal(rng));
  return job;
}

std::vector<index_t> run(const Job& job, GPrune& gprune, FoPru& fopru) {
  std::vector<index_t> out;
  const auto a = gprune.prune(PruneInputs{.features = job.features}, Budget::ratio(0.3));
  out.assign(a.begin(), a.end());
  PruneInputs maps;
  maps.attention = AttentionMaps(job.maps.data(), 2, job.n);
  const auto b = fopru.prune(maps, Budget::count(job.n / 4));
  out.push_back(-1);  // separator
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

}  // namespace

TEST_CASE("concurrency: one instance per thread, answers equal the sequential ones", "[concurrency]") {
  constexpr int kThreads = 4, kJobsPerThread = 6;
  std::vector<Job> jobs;
  for (int j = 0; j < kThreads * kJobsPerThread; ++j) jobs.push_back(make_job(static_cast<unsigned>(j + 1)));

  std::vector<std::vector<index_t>> sequential(jobs.size()), concurrent(jobs.size());
  {
    GPrune gprune;
    FoPru fopru;
    for (std::size_t j = 0; j < jobs.size(); ++j) sequential[j] = run(jobs[j], gprune, fopru);
  }
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t)
    workers.emplace_back([&, t] {
      GPrune gprune;  // each thread owns its instances; they are reused across that thread's jobs
      FoPru fopru;
      gprune.reserve(240, 16);
      for (int k = 0; k < kJobsPerThread; ++k) {
        const auto j = static_cast<std::size_t>(t + k * kThreads);
        concurrent[j] = run(jobs[j], gprune, fopru);
      }
    });
  for (auto& w : workers) w.join();
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    INFO("job " << j);
    CHECK(concurrent[j] == sequential[j]);
    CHECK(sequential[j].size() > 2);
  }
}

// ---------------------------------------------------------------------------------------------------------
// A caller-provided executor: an engine-style pool of std::threads claiming tasks from a shared counter.
// ---------------------------------------------------------------------------------------------------------
namespace {

struct ThreadPool {
  int workers = 2;
  bool reverse = false;  // claim tasks from the last one down
  // skip_and_repeat: task 1 is skipped and task 0 run twice (the total count is right); shared_slot: every
  // thread passes worker slot 0, so two running tasks share one slot's scratch.
  enum class Fault { none, skip_last, bad_worker, run_twice, skip_and_repeat, shared_slot } fault = Fault::none;

  static void run(void* self, index_t tasks, Executor::Task task, void* loop) {
    const auto& pool = *static_cast<const ThreadPool*>(self);
    if (pool.fault == Fault::shared_slot) {  // two threads start tasks 2p and 2p + 1 together, both in slot 0
      std::barrier together(2);
      auto pair = [&](index_t first) {
        for (index_t t = first; t < tasks; t += 2) {
          together.arrive_and_wait();
          task(loop, t, 0);
        }
        if (tasks % 2 == 1 && first == 1) together.arrive_and_drop();  // the other thread has one task more
      };
      std::thread other(pair, 1);
      pair(0);
      other.join();
      return;
    }
    std::atomic<index_t> next{0};
    std::vector<std::thread> threads;
    for (int w = 0; w < pool.workers; ++w) {
      threads.emplace_back([&, w] {
        for (index_t k = next.fetch_add(1); k < tasks; k = next.fetch_add(1)) {
          const index_t t = pool.reverse ? tasks - 1 - k : k;
          if (pool.fault == Fault::skip_last && t == tasks - 1) continue;
          if (pool.fault == Fault::skip_and_repeat && t == 1 && tasks > 1) continue;
          const int slot = pool.fault == Fault::bad_worker ? pool.workers : pool.fault == Fault::shared_slot ? 0 : w;
          task(loop, t, slot);
          if ((pool.fault == Fault::run_twice || pool.fault == Fault::skip_and_repeat) && t == 0 && tasks > 1)
            task(loop, t, w);
        }
      });
    }
    for (std::thread& t : threads) t.join();
  }
  Executor executor() { return Executor(&run, this, workers); }
};

// Features of n tokens, d dims: drifting clusters, so graphs have edges, non-trivial rows and a few duplicates.
RowMatrix<float> drifting_features(index_t n, index_t d, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  RowMatrix<float> x(n, d);
  Eigen::RowVectorXf drift = Eigen::RowVectorXf::Zero(d);
  for (index_t i = 0; i < n; ++i) {
    for (auto& v : drift) v += 0.3f * normal(rng);
    x.row(i) = drift;
    if (i % 50 == 7) x.row(i) = x.row(i - 1);  // exact duplicates go through the merging path
  }
  return x;
}

struct Answer {
  std::vector<index_t> kept;
  std::vector<float> scores;
};

Answer prune_with(const Executor& executor, const RowMatrix<float>& x, index_t max_dense_tokens) {
  GPrune pruner(GPruneConfig{.max_dense_tokens = max_dense_tokens});
  pruner.set_executor(executor);
  pruner.reserve(x.rows(), x.cols());
  const auto kept = pruner.prune(PruneInputs{.features = x}, Budget::ratio(0.3));
  return {{kept.begin(), kept.end()}, {pruner.scores().begin(), pruner.scores().end()}};
}

}  // namespace

TEST_CASE("executor: an engine's thread pool gives bitwise the answers of the calling thread", "[concurrency][executor]") {
  // 600 x 128: three Gram panels (six tiles) and row loops above the parallel threshold (n d >= 65536).
  const RowMatrix<float> x = drifting_features(600, 128, 5);
  for (const index_t max_dense : {index_t{8192}, index_t{0}}) {  // dense rows, then the sparse panel path
    INFO("max_dense_tokens " << max_dense);
    const Answer sequential = prune_with(Executor::sequential(), x, max_dense);
    REQUIRE(sequential.kept.size() == 180);
    CHECK(prune_with(Executor{}, x, max_dense).kept == sequential.kept);  // OpenMP or calling thread
    for (const int workers : {1, 2, 3}) {
      for (const bool reverse : {false, true}) {
        INFO("workers " << workers << ", reverse " << reverse);
        ThreadPool pool{.workers = workers, .reverse = reverse};
        const Answer pooled = prune_with(pool.executor(), x, max_dense);
        CHECK(pooled.kept == sequential.kept);
        CHECK(pooled.scores == sequential.scores);
      }
    }
  }
}

TEST_CASE("executor: a pool that breaks the contract gets an error, not corrupted memory", "[concurrency][executor]") {
  const RowMatrix<float> x = drifting_features(600, 128, 6);
  using Fault = ThreadPool::Fault;
  for (const Fault fault : {Fault::skip_last, Fault::bad_worker, Fault::run_twice, Fault::skip_and_repeat,
                            Fault::shared_slot}) {
    INFO("fault " << static_cast<int>(fault));
    ThreadPool pool{.workers = 2, .fault = fault};
    GPrune pruner;
    pruner.set_executor(pool.executor());
    pruner.reserve(x.rows(), x.cols());
    // Two tasks sharing a slot are seen only while both run: the pool starts them together, and a whole prune
    // has dozens of such pairs, so a few prunes suffice on the slowest machine (every other fault is seen at once).
    const int attempts = fault == Fault::shared_slot ? 50 : 1;
    bool noticed = false;
    for (int attempt = 0; attempt < attempts && !noticed; ++attempt) {
      try {
        pruner.prune(PruneInputs{.features = x}, Budget::ratio(0.3));
      } catch (const Error& e) {
        CHECK(e.argument() == "executor");
        noticed = true;
      }
    }
    CHECK(noticed);
    // The same pruner works again with a sound executor.
    pruner.set_executor(Executor::sequential());
    CHECK(pruner.prune(PruneInputs{.features = x}, Budget::ratio(0.3)).size() == 180);
  }
  ThreadPool pool;
  try {
    (void)Executor(nullptr, &pool, 2);
    FAIL("a null run function was accepted");
  } catch (const Error& e) {
    CHECK(e.argument() == "executor.run");
  }
  try {
    (void)Executor(&ThreadPool::run, &pool, 0);
    FAIL("zero workers were accepted");
  } catch (const Error& e) {
    CHECK(e.argument() == "executor.workers");
    CHECK(e.value() == "0");
  }
}

TEST_CASE("executor: FoPru's head groups on an engine's pool give bitwise the answers of the calling thread",
          "[concurrency][executor]") {
  // 11 heads (8 uneven head groups) x 96 x 96: above the parallel threshold (heads n^2 >= 65536).
  const index_t heads = 11, n = 96;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  std::vector<float> maps(static_cast<std::size_t>(heads * n * n));
  for (float& a : maps) a = normal(rng);  // raw logits: both axes compete
  std::vector<Eigen::half> half_maps(maps.size());
  for (std::size_t i = 0; i < maps.size(); ++i) half_maps[i] = Eigen::half(maps[i]);

  auto run = [&](const Executor& executor, const AttentionMaps& attention) {
    FoPru pruner;
    pruner.set_executor(executor);
    pruner.reserve(n, 0);
    PruneInputs inputs;
    inputs.attention = attention;
    const auto kept = pruner.prune(inputs, Budget::count(30));
    return Answer{{kept.begin(), kept.end()}, {pruner.scores().begin(), pruner.scores().end()}};
  };
  for (const bool fp16 : {false, true}) {
    INFO("fp16 " << fp16);
    const AttentionMaps attention = fp16 ? AttentionMaps(half_maps.data(), heads, n) : AttentionMaps(maps.data(), heads, n);
    const Answer sequential = run(Executor::sequential(), attention);
    REQUIRE(sequential.kept.size() == 30);
    CHECK(run(Executor{}, attention).scores == sequential.scores);
    for (const int workers : {2, 3}) {
      ThreadPool pool{.workers = workers, .reverse = true};
      const Answer pooled = run(pool.executor(), attention);
      CHECK(pooled.kept == sequential.kept);
      CHECK(pooled.scores == sequential.scores);
    }
  }

  // A NaN in two head groups: the error names the first one in (head, query, key) order, whichever thread saw it.
  maps[static_cast<std::size_t>((9 * n + 5) * n + 7)] = std::numeric_limits<float>::quiet_NaN();
  maps[static_cast<std::size_t>((2 * n + 40) * n + 3)] = std::numeric_limits<float>::quiet_NaN();
  ThreadPool pool{.workers = 3, .reverse = true};
  try {
    run(pool.executor(), AttentionMaps(maps.data(), heads, n));
    FAIL("a NaN in the maps was accepted");
  } catch (const Error& e) {
    CHECK(e.argument() == "attention[2,40,3]");
  }
}
