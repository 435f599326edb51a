#pragma once
// Attention reductions for FoPru: one streaming pass over [heads, n, n] maps that accumulates both the column
// sums (attention each key receives) and the row sums (attention each query gives), in double so that ties in
// the data stay ties and the variance comparison of the two means is not decided by rounding.

#include <tokenprune/core/views.hpp>
#include <tokenprune/kernels/convert.hpp>

#include <algorithm>
#include <span>

namespace tokenprune::kernels {

// received[j] = sum over heads and queries of A[h][i][j]; given[i] = sum over heads and keys of A[h][i][j].
// Divide both by heads * n for the means. `row_buffer` is scratch of n floats.
template <Element T>
void attention_sums(const AttentionMaps& maps, std::span<double> received, std::span<double> given,
                    std::span<float> row_buffer) {
  const index_t n = maps.n_tokens();
  Eigen::Map<Eigen::VectorXd> column_total(received.data(), n);
  Eigen::Map<Eigen::VectorXd> row_total(given.data(), n);
  Eigen::Map<Eigen::RowVectorXf> row(row_buffer.data(), n);
  column_total.setZero();
  row_total.setZero();
  for (index_t h = 0; h < maps.heads(); ++h) {
    const ConstRowMap<T> head = maps.head<T>(h);
    for (index_t i = 0; i < n; ++i) {
      if constexpr (std::same_as<T, float>) {
        row = head.row(i);
      } else {
        row = head.row(i).template cast<float>();
      }
      const double total = row.template cast<double>().sum();
      if (!std::isfinite(total)) {  // NaN or Inf somewhere in this row: name the element
        for (index_t j = 0; j < n; ++j)
          if (!std::isfinite(row[j])) {
            std::ostringstream where;
            where << "attention[" << h << "," << i << "," << j << "]";
            fail(where.str(), row[j], "NaN and Inf are rejected before any work");
          }
      }
      row_total[i] += total;
      column_total += row.transpose().template cast<double>();
    }
  }
}

// Sample variance (n - 1 denominator, as torch.var) of values; 0 for fewer than two values.
inline double variance(std::span<const double> values) {
  const auto n = values.size();
  if (n < 2) return 0.0;
  double mean = 0.0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(n);
  double sum_sq = 0.0;
  for (double v : values) sum_sq += (v - mean) * (v - mean);
  return sum_sq / static_cast<double>(n - 1);
}

}  // namespace tokenprune::kernels
