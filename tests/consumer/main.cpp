// A tiny program built against tokenprune by the package tests (tests/consumer: find_package,
// tests/consumer_subdir: add_subdirectory). It returns 0 when the package works.
// The umbrella header must be installed (and with it every header and the level kernels' body it includes).
#include <tokenprune/tokenprune.hpp>
#define TOKENPRUNE_CONSUMER_HEADER "tokenprune/tokenprune.hpp"

#include <Eigen/Core>  // must be reachable through tokenprune::tokenprune

#include <concepts>
#include <cstdio>
#include <string>

// The C++20 requirement must travel with the target (this project sets no standard itself).
static_assert(__cplusplus >= 202002L, "tokenprune::tokenprune must request C++20");
static_assert(std::derived_from<tokenprune::Error, std::exception>);

int main() {
  int failures = 0;
  try {
    tokenprune::fail("keep", 7, "must be in [0, 6]");
    std::puts("consumer: tokenprune::fail returned");
    ++failures;
  } catch (const tokenprune::Error& error) {
    const std::string message = error.what();
    if (error.argument() != "keep" || message.find("keep = 7") == std::string::npos) {
      std::printf("consumer: unexpected error: argument '%s', message '%s'\n", error.argument().c_str(),
                  message.c_str());
      ++failures;
    }
  }

  Eigen::Matrix2f m = Eigen::Matrix2f::Identity();
  if (m.trace() != 2.0f) {
    std::puts("consumer: Eigen is broken");
    ++failures;
  }

  // Both pruners instantiated and run, on SPEC 2.2's hand-checkable case: k = 3 keeps [2, 4, 5].
  const float x[6][2] = {{1, 0}, {0.99f, 0.1f}, {0, 2}, {0.6f, 0.8f}, {3, 0.2f}, {-1, 0.5f}};
  tokenprune::GPrune gprune;
  tokenprune::PruneInputs in;
  in.features = tokenprune::TokenMatrix(&x[0][0], 6, 2);
  const auto kept = gprune.prune(in, tokenprune::Budget::count(3));
  if (kept.size() != 3 || kept[0] != 2 || kept[1] != 4 || kept[2] != 5) {
    std::puts("consumer: G-Prune did not keep [2, 4, 5]");
    ++failures;
  }
  const float significance[4] = {0.1f, 0.4f, 0.3f, 0.4f};
  tokenprune::FoPru fopru;
  tokenprune::PruneInputs sig;
  sig.significance = significance;
  const auto top = fopru.prune(sig, tokenprune::Budget::count(2));
  if (top.size() != 2 || top[0] != 1 || top[1] != 3) {  // ties to the lower index, output ascending
    std::puts("consumer: FoPru did not keep [1, 3]");
    ++failures;
  }
  std::printf("consumer: isa %s\n", tokenprune::isa_name(tokenprune::active_isa()));

  std::printf("consumer: tokenprune via <%s>, Eigen %d.%d.%d: %s\n", TOKENPRUNE_CONSUMER_HEADER,
              EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION, failures == 0 ? "OK" : "FAILED");
  return failures == 0 ? 0 : 1;
}
