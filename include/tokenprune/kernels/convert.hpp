#pragma once
// Element conversion and input validation. Every kernel works on fp32; fp16/bf16 rows are widened once, while
// being checked for NaN/Inf, so that invalid input is reported before any expensive work.

#include <tokenprune/core/error.hpp>
#include <tokenprune/core/views.hpp>

#include <cmath>
#include <span>
#include <sstream>
#include <string>

namespace tokenprune::kernels {

namespace detail {
[[noreturn]] inline void fail_non_finite(const char* argument, index_t row, index_t col, float value) {
  std::ostringstream where;
  where << argument << "[" << row << "," << col << "]";
  fail(where.str(), value, "NaN and Inf are rejected before any work");
}
}  // namespace detail

// Copies token `row` of `x` into `out` (dim floats), widening 16-bit types; rejects NaN/Inf.
template <Element T>
inline void load_row(const ConstRowMap<T>& x, index_t row, float* out, const char* argument) {
  Eigen::Map<Eigen::RowVectorXf> dst(out, x.cols());
  if constexpr (std::same_as<T, float>) {
    dst = x.row(row);
  } else {
    dst = x.row(row).template cast<float>();
  }
  // allFinite() is vectorized; only the rare failing row pays for the element search.
  if (!dst.allFinite()) {
    for (index_t j = 0; j < x.cols(); ++j)
      if (!std::isfinite(out[j])) detail::fail_non_finite(argument, row, j, out[j]);
  }
}

// Rejects a significance vector holding NaN/Inf.
inline void check_finite(std::span<const float> values, const char* argument) {
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i])) {
      std::ostringstream where;
      where << argument << "[" << i << "]";
      fail(where.str(), values[i], "NaN and Inf are rejected before any work");
    }
}

}  // namespace tokenprune::kernels
