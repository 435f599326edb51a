// An engine that runs its own thread pool hands it to G-Prune through an Executor, so pruning uses the engine's
// threads instead of starting OpenMP threads beside them. The answer is bitwise the one computed on the calling
// thread. Exit code 0 = success.

#include <tokenprune/tokenprune.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

namespace tp = tokenprune;

// Stands for the engine's pool: here, std::threads that claim tasks from a shared counter.
struct EnginePool {
  int threads = 4;
  static void run(void* self, tp::index_t tasks, tp::Executor::Task task, void* loop) {
    auto& pool = *static_cast<EnginePool*>(self);
    std::atomic<tp::index_t> next{0};
    std::vector<std::jthread> workers;
    for (int w = 0; w < pool.threads; ++w)
      workers.emplace_back([&, w] {
        for (auto t = next++; t < tasks; t = next++) task(loop, t, w);
      });
  }  // the jthreads join here
};

int main() {
  constexpr tp::index_t n = 1024, dim = 256;  // large enough that the Gram and the row loops go parallel
  tp::RowMatrix<float> features(n, dim);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  Eigen::RowVectorXf drift = Eigen::RowVectorXf::Zero(dim);
  for (tp::index_t i = 0; i < n; ++i) {  // stand-in for the encoder: neighbouring patches look alike
    for (auto& v : drift) v += 0.25f * normal(rng);
    features.row(i) = drift;
  }
  const tp::PruneInputs inputs{.features = features};

  EnginePool pool;
  tp::GPrune pooled;
  pooled.set_executor(tp::Executor(&EnginePool::run, &pool, pool.threads));
  pooled.reserve(n, dim);  // after set_executor: the OpenMP team is not started for a pool
  const auto kept = pooled.prune(inputs, tp::Budget::ratio(0.25));

  tp::GPrune alone;
  alone.set_executor(tp::Executor::sequential());
  const auto reference = alone.prune(inputs, tp::Budget::ratio(0.25));

  const bool same = std::equal(kept.begin(), kept.end(), reference.begin(), reference.end()) &&
                    std::equal(pooled.scores().begin(), pooled.scores().end(), alone.scores().begin());
  std::printf("g-prune on %d pool threads: kept %zu of %lld tokens; same tokens and scores as the calling thread: %s\n",
              pool.threads, kept.size(), static_cast<long long>(n), same ? "yes" : "NO");
  return same ? 0 : 1;
}
