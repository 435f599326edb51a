// Built with -fno-exceptions; linked with mixed_exceptions_main.cpp (see there).
#include <tokenprune/tokenprune.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {
bool g_thrown_there = false;
[[noreturn]] void finish(const char* argument, const char*) {
  const bool named = std::strcmp(argument, "keep") == 0;
  std::printf("without exceptions: %s\n", named ? "handler called" : "WRONG argument");
  std::fflush(stdout);
  std::_Exit(g_thrown_there && named ? 0 : 1);  // a handler must not return
}
}  // namespace

[[noreturn]] void no_exceptions_part(bool thrown_here) {
  g_thrown_there = thrown_here;
  tokenprune::set_error_handler(&finish);
  (void)tokenprune::Budget::count(-1);
  std::puts("without exceptions: the invalid call returned");
  std::_Exit(2);
}
