// With Executor::sequential() or an engine's pool, tokenprune never starts a thread of its own (no OpenMP team),
// in an OpenMP build: counted in /proc/self/task, in a process of its own so that nothing else started OpenMP
// first. A control run with the default executor must start threads, which shows the count works.
// Exit 0 = pass.
#include <tokenprune/tokenprune.hpp>

#include <cstdio>
#include <filesystem>
#include <random>
#include <vector>

namespace tp = tokenprune;

namespace {
int threads() {
  int count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) ++count;
  return count;
}

int failures = 0;
void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("threads_check: FAILED: %s (threads now %d)\n", what, threads());
    ++failures;
  }
}

struct CallingThreadPool {  // an engine pool that happens to run everything inline
  static void run(void*, tp::index_t tasks, tp::Executor::Task task, void* loop) {
    for (tp::index_t t = 0; t < tasks; ++t) task(loop, t, static_cast<int>(t % 2));
  }
};
}  // namespace

int main() {
  const tp::index_t n = 700, d = 64, heads = 8, m = 300;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  tp::RowMatrix<float> x(n, d);
  for (auto& v : x.reshaped()) v = normal(rng);
  std::vector<float> maps(static_cast<std::size_t>(heads * m * m));
  for (auto& v : maps) v = std::abs(normal(rng));
  tp::PruneInputs features, attention;
  features.features = tp::TokenMatrix(x);
  attention.attention = tp::AttentionMaps(maps.data(), heads, m);

  expect(threads() == 1, "the process starts with one thread");
  for (const tp::Executor& executor : {tp::Executor::sequential(), tp::Executor(&CallingThreadPool::run, nullptr, 2)}) {
    tp::GPrune gprune;
    gprune.set_executor(executor);
    gprune.reserve(n, d);
    gprune.prune(features, tp::Budget::ratio(0.25));
    tp::FoPru fopru;
    fopru.set_executor(executor);
    fopru.reserve(m, 0);
    fopru.prune(attention, tp::Budget::count(30));
    expect(threads() == 1, executor.is_pool() ? "pool executor started a thread" : "sequential executor started a thread");
  }
#if defined(_OPENMP)
  tp::GPrune automatic;  // control: the default executor uses the OpenMP team (OMP_NUM_THREADS=2 from ctest)
  automatic.prune(features, tp::Budget::ratio(0.25));
  expect(threads() > 1, "control: the default executor started no OpenMP thread, so the count proves nothing");
#else
  std::puts("threads_check: built without OpenMP, no control run");
#endif
  std::printf("threads_check: %s\n", failures == 0 ? "OK" : "FAILED");
  return failures == 0 ? 0 : 1;
}
