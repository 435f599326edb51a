#pragma once
#include <tokenprune/core/abi.hpp>
// Deterministic top-k: rank by score descending, equal scores by lower index first. Because that order is total,
// the kept set does not depend on the selection algorithm, thread count or SIMD width. Output is ascending (the
// original token order). O(n) selection plus O(k log k) sort; no allocation (the caller provides scratch).

#include <tokenprune/core/types.hpp>
#include <tokenprune/kernels/levels.hpp>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cassert>
#include <numeric>
#include <span>
#include <type_traits>

namespace tokenprune::inline TOKENPRUNE_ABI::kernels {

namespace detail {
// For k much smaller than n (a few tokens of each crop or frame): the key of rank about 2k m / n among a sample
// of m = n / 8 strided scores bounds a candidate set that holds about 2k keys; if it holds at least k, the k
// best of all are among them (every key left out ranks after the bound). Writes the candidates' keys to
// keys[0, c) and returns c, or returns n (keys undefined) when fewer than k passed: then the caller selects from
// all n. Either way the same k come out; the sample only decides how much work the selection does.
inline index_t few_best_candidates(const float* scores, index_t n, index_t k, std::uint64_t* keys) {
  constexpr index_t kStride = 8;
  const index_t m = (n + kStride - 1) / kStride;
  for (index_t s = 0; s < m; ++s) keys[s] = rank_key(scores[s * kStride], s * kStride);
  const index_t r = std::min(m - 1, 2 * k * m / n + 1);
  std::nth_element(keys, keys + r, keys + m);
  const index_t c = active_kernels().select_keys(scores, n, keys[r], keys);
  return c >= k ? c : n;
}
}  // namespace detail

// Writes the k best indices of `scores`, ascending, to out[0, k). `scratch` must hold scores.size() entries.
// Float scores are selected as rank_key()s (integers: no indirection in the selection); the same order.
template <class Score>
void top_k_ascending(std::span<const Score> scores, index_t k, std::span<index_t> scratch, std::span<index_t> out) {
  const auto n = static_cast<index_t>(scores.size());
  assert(k >= 0 && k <= n && static_cast<index_t>(scratch.size()) >= n && static_cast<index_t>(out.size()) >= k);
  if constexpr (std::is_same_v<Score, float>) {
    if (n <= index_t{0xffffffff}) {
      static_assert(sizeof(index_t) == sizeof(std::uint64_t));
      auto* keys = reinterpret_cast<std::uint64_t*>(scratch.data());  // the unsigned type of index_t: may alias it
      index_t candidates = n;
      if (k > 0 && k * 4 <= n && n >= 128) candidates = detail::few_best_candidates(scores.data(), n, k, keys);
      if (candidates == n) {
        for (index_t i = 0; i < n; ++i) keys[i] = rank_key(scores[static_cast<std::size_t>(i)], i);
      }
      if (k > 0 && k < candidates) std::nth_element(keys, keys + (k - 1), keys + candidates);
      for (index_t t = 0; t < k; ++t) out[static_cast<std::size_t>(t)] = static_cast<index_t>(keys[t] & 0xffffffffu);
      std::sort(out.begin(), out.begin() + k);
      return;
    }
  }
  std::iota(scratch.begin(), scratch.begin() + n, index_t{0});
  auto ranks_before = [&scores](index_t a, index_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  if (k > 0 && k < n) std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.begin() + n, ranks_before);
  std::copy_n(scratch.begin(), k, out.begin());
  std::sort(out.begin(), out.begin() + k);
}

}  // namespace tokenprune::kernels
