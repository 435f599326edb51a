#pragma once
// For tests that run at every instruction-set level this CPU supports: the list of levels, and a guard that
// restores the level in use when a test leaves (by success or by a failed REQUIRE).

#include <tokenprune/tokenprune.hpp>

#include <vector>

namespace tokenprune::testing {

inline std::vector<Isa> supported_levels() {
  std::vector<Isa> out;
  for (Isa isa : kAllIsas)
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

struct IsaGuard {
  Isa saved = active_isa();
  ~IsaGuard() { set_isa(saved); }
};

}  // namespace tokenprune::testing
