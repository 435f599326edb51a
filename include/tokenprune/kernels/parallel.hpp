#pragma once
#include <tokenprune/core/abi.hpp>
// Row loops spread over the pruner's Executor (OpenMP threads by default when the engine compiles with OpenMP,
// or the engine's own pool) when the loop is large enough. Rows are independent and each is computed in a fixed
// order, so neither the executor nor its thread count changes a result. Small loops take a plain sequential
// path: no parallel region at all (even a one-thread OpenMP region costs the runtime an allocation, and
// prune() must not allocate).

#include <tokenprune/core/executor.hpp>
#include <tokenprune/core/types.hpp>

namespace tokenprune::inline TOKENPRUNE_ABI::kernels {

inline constexpr index_t kParallelWork = index_t{1} << 16;  // elements below which threads cost more than they save

template <class Body>
void for_each_row(const Executor& executor, index_t n, index_t work_per_row, Body body) {
  if (n * work_per_row >= kParallelWork) {
    executor.for_each_row(n, body);
    return;
  }
  for (index_t i = 0; i < n; ++i) body(i);
}

}  // namespace tokenprune::kernels
