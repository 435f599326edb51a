#pragma once
// G-Prune's graph from a Gram matrix: threshold, softmax and degrees; then propagation.
//
// With the softmax shift fixed at the largest possible logit 1/T (cosines never exceed 1, and s_ii = 1 for every
// non-zero token), the unnormalized weights e_ij = exp(s_ij/T - 1/T) form a symmetric matrix E. So only the lower
// triangle is ever computed or stored, and the row-stochastic P = diag(1/rowsum) E is never formed:
// v P = E (v / rowsum) because E is symmetric. A row with no neighbour (a zero token) is uniform, 1/n.
// The logit is s_ij / T (a division, as in the reference) minus fl(1/T), the reference's row maximum.

#include <tokenprune/core/types.hpp>

#include <algorithm>
#include <cmath>
#include <span>

namespace tokenprune::kernels {

struct GraphParams {
  float threshold = 0.5f;     // tau: j is a neighbour of i when s_ij >= tau
  float temperature = 0.03f;  // T: softmax over neighbours of s_ij / T
};

// Turns the lower triangle of the Gram `gram` (cosines) into the lower triangle of E, in place, and computes
// rowsum_i = sum_j e_ij and degree_i = #{j : e_ij > 0} (n for a row without neighbours, which is uniform).
// `norms` marks zero tokens (norm 0): they have no neighbours, not even themselves.
// `column_sum` and `column_degree` are scratch of n floats.
inline void weights_from_gram(RowMap<float> gram, std::span<const float> norms, const GraphParams& params,
                              std::span<double> rowsum, std::span<index_t> degree, std::span<float> column_sum,
                              std::span<float> column_degree) {
  const index_t n = gram.rows();
  const float max_logit = 1.0f / params.temperature;
  Eigen::Map<Eigen::ArrayXf> col_sum(column_sum.data(), n);
  Eigen::Map<Eigen::ArrayXf> col_degree(column_degree.data(), n);
  col_sum.setZero();
  col_degree.setZero();
  for (index_t i = 0; i < n; ++i) {
    // A non-zero token is its own neighbour with s_ii = 1 exactly: rounding must not drop it when tau = 1.
    gram(i, i) = norms[static_cast<std::size_t>(i)] > 0.0f ? 1.0f : 0.0f;
    auto row = gram.row(i).head(i + 1).array();
    row = (row >= params.threshold).select((row / params.temperature - max_logit).exp(), 0.0f);
    // Entries j < i of row i are also entries of row j (symmetry): accumulate them as column sums. Partial sums
    // stay in fp32 per row; the totals are in double.
    const auto strict = row.head(i);
    rowsum[static_cast<std::size_t>(i)] = static_cast<double>(row.sum());
    degree[static_cast<std::size_t>(i)] = static_cast<index_t>((row > 0.0f).count());
    col_sum.head(i) += strict.transpose();
    col_degree.head(i) += (strict > 0.0f).template cast<float>().transpose();
  }
  for (index_t j = 0; j < n; ++j) {
    auto& d = degree[static_cast<std::size_t>(j)];
    rowsum[static_cast<std::size_t>(j)] += static_cast<double>(col_sum[j]);
    d += static_cast<index_t>(col_degree[j]);
    if (d == 0) d = n;  // a zero token's row is uniform over all n tokens
  }
}

// v <- v P, `iterations` times, with P = diag(1/rowsum) E (E given by its lower triangle) and uniform 1/n rows
// where rowsum is 0. `scaled` is scratch of n floats. Total mass sum(v) is conserved up to rounding.
inline void propagate(const ConstRowMap<float>& lower_weights, std::span<const double> rowsum, int iterations,
                      std::span<float> v, std::span<float> scaled) {
  const index_t n = lower_weights.rows();
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
    value.noalias() = lower_weights.template selfadjointView<Eigen::Lower>() * share;  // E^T share = E share
    if (uniform_mass != 0.0) value.array() += static_cast<float>(uniform_mass / static_cast<double>(n));
  }
}

}  // namespace tokenprune::kernels
