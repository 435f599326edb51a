#pragma once
#include <tokenprune/core/abi.hpp>
// How many tokens to keep: a count k, or a ratio r in [0, 1] with k = floor(r * n) computed in double.
// A count larger than n is an error, not a clamp: silently keeping fewer tokens than the engine sized its
// placeholders for would corrupt the prompt.

#include <tokenprune/core/error.hpp>
#include <tokenprune/core/types.hpp>

#include <cmath>
#include <limits>

namespace tokenprune::inline TOKENPRUNE_ABI {

class Budget {
 public:
  static Budget count(index_t k) {
    if (k < 0) fail("keep", k, "must be >= 0");
    return Budget(k, 0.0, false);
  }
  static Budget ratio(double r) {
    if (!(r >= 0.0 && r <= 1.0)) fail("ratio", r, "must be a number in [0, 1]");
    return Budget(0, r, true);
  }

  [[nodiscard]] bool is_ratio() const noexcept { return is_ratio_; }
  [[nodiscard]] index_t keep() const noexcept { return keep_; }
  [[nodiscard]] double ratio_value() const noexcept { return ratio_; }

  // The number of tokens this budget keeps out of n.
  [[nodiscard]] index_t resolve(index_t n) const {
    if (n < 0) fail("n_tokens", n, "must be >= 0");
    if (is_ratio_) return static_cast<index_t>(std::floor(ratio_ * static_cast<double>(n)));
    if (keep_ > n) {
      std::ostringstream range;
      range << "must be in [0, n_tokens] = [0, " << n << "]";
      fail("keep", keep_, range.str());
    }
    return keep_;
  }

 private:
  Budget(index_t k, double r, bool is_ratio) : keep_(k), ratio_(r), is_ratio_(is_ratio) {}
  index_t keep_;
  double ratio_;
  bool is_ratio_;
};

}  // namespace tokenprune
