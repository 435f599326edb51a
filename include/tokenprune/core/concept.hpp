#pragma once
#include <tokenprune/core/abi.hpp>
// The one protocol every pruner satisfies, ours and third parties'. Generic engine code is written once
// against it (see layouts/segments.hpp and examples/custom_pruner.cpp).
//
//   kept_count(shape, budget)  how many indices prune() will return: computable before the encoder runs, so an
//                              engine can size its placeholder tokens early. Throws on an invalid budget.
//   reserve(max_tokens, dim)   grow workspaces once; afterwards prune() on inputs within these bounds does not
//                              allocate.
//   prune(inputs, budget)      the kept token indices, strictly ascending, exactly kept_count() of them. The
//                              span points into the pruner and stays valid until its next prune() call.
//   scores()                   the per-token scores of the last prune() (higher = kept first), for debugging,
//                              visualization and tests.
//
// A pruner instance is not thread-safe; use one instance per thread. Different instances share nothing.

#include <tokenprune/core/budget.hpp>
#include <tokenprune/core/inputs.hpp>

#include <concepts>
#include <span>

namespace tokenprune::inline TOKENPRUNE_ABI {

template <class P>
concept TokenPruner = requires(P& pruner, const P& const_pruner, const PruneInputs& inputs, const TokenShape& shape,
                               Budget budget, index_t count) {
  { const_pruner.kept_count(shape, budget) } -> std::same_as<index_t>;
  pruner.reserve(count, count);
  { pruner.prune(inputs, budget) } -> std::same_as<std::span<const index_t>>;
  { const_pruner.scores() } -> std::same_as<std::span<const float>>;
};

// Optional, for a pruner that reads nothing but the features: prune_feature_rows(features, rows, budget) is
// prune() of the tokens rows[0], rows[1], ... of `features`, read in place. Segmented uses it for a segment whose
// tokens are scattered (LLaVA-NeXT's grid between its newlines) instead of gathering their rows into a copy.
// reads_feature_rows() says whether it applies (a type-erased pruner answers for the method it holds).
template <class P>
concept FeatureRowPruner = TokenPruner<P> && requires(P& pruner, const P& const_pruner, const TokenMatrix& features,
                                                      std::span<const index_t> rows, Budget budget) {
  { const_pruner.reads_feature_rows() } -> std::same_as<bool>;
  { pruner.prune_feature_rows(features, rows, budget) } -> std::same_as<std::span<const index_t>>;
};

}  // namespace tokenprune
