#pragma once
// Row normalization for cosine similarity: u_i = x_i / max(||x_i||, 1e-12) and w_i = ||x_i||.
// The norm is accumulated in double, so tokens with entries near the fp32 range limits (1e30, 1e-30) still get
// an exact-to-rounding fp32 norm instead of Inf or 0.

#include <tokenprune/kernels/convert.hpp>

#include <algorithm>

namespace tokenprune::kernels {

inline constexpr double kNormFloor = 1e-12;  // the reference's normalize() epsilon

// Widens and normalizes every token of `x` into `unit` (n x dim, fp32) and writes the norms to `norms`.
template <Element T>
void normalize_rows(const ConstRowMap<T>& x, RowMap<float> unit, std::span<float> norms, const char* argument) {
  for (index_t i = 0; i < x.rows(); ++i) {
    float* row = unit.row(i).data();
    load_row(x, i, row, argument);
    const double norm = std::sqrt(unit.row(i).template cast<double>().squaredNorm());
    if (!std::isfinite(static_cast<float>(norm))) {
      std::ostringstream where;
      where << argument << "[" << i << "]";
      fail(where.str(), norm, "the token's L2 norm overflows fp32");
    }
    norms[static_cast<std::size_t>(i)] = static_cast<float>(norm);
    // fp32 division by the fp32 norm, as the reference's normalize() does.
    const float divisor = static_cast<float>(std::max(norm, kNormFloor));
    unit.row(i) /= divisor;
  }
}

}  // namespace tokenprune::kernels
