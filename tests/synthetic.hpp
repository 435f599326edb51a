#pragma once
// Synthetic inputs shared by the test files.

#include <tokenprune/core/types.hpp>

#include <random>

namespace tokenprune::testing {

// Smooth "image-like" features: a random walk with step `drift`, so neighbouring tokens are similar and the
// graph has many edges.
inline RowMatrix<float> image_like(index_t n, index_t d, unsigned seed, float drift = 0.3f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  RowMatrix<float> x(n, d);
  Eigen::RowVectorXf walk(d);
  for (auto& v : walk) v = normal(rng);
  for (index_t i = 0; i < n; ++i) {
    for (auto& v : walk) v += drift * normal(rng);
    x.row(i) = walk;
  }
  return x;
}

}  // namespace tokenprune::testing
