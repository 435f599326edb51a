// G-Prune on video-scale graphs (issue 9): dense and sparse graphs of 64 frames, beside the OpenBLAS SYRK floor.
//
//   BM_GPruneVideoGraph/<case>    GPrune (default config: the tiled path within max_graph_bytes) on one flat
//                                 video graph. Counters: mean_degree, graph_MB (stored tiles), stored_panels of
//                                 panels, and peak_RSS_MB (getrusage: the whole process so far, so run one case
//                                 per process to read it, e.g. with --benchmark_filter='...case$')
//   BM_GPruneVideoVsFloor/<case>  (OpenBLAS builds) the same select and cblas_ssyrk of the same unit rows on the
//                                 same threads, interleaved in every iteration; the reported time is the select's
//                                 (manual time), counters floor_s (SYRK seconds) and ratio (select / SYRK, sums
//                                 over the iterations), so machine noise hits both sides alike. OpenBLAS runs on
//                                 OMP_NUM_THREADS threads (default 2), like the library's OpenMP Gram.
//
// Cases (seconds each; select them with --benchmark_filter=VideoGraph or VsFloor, exclude them with
// --benchmark_filter=-Video, as bench_gprune.cpp's BM_GPruneVideo):
//   dense_64x512_d256_tau0.5    64 frames x 512 tokens, d 256, bench/video_features.hpp (a static scene of ten
//                               regions): ~5,800 neighbours per token at tau 0.5
//   dense_64x512_d256_tau0.05   the same features at tau 0.05 (~60% of all pairs are edges)
//   dense_64x576_d1024_tau0.5   the dense scene at 64 x 576 (24 x 24), d 1024
//   sparse_64x576_d1024_tau0.5  bench_data.hpp's drifting image features, 64 x 576, d 1024 (few hundred
//                               neighbours per token: the "sparse video case")
//   sparse_64x512_d256_tau0.5   the same generator at 64 x 512 (16 x 32), d 256

#include "bench_data.hpp"
#include "video_features.hpp"

#include <tokenprune/tokenprune.hpp>

#include <benchmark/benchmark.h>

#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#if defined(TOKENPRUNE_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace {

using namespace tokenprune;
namespace tb = tokenprune::bench;

struct VideoCase {
  const char* name;
  bool dense;  // make_dense_video, else make_features
  index_t frames, rows, cols, dim;
  double tau;
};

constexpr VideoCase kVideoCases[] = {
    {"dense_64x512_d256_tau0.5", true, 64, 16, 32, 256, 0.5},
    {"dense_64x512_d256_tau0.05", true, 64, 16, 32, 256, 0.05},
    {"dense_64x576_d1024_tau0.5", true, 64, 24, 24, 1024, 0.5},
    {"sparse_64x576_d1024_tau0.5", false, 64, 24, 24, 1024, 0.5},
    {"sparse_64x512_d256_tau0.5", false, 64, 16, 32, 256, 0.5},
};

const tb::FeatureMatrix& video_features(const VideoCase& c) {
  return tb::cached<std::tuple<bool, index_t, index_t, index_t, index_t>, tb::FeatureMatrix>(
      std::tuple{c.dense, c.frames, c.rows, c.cols, c.dim}, [&] {
        return c.dense ? tb::make_dense_video(c.frames, c.rows, c.cols, c.dim, 12345)
                       : tb::make_features(c.frames, c.rows, c.cols, c.dim, 12345);
      });
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB on Linux
}

void set_graph_counters(benchmark::State& state, const GPrune& pruner) {
  double total = 0.0;
  for (index_t d : pruner.degrees()) total += static_cast<double>(d);
  state.counters["mean_degree"] = total / static_cast<double>(pruner.degrees().size());
  const kernels::GraphStorage& storage = pruner.graph_storage();
  state.counters["graph_MB"] = static_cast<double>(storage.bytes) / (1024.0 * 1024.0);
  state.counters["stored_panels"] = static_cast<double>(storage.stored_panels);
  state.counters["panels"] = static_cast<double>(storage.panels);
  state.counters["peak_RSS_MB"] = peak_rss_mb();
}

void gprune_video_graph(benchmark::State& state, const VideoCase& c) {
  const tb::FeatureMatrix& x = video_features(c);
  const index_t n = x.rows();
  GPrune pruner(GPruneConfig{.threshold = c.tau});
  pruner.reserve(n, x.cols());
  PruneInputs inputs;
  inputs.features = TokenMatrix(x);
  for (auto _ : state) {
    std::span<const index_t> kept = pruner.prune(inputs, Budget::ratio(0.5));
    benchmark::DoNotOptimize(kept.data());
    benchmark::ClobberMemory();
  }
  tb::set_gflops(state, tb::gram_flops(n, x.cols()));
  set_graph_counters(state, pruner);
  state.SetLabel(std::string(c.name) + " n=" + std::to_string(n));
}

#if defined(TOKENPRUNE_HAVE_OPENBLAS)
void gprune_video_vs_floor(benchmark::State& state, const VideoCase& c) {
  const tb::FeatureMatrix& x = video_features(c);
  const index_t n = x.rows(), d = x.cols();
  GPrune pruner(GPruneConfig{.threshold = c.tau});
  pruner.reserve(n, d);
  PruneInputs inputs;
  inputs.features = TokenMatrix(x);
  std::vector<float> unit(static_cast<std::size_t>(n * d));
  for (index_t i = 0; i < n; ++i) {
    const float norm = x.row(i).norm();
    for (index_t k = 0; k < d; ++k) unit[static_cast<std::size_t>(i * d + k)] = x(i, k) / norm;
  }
  std::vector<float> gram(static_cast<std::size_t>(n) * static_cast<std::size_t>(n));  // lower triangle written
  const char* threads = std::getenv("OMP_NUM_THREADS");
  openblas_set_num_threads(threads != nullptr ? std::atoi(threads) : 2);
  double select_total = 0.0, floor_total = 0.0;
  using clock = std::chrono::steady_clock;
  for (auto _ : state) {
    const auto t0 = clock::now();
    std::span<const index_t> kept = pruner.prune(inputs, Budget::ratio(0.5));
    benchmark::DoNotOptimize(kept.data());
    const auto t1 = clock::now();
    cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, static_cast<int>(n), static_cast<int>(d), 1.0f, unit.data(),
                static_cast<int>(d), 0.0f, gram.data(), static_cast<int>(n));
    benchmark::DoNotOptimize(gram.data());
    const auto t2 = clock::now();
    const double select = std::chrono::duration<double>(t1 - t0).count();
    select_total += select;
    floor_total += std::chrono::duration<double>(t2 - t1).count();
    state.SetIterationTime(select);
  }
  state.counters["floor_s"] = floor_total / static_cast<double>(state.iterations());
  state.counters["ratio"] = select_total / floor_total;
  set_graph_counters(state, pruner);
  state.SetLabel(std::string(c.name) + " n=" + std::to_string(n) + " vs cblas_ssyrk");
}
#endif

const bool registered = [] {
  for (const VideoCase& c : kVideoCases) {
    benchmark::RegisterBenchmark((std::string("BM_GPruneVideoGraph/") + c.name).c_str(),
                                 [c](benchmark::State& s) { gprune_video_graph(s, c); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->Iterations(2);
#if defined(TOKENPRUNE_HAVE_OPENBLAS)
    benchmark::RegisterBenchmark((std::string("BM_GPruneVideoVsFloor/") + c.name).c_str(),
                                 [c](benchmark::State& s) { gprune_video_vs_floor(s, c); })
        ->Unit(benchmark::kMillisecond)
        ->UseManualTime()
        ->Iterations(2);
#endif
  }
  return true;
}();

}  // namespace
