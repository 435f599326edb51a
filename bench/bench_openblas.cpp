// The OpenBLAS floor of the Gram: cblas_ssyrk of the same unit rows that BM_Gram / BM_GPrune compute on.
//
//   BM_SyrkOpenBLAS/<case>     cblas_ssyrk(RowMajor, Lower, NoTrans, n, d, 1, U, d, 0, G, n), OpenBLAS on 1 thread
//   BM_SyrkOpenBLAS2T/<case>   the same on 2 OpenBLAS threads (openblas_set_num_threads(2))
//
// The thread counts are fixed, as for BM_SyrkFloor (1 thread) and BM_SyrkFloor2T (2 std::threads): whatever
// OMP_NUM_THREADS says, so run the library with OMP_NUM_THREADS=1 / 2 to compare like with like. This is the
// floor that counts (an optimized BLAS on the same machine and build); the Eigen SYRK floors in
// bench_gprune.cpp stay for reference.
//
// Cases as in bench_gprune.cpp: llava15_d1024 (576 x 1024), llava15_d4096 (576 x 4096), qwen2vl_d3584
// (1296 x 3584) and next_d4096 (the two Grams of LLaVA-NeXT, 576 x 4096 and 2304 x 4096, in one iteration).
// GFLOP/s as for BM_Gram: n(n+1)/2 * d * 2 per Gram.
//
// Built only when CMake found OpenBLAS (TOKENPRUNE_HAVE_OPENBLAS; Debian: libopenblas-dev). Only this
// benchmark executable links OpenBLAS; the library never uses it. With the pthread build of OpenBLAS, its
// worker threads spin for a short while (OPENBLAS_THREAD_TIMEOUT, ~0.1 s by default) after a 2-thread call
// before they sleep, which the next benchmark in the same process may see as noise.

#if defined(TOKENPRUNE_HAVE_OPENBLAS)

#include "bench_data.hpp"

#include <benchmark/benchmark.h>

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace tokenprune::bench {

// OpenBLAS's build and the core it selected, for the benchmark context (called from bench_main.cpp).
void add_openblas_context() {
  benchmark::AddCustomContext("openblas_config", openblas_get_config());
  benchmark::AddCustomContext("openblas_core", openblas_get_corename());
}

}  // namespace tokenprune::bench

namespace {

using namespace tokenprune;
namespace tb = tokenprune::bench;

void ssyrk_lower(const RowMatrix<float>& u, std::vector<float>& g) {
  const auto n = static_cast<blasint>(u.rows()), d = static_cast<blasint>(u.cols());
  cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, n, d, 1.0f, u.data(), d, 0.0f, g.data(), n);
}

// Checks (once, outside the timing) a few lower-triangle entries against plain dot products, so the layout
// arguments above are known to compute U U^T and not something of another size. Empty string when fine.
std::string check(const RowMatrix<float>& u, const std::vector<float>& g) {
  const index_t n = u.rows();
  const index_t rows[] = {0, n / 3, n / 2, n - 1};
  for (index_t i : rows)
    for (index_t j : {index_t{0}, i / 2, i}) {
      const double expected = u.row(i).cast<double>().dot(u.row(j).cast<double>());
      const double got = g[static_cast<std::size_t>(i * n + j)];
      if (!(std::abs(got - expected) <= 1e-4 * std::max(1.0, std::abs(expected))))
        return "cblas_ssyrk G(" + std::to_string(i) + "," + std::to_string(j) + ") = " + std::to_string(got) +
               ", expected " + std::to_string(expected);
    }
  return {};
}

void syrk_openblas(benchmark::State& state, const std::string& name, int threads) {
  const std::vector<RowMatrix<float>>& units = tb::unit_graphs(name);
  std::vector<std::vector<float>> grams;
  double flops = 0.0, tokens = 0.0;
  for (const auto& u : units) {
    grams.emplace_back(static_cast<std::size_t>(u.rows() * u.rows()), 0.0f);
    flops += tb::gram_flops(u.rows(), u.cols());
    tokens += static_cast<double>(u.rows());
  }
  openblas_set_num_threads(threads);
  for (std::size_t i = 0; i < units.size(); ++i) {
    ssyrk_lower(units[i], grams[i]);
    if (const std::string error = check(units[i], grams[i]); !error.empty()) {
      openblas_set_num_threads(1);
      state.SkipWithError(error.c_str());
      return;
    }
  }
  for (auto _ : state) {
    for (std::size_t i = 0; i < units.size(); ++i) {
      ssyrk_lower(units[i], grams[i]);
      benchmark::DoNotOptimize(grams[i].data());
    }
    benchmark::ClobberMemory();
  }
  state.counters["threads"] = openblas_get_num_threads();
  openblas_set_num_threads(1);  // nothing else in the process uses OpenBLAS; keep its threads idle
  tb::set_gflops(state, flops);
  tb::set_tokens(state, tokens);
  std::string label = name + " OpenBLAS " + std::to_string(threads) + (threads == 1 ? " thread" : " threads");
  if (units.size() == 2) label += " (Grams 576 + 2304 summed)";
  state.SetLabel(label);
}

const bool registered = [] {
  for (const std::string& c : tb::gram_case_names()) {
    benchmark::RegisterBenchmark(("BM_SyrkOpenBLAS/" + c).c_str(),
                                 [c](benchmark::State& s) { syrk_openblas(s, c, 1); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("BM_SyrkOpenBLAS2T/" + c).c_str(),
                                 [c](benchmark::State& s) { syrk_openblas(s, c, 2); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  return true;
}();

}  // namespace

#endif  // TOKENPRUNE_HAVE_OPENBLAS
