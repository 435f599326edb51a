#pragma once
// Row normalization for cosine similarity: u_i = x_i / max(||x_i||, 1e-12) and w_i = ||x_i||.
// The norm is accumulated in double, so tokens with entries near the fp32 range limits (1e30, 1e-30) still get
// an exact-to-rounding fp32 norm instead of Inf or 0.

#include <tokenprune/kernels/convert.hpp>
#include <tokenprune/kernels/parallel.hpp>

#include <algorithm>
#include <limits>

namespace tokenprune::kernels {

inline constexpr double kNormFloor = 1e-12;  // the reference's normalize() epsilon

// Squared L2 norm in double, as 8 double lanes (element j in lane j mod 8, an Eigen fixed-size array: the same
// per-lane arithmetic in any register width) reduced in lane order.
inline double squared_norm(const float* x, index_t d) {
  using Lanes = Eigen::Array<double, 8, 1>;
  Lanes lanes = Lanes::Zero();
  const index_t full = d - d % 8;
  for (index_t j = 0; j < full; j += 8) {
    const Lanes v = Eigen::Map<const Eigen::Array<float, 8, 1>>(x + j).template cast<double>();
    lanes += v * v;
  }
  for (index_t j = full; j < d; ++j) lanes[j - full] += static_cast<double>(x[j]) * static_cast<double>(x[j]);
  double total = 0.0;
  for (int l = 0; l < 8; ++l) total += lanes[l];
  return total;
}

// Widens and normalizes every token of `x` into `unit` (n x dim, fp32) and writes the norms to `norms`.
// Rows are independent, so they are spread over the executor's threads (same result for any count).
template <Element T>
void normalize_rows(const ConstRowMap<T>& x, RowMap<float> unit, std::span<float> norms, const char* argument,
                    const Executor& executor = {}) {
  const index_t n = x.rows(), d = x.cols();
  // A row with a NaN/Inf, or whose norm overflows fp32, gets a NaN norm; the lowest such row is reported after
  // the loop, because nothing may throw inside a parallel region.
  auto load = [&](index_t i) {  // token i as fp32 into its row of `unit`
    float* row = unit.row(i).data();
    if constexpr (std::same_as<T, float>) {
      std::copy_n(x.row(i).data(), d, row);
    } else {
      widen(x.row(i).data(), row, d);
    }
    return row;
  };
  for_each_row(executor, n, d, [&](index_t i) {
    float* row = load(i);
    const double norm = std::sqrt(squared_norm(row, d));  // NaN/Inf inputs make it non-finite
    const auto stored = static_cast<float>(norm);
    norms[static_cast<std::size_t>(i)] = std::isfinite(stored) ? stored : std::numeric_limits<float>::quiet_NaN();
    if (!std::isfinite(stored)) return;
    // fp32 division by the fp32 norm, as the reference's normalize() does.
    unit.row(i) /= static_cast<float>(std::max(norm, kNormFloor));
  });
  index_t first_bad = 0;
  while (first_bad < n && !std::isnan(norms[static_cast<std::size_t>(first_bad)])) ++first_bad;
  if (first_bad < n) {
    // Name the element when there is one; otherwise the finite values overflow the fp32 norm.
    const float* row = load(first_bad);
    for (index_t j = 0; j < d; ++j)
      if (!std::isfinite(row[j])) detail::fail_non_finite(argument, first_bad, j, row[j]);
    std::ostringstream where;
    where << argument << "[" << first_bad << "]";
    fail(where.str(), std::sqrt(squared_norm(row, d)), "the token's L2 norm overflows fp32");
  }
}

}  // namespace tokenprune::kernels
