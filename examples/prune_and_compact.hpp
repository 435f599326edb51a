#pragma once
// The engine side of tokenprune, written once against the TokenPruner concept: it works unchanged for GPrune,
// FoPru and any third-party pruner (see custom_pruner.cpp).

#include <tokenprune/tokenprune.hpp>

#include <cstdio>
#include <span>
#include <vector>

namespace example {
namespace tp = tokenprune;

// `encode` stands for the vision encoder: it fills the engine's buffers and returns views of them. T is the
// engine's token element type. Returns true when the pruner kept exactly the number of tokens it promised.
template <tp::Element T, tp::TokenPruner P, class Encode>
bool prune_and_compact(const char* name, P& pruner, tp::TokenShape shape, tp::index_t dim, tp::Budget budget,
                       tp::index_t first_position, Encode&& encode) {
  // The prompt's image placeholders are laid out before the encoder has run, so the count must not need data.
  const tp::index_t placeholders = pruner.kept_count(shape, budget);
  // Once per engine, at its largest shapes: prune() then never allocates on the request path.
  pruner.reserve(shape.n_tokens, dim);

  const tp::PruneInputs inputs = encode();
  const std::span<const tp::index_t> kept = pruner.prune(inputs, budget);

  // Only the kept rows reach the LLM; renumbering them lets the text after the image continue without a gap.
  std::vector<T> compact(kept.size() * static_cast<std::size_t>(dim));
  tp::gather_rows(inputs.features, kept, compact.data(), dim);
  std::vector<tp::index_t> positions(kept.size());
  const tp::index_t next_text_position =
      tp::compacted_positions(static_cast<tp::index_t>(kept.size()), first_position, positions);

  std::printf("%-10s kept %zu of %lld tokens (promised %lld):", name, kept.size(),
              static_cast<long long>(shape.n_tokens), static_cast<long long>(placeholders));
  for (tp::index_t t : kept) std::printf(" %lld", static_cast<long long>(t));
  std::printf("; text resumes at position %lld\n", static_cast<long long>(next_text_position));
  return static_cast<tp::index_t>(kept.size()) == placeholders;
}

}  // namespace example
