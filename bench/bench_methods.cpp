// The seven methods of issue 11, each beside its floor measured in the same binary with the same thread count.
//
//   BM_Method/<method>/<case>   the pruner (reserve() before timing; prune() per iteration)
//   BM_Floor/<method>/<case>    its floor on the same inputs:
//     syrk   cblas_ssyrk of the same unit rows (n x d, lower triangle; per crop for the crops layouts), OpenBLAS
//            on as many threads as the library's executor has (OMP_NUM_THREADS): divprune, cdpruner, vispruner
//     pivot  cblas_sgemm of the 8 pivot rows against all n features (P x d times d x n): the product DART cannot
//            avoid, which reads every feature once (memory-bound, about one read): dart
//     read   one streaming read (sum) of every input the method reads, split over the executor's workers:
//            cls-attention (the [CLS] rows), visionzip ([CLS] rows, keys, hidden states), evs (the features)
//
// Cases (d = feature width; NeXT = LLaVA-NeXT's 5 crops of 576: base view + 2 x 2 tiles of the 48 x 48 grid):
//   divprune      l15_d1024, l15_d4096 (576 tokens, k 56 = round(0.098 n), the authors' SUBSET_RATIO);
//                 next_d4096 (flat 2880 = base + grid without newlines, k 282)
//   cls-attention l15 (16 heads x 576, k 64); next (5 crops, one prune per crop, k 32 each)
//   cdpruner      l15_d1024, l15_d4096 (k 64; CLIP embeds 576 x 768, 1 text embedding); next_d4096 (crops
//                 layout, 5 x 576, k 32 per crop, one relevance normalization)
//   visionzip     l15_d1024, l15_d4096 (hidden states [577, d], keys [577, 1024] = 16 heads x 64 averaged,
//                 D 54 + C 10); next_d1024 (5 crops, one prune per crop, D 27 + C 5 each)
//   vispruner     l15_d1024, l15_d4096 (k 64, important_ratio 0.5); next_d1024 (5 crops, one prune per crop, k 32)
//   evs           video16_d1280, video16_d3584 (16 frames x 24 x 24 = 9216 tokens, pruning rate 0.75)
//   dart          l15_d1024, l15_d4096 (k 64, 4 + 4 pivots, 32 text tokens); next_d4096 (flat 2880, k 320);
//                 video16_d1280 (9216 tokens, k 921)
// The video cases are named "video..." but are not left out by bench_main's default filter (which drops
// "Video"): they take milliseconds.
//
// Inputs are bench_data.hpp's image-like features (frames drift slowly for video); the [CLS] rows are a softmax
// over 1 + n keys of spatially coherent logits with a few sink patches and a share on [CLS] itself, the [CLS]
// key then dropped (not renormalized), as CLIP's layer -2 gives.

#include "bench_data.hpp"

#include <tokenprune/tokenprune.hpp>

#include <benchmark/benchmark.h>

#if defined(TOKENPRUNE_HAVE_OPENBLAS)
#include <cblas.h>
#endif

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#if TOKENPRUNE_X86_DISPATCH
#include <immintrin.h>
#endif

namespace {

using namespace tokenprune;
namespace tb = tokenprune::bench;
using Mat = RowMatrix<float>;

constexpr index_t kSide = 24, kP = 576, kCrops = 5, kHeads = 16;

// ---------------------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------------------

// LLaVA-NeXT's five crops as one [5 * 576, d] matrix: the base view, then the 2 x 2 tiles of the 48 x 48 grid,
// each tile 24 x 24 in raster order (the newline tokens are not part of any crop).
const Mat& next_crops(index_t dim) {
  return tb::cached<index_t, Mat>(dim, [&] {
    const Mat& x = tb::next_features<float>(48, 48, dim);
    Mat out(kCrops * kP, dim);
    out.topRows(kP) = x.topRows(kP);
    for (index_t tile = 0; tile < 4; ++tile)
      for (index_t r = 0; r < kSide; ++r)
        for (index_t c = 0; c < kSide; ++c) {
          const index_t gr = (tile / 2) * kSide + r, gc = (tile % 2) * kSide + c;
          out.row(kP * (1 + tile) + r * kSide + c) = x.row(kP + gr * 49 + gc);
        }
    return out;
  });
}

// The 576 x d features of one image (or the 5 crops, next = true).
const Mat& features(bool next, index_t dim) { return next ? next_crops(dim) : tb::image_features<float>(1, kSide, dim); }

// Same image with a [CLS] row in front (VisionZip's keys and hidden states: [1 + n, d] per crop).
const Mat& with_cls(bool next, index_t dim, std::uint64_t salt) {
  return tb::cached<std::tuple<bool, index_t, std::uint64_t>, Mat>(std::tuple{next, dim, salt}, [&] {
    const index_t crops = next ? kCrops : 1;
    const Mat x = tb::make_features(crops, kSide, kSide, dim, tb::kSeed + salt);
    tb::Rng rng(tb::kSeed + salt + 1);
    Mat out(crops * (1 + kP), dim);
    for (index_t c = 0; c < crops; ++c) {
      Eigen::RowVectorXf cls(dim);
      rng.fill_normal(cls.data(), static_cast<std::size_t>(dim), 1.5f);
      out.row(c * (1 + kP)) = cls;
      out.middleRows(c * (1 + kP) + 1, kP) = x.middleRows(c * kP, kP);
    }
    return out;
  });
}

// [CLS] query rows [crops * heads, n] over the patch keys (softmax over 1 + n keys, [CLS] key dropped).
const Mat& cls_rows(bool next) {
  return tb::cached<bool, Mat>(next, [&] {
    const index_t crops = next ? kCrops : 1;
    const Mat& f = features(next, 1024);
    tb::Rng rng(tb::kSeed + 555);
    Mat out(crops * kHeads, kP);
    Eigen::VectorXf w(1024);
    std::vector<double> logits(static_cast<std::size_t>(kP + 1));
    for (index_t c = 0; c < crops; ++c) {
      index_t sinks[3];
      for (auto& s : sinks) s = static_cast<index_t>(rng.uniform() * kP);
      for (index_t h = 0; h < kHeads; ++h) {
        rng.fill_normal(w.data(), 1024);
        const Eigen::VectorXf proj = f.middleRows(c * kP, kP) * w;
        const float scale = 3.0f / (proj.norm() / std::sqrt(static_cast<float>(kP)));
        logits[0] = 2.0 + 2.0 * rng.uniform();  // [CLS] self-attention
        double top = logits[0];
        for (index_t j = 0; j < kP; ++j) {
          logits[static_cast<std::size_t>(j + 1)] = scale * proj(j);
          top = std::max(top, logits[static_cast<std::size_t>(j + 1)]);
        }
        for (index_t s : sinks) logits[static_cast<std::size_t>(s + 1)] = top + 1.5;
        double total = 0.0;
        for (double& v : logits) total += (v = std::exp(v - top));
        for (index_t j = 0; j < kP; ++j)
          out(c * kHeads + h, j) = static_cast<float>(logits[static_cast<std::size_t>(j + 1)] / total);
      }
    }
    return out;
  });
}

// Random rows of about the features' scale: CLIP text embeddings (CDPruner) or LLM text embeddings (DART).
const Mat& random_rows(index_t rows, index_t dim, std::uint64_t salt) {
  return tb::cached<std::tuple<index_t, index_t, std::uint64_t>, Mat>(std::tuple{rows, dim, salt}, [&] {
    tb::Rng rng(tb::kSeed + salt);
    Mat out(rows, dim);
    rng.fill_normal(out.data(), static_cast<std::size_t>(out.size()));
    return out;
  });
}

// ---------------------------------------------------------------------------------------------------------
// Floors
// ---------------------------------------------------------------------------------------------------------

int executor_threads() { return Executor{}.workers(); }

// Sum of `count` floats, one streaming read, at the library's instruction-set level (as BM_ReadMaps).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
float sum_portable(const float* data, std::size_t count) {
  float acc[4] = {};
  std::size_t i = 0;
  for (; i + 4 <= count; i += 4)
    for (int a = 0; a < 4; ++a) acc[a] += data[i + a];
  for (; i < count; ++i) acc[0] += data[i];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}
#if TOKENPRUNE_X86_DISPATCH
__attribute__((target("avx512f"))) float sum_avx512(const float* data, std::size_t count) {
  std::size_t i = 0;
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (; i + 64 <= count; i += 64)
    for (int a = 0; a < 4; ++a) acc[a] = _mm512_add_ps(acc[a], _mm512_loadu_ps(data + i + 16 * a));
  const float total =
      _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
  return total + sum_portable(data + i, count - i);
}
__attribute__((target("avx2"))) float sum_avx2(const float* data, std::size_t count) {
  std::size_t i = 0;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (; i + 32 <= count; i += 32)
    for (int a = 0; a < 4; ++a) acc[a] = _mm256_add_ps(acc[a], _mm256_loadu_ps(data + i + 8 * a));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  float total = 0.0f;
  for (float v : lanes) total += v;
  return total + sum_portable(data + i, count - i);
}
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
float read_sum(const float* data, std::size_t count) {
#if TOKENPRUNE_X86_DISPATCH
  switch (active_isa()) {
    case Isa::avx512:
      return sum_avx512(data, count);
    case Isa::avx2:
      return sum_avx2(data, count);
    case Isa::portable:
      break;
  }
#endif
  return sum_portable(data, count);
}

struct Buffer {
  const float* data;
  std::size_t count;
};

// One read of all `buffers`, each split into `workers` contiguous chunks run on the executor.
void read_floor(benchmark::State& state, const std::vector<Buffer>& buffers) {
  const Executor executor;
  executor.warm_up();
  const int workers = executor.workers();
  std::vector<float> partial(static_cast<std::size_t>(workers) * buffers.size());
  double bytes = 0;
  for (const Buffer& b : buffers) bytes += static_cast<double>(b.count * sizeof(float));
  for (auto _ : state) {
    auto task = [&](index_t t, int) {
      const auto w = static_cast<std::size_t>(t);
      for (std::size_t i = 0; i < buffers.size(); ++i) {
        const std::size_t chunk = (buffers[i].count + workers - 1) / workers;
        const std::size_t first = std::min(buffers[i].count, w * chunk);
        const std::size_t last = std::min(buffers[i].count, first + chunk);
        partial[i * workers + w] = read_sum(buffers[i].data + first, last - first);
      }
    };
    executor.for_each(workers, task);
    float total = 0.0f;
    for (float v : partial) total += v;
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
  state.counters["threads"] = workers;
  state.SetLabel("read floor, " + std::to_string(static_cast<long long>(bytes / 1024)) + " KiB");
}

#if defined(TOKENPRUNE_HAVE_OPENBLAS)
// cblas_ssyrk of the unit rows of each segment of `x` (segments of `segment` rows), on the executor's thread count.
void syrk_floor(benchmark::State& state, const Mat& x, index_t segment) {
  const Mat u = tb::normalized_rows(x);
  const index_t segments = u.rows() / segment, d = u.cols();
  std::vector<float> g(static_cast<std::size_t>(segment * segment));
  const int threads = executor_threads();
  openblas_set_num_threads(threads);
  auto run = [&] {
    for (index_t s = 0; s < segments; ++s)
      cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, static_cast<blasint>(segment), static_cast<blasint>(d),
                  1.0f, u.data() + s * segment * d, static_cast<blasint>(d), 0.0f, g.data(),
                  static_cast<blasint>(segment));
  };
  run();
  for (auto _ : state) {
    run();
    benchmark::DoNotOptimize(g.data());
    benchmark::ClobberMemory();
  }
  state.counters["threads"] = openblas_get_num_threads();
  openblas_set_num_threads(1);
  tb::set_gflops(state, static_cast<double>(segments) * tb::gram_flops(segment, d));
  state.SetLabel("OpenBLAS ssyrk " + std::to_string(segments) + " x (" + std::to_string(segment) + " x " +
                 std::to_string(d) + ") core " + openblas_get_corename());
}

// The pivot product of DART: P pivot rows (the first P rows stand in for them) against all n features.
void pivot_floor(benchmark::State& state, const Mat& x, index_t pivots) {
  const index_t n = x.rows(), d = x.cols();
  const Mat p = x.topRows(pivots);
  std::vector<float> out(static_cast<std::size_t>(pivots * n));
  openblas_set_num_threads(executor_threads());
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(pivots), static_cast<blasint>(n),
                static_cast<blasint>(d), 1.0f, p.data(), static_cast<blasint>(d), x.data(), static_cast<blasint>(d),
                0.0f, out.data(), static_cast<blasint>(n));
  };
  run();
  for (auto _ : state) {
    run();
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["threads"] = openblas_get_num_threads();
  openblas_set_num_threads(1);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(x.size() * 4));
  state.SetLabel("OpenBLAS sgemm " + std::to_string(pivots) + " x " + std::to_string(n) + " x " + std::to_string(d) +
                 " core " + openblas_get_corename());
}
#endif

// ---------------------------------------------------------------------------------------------------------
// The methods
// ---------------------------------------------------------------------------------------------------------

template <class Prune>
void time_it(benchmark::State& state, Prune&& prune, index_t tokens) {
  std::size_t kept = prune();  // warm-up (first-touch of the reserved workspaces)
  for (auto _ : state) {
    kept = prune();
    benchmark::DoNotOptimize(kept);
    benchmark::ClobberMemory();
  }
  state.counters["kept"] = static_cast<double>(kept);
  state.counters["threads"] = executor_threads();
  tb::set_tokens(state, static_cast<double>(tokens));
}

void divprune(benchmark::State& state, bool next, index_t dim, index_t k) {
  const Mat& x = features(next, dim);
  DivPrune pruner;
  pruner.reserve(x.rows(), dim);
  PruneInputs in;
  in.features = TokenMatrix(x);
  time_it(state, [&] { return pruner.prune(in, Budget::count(k)).size(); }, x.rows());
}

// One prune per crop (next) or one for the image: [CLS] rows of each crop are a [heads, n] view.
void cls_attention(benchmark::State& state, bool next, index_t k) {
  const Mat& a = cls_rows(next);
  const index_t crops = next ? kCrops : 1;
  ClsAttention pruner;
  pruner.reserve(kP);
  std::vector<PruneInputs> in(static_cast<std::size_t>(crops));
  for (index_t c = 0; c < crops; ++c)
    in[static_cast<std::size_t>(c)].cls_attention = TokenMatrix(a.data() + c * kHeads * kP, kHeads, kP);
  time_it(state, [&] {
    std::size_t kept = 0;
    for (const PruneInputs& i : in) kept += pruner.prune(i, Budget::count(k)).size();
    return kept;
  }, crops * kP);
}

void cdpruner(benchmark::State& state, bool next, index_t dim, index_t k) {
  const Mat& x = features(next, dim);
  const Mat& e = features(next, 768);  // CLIP image embeddings: image-like, e = 768
  const Mat& t = random_rows(1, 768, 31);
  CDPrunerConfig config;
  config.crops = next ? kCrops : 1;
  CDPruner pruner(config);
  pruner.reserve(x.rows(), dim, 768, 1, k);
  PruneInputs in;
  in.features = TokenMatrix(x);
  in.image_embeds = TokenMatrix(e);
  in.text_embeds = TokenMatrix(t);
  time_it(state, [&] { return pruner.prune(in, Budget::count(k)).size(); }, x.rows());
}

void visionzip(benchmark::State& state, bool next, index_t dim, index_t dominant, index_t contextual) {
  const Mat& a = cls_rows(next);
  const Mat& keys = with_cls(next, kHeads * 64, 77);
  const Mat& hidden = with_cls(next, dim, 78);
  const index_t crops = next ? kCrops : 1;
  VisionZipConfig config;
  config.contextual = contextual;
  config.key_heads = kHeads;
  VisionZip pruner(config);
  pruner.reserve(kP, dim, kHeads * 64);
  std::vector<PruneInputs> in(static_cast<std::size_t>(crops));
  for (index_t c = 0; c < crops; ++c) {
    PruneInputs& i = in[static_cast<std::size_t>(c)];
    i.cls_attention = TokenMatrix(a.data() + c * kHeads * kP, kHeads, kP);
    i.keys = TokenMatrix(keys.data() + c * (1 + kP) * keys.cols(), 1 + kP, keys.cols());
    i.hidden_states = TokenMatrix(hidden.data() + c * (1 + kP) * dim, 1 + kP, dim);
  }
  const Budget budget = Budget::count(dominant + contextual);
  time_it(state, [&] {
    std::size_t kept = 0;
    for (const PruneInputs& i : in) {
      kept += pruner.prune(i, budget).size();
      benchmark::DoNotOptimize(pruner.merged().data());
    }
    return kept;
  }, crops * kP);
}

void vispruner(benchmark::State& state, bool next, index_t dim, index_t k) {
  const Mat& a = cls_rows(next);
  const Mat& x = features(next, dim);
  const index_t crops = next ? kCrops : 1;
  VisPruner pruner;  // important_ratio 0.5, dedup_step 8
  pruner.reserve(kP, dim);
  std::vector<PruneInputs> in(static_cast<std::size_t>(crops));
  for (index_t c = 0; c < crops; ++c) {
    in[static_cast<std::size_t>(c)].cls_attention = TokenMatrix(a.data() + c * kHeads * kP, kHeads, kP);
    in[static_cast<std::size_t>(c)].features = TokenMatrix(x.data() + c * kP * dim, kP, dim);
  }
  time_it(state, [&] {
    std::size_t kept = 0;
    for (const PruneInputs& i : in) kept += pruner.prune(i, Budget::count(k)).size();
    return kept;
  }, crops * kP);
}

void evs(benchmark::State& state, index_t frames, index_t dim, double q) {
  const Mat& x = tb::image_features<float>(frames, kSide, dim);
  Evs pruner;
  pruner.reserve(x.rows(), dim);
  PruneInputs in;
  in.features = TokenMatrix(x);
  in.video = VideoGrid{frames, kSide, kSide};
  const Budget budget = Evs::pruning_rate(q);
  time_it(state, [&] { return pruner.prune(in, budget).size(); }, x.rows());
}

const Mat& dart_features(const std::string& kind, index_t dim) {
  if (kind == "video") return tb::image_features<float>(16, kSide, dim);
  return features(false, dim);
}
const Mat& next_flat(index_t dim) { return next_crops(dim); }  // 2880 tokens: base + the grid (crop order)

void dart(benchmark::State& state, const Mat& x, index_t k) {
  const Mat& u = random_rows(32, x.cols(), 41);
  Dart pruner;  // 4 + 4 pivots
  pruner.reserve(x.rows(), x.cols(), u.rows());
  PruneInputs in;
  in.features = TokenMatrix(x);
  in.text_embeds = TokenMatrix(u);
  time_it(state, [&] { return pruner.prune(in, Budget::count(k)).size(); }, x.rows());
}

// ---------------------------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------------------------

void add(const std::string& name, std::function<void(benchmark::State&)> f) {
  benchmark::RegisterBenchmark(name.c_str(), [f](benchmark::State& s) { f(s); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

std::vector<Buffer> cls_buffers(bool next) {
  const Mat& a = cls_rows(next);
  return {{a.data(), static_cast<std::size_t>(a.size())}};
}

const bool registered = [] {
  struct Flat {
    const char* name;
    bool next;
    index_t dim;
  };
  const Flat l15[] = {{"l15_d1024", false, 1024}, {"l15_d4096", false, 4096}};

  // divprune
  for (const Flat& c : l15) add(std::string("BM_Method/divprune/") + c.name, [c](auto& s) { divprune(s, false, c.dim, 56); });
  add("BM_Method/divprune/next_d4096", [](auto& s) { divprune(s, true, 4096, 282); });
  // cls-attention
  add("BM_Method/cls-attention/l15", [](auto& s) { cls_attention(s, false, 64); });
  add("BM_Method/cls-attention/next", [](auto& s) { cls_attention(s, true, 32); });
  // cdpruner
  for (const Flat& c : l15) add(std::string("BM_Method/cdpruner/") + c.name, [c](auto& s) { cdpruner(s, false, c.dim, 64); });
  add("BM_Method/cdpruner/next_d4096", [](auto& s) { cdpruner(s, true, 4096, 32); });
  // visionzip
  for (const Flat& c : l15)
    add(std::string("BM_Method/visionzip/") + c.name, [c](auto& s) { visionzip(s, false, c.dim, 54, 10); });
  add("BM_Method/visionzip/next_d1024", [](auto& s) { visionzip(s, true, 1024, 27, 5); });
  // vispruner
  for (const Flat& c : l15) add(std::string("BM_Method/vispruner/") + c.name, [c](auto& s) { vispruner(s, false, c.dim, 64); });
  add("BM_Method/vispruner/next_d1024", [](auto& s) { vispruner(s, true, 1024, 32); });
  // evs
  for (index_t d : {1280, 3584})
    add("BM_Method/evs/video16_d" + std::to_string(d), [d](auto& s) { evs(s, 16, d, 0.75); });
  // dart
  for (const Flat& c : l15)
    add(std::string("BM_Method/dart/") + c.name, [c](auto& s) { dart(s, features(false, c.dim), 64); });
  add("BM_Method/dart/next_d4096", [](auto& s) { dart(s, next_flat(4096), 320); });
  add("BM_Method/dart/video16_d1280", [](auto& s) { dart(s, dart_features("video", 1280), 921); });

  // Floors: one read of the inputs
  add("BM_Floor/cls-attention/l15", [](auto& s) { read_floor(s, cls_buffers(false)); });
  add("BM_Floor/cls-attention/next", [](auto& s) { read_floor(s, cls_buffers(true)); });
  auto vz_buffers = [](bool next, index_t dim) {
    std::vector<Buffer> b = cls_buffers(next);
    const Mat& keys = with_cls(next, kHeads * 64, 77);
    const Mat& hidden = with_cls(next, dim, 78);
    b.push_back({keys.data(), static_cast<std::size_t>(keys.size())});
    b.push_back({hidden.data(), static_cast<std::size_t>(hidden.size())});
    return b;
  };
  for (const Flat& c : l15)
    add(std::string("BM_Floor/visionzip/") + c.name, [c, vz_buffers](auto& s) { read_floor(s, vz_buffers(false, c.dim)); });
  add("BM_Floor/visionzip/next_d1024", [vz_buffers](auto& s) { read_floor(s, vz_buffers(true, 1024)); });
  for (index_t d : {1280, 3584})
    add("BM_Floor/evs/video16_d" + std::to_string(d), [d](auto& s) {
      const Mat& x = tb::image_features<float>(16, kSide, d);
      read_floor(s, {{x.data(), static_cast<std::size_t>(x.size())}});
    });
#if defined(TOKENPRUNE_HAVE_OPENBLAS)
  // Floors: the Gram (SYRK) of the same n x d (per crop for the crops layouts)
  for (const Flat& c : l15) {
    for (const char* m : {"divprune", "cdpruner", "vispruner"})
      add(std::string("BM_Floor/") + m + "/" + c.name, [c](auto& s) { syrk_floor(s, features(false, c.dim), kP); });
    add(std::string("BM_Floor/dart/") + c.name, [c](auto& s) { pivot_floor(s, features(false, c.dim), 8); });
  }
  add("BM_Floor/divprune/next_d4096", [](auto& s) { syrk_floor(s, next_crops(4096), kCrops * kP); });
  add("BM_Floor/cdpruner/next_d4096", [](auto& s) { syrk_floor(s, next_crops(4096), kP); });
  add("BM_Floor/vispruner/next_d1024", [](auto& s) { syrk_floor(s, next_crops(1024), kP); });
  add("BM_Floor/dart/next_d4096", [](auto& s) { pivot_floor(s, next_flat(4096), 8); });
  add("BM_Floor/dart/video16_d1280", [](auto& s) { pivot_floor(s, dart_features("video", 1280), 8); });
#endif
  return true;
}();

}  // namespace
