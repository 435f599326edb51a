#pragma once
#include <tokenprune/core/abi.hpp>
// Deterministic top-k: rank by score descending, equal scores by lower index first. Because that order is total,
// the kept set does not depend on the selection algorithm, thread count or SIMD width. Output is ascending (the
// original token order). O(n) selection plus O(k log k) sort; no allocation (the caller provides scratch).

#include <tokenprune/core/types.hpp>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cassert>
#include <numeric>
#include <span>
#include <type_traits>

namespace tokenprune::inline TOKENPRUNE_ABI::kernels {

// The rank of (score, index) as one integer, smaller first: score descending, then index ascending. The float's
// bits are mapped to an order-reversing integer (negative floats after positive ones), -0 is folded into +0 (they
// compare equal, so they tie), and the index fills the low half.
inline std::uint64_t rank_key(float score, index_t index) {
  std::uint32_t bits = std::bit_cast<std::uint32_t>(score);
  bits = bits == 0x80000000u ? 0u : bits;                                         // branch-free: vectorizes
  const auto negative = static_cast<std::uint32_t>(static_cast<std::int32_t>(bits) >> 31);  // all ones or 0
  const std::uint32_t descending = bits ^ (~negative & 0x7fffffffu);
  return (static_cast<std::uint64_t>(descending) << 32) | static_cast<std::uint64_t>(index);
}

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
      for (index_t i = 0; i < n; ++i) keys[i] = rank_key(scores[static_cast<std::size_t>(i)], i);
      if (k > 0 && k < n) std::nth_element(keys, keys + (k - 1), keys + n);
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
