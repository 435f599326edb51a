// G-Prune benchmarks and their in-process baselines (SPEC 5: speed as ratios against a baseline run in the same
// process).
//
//   BM_GPrune/<case>/<dtype>       the library (GPrune; NeXT: Segmented<GPrune> + LlavaNextLayout(48, 48, 0.5))
//   BM_GPruneNaive/<case>          the published computation, dense, in plain Eigen: normalize, full GEMM Gram,
//                                  dense P (softmax with -5000 non-edge logits), P^m by binary powering (as
//                                  torch.linalg.matrix_power: 3 products for m = 5), w P^m, / degree, top-k
//   BM_SyrkFloor/<case>            Eigen SYRK (selfadjointView<Lower>().rankUpdate) of the same unit rows, single-
//                                  threaded (Eigen does not parallelize it). For reference: the floor that counts
//                                  is OpenBLAS's, BM_SyrkOpenBLAS / BM_SyrkOpenBLAS2T in bench_openblas.cpp
//   BM_SyrkFloor2T/<case>          the same lower triangle split over 2 std::threads with balanced work, to
//                                  compare with the library running 2 OpenMP threads
//   BM_GPruneVideo/<frames>_d1024  16/32/64 frames x 576 tokens, one flat graph (the sparse path). Large
//                                  (64 frames: ~1.4 TFLOP); exclude them with --benchmark_filter=-Video
//
// Cases: llava15_d1024 (576 x 1024), llava15_d4096 (576 x 4096), qwen2vl_d3584 (1296 x 3584),
// next_d4096 (LLaVA-NeXT anyres: 576 + 48 x 48 grid + 48 newlines = 2928 tokens, d 4096; two graphs of 576 and
// 2304 tokens). GFLOP/s counts the useful work, the lower-triangle Gram(s), n(n+1)/2 * d * 2 flops, for every
// benchmark of a case (so the naive baseline's GFLOP/s is "effective", not what it executes).
//
// Every G-Prune benchmark with a naive counterpart first checks (outside the timing) that the library selects
// exactly what the naive implementation selects on the same data (fp16/bf16: the naive one on the widened
// values), and reports an error instead of a time if not.
//
// All benchmarks use real time (the library's Gram runs on OpenMP threads when built with -fopenmp).

#include "bench_data.hpp"

#include <tokenprune/tokenprune.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace tokenprune;
namespace tb = tokenprune::bench;

constexpr double kRatio = 0.5;

// ---------------------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------------------

using tb::FlatCase;
using tb::kFlatCases;
using tb::kLlava15D1024;
using tb::kLlava15D4096;
using tb::kQwen2VL;
using tb::kNextName;
using tb::kNextGrid;
using tb::kNextDim;
using tb::dtype_tag;

// ---------------------------------------------------------------------------------------------------------
// Naive baseline: the published computation, dense, with its buffers allocated once (Eigen's GEMM still
// allocates its own packing buffers per product; that is part of "naive").
// ---------------------------------------------------------------------------------------------------------

class NaiveGPrune {
 public:
  explicit NaiveGPrune(GPruneConfig config = {}) : config_(config) {}

  void reserve(index_t n, index_t d) {
    unit_.resize(n, d);
    s_.resize(n, n);
    z_.resize(n, n);
    result_.resize(n, n);
    tmp_.resize(n, n);
    norms_.resize(n);
    v_.resize(n);
    degree_.resize(n);
    order_.resize(static_cast<std::size_t>(n));
    kept_.resize(static_cast<std::size_t>(n));
  }

  std::span<const index_t> prune(const Eigen::Ref<const RowMatrix<float>>& x, index_t k) {
    const index_t n = x.rows();
    const auto tau = static_cast<float>(config_.threshold);
    const auto temperature = static_cast<float>(config_.temperature);
    // F.normalize(x, dim=-1) and the norms w.
    norms_ = x.rowwise().norm();
    unit_ = x.array().colwise() / norms_.array().max(1e-12f);
    // s = u u^T, the full square (GEMM).
    s_.noalias() = unit_ * unit_.transpose();
    // P = softmax(where(s >= tau, s / T, -5000), dim=-1), in place in s_.
    for (index_t i = 0; i < n; ++i) {
      auto row = s_.row(i).array();
      const Eigen::Array<bool, 1, Eigen::Dynamic> edge = row >= tau;
      row = edge.select(row / temperature, -5000.0f);
      const float row_max = row.maxCoeff();
      // exp(-5000 - max) is exactly 0 in PyTorch; Eigen's SSE2 exp clamps its argument at about -88 and returns a
      // tiny positive value instead, which would count every non-edge in the degree below.
      row = edge.select((row - row_max).exp(), 0.0f);
      if (!edge.any()) row = (row - row_max).exp();  // a zero token: all logits -5000, P uniform as in PyTorch
      row /= row.sum();
      degree_[i] = static_cast<float>((row > 0.0f).count());
    }
    // P^m, binary powering as torch.linalg.matrix_power.
    matrix_power(config_.iterations);
    // v = w P^m; score = v / degree.
    if (config_.iterations == 0) {
      v_ = norms_.transpose();
    } else {
      v_.noalias() = norms_.transpose() * result_;
    }
    v_.array() /= degree_.transpose().array();
    // top-k (score descending, lower index first), ascending output.
    std::iota(order_.begin(), order_.begin() + n, index_t{0});
    auto before = [this](index_t a, index_t b) { return v_[a] > v_[b] || (v_[a] == v_[b] && a < b); };
    std::partial_sort(order_.begin(), order_.begin() + k, order_.begin() + n, before);
    std::copy_n(order_.begin(), k, kept_.begin());
    std::sort(kept_.begin(), kept_.begin() + k);
    return {kept_.data(), static_cast<std::size_t>(k)};
  }

  [[nodiscard]] std::span<const float> scores() const { return {v_.data(), static_cast<std::size_t>(v_.size())}; }

 private:
  // result_ = s_^m (s_ holds P): z = P, P^2, P^4, ...; multiply into result for every set bit of m.
  void matrix_power(int m) {
    bool have_z = false, have_result = false;
    while (m > 0) {
      const bool bit = (m & 1) != 0;
      m >>= 1;
      if (!have_z) {
        z_ = s_;
        have_z = true;
      } else {
        tmp_.noalias() = z_ * z_;
        z_.swap(tmp_);
      }
      if (bit) {
        if (!have_result) {
          result_ = z_;
          have_result = true;
        } else {
          tmp_.noalias() = result_ * z_;
          result_.swap(tmp_);
        }
      }
    }
  }

  GPruneConfig config_;
  RowMatrix<float> unit_, s_, z_, result_, tmp_;
  Eigen::VectorXf norms_, degree_;
  Eigen::RowVectorXf v_;
  std::vector<index_t> order_, kept_;
};

// The NeXT layout done naively: the base view and the gathered grid as two graphs, newlines kept.
class NaiveNext {
 public:
  void reserve(index_t grid_rows, index_t grid_cols, index_t dim) {
    base_.reserve(LlavaNextLayout::kBaseTokens, dim);
    grid_.reserve(grid_rows * grid_cols, dim);
    grid_x_.resize(grid_rows * grid_cols, dim);
    kept_.reserve(static_cast<std::size_t>(LlavaNextLayout::kBaseTokens + grid_rows * (grid_cols + 1)));
  }

  std::span<const index_t> prune(const RowMatrix<float>& x, index_t grid_rows, index_t grid_cols, double ratio) {
    const index_t nb = LlavaNextLayout::kBaseTokens;
    kept_.clear();
    for (index_t i : base_.prune(x.topRows(nb), static_cast<index_t>(std::floor(ratio * static_cast<double>(nb)))))
      kept_.push_back(i);
    for (index_t r = 0; r < grid_rows; ++r) grid_x_.middleRows(r * grid_cols, grid_cols) = x.middleRows(nb + r * (grid_cols + 1), grid_cols);
    const index_t ng = grid_rows * grid_cols;
    for (index_t g : grid_.prune(grid_x_, static_cast<index_t>(std::floor(ratio * static_cast<double>(ng))))) {
      const index_t r = g / grid_cols, c = g % grid_cols;
      kept_.push_back(nb + r * (grid_cols + 1) + c);
    }
    for (index_t r = 0; r < grid_rows; ++r) kept_.push_back(nb + r * (grid_cols + 1) + grid_cols);  // newlines
    std::sort(kept_.begin(), kept_.end());
    return kept_;
  }

 private:
  NaiveGPrune base_, grid_;
  RowMatrix<float> grid_x_;
  std::vector<index_t> kept_;
};

// Outcome of the library-vs-naive selection check, per benchmark name, computed once per process (Google
// Benchmark calls a benchmark function several times while it picks the iteration count).
template <class Compute>
const std::string& selection_check(const std::string& key, Compute compute) {
  return tb::cached<std::string, std::string>(key, compute);
}

std::string compare(std::span<const index_t> library, std::span<const index_t> naive) {
  if (library.size() != naive.size())
    return "selection size differs: library " + std::to_string(library.size()) + ", naive " + std::to_string(naive.size());
  std::size_t differ = 0;
  for (std::size_t i = 0; i < library.size(); ++i) differ += library[i] != naive[i];
  if (differ == 0) return {};
  std::vector<index_t> only;
  std::set_difference(library.begin(), library.end(), naive.begin(), naive.end(), std::back_inserter(only));
  return "library and naive selections differ (" + std::to_string(only.size()) + " of " +
         std::to_string(library.size()) + " kept tokens)";
}

// ---------------------------------------------------------------------------------------------------------
// Library benchmarks
// ---------------------------------------------------------------------------------------------------------

// Mean neighbour count, self included: shows that the synthetic graph is neither empty nor complete.
void set_degree_counter(benchmark::State& state, std::span<const index_t> degrees) {
  double total = 0.0;
  for (index_t d : degrees) total += static_cast<double>(d);
  state.counters["mean_degree"] = degrees.empty() ? 0.0 : total / static_cast<double>(degrees.size());
}

template <Element T>
void gprune_flat(benchmark::State& state, FlatCase c) {
  const RowMatrix<T>& x = tb::image_features<T>(1, c.side, c.dim);
  const index_t n = x.rows();
  GPrune pruner;
  pruner.reserve(n, c.dim);
  PruneInputs inputs;
  inputs.features = TokenMatrix(x);
  const Budget budget = Budget::ratio(kRatio);

  const std::string& error = selection_check(std::string(c.name) + dtype_tag<T>(), [&] {
    const RowMatrix<float> wide = x.template cast<float>();
    NaiveGPrune naive;
    naive.reserve(n, c.dim);
    const std::vector<index_t> expected = [&] {
      auto s = naive.prune(wide, budget.resolve(n));
      return std::vector<index_t>(s.begin(), s.end());
    }();
    return compare(pruner.prune(inputs, budget), expected);
  });
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }

  for (auto _ : state) {
    std::span<const index_t> kept = pruner.prune(inputs, budget);
    benchmark::DoNotOptimize(kept.data());
    benchmark::ClobberMemory();
  }
  tb::set_gflops(state, tb::gram_flops(n, c.dim));
  tb::set_tokens(state, static_cast<double>(n));
  set_degree_counter(state, pruner.degrees());
  state.SetLabel(std::string(c.name) + " " + dtype_tag<T>() + " n=" + std::to_string(n));
}

template <Element T>
void gprune_next(benchmark::State& state) {
  const RowMatrix<T>& x = tb::next_features<T>(kNextGrid, kNextGrid, kNextDim);
  const index_t n = x.rows();
  LlavaNextLayout layout(kNextGrid, kNextGrid, kRatio);
  Segmented<GPrune> pruner;
  pruner.reserve(n, kNextDim);
  PruneInputs inputs;
  inputs.features = TokenMatrix(x);

  const std::string& error = selection_check(std::string(kNextName) + dtype_tag<T>(), [&] {
    const RowMatrix<float> wide = x.template cast<float>();
    NaiveNext naive;
    naive.reserve(kNextGrid, kNextGrid, kNextDim);
    const std::span<const index_t> expected_span = naive.prune(wide, kNextGrid, kNextGrid, kRatio);
    const std::vector<index_t> expected(expected_span.begin(), expected_span.end());
    return compare(pruner.prune(inputs, layout), expected);
  });
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }

  for (auto _ : state) {
    std::span<const index_t> kept = pruner.prune(inputs, layout);
    benchmark::DoNotOptimize(kept.data());
    benchmark::ClobberMemory();
  }
  const index_t grid = kNextGrid * kNextGrid;
  tb::set_gflops(state, tb::gram_flops(LlavaNextLayout::kBaseTokens, kNextDim) + tb::gram_flops(grid, kNextDim));
  tb::set_tokens(state, static_cast<double>(n));
  set_degree_counter(state, pruner.pruner().degrees());  // the last segment: the 48 x 48 grid
  state.SetLabel(std::string(kNextName) + " " + dtype_tag<T>() + " n=" + std::to_string(n) + " (576 + 2304 + 48 nl)");
}

// Video: frames x 576 tokens, d 1024, one flat graph (beyond max_dense_tokens: the sparse, bounded-memory path).
void gprune_video(benchmark::State& state, index_t frames) {
  const RowMatrix<float>& x = tb::image_features<float>(frames, 24, 1024);
  const index_t n = x.rows();
  GPrune pruner;
  pruner.reserve(n, x.cols());
  PruneInputs inputs;
  inputs.features = TokenMatrix(x);
  const Budget budget = Budget::ratio(kRatio);
  for (auto _ : state) {
    std::span<const index_t> kept = pruner.prune(inputs, budget);
    benchmark::DoNotOptimize(kept.data());
    benchmark::ClobberMemory();
  }
  tb::set_gflops(state, tb::gram_flops(n, x.cols()));
  tb::set_tokens(state, static_cast<double>(n));
  set_degree_counter(state, pruner.degrees());
  state.counters["edges"] = static_cast<double>(pruner.sparse_edges());
  state.SetLabel("video" + std::to_string(frames) + "_d1024 f32 n=" + std::to_string(n));
}

// ---------------------------------------------------------------------------------------------------------
// Baselines
// ---------------------------------------------------------------------------------------------------------

void naive_flat(benchmark::State& state, FlatCase c) {
  const RowMatrix<float>& x = tb::image_features<float>(1, c.side, c.dim);
  const index_t n = x.rows();
  NaiveGPrune naive;
  naive.reserve(n, c.dim);
  const index_t k = Budget::ratio(kRatio).resolve(n);
  for (auto _ : state) {
    std::span<const index_t> kept = naive.prune(x, k);
    benchmark::DoNotOptimize(kept.data());
    benchmark::ClobberMemory();
  }
  tb::set_gflops(state, tb::gram_flops(n, c.dim));
  tb::set_tokens(state, static_cast<double>(n));
  state.SetLabel(std::string(c.name) + " f32 n=" + std::to_string(n) + " dense naive");
}

void naive_next(benchmark::State& state) {
  const RowMatrix<float>& x = tb::next_features<float>(kNextGrid, kNextGrid, kNextDim);
  NaiveNext naive;
  naive.reserve(kNextGrid, kNextGrid, kNextDim);
  for (auto _ : state) {
    std::span<const index_t> kept = naive.prune(x, kNextGrid, kNextGrid, kRatio);
    benchmark::DoNotOptimize(kept.data());
    benchmark::ClobberMemory();
  }
  tb::set_gflops(state, tb::gram_flops(LlavaNextLayout::kBaseTokens, kNextDim) +
                            tb::gram_flops(kNextGrid * kNextGrid, kNextDim));
  tb::set_tokens(state, static_cast<double>(x.rows()));
  state.SetLabel(std::string(kNextName) + " f32 n=" + std::to_string(x.rows()) + " dense naive");
}

// G (lower) += U U^T with one thread.
void syrk_1t(Eigen::MatrixXf& g, const RowMatrix<float>& u) { g.selfadjointView<Eigen::Lower>().rankUpdate(u); }

// The same on two threads with equal work: with c = n / sqrt(2), the [0, c) triangle (c^2 / 2 = n^2 / 4) on
// this thread; the [c, n) x [0, c) rectangle plus the [c, n) triangle ((n^2 - c^2) / 2 = n^2 / 4) on the other.
// The second thread is started per call (~tens of microseconds, under 1% of the smallest case), as a pool-less
// engine would; Eigen's products allocate their packing buffers per call too.
void syrk_2t(Eigen::MatrixXf& g, const RowMatrix<float>& u) {
  const index_t n = u.rows();
  const auto c = static_cast<index_t>(std::lround(static_cast<double>(n) / std::sqrt(2.0)));
  std::thread other([&] {
    g.bottomLeftCorner(n - c, c).noalias() += u.bottomRows(n - c) * u.topRows(c).transpose();
    g.bottomRightCorner(n - c, n - c).selfadjointView<Eigen::Lower>().rankUpdate(u.bottomRows(n - c));
  });
  g.topLeftCorner(c, c).selfadjointView<Eigen::Lower>().rankUpdate(u.topRows(c));
  other.join();
}

template <bool TwoThreads>
void syrk_floor(benchmark::State& state, std::string name) {
  const std::vector<RowMatrix<float>>& units = tb::unit_graphs(name);
  std::vector<Eigen::MatrixXf> grams;
  double flops = 0.0, tokens = 0.0;
  for (const auto& u : units) {
    grams.emplace_back(Eigen::MatrixXf::Zero(u.rows(), u.rows()));
    flops += tb::gram_flops(u.rows(), u.cols());
    tokens += static_cast<double>(u.rows());
  }
  // Two explicit threads: keep Eigen's GEMM from starting OpenMP threads of its own inside them.
  if (TwoThreads) Eigen::setNbThreads(1);
  for (auto _ : state) {
    for (std::size_t i = 0; i < units.size(); ++i) {
      if constexpr (TwoThreads) {
        syrk_2t(grams[i], units[i]);
      } else {
        syrk_1t(grams[i], units[i]);
      }
      benchmark::DoNotOptimize(grams[i].data());
    }
    benchmark::ClobberMemory();
  }
  if (TwoThreads) Eigen::setNbThreads(0);  // back to the default (OpenMP's thread count)
  tb::set_gflops(state, flops);
  tb::set_tokens(state, tokens);
  std::string label = name + (TwoThreads ? " 2 std::threads" : " 1 thread");
  if (units.size() == 2) label += " (Grams 576 + 2304 summed)";
  state.SetLabel(label);
}

// ---------------------------------------------------------------------------------------------------------
// Registration (names: BM_<Op>/<case>[/<dtype>]; labels repeat the case in words)
// ---------------------------------------------------------------------------------------------------------

template <Element T>
void register_library(const FlatCase& c) {
  const std::string name = std::string("BM_GPrune/") + c.name + "/" + dtype_tag<T>();
  benchmark::RegisterBenchmark(name.c_str(), [c](benchmark::State& s) { gprune_flat<T>(s, c); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

template <Element T>
void register_next() {
  const std::string name = std::string("BM_GPrune/") + kNextName + "/" + dtype_tag<T>();
  benchmark::RegisterBenchmark(name.c_str(), [](benchmark::State& s) { gprune_next<T>(s); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

const bool registered = [] {
  // Library: fp32 everywhere; fp16 and bf16 at the LLaVA-1.5 and NeXT sizes.
  register_library<float>(kLlava15D1024);
  register_library<float>(kLlava15D4096);
  register_library<Eigen::half>(kLlava15D4096);
  register_library<Eigen::bfloat16>(kLlava15D4096);
  register_library<Eigen::half>(kLlava15D1024);
  register_library<Eigen::bfloat16>(kLlava15D1024);
  register_library<float>(kQwen2VL);
  register_next<float>();
  register_next<Eigen::half>();
  register_next<Eigen::bfloat16>();

  // Baselines on the same sizes.
  for (const FlatCase& c : kFlatCases) {
    benchmark::RegisterBenchmark((std::string("BM_GPruneNaive/") + c.name).c_str(),
                                 [c](benchmark::State& s) { naive_flat(s, c); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  benchmark::RegisterBenchmark((std::string("BM_GPruneNaive/") + kNextName).c_str(), naive_next)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  for (const std::string& c : tb::gram_case_names()) {
    benchmark::RegisterBenchmark(("BM_SyrkFloor/" + c).c_str(), [c](benchmark::State& s) { syrk_floor<false>(s, c); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("BM_SyrkFloor2T/" + c).c_str(), [c](benchmark::State& s) { syrk_floor<true>(s, c); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }

  // Video (only when selected: run with --benchmark_filter=Video, exclude with --benchmark_filter=-Video).
  for (index_t frames : {16, 32, 64}) {
    benchmark::RegisterBenchmark(("BM_GPruneVideo/frames" + std::to_string(frames) + "_d1024").c_str(),
                                 [frames](benchmark::State& s) { gprune_video(s, frames); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->Iterations(1);
  }
  return true;
}();

}  // namespace
