// A tiny program built against tokenprune by the package tests (tests/consumer: find_package,
// tests/consumer_subdir: add_subdirectory). It returns 0 when the package works.
#if __has_include(<tokenprune/tokenprune.hpp>)
#include <tokenprune/tokenprune.hpp>
#define TOKENPRUNE_CONSUMER_HEADER "tokenprune/tokenprune.hpp"
#else
#include <tokenprune/core/error.hpp>
#define TOKENPRUNE_CONSUMER_HEADER "tokenprune/core/error.hpp"
#endif

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

  std::printf("consumer: tokenprune via <%s>, Eigen %d.%d.%d: %s\n", TOKENPRUNE_CONSUMER_HEADER,
              EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION, failures == 0 ? "OK" : "FAILED");
  return failures == 0 ? 0 : 1;
}
