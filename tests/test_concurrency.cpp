// Separate pruner instances used from several threads at once give exactly the answers of a sequential run.
// Run under ThreadSanitizer in CI (scripts/test.sh), where it also shows that instances share no state.

#include "catch.hpp"

#include <tokenprune/tokenprune.hpp>

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
