#pragma once
// Row loops spread over OpenMP threads when the engine compiles with OpenMP and the loop is large enough. Rows
// are independent and each is computed in a fixed order, so the thread count never changes a result. Small
// loops take a plain sequential path: no parallel region at all (even a one-thread region costs the runtime an
// allocation, and prune() must not allocate).

#include <tokenprune/core/types.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace tokenprune::kernels {

inline constexpr index_t kParallelWork = index_t{1} << 16;  // elements below which threads cost more than they save

template <class Body>
void for_each_row(index_t n, index_t work_per_row, Body body) {
#if defined(_OPENMP)
  if (n > 1 && n * work_per_row >= kParallelWork && omp_get_max_threads() > 1) {
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < n; ++i) body(i);
    return;
  }
#endif
  for (index_t i = 0; i < n; ++i) body(i);
}

}  // namespace tokenprune::kernels
