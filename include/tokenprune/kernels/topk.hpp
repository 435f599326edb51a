#pragma once
#include <tokenprune/core/abi.hpp>
// Deterministic top-k: rank by score descending, equal scores by lower index first. Because that order is total,
// the kept set does not depend on the selection algorithm, thread count or SIMD width. Output is ascending (the
// original token order). O(n) selection plus O(k log k) sort; no allocation (the caller provides scratch).

#include <tokenprune/core/types.hpp>

#include <algorithm>
#include <cassert>
#include <numeric>
#include <span>

namespace tokenprune::inline TOKENPRUNE_ABI::kernels {

// Writes the k best indices of `scores`, ascending, to out[0, k). `scratch` must hold scores.size() entries.
template <class Score>
void top_k_ascending(std::span<const Score> scores, index_t k, std::span<index_t> scratch, std::span<index_t> out) {
  const auto n = static_cast<index_t>(scores.size());
  assert(k >= 0 && k <= n && static_cast<index_t>(scratch.size()) >= n && static_cast<index_t>(out.size()) >= k);
  std::iota(scratch.begin(), scratch.begin() + n, index_t{0});
  auto ranks_before = [&scores](index_t a, index_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  if (k > 0 && k < n) std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.begin() + n, ranks_before);
  std::copy_n(scratch.begin(), k, out.begin());
  std::sort(out.begin(), out.begin() + k);
}

}  // namespace tokenprune::kernels
