#pragma once
#include <tokenprune/core/abi.hpp>
// Groups tokens whose unit vectors are identical (padding tokens, repeated frames). G-Prune's graph treats the
// members of such a group symmetrically, so it is computed once per group, with the group's size as a
// multiplicity: exact by construction (after one or more iterations members get bitwise equal scores, ties then go to the lower index as the
// definition says) and cheaper. A GEMM kernel alone cannot promise that, because it rounds an entry
// differently depending on where the row sits in its tile.

#include <tokenprune/core/types.hpp>
#include <tokenprune/kernels/levels.hpp>
#include <tokenprune/kernels/parallel.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>

namespace tokenprune::inline TOKENPRUNE_ABI::kernels {


// group[i] = the group of token i, groups numbered 0.. in order of their first member; first[g] = that member.
// Returns the number of groups. `order` and `hash` are scratch of n entries. Rows compare by value (== on
// every element), so +0 and -0 match.
// With `hashed`, hash[i] already holds kernels.row_hash of row i (G-Prune computes it while the row is in cache).
inline index_t group_identical_rows(const ConstRowMap<float>& unit, std::span<index_t> group, std::span<index_t> first,
                                    std::span<index_t> order, std::span<std::uint64_t> hash,
                                    const Executor& executor = {}, bool hashed = false) {
  const index_t n = unit.rows(), d = unit.cols();
  const KernelTable& kernels = active_kernels();  // row_hash: the same value on every level (integer arithmetic)
  if (!hashed)
    for_each_row(executor, n, d, [&](index_t i) { hash[static_cast<std::size_t>(i)] = kernels.row_hash(unit.row(i).data(), d); });
  for (index_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  auto by_hash = [&hash](index_t a, index_t b) {
    return hash[static_cast<std::size_t>(a)] < hash[static_cast<std::size_t>(b)] ||
           (hash[static_cast<std::size_t>(a)] == hash[static_cast<std::size_t>(b)] && a < b);
  };
  std::sort(order.begin(), order.begin() + n, by_hash);
  // Within a run of equal hashes (ascending index), each row joins the first earlier row it equals.
  std::fill(group.begin(), group.begin() + n, index_t{-1});
  for (index_t s = 0; s < n;) {
    index_t e = s + 1;
    while (e < n && hash[static_cast<std::size_t>(order[static_cast<std::size_t>(e)])] ==
                        hash[static_cast<std::size_t>(order[static_cast<std::size_t>(s)])])
      ++e;
    for (index_t a = s; a < e; ++a) {
      const index_t i = order[static_cast<std::size_t>(a)];
      if (group[static_cast<std::size_t>(i)] != -1) continue;
      group[static_cast<std::size_t>(i)] = i;  // provisional: the representative's own index
      for (index_t b = a + 1; b < e; ++b) {
        const index_t j = order[static_cast<std::size_t>(b)];
        if (group[static_cast<std::size_t>(j)] == -1 && (unit.row(i).array() == unit.row(j).array()).all())
          group[static_cast<std::size_t>(j)] = i;
      }
    }
    s = e;
  }
  // Renumber representatives by first occurrence.
  index_t groups = 0;
  for (index_t i = 0; i < n; ++i) {
    const index_t representative = group[static_cast<std::size_t>(i)];
    if (representative == i) {
      first[static_cast<std::size_t>(groups)] = i;
      group[static_cast<std::size_t>(i)] = groups++;
    } else {
      group[static_cast<std::size_t>(i)] = group[static_cast<std::size_t>(representative)];
    }
  }
  return groups;
}

}  // namespace tokenprune::kernels
