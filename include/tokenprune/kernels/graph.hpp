#pragma once
// G-Prune's graph: cosine Gram, threshold, softmax and degrees, fused per tile; then propagation.
//
// With the softmax shift fixed at the largest possible logit 1/T (cosines never exceed 1, and s_ii = 1 for every
// non-zero token), the unnormalized weights e_ij = exp(s_ij/T - 1/T) form a symmetric matrix E. So only tiles on
// and below the diagonal are computed (half the Gram), and the row-stochastic P = diag(1/rowsum) E is never
// formed: v P = E (v / rowsum) because E is symmetric. A row with no neighbour (a zero token) is uniform, 1/n.

#include <tokenprune/core/types.hpp>

#include <algorithm>
#include <cmath>
#include <span>

namespace tokenprune::kernels {

struct GraphParams {
  float threshold = 0.5f;    // tau: j is a neighbour of i when s_ij >= tau
  float temperature = 0.03f; // T: softmax over neighbours of s_ij / T
};

// Tile edge for the blocked Gram: small enough that Eigen keeps its packing buffers on the stack (no heap
// allocation), large enough that each product amortizes packing over a 64 x 64 x dim block.
inline constexpr index_t kGramTile = 64;

// Fills the lower-triangle tiles of E (n x n) from unit-norm rows `unit` and mirrors them to the upper triangle.
// rowsum_i = sum_j e_ij and degree_i = #{j : e_ij > 0}. `is_zero[i]` marks zero tokens (no neighbours).
inline void build_weights(const ConstRowMap<float>& unit, std::span<const float> norms, const GraphParams& params,
                          RowMap<float> weights, std::span<double> rowsum, std::span<index_t> degree) {
  const index_t n = unit.rows();
  const float inv_t = 1.0f / params.temperature;
  const float max_logit = 1.0f * inv_t;  // the reference's row max, x_ii = s_ii / T with s_ii = 1
  std::fill(rowsum.begin(), rowsum.begin() + n, 0.0);
  std::fill(degree.begin(), degree.begin() + n, index_t{0});

  for (index_t i0 = 0; i0 < n; i0 += kGramTile) {
    const index_t bi = std::min(kGramTile, n - i0);
    for (index_t j0 = 0; j0 <= i0; j0 += kGramTile) {
      const index_t bj = std::min(kGramTile, n - j0);
      auto tile = weights.block(i0, j0, bi, bj);
      tile.noalias() = unit.middleRows(i0, bi) * unit.middleRows(j0, bj).transpose();
      for (index_t a = 0; a < bi; ++a) {
        const index_t i = i0 + a;
        float* t = &tile(a, 0);
        // A non-zero token is its own neighbour with s_ii = 1 exactly; rounding must not drop it (tau = 1).
        if (i0 == j0) t[a] = norms[static_cast<std::size_t>(i)] > 0.0f ? 1.0f : 0.0f;
        double row_total = 0.0;
        index_t row_degree = 0;
        for (index_t b = 0; b < bj; ++b) {
          const float s = t[b];
          const float e = s >= params.threshold ? std::exp(s * inv_t - max_logit) : 0.0f;
          t[b] = e;
          if (e > 0.0f) {
            row_total += e;
            ++row_degree;
            if (i0 != j0) {  // the mirrored entry e_ji of an off-diagonal tile
              rowsum[static_cast<std::size_t>(j0 + b)] += e;
              ++degree[static_cast<std::size_t>(j0 + b)];
            }
          }
        }
        rowsum[static_cast<std::size_t>(i)] += row_total;
        degree[static_cast<std::size_t>(i)] += row_degree;
      }
    }
  }
  // Mirror: E is symmetric; propagation reads whole rows.
  for (index_t i = 0; i < n; ++i)
    for (index_t j = i + 1; j < n; ++j) weights(i, j) = weights(j, i);
  for (index_t i = 0; i < n; ++i)
    if (degree[static_cast<std::size_t>(i)] == 0) degree[static_cast<std::size_t>(i)] = n;  // uniform row
}

// v <- v P, `iterations` times, with P = diag(1/rowsum) E and uniform 1/n rows where rowsum is 0.
// `scaled` is scratch of n floats. Total mass sum(v) is conserved up to rounding.
inline void propagate(const ConstRowMap<float>& weights, std::span<const double> rowsum, int iterations,
                      std::span<float> v, std::span<float> scaled) {
  const index_t n = weights.rows();
  Eigen::Map<Eigen::VectorXf> value(v.data(), n);
  Eigen::Map<Eigen::VectorXf> share(scaled.data(), n);
  for (int step = 0; step < iterations; ++step) {
    double uniform_mass = 0.0;  // mass of neighbourless rows, spread evenly
    for (index_t i = 0; i < n; ++i) {
      const double total = rowsum[static_cast<std::size_t>(i)];
      if (total > 0.0) {
        share[i] = static_cast<float>(value[i] / total);
      } else {
        share[i] = 0.0f;
        uniform_mass += value[i];
      }
    }
    value.noalias() = weights * share;  // = weights^T * share: E is symmetric
    if (uniform_mass != 0.0) value.array() += static_cast<float>(uniform_mass / static_cast<double>(n));
  }
}

}  // namespace tokenprune::kernels
