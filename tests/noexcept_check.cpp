// Built with -fno-exceptions (see CMakeLists.txt): the library compiles without exceptions, and an invalid
// call reaches the handler installed with set_error_handler() with the same message an Error would carry.
#include <tokenprune/tokenprune.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {
[[noreturn]] void report(const char* argument, const char* message) {
  const bool expected = std::strcmp(argument, "keep") == 0 &&
                        std::strstr(message, "keep = 11: must be in [0, n_tokens] = [0, 10]") != nullptr;
  std::printf("handler: argument=%s message=%s\n", argument, message);
  std::fflush(stdout);
  std::_Exit(expected ? 0 : 3);  // the handler must not return
}
}  // namespace

int main() {
  tokenprune::set_error_handler(&report);
  tokenprune::RowMatrix<float> x = tokenprune::RowMatrix<float>::Random(10, 4);
  tokenprune::GPrune pruner;
  const auto kept = pruner.prune(tokenprune::PruneInputs{.features = x}, tokenprune::Budget::count(3));
  if (kept.size() != 3) return 4;  // valid calls work as usual
  pruner.prune(tokenprune::PruneInputs{.features = x}, tokenprune::Budget::count(11));
  std::puts("an invalid budget did not reach the handler");
  return 5;
}
