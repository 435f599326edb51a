// Built with -fno-exceptions; linked with mixed_exceptions_main.cpp (see there).
#include <tokenprune/tokenprune.hpp>

#include <csetjmp>
#include <cstring>

namespace {
std::jmp_buf g_back;
bool g_named = false;
[[noreturn]] void back(const char* argument, const char*) {
  g_named = std::strcmp(argument, "keep") == 0;
  std::longjmp(g_back, 1);  // a handler must not return: jump back to the caller below
}
}  // namespace

int no_exceptions_part() {
  tokenprune::set_error_handler(&back);
  if (setjmp(g_back) == 0) {
    (void)tokenprune::Budget::count(-1);
    return 2;  // the invalid call returned
  }
  return g_named ? 0 : 3;
}
