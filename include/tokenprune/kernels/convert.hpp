#pragma once
#include <tokenprune/core/abi.hpp>
// Element conversion and input validation. Every kernel works on fp32; fp16/bf16 rows are widened once, while
// being checked for NaN/Inf, so that invalid input is reported before any expensive work.

#include <tokenprune/core/error.hpp>
#include <tokenprune/core/views.hpp>
#include <tokenprune/kernels/levels.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <sstream>
#include <string>


namespace tokenprune::inline TOKENPRUNE_ABI::kernels {

namespace detail {
[[noreturn]] inline void fail_non_finite(const char* argument, index_t row, index_t col, float value) {
  std::ostringstream where;
  where << argument << "[" << row << "," << col << "]";
  fail(where.str(), value, "NaN and Inf are rejected before any work");
}
}  // namespace detail

// Widens n 16-bit values to fp32, exactly, with the active level's conversion (F16C on the x86 levels: Eigen
// 3.4's element-wise cast measured 3x slower on 16 x 576 x 576 maps, 0.46 against 0.15 to 0.19 ms). bf16 is the
// top half of an fp32: a shift.
inline void widen(const Eigen::half* src, float* dst, index_t n) {
  active_kernels().widen_half(reinterpret_cast<const std::uint16_t*>(src), dst, n);
}
inline void widen(const Eigen::bfloat16* src, float* dst, index_t n) {
  active_kernels().widen_bf16(reinterpret_cast<const std::uint16_t*>(src), dst, n);
}

// True when none of p[0, n) is NaN or Inf, at the active level (kernels/level_body.inl).
inline bool all_finite(const float* p, index_t n) { return active_kernels().all_finite(p, n); }

// acc[j] += double(x[r stride + j]) for rows r = 0 .. rows - 1 in order and j < n, at the active level: the same
// bits at every level (one add per element, in row order). Without rows and stride: one row.
inline void accumulate(const float* x, index_t rows, index_t stride, index_t n, double* acc) {
  active_kernels().accumulate(x, rows, stride, n, acc);
}
inline void accumulate(const Eigen::half* x, index_t rows, index_t stride, index_t n, double* acc) {
  active_kernels().accumulate_half(reinterpret_cast<const std::uint16_t*>(x), rows, stride, n, acc);
}
inline void accumulate(const Eigen::bfloat16* x, index_t rows, index_t stride, index_t n, double* acc) {
  active_kernels().accumulate_bf16(reinterpret_cast<const std::uint16_t*>(x), rows, stride, n, acc);
}
template <class E>
inline void accumulate(const E* x, index_t n, double* acc) {
  accumulate(x, 1, n, n, acc);
}

// Copies token `row` of `x` into `out` (dim floats), widening 16-bit types; rejects NaN/Inf. With head >= 0 the
// error names the element as argument[head,row,col] (queries and keys are [heads, tokens, head_dim]).
template <Element T>
inline void load_row(const ConstRowMap<T>& x, index_t row, float* out, const char* argument, index_t head = -1) {
  Eigen::Map<Eigen::RowVectorXf> dst(out, x.cols());
  if constexpr (std::same_as<T, float>) {
    dst = x.row(row);
  } else {
    widen(x.row(row).data(), out, x.cols());
  }
  // One vectorized pass over the copy (in L1); only the rare failing row pays for the element search.
  if (!all_finite(out, x.cols())) {
    for (index_t j = 0; j < x.cols(); ++j) {
      if (std::isfinite(out[j])) continue;
      if (head < 0) detail::fail_non_finite(argument, row, j, out[j]);
      std::ostringstream where;
      where << argument << "[" << head << "," << row << "," << j << "]";
      fail(where.str(), out[j], "NaN and Inf are rejected before any work");
    }
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
