#pragma once
#include <tokenprune/core/abi.hpp>
// Head reduction of the [CLS] query row: the importance signal of the [CLS]-attention methods ([CLS]-attention
// / FasterVLM, VisPruner, VisionZip). The input is a [heads, n] view (PruneInputs::cls_attention, e.g. made by
// cls_query_row() inside [heads, 1 + n, 1 + n] maps): row h = head h's [CLS] query over the n patch keys, the
// [CLS] key already dropped and not renormalized. Any element type (fp32/fp16/bf16) and any row stride.
//
// Arithmetic: every value is widened to double (exact) and added per patch in head order h = 0, 1, ..., H - 1,
// starting from +0. Patches are independent, so however a compiler vectorizes the loop over patches, each
// sum is the same chain of additions: the result is bitwise identical at every ISA level and -march (no
// multiply in the sum, so no contraction either). The mean is that double sum divided by H in double, rounded
// once to fp32. NaN/Inf is rejected, naming the first bad element in (head, patch) row-major order as
// argument[h,j], before any mean is written (cls_row_sums' `sums` are the caller's workspace: on error they hold
// the sums, NaN/Inf where a bad element is). Cost: H * n reads (one pass), no allocation.

#include <tokenprune/core/error.hpp>
#include <tokenprune/core/views.hpp>
#include <tokenprune/kernels/convert.hpp>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <span>
#include <sstream>

namespace tokenprune::inline TOKENPRUNE_ABI::kernels {

namespace detail {
[[noreturn]] inline void fail_cls_element(const char* argument, index_t head, index_t patch, float value) {
  std::ostringstream where;
  where << argument << "[" << head << "," << patch << "]";
  fail(where.str(), value, "NaN and Inf are rejected before any work");
}
}  // namespace detail

// sums[j] = sum over h (in order) of double(cls(h, j)), for j in [0, cls.cols()). sums.size() >= cls.cols().
template <Element T>
void cls_row_sums(const ConstRowMap<T>& cls, std::span<double> sums, const char* argument = "cls_attention") {
  const index_t heads = cls.rows(), n = cls.cols();
  assert(static_cast<index_t>(sums.size()) >= n);
  // Sum first, then check the n sums: a finite float is exact in double and at most H of them cannot overflow,
  // so a sum is finite exactly when its patch's H values are (NaN stays NaN, Inf + -Inf is NaN). Only a failing
  // input pays for the rescan that names its first bad element. (One pass over the input instead of two.)
  double* out = sums.data();
  std::fill(out, out + n, 0.0);
  if (heads > 0) accumulate(cls.data(), heads, cls.outerStride(), n, out);  // at the active level, heads in order
  // The exponent fields of the sums, OR-ed in integer lanes (vectorizes at the baseline; no floating-point flag
  // can fold it away): all ones for NaN/Inf.
  constexpr std::uint64_t kExponent = 0x7ff0000000000000u;
  constexpr int kLanes = 4;
  std::uint64_t lanes[kLanes] = {};
  index_t j = 0;
  for (; j + kLanes <= n; j += kLanes)  // exponent + 1 carries into bit 11 exactly when it is all ones
    for (int l = 0; l < kLanes; ++l) lanes[l] |= (((std::bit_cast<std::uint64_t>(out[j + l]) & kExponent) >> 52) + 1) >> 11;
  for (; j < n; ++j) lanes[0] |= (std::bit_cast<std::uint64_t>(out[j]) & kExponent) == kExponent;
  const bool finite = (lanes[0] | lanes[1] | lanes[2] | lanes[3]) == 0;
  if (finite) return;
  for (index_t h = 0; h < heads; ++h) {
    const T* row = cls.row(h).data();
    for (index_t i = 0; i < n; ++i)
      if (!std::isfinite(static_cast<float>(row[i]))) detail::fail_cls_element(argument, h, i, static_cast<float>(row[i]));
  }
}

// The same for a runtime-typed view.
inline void cls_row_sums(const TokenMatrix& cls, std::span<double> sums, const char* argument = "cls_attention") {
  visit_dtype(cls.dtype(), [&]<class T>(T) { cls_row_sums<T>(cls.as<T>(), sums, argument); });
}

// mean[j] = float(sums[j] / H): the head mean of the [CLS] row (FasterVLM's and VisPruner's importance); `sums`
// receives the double head sums (VisionZip ranks by the sum). Both spans need >= cls.cols() entries; heads >= 1.
inline void cls_row_head_mean(const TokenMatrix& cls, std::span<double> sums, std::span<float> mean,
                              const char* argument = "cls_attention") {
  const index_t heads = cls.n_tokens(), n = cls.dim();
  if (heads < 1) fail(std::string(argument) + ".heads", heads, "must be >= 1");
  assert(static_cast<index_t>(mean.size()) >= n);
  cls_row_sums(cls, sums, argument);
  const auto divisor = static_cast<double>(heads);
  if ((heads & (heads - 1)) == 0) {  // x / 2^k and x * 2^-k round the same real number (no popcount call)
    const double scale = 1.0 / divisor;
    for (index_t j = 0; j < n; ++j)
      mean[static_cast<std::size_t>(j)] = static_cast<float>(sums[static_cast<std::size_t>(j)] * scale);
    return;
  }
  for (index_t j = 0; j < n; ++j)
    mean[static_cast<std::size_t>(j)] = static_cast<float>(sums[static_cast<std::size_t>(j)] / divisor);
}

}  // namespace tokenprune::kernels
