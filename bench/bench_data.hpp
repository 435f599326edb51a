#pragma once
// Deterministic synthetic inputs for tokenprune_bench, shared by every bench/*.cpp.
//
// Features ("image-like"): a vision encoder's patch tokens are spatially coherent (neighbouring patches of the
// same object look alike), share a large common component, vary in norm, and a few background patches carry a
// very high norm (the "register"/artifact tokens of ViTs, all pointing roughly the same way). The generator
// reproduces that so G-Prune's graph at tau 0.5 has a realistic, non-trivial edge density (neither empty nor
// complete): token = common + coarse smooth field + fine smooth field + noise, times a log-normal amplitude;
// about one token in 200 is an artifact token with ~12x the norm. Video frames are the same kind of image
// drifting slowly over time (so edges also link frames).
//
// Attention maps: per head, softmax over keys of q.k / sqrt(64) with a spatial locality bias and a few "sink"
// keys that every query attends to (as real ViT maps have), rows summing to 1.
//
// Everything is generated from a seed with our own SplitMix64 + Box-Muller, so the data is identical across
// standard libraries and runs. Generated sets are cached for the lifetime of the process (benchmarks of the same
// size share them) and are only built when a benchmark that needs them runs.

#include <tokenprune/core/types.hpp>

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace tokenprune::bench {

using FeatureMatrix = RowMatrix<float>;

// SplitMix64 with a Box-Muller normal: tiny, fast and bit-reproducible everywhere.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  float normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = static_cast<float>(r * std::sin(6.283185307179586 * u2));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(6.283185307179586 * u2));
  }
  void fill_normal(float* out, std::size_t count, float scale = 1.0f) {
    for (std::size_t i = 0; i < count; ++i) out[i] = scale * normal();
  }

 private:
  std::uint64_t state_;
  float spare_ = 0.0f;
  bool has_spare_ = false;
};

// A smooth random vector field over a rows x cols grid: unit-variance Gaussian control vectors every `spacing`
// tokens, bilinearly interpolated. Returns (rows * cols) x dim, row-major.
inline FeatureMatrix smooth_field(index_t rows, index_t cols, index_t dim, double spacing, Rng& rng) {
  const index_t cr = static_cast<index_t>(std::ceil(static_cast<double>(rows) / spacing)) + 2;
  const index_t cc = static_cast<index_t>(std::ceil(static_cast<double>(cols) / spacing)) + 2;
  FeatureMatrix control(cr * cc, dim);
  rng.fill_normal(control.data(), static_cast<std::size_t>(control.size()));
  FeatureMatrix field(rows * cols, dim);
  for (index_t r = 0; r < rows; ++r) {
    const double y = static_cast<double>(r) / spacing;
    const auto y0 = static_cast<index_t>(y);
    const auto fy = static_cast<float>(y - static_cast<double>(y0));
    for (index_t c = 0; c < cols; ++c) {
      const double x = static_cast<double>(c) / spacing;
      const auto x0 = static_cast<index_t>(x);
      const auto fx = static_cast<float>(x - static_cast<double>(x0));
      // Bilinear weights, renormalized so the interpolated field keeps unit variance per component.
      float w[4] = {(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx};
      const float norm = std::sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2] + w[3] * w[3]);
      for (float& v : w) v /= norm;
      field.row(r * cols + c) = w[0] * control.row(y0 * cc + x0) + w[1] * control.row(y0 * cc + x0 + 1) +
                                w[2] * control.row((y0 + 1) * cc + x0) + w[3] * control.row((y0 + 1) * cc + x0 + 1);
    }
  }
  return field;
}

// Component weights (per-component standard deviations): common, coarse field, fine field, noise. Tuned so that
// at tau 0.5 a typical token links to a few percent of the image (see BM_GPrune's "edges%" counter).
struct FeatureMix {
  float common = 0.55f;
  float coarse = 0.75f;
  float fine = 0.45f;
  float noise = 0.50f;
  float amplitude_sigma = 0.35f;  // log-normal spread of token norms
  float artifact_norm = 12.0f;    // high-norm tokens, relative to the mean norm
  index_t artifact_every = 200;   // about one artifact token per this many tokens
};

// `frames` images of rows x cols tokens, each frame a slow drift of the previous one, flattened frame-major
// into (frames * rows * cols) x dim. frames = 1 is a single image.
inline FeatureMatrix make_features(index_t frames, index_t rows, index_t cols, index_t dim, std::uint64_t seed,
                                   const FeatureMix& mix = {}) {
  Rng rng(seed);
  const index_t per_frame = rows * cols;
  const index_t n = frames * per_frame;
  Eigen::RowVectorXf common(dim), artifact(dim);
  rng.fill_normal(common.data(), static_cast<std::size_t>(dim));
  rng.fill_normal(artifact.data(), static_cast<std::size_t>(dim));
  // Two independent fields per scale; frame f mixes them with angle theta_f (a slow rotation = smooth drift).
  const FeatureMatrix coarse_a = smooth_field(rows, cols, dim, 7.0, rng);
  const FeatureMatrix coarse_b = smooth_field(rows, cols, dim, 7.0, rng);
  const FeatureMatrix fine_a = smooth_field(rows, cols, dim, 2.5, rng);
  const FeatureMatrix fine_b = smooth_field(rows, cols, dim, 2.5, rng);
  FeatureMatrix x(n, dim);
  rng.fill_normal(x.data(), static_cast<std::size_t>(x.size()), mix.noise);
  for (index_t f = 0; f < frames; ++f) {
    const float theta = 0.12f * static_cast<float>(f);
    const float ca = std::cos(theta), sa = std::sin(theta);
    const float cf = std::cos(2.0f * theta), sf = std::sin(2.0f * theta);
    for (index_t t = 0; t < per_frame; ++t) {
      auto row = x.row(f * per_frame + t);
      row += mix.common * common;
      row += mix.coarse * (ca * coarse_a.row(t) + sa * coarse_b.row(t));
      row += mix.fine * (cf * fine_a.row(t) + sf * fine_b.row(t));
      row *= std::exp(mix.amplitude_sigma * rng.normal());
    }
  }
  // Artifact tokens: same direction (plus noise), ~artifact_norm times the average norm.
  const float mean_norm = x.rowwise().norm().mean();
  const index_t artifacts = std::max<index_t>(1, n / mix.artifact_every);
  for (index_t a = 0; a < artifacts; ++a) {
    const auto t = static_cast<index_t>(rng.uniform() * static_cast<double>(n));
    Eigen::RowVectorXf noise(dim);
    rng.fill_normal(noise.data(), static_cast<std::size_t>(dim), 0.4f);
    Eigen::RowVectorXf v = artifact + noise;
    x.row(t) = v * (mix.artifact_norm * mean_norm / v.norm());
  }
  return x;
}

// Features of a LLaVA-NeXT anyres sequence: [base_rows x base_cols base view] + for each of grid_rows rows:
// [grid_cols high-resolution tokens, 1 newline token]. The base view and the grid are generated as two images;
// newline tokens are the same learned vector (plus tiny noise), as in the model.
inline FeatureMatrix make_llava_next_features(index_t base_side, index_t grid_rows, index_t grid_cols, index_t dim,
                                              std::uint64_t seed) {
  const FeatureMatrix base = make_features(1, base_side, base_side, dim, seed);
  const FeatureMatrix grid = make_features(1, grid_rows, grid_cols, dim, seed + 1);
  Rng rng(seed + 2);
  Eigen::RowVectorXf newline(dim);
  rng.fill_normal(newline.data(), static_cast<std::size_t>(dim));
  const index_t n = base.rows() + grid_rows * (grid_cols + 1);
  FeatureMatrix x(n, dim);
  x.topRows(base.rows()) = base;
  index_t t = base.rows();
  for (index_t r = 0; r < grid_rows; ++r) {
    x.middleRows(t, grid_cols) = grid.middleRows(r * grid_cols, grid_cols);
    t += grid_cols;
    Eigen::RowVectorXf noise(dim);
    rng.fill_normal(noise.data(), static_cast<std::size_t>(dim), 0.01f);
    x.row(t++) = newline + noise;
  }
  return x;
}

// [heads, n, n] softmax maps (n = side * side), fp32, contiguous.
inline std::vector<float> make_attention(index_t heads, index_t side, std::uint64_t seed, index_t head_dim = 64) {
  Rng rng(seed);
  const index_t n = side * side;
  std::vector<float> maps(static_cast<std::size_t>(heads * n * n));
  const index_t sinks = 3;
  std::vector<index_t> sink(sinks);
  for (auto& s : sink) s = static_cast<index_t>(rng.uniform() * static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  Eigen::MatrixXf q(n, head_dim), k(n, head_dim), logits(n, n);  // column-major; logits(i, j) = query i, key j
  for (index_t h = 0; h < heads; ++h) {
    rng.fill_normal(q.data(), static_cast<std::size_t>(q.size()));
    rng.fill_normal(k.data(), static_cast<std::size_t>(k.size()));
    Eigen::RowVectorXf mean_q = q.colwise().mean();
    q.rowwise() += 1.5f * mean_q;  // queries share a direction...
    for (index_t s : sink) k.row(s) = (6.0f + static_cast<float>(h % 4)) * mean_q.normalized();  // ...sinks match it
    logits.noalias() = scale * q * k.transpose();
    const float locality = 0.15f + 0.05f * static_cast<float>(h % 3);
    float* out = maps.data() + h * n * n;
    for (index_t i = 0; i < n; ++i) {
      const index_t ri = i / side, ci = i % side;
      float row_max = -INFINITY;
      float* row = out + i * n;
      for (index_t j = 0; j < n; ++j) {
        const auto dr = static_cast<float>(ri - j / side), dc = static_cast<float>(ci - j % side);
        row[j] = logits(i, j) - locality * std::sqrt(dr * dr + dc * dc);
        row_max = std::max(row_max, row[j]);
      }
      double total = 0.0;
      for (index_t j = 0; j < n; ++j) {
        row[j] = std::exp(row[j] - row_max);
        total += row[j];
      }
      const auto inv = static_cast<float>(1.0 / total);
      for (index_t j = 0; j < n; ++j) row[j] *= inv;
    }
  }
  return maps;
}

template <Element T>
std::vector<T> convert(const std::vector<float>& in) {
  std::vector<T> out(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = static_cast<T>(in[i]);
  return out;
}

template <Element T>
RowMatrix<T> convert(const FeatureMatrix& in) {
  if constexpr (std::same_as<T, float>) {
    return in;
  } else {
    return in.cast<T>();
  }
}

// Process-wide cache: the first benchmark that needs a data set builds it, the others reuse it.
template <class Key, class Value, class Make>
const Value& cached(const Key& key, Make make) {
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Value>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[key];
  if (!slot) slot = std::make_unique<Value>(make());
  return *slot;
}

constexpr std::uint64_t kSeed = 20250601;

// Image features: frames x (side x side) tokens (frames = 1: one image), in element type T.
template <Element T>
const RowMatrix<T>& image_features(index_t frames, index_t side, index_t dim) {
  return cached<std::tuple<index_t, index_t, index_t>, RowMatrix<T>>(std::tuple{frames, side, dim}, [&] {
    if constexpr (std::same_as<T, float>) {
      return make_features(frames, side, side, dim, kSeed + static_cast<std::uint64_t>(frames * 7919 + side));
    } else {
      return convert<T>(image_features<float>(frames, side, dim));
    }
  });
}

// LLaVA-NeXT anyres features (576 base + grid_rows x (grid_cols + 1)), in element type T.
template <Element T>
const RowMatrix<T>& next_features(index_t grid_rows, index_t grid_cols, index_t dim) {
  return cached<std::tuple<index_t, index_t, index_t>, RowMatrix<T>>(std::tuple{grid_rows, grid_cols, dim}, [&] {
    if constexpr (std::same_as<T, float>) {
      return make_llava_next_features(24, grid_rows, grid_cols, dim, kSeed + 17);
    } else {
      return convert<T>(next_features<float>(grid_rows, grid_cols, dim));
    }
  });
}

// Attention maps [heads, side^2, side^2], in element type T.
template <Element T>
const std::vector<T>& attention_maps(index_t heads, index_t side) {
  return cached<std::pair<index_t, index_t>, std::vector<T>>(std::pair{heads, side}, [&] {
    if constexpr (std::same_as<T, float>) {
      return make_attention(heads, side, kSeed + 99);
    } else {
      return convert<T>(attention_maps<float>(heads, side));
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Counters shared by the benchmarks
// ---------------------------------------------------------------------------------------------------------

// Multiply-adds of a lower-triangle Gram of n tokens of dim d, counted as 2 flops each: n(n+1)/2 * d * 2.
constexpr double gram_flops(index_t n, index_t d) {
  return static_cast<double>(n) * static_cast<double>(n + 1) / 2.0 * static_cast<double>(d) * 2.0;
}

// "GFLOP/s": per-iteration flops (in GFLOP), reported as a rate over the measured (real) time.
inline void set_gflops(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iteration * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
inline void set_tokens(benchmark::State& state, double tokens_per_iteration) {
  state.counters["tokens/s"] = benchmark::Counter(tokens_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}

// ---------------------------------------------------------------------------------------------------------
// Benchmark cases shared by the G-Prune and kernel benchmarks
// ---------------------------------------------------------------------------------------------------------

struct FlatCase {
  const char* name;
  index_t side;  // side x side tokens, one image
  index_t dim;
};
inline constexpr FlatCase kLlava15D1024{"llava15_d1024", 24, 1024};  // LLaVA-1.5 7B-class projector width
inline constexpr FlatCase kLlava15D4096{"llava15_d4096", 24, 4096};  // LLaVA-1.5 / 8B LLM width
inline constexpr FlatCase kQwen2VL{"qwen2vl_d3584", 36, 3584};       // 1296 tokens, Qwen2-VL-7B width
inline constexpr FlatCase kFlatCases[] = {kLlava15D1024, kLlava15D4096, kQwen2VL};

// LLaVA-NeXT anyres: 576 base + 48 x 48 grid + 48 newlines = 2928 tokens, d 4096 (two graphs: 576 and 2304).
inline constexpr const char* kNextName = "next_d4096";
inline constexpr index_t kNextGrid = 48, kNextDim = 4096, kNextBase = 576;

template <Element T>
constexpr const char* dtype_tag() {
  return std::same_as<T, float> ? "f32" : std::same_as<T, Eigen::half> ? "f16" : "bf16";
}

inline RowMatrix<float> normalized_rows(const Eigen::Ref<const RowMatrix<float>>& x) {
  RowMatrix<float> u = x.array().colwise() / x.rowwise().norm().array().max(1e-12f);
  return u;
}

// The unit rows of the graph(s) of a case (fp32): one graph for a flat case, the base view and the gathered
// grid for the NeXT case. This is the input of the Gram that G-Prune computes.
inline const std::vector<RowMatrix<float>>& unit_graphs(const std::string& name) {
  return cached<std::string, std::vector<RowMatrix<float>>>(name, [&] {
    std::vector<RowMatrix<float>> graphs;
    if (name == kNextName) {
      const RowMatrix<float>& x = next_features<float>(kNextGrid, kNextGrid, kNextDim);
      graphs.push_back(normalized_rows(x.topRows(kNextBase)));
      RowMatrix<float> grid(kNextGrid * kNextGrid, kNextDim);
      for (index_t r = 0; r < kNextGrid; ++r)
        grid.middleRows(r * kNextGrid, kNextGrid) = x.middleRows(kNextBase + r * (kNextGrid + 1), kNextGrid);
      graphs.push_back(normalized_rows(grid));
    } else {
      for (const FlatCase& c : kFlatCases)
        if (name == c.name) graphs.push_back(normalized_rows(image_features<float>(1, c.side, c.dim)));
    }
    return graphs;
  });
}

inline std::vector<std::string> gram_case_names() {
  std::vector<std::string> names;
  for (const FlatCase& c : kFlatCases) names.emplace_back(c.name);
  names.emplace_back(kNextName);
  return names;
}

}  // namespace tokenprune::bench
