#pragma once
#include <tokenprune/core/abi.hpp>
// tokenprune: training-free visual-token pruning for multimodal LLM inference. Header-only; Eigen 3.4 only.
//
//   core/     views, budgets, inputs, errors, the TokenPruner concept, AnyPruner and the method registry,
//             gather and positions
//   kernels/  similarity, graph propagation, attention reductions, top-k, conversion
//   pruners/  GPrune, FoPru, ...; methods.hpp registers them all by name
//   layouts/  segments (multi-image, video) and the LLaVA-NeXT preset

#include <tokenprune/core/any_pruner.hpp>
#include <tokenprune/core/budget.hpp>
#include <tokenprune/core/concept.hpp>
#include <tokenprune/core/error.hpp>
#include <tokenprune/core/executor.hpp>
#include <tokenprune/core/gather.hpp>
#include <tokenprune/core/inputs.hpp>
#include <tokenprune/core/isa.hpp>
#include <tokenprune/core/parameters.hpp>
#include <tokenprune/core/registry.hpp>
#include <tokenprune/core/types.hpp>
#include <tokenprune/core/views.hpp>
#include <tokenprune/layouts/llava_next.hpp>
#include <tokenprune/layouts/segments.hpp>
#include <tokenprune/pruners/fopru.hpp>
#include <tokenprune/pruners/gprune.hpp>
#include <tokenprune/pruners/methods.hpp>

namespace tokenprune::inline TOKENPRUNE_ABI {
inline constexpr int kVersionMajor = 0;
inline constexpr int kVersionMinor = 1;
inline constexpr int kVersionPatch = 0;
}  // namespace tokenprune
