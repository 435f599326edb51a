// Kernel benchmarks: the pieces G-Prune is built from, each alone.
//
//   BM_Gram/<case>              kernels::GramWorkspace::lower_gram, whole lower triangle into an n x n buffer,
//                               no-op tile callback: the library's Gram, to compare with BM_SyrkOpenBLAS(2T)
//                               (bench_openblas.cpp, the floor that counts) and BM_SyrkFloor(2T) (Eigen)
//   BM_Normalize/<case>/<dtype> kernels::normalize_rows (widening, NaN/Inf check, norm in double, divide)
//   BM_Propagate/<n>            kernels::propagate over the dense lower triangle of E, 5 iterations
//   BM_TopK/<n>                 kernels::top_k_ascending, k = n / 2, random scores
//
// Cases as in bench_gprune.cpp (next_d4096 = the two Grams of 576 and 2304 tokens, d 4096).

#include "bench_data.hpp"

#include <tokenprune/tokenprune.hpp>

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

namespace {

using namespace tokenprune;
namespace tb = tokenprune::bench;
using tb::dtype_tag;

ConstRowMap<float> view(const RowMatrix<float>& u) {
  return ConstRowMap<float>(u.data(), u.rows(), u.cols(), Eigen::OuterStride<>(u.cols()));
}

void gram(benchmark::State& state, const std::string& name) {
  const std::vector<RowMatrix<float>>& units = tb::unit_graphs(name);
  index_t max_n = 0, max_d = 0;
  double flops = 0.0, tokens = 0.0;
  for (const auto& u : units) {
    max_n = std::max<index_t>(max_n, u.rows());
    max_d = std::max<index_t>(max_d, u.cols());
    flops += tb::gram_flops(u.rows(), u.cols());
    tokens += static_cast<double>(u.rows());
  }
  kernels::GramWorkspace workspace;
  workspace.reserve(max_n, max_d);
  std::vector<float> out(static_cast<std::size_t>(max_n * max_n));
  for (auto _ : state) {
    for (const auto& u : units) {
      const index_t ld = u.rows();
      workspace.lower_gram(
          view(u), ld, true, [&](index_t i0) { return out.data() + i0 * ld; },
          [](float*, index_t, index_t, index_t, index_t, index_t) {}, [](index_t, index_t) {});
      benchmark::DoNotOptimize(out.data());
    }
    benchmark::ClobberMemory();
  }
  tb::set_gflops(state, flops);
  tb::set_tokens(state, tokens);
  state.counters["threads"] = Executor{}.workers();
  state.SetLabel(name + (units.size() == 2 ? " (Grams 576 + 2304 summed)" : ""));
}

template <Element T>
void normalize(benchmark::State& state, const std::string& name) {
  const RowMatrix<T>& x = name == tb::kNextName ? tb::next_features<T>(tb::kNextGrid, tb::kNextGrid, tb::kNextDim)
                                                : tb::image_features<T>(1, tb::kLlava15D1024.side, tb::kLlava15D1024.dim);
  const index_t n = x.rows(), d = x.cols();
  std::vector<float> unit(static_cast<std::size_t>(n * d)), norms(static_cast<std::size_t>(n));
  const ConstRowMap<T> input(x.data(), n, d, Eigen::OuterStride<>(d));
  for (auto _ : state) {
    kernels::normalize_rows(input, RowMap<float>(unit.data(), n, d, Eigen::OuterStride<>(d)), norms, "features");
    benchmark::DoNotOptimize(unit.data());
    benchmark::DoNotOptimize(norms.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * d * static_cast<std::int64_t>(sizeof(T)));
  tb::set_tokens(state, static_cast<double>(n));
  state.SetLabel(name + " " + dtype_tag<T>() + " n=" + std::to_string(n));
}

// Dense E (whole rows: lower tiles mirrored, as GPrune stores it) of one graph built with the library's own kernels, then only propagate() is timed.
void propagate(benchmark::State& state, const std::string& name, std::size_t graph) {
  const RowMatrix<float>& u = tb::unit_graphs(name)[graph];
  const index_t n = u.rows();
  const auto un = static_cast<std::size_t>(n);
  std::vector<float> weights(un * un), norms(un);
  std::vector<double> v(un), share(un);  // propagated mass and mass per unit weight (double, as GPrune keeps them)
  for (index_t i = 0; i < n; ++i) norms[static_cast<std::size_t>(i)] = 1.0f;  // unit rows: every token non-zero
  const kernels::EdgeRule rule{0.5f, 0.03f};
  const kernels::KernelTable& level = kernels::active_kernels();
  kernels::GramWorkspace workspace;
  workspace.reserve(n, u.cols());
  workspace.lower_gram(
      view(u), n, true, [&](index_t i0) { return weights.data() + i0 * n; },
      [&](float* tile, index_t i0, index_t j0, index_t h, index_t w, index_t ld) {
        rule.apply(tile, i0, j0, h, w, ld, norms, level);
        for (index_t a = 0; a < h; ++a)  // mirror, as GPrune does
          for (index_t b = 0; b < (i0 == j0 ? a : w); ++b) weights[static_cast<std::size_t>((j0 + b) * n + i0 + a)] = tile[a * ld + b];
      },
      [](index_t, index_t) {});
  // Every token its own node (no duplicate tokens in this data): multiplicity 1.
  const std::vector<index_t> multiplicity(un, 1);
  auto dense_row = [&](index_t i, auto visit) { visit(nullptr, weights.data() + i * n, n); };
  kernels::NeighbourStats stats;
  stats.compute(n, n, dense_row, multiplicity, level);
  constexpr int kIterations = 5;
  for (auto _ : state) {
    std::fill(v.begin(), v.end(), 1.0);
    kernels::propagate(n, n, dense_row, stats.rowsum, multiplicity, kIterations, v, share, level);
    benchmark::DoNotOptimize(v.data());
    benchmark::ClobberMemory();
  }
  // Each iteration streams the stored lower triangle once.
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * kIterations *
                          static_cast<std::int64_t>(tb::gram_flops(n, 1) / 2.0 * sizeof(float)));
  tb::set_tokens(state, static_cast<double>(n));
  state.SetLabel(name + " graph n=" + std::to_string(n) + " dense, " + std::to_string(kIterations) + " iterations");
}

void top_k(benchmark::State& state, index_t n) {
  tb::Rng rng(tb::kSeed + static_cast<std::uint64_t>(n));
  std::vector<float> scores(static_cast<std::size_t>(n));
  for (float& s : scores) s = static_cast<float>(rng.uniform());
  std::vector<index_t> scratch(static_cast<std::size_t>(n)), out(static_cast<std::size_t>(n));
  const index_t k = n / 2;
  for (auto _ : state) {
    kernels::top_k_ascending(std::span<const float>(scores), k, std::span<index_t>(scratch), std::span<index_t>(out));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  tb::set_tokens(state, static_cast<double>(n));
  state.SetLabel("n=" + std::to_string(n) + " k=" + std::to_string(k));
}

template <Element T>
void register_normalize(const std::string& name) {
  benchmark::RegisterBenchmark(("BM_Normalize/" + name + "/" + dtype_tag<T>()).c_str(),
                               [name](benchmark::State& s) { normalize<T>(s, name); })
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
}

const bool registered = [] {
  for (const std::string& name : tb::gram_case_names())
    benchmark::RegisterBenchmark(("BM_Gram/" + name).c_str(), [name](benchmark::State& s) { gram(s, name); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();

  register_normalize<float>(tb::kLlava15D1024.name);
  register_normalize<float>(tb::kNextName);
  register_normalize<Eigen::half>(tb::kNextName);
  register_normalize<Eigen::bfloat16>(tb::kNextName);

  // Graph sizes: 576 (LLaVA-1.5), 1296 (Qwen2-VL-like), 2304 (the NeXT grid).
  const std::pair<std::string, std::size_t> graphs[] = {
      {tb::kLlava15D4096.name, 0}, {tb::kQwen2VL.name, 0}, {tb::kNextName, 1}};
  for (const auto& [name, graph] : graphs) {
    const index_t n = tb::kNextName == name && graph == 1 ? tb::kNextGrid * tb::kNextGrid
                      : name == tb::kQwen2VL.name        ? tb::kQwen2VL.side * tb::kQwen2VL.side
                                                         : tb::kLlava15D4096.side * tb::kLlava15D4096.side;
    benchmark::RegisterBenchmark(("BM_Propagate/" + std::to_string(n)).c_str(),
                                 [name, graph](benchmark::State& s) { propagate(s, name, graph); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }

  for (index_t n : {index_t{2928}, index_t{36864}})
    benchmark::RegisterBenchmark(("BM_TopK/" + std::to_string(n)).c_str(), [n](benchmark::State& s) { top_k(s, n); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  return true;
}();

}  // namespace
