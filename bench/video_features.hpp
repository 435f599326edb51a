#pragma once
// Video features whose G-Prune graph is dense (issue 9): a static camera filming a scene of ten regions, so every
// token resembles its counterpart in every frame and its whole region. Token = region colour + a smooth per-position
// texture + a slow per-frame drift + noise, times a log-normal amplitude; flattened frame-major, each frame
// row-major. Regions are a weighted Voronoi partition of the frame (one large background, nine smaller objects),
// so a token links to its region in every frame: at tau 0.5, d 256, 64 x 512 tokens, about 5,500 neighbours per
// token (17% of all pairs). `spread` scales the texture and noise: larger spreads make sparser graphs.
//
// Deterministic (SplitMix64 of bench_data.hpp): the same data on every machine and run.

#include "bench_data.hpp"

#include <array>

namespace tokenprune::bench {

inline FeatureMatrix make_dense_video(index_t frames, index_t rows, index_t cols, index_t dim, std::uint64_t seed,
                                      float spread = 1.0f) {
  Rng rng(seed);
  constexpr int kRegions = 10;
  const index_t per_frame = rows * cols;
  const index_t n = frames * per_frame;
  // Region seeds (positions in [0,1)^2) and weights: region 0 is the background.
  std::array<double, kRegions> sy{}, sx{}, weight{};
  for (int r = 0; r < kRegions; ++r) {
    sy[r] = rng.uniform();
    sx[r] = rng.uniform();
    weight[r] = r == 0 ? 0.0 : 0.12 + 0.1 * rng.uniform();  // additive weights: the background takes the rest
  }
  std::vector<int> region(static_cast<std::size_t>(per_frame));
  for (index_t t = 0; t < per_frame; ++t) {
    const double y = (static_cast<double>(t / cols) + 0.5) / static_cast<double>(rows);
    const double x = (static_cast<double>(t % cols) + 0.5) / static_cast<double>(cols);
    int best = 0;
    double best_d = 0.35;  // the background wins beyond this (weighted) distance
    for (int r = 1; r < kRegions; ++r) {
      const double d = std::hypot(y - sy[r], x - sx[r]) - weight[r] + 0.12;
      if (d < best_d) best_d = d, best = r;
    }
    region[static_cast<std::size_t>(t)] = best;
  }
  FeatureMatrix colour(kRegions, dim), common(1, dim);
  rng.fill_normal(colour.data(), static_cast<std::size_t>(colour.size()));
  rng.fill_normal(common.data(), static_cast<std::size_t>(common.size()));
  const FeatureMatrix texture = smooth_field(rows, cols, dim, 3.0, rng);
  const FeatureMatrix drift = smooth_field(rows, cols, dim, 8.0, rng);
  FeatureMatrix x(n, dim);
  rng.fill_normal(x.data(), static_cast<std::size_t>(x.size()), 0.45f * spread);
  for (index_t f = 0; f < frames; ++f) {
    const float phase = 0.015f * static_cast<float>(f);  // small drift over the clip
    for (index_t t = 0; t < per_frame; ++t) {
      auto row = x.row(f * per_frame + t);
      row += colour.row(region[static_cast<std::size_t>(t)]);
      row += 0.35f * common.row(0);
      row += (0.55f * spread) * texture.row(t);
      row += phase * drift.row(t);
      row *= std::exp(0.3f * rng.normal());
    }
  }
  return x;
}

}  // namespace tokenprune::bench
