#pragma once
#include <tokenprune/core/abi.hpp>
// Row normalization for cosine similarity: u_i = x_i / max(||x_i||, 1e-12) and w_i = ||x_i||.
// The norm is accumulated in double (fixed-order fma lanes, kernels/level_body.inl), so tokens with entries near the fp32 range limits (1e30, 1e-30) still get
// an exact-to-rounding fp32 norm instead of Inf or 0.

#include <tokenprune/kernels/convert.hpp>
#include <tokenprune/kernels/parallel.hpp>

#include <algorithm>
#include <limits>
#include <optional>
#include <span>

namespace tokenprune::inline TOKENPRUNE_ABI::kernels {

inline constexpr double kNormFloor = 1e-12;  // the reference's normalize() epsilon

// Does nothing with a block of normalized rows.
struct NoBlockHook {
  void operator()(index_t, index_t) const noexcept {}
};

// Widens and normalizes every token of `x` into `unit` (n x dim, fp32) and writes the norms to `norms`.
// Rows are independent, so they are spread over the executor's threads (same result for any count), in blocks
// of `block` rows; `after_block(i0, i1)` runs on the same thread right after rows [i0, i1), while they are still
// in cache (G-Prune hashes and packs them there, which saves two passes over the features).
// With `rows`, token i is row rows[i] of `x` (n = rows.size(); errors name that row of `x`): a segment of
// scattered tokens is read in place instead of gathered into a copy first.
template <Element T, class AfterBlock = NoBlockHook>
void normalize_rows(const ConstRowMap<T>& x, RowMap<float> unit, std::span<float> norms, const char* argument,
                    const Executor& executor = {}, index_t block = 1, AfterBlock after_block = {},
                    std::optional<std::span<const index_t>> rows = std::nullopt) {
  const index_t n = rows ? static_cast<index_t>(rows->size()) : x.rows(), d = x.cols();
  auto source_index = [&](index_t i) { return rows ? (*rows)[static_cast<std::size_t>(i)] : i; };
  auto source_row = [&](index_t i) { return x.row(source_index(i)).data(); };
  // A row with a NaN/Inf, or whose norm overflows fp32, gets a NaN norm; the lowest such row is reported after
  // the loop, because nothing may throw inside a parallel region.
  auto load = [&](index_t i) {  // token i as fp32 into its row of `unit`
    float* row = unit.row(i).data();
    if constexpr (std::same_as<T, float>) {
      std::copy_n(source_row(i), d, row);
    } else {
      widen(source_row(i), row, d);
    }
    return row;
  };
  const KernelTable& kernels = active_kernels();
  auto one = [&](index_t i) {
    // fp32 rows are read in place (one pass fewer: the unit row is written once); 16-bit rows are widened first.
    const float* source = nullptr;
    if constexpr (std::same_as<T, float>) {
      source = source_row(i);
    } else {
      source = load(i);
    }
    const double norm = std::sqrt(kernels.squared_norm(source, d));  // NaN/Inf inputs make it non-finite
    const auto stored = static_cast<float>(norm);
    norms[static_cast<std::size_t>(i)] = std::isfinite(stored) ? stored : std::numeric_limits<float>::quiet_NaN();
    if (!std::isfinite(stored)) return;
    // fp32 division by the fp32 norm, as the reference's normalize() does.
    const auto divisor = static_cast<float>(std::max(norm, kNormFloor));
    kernels.divide_row(source, unit.row(i).data(), d, divisor);
  };
  const index_t blocks = (n + block - 1) / block;
  for_each_row(executor, blocks, block * d, [&](index_t b) {
    const index_t i0 = b * block, i1 = std::min(n, i0 + block);
    for (index_t i = i0; i < i1; ++i) one(i);
    after_block(i0, i1);
  });
  index_t first_bad = 0;
  while (first_bad < n && !std::isnan(norms[static_cast<std::size_t>(first_bad)])) ++first_bad;
  if (first_bad < n) {
    // Name the element when there is one; otherwise the finite values overflow the fp32 norm.
    const float* row = load(first_bad);
    for (index_t j = 0; j < d; ++j)
      if (!std::isfinite(row[j])) detail::fail_non_finite(argument, source_index(first_bad), j, row[j]);
    std::ostringstream where;
    where << argument << "[" << source_index(first_bad) << "]";
    fail(where.str(), std::sqrt(kernels.squared_norm(row, d)), "the token's L2 norm overflows fp32");
  }
}

}  // namespace tokenprune::kernels
