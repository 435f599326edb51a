// One program, two translation units: this one with exceptions, mixed_exceptions_noexcept.cpp built with
// -fno-exceptions (see CMakeLists.txt), as when an engine links a -fno-exceptions plugin with the rest. The
// library's inline functions differ between the two modes (fail() throws, or calls the installed handler); its
// ABI namespace (core/abi.hpp) gives each mode its own symbols, so the linker cannot pick one body for both.
// Without it this program aborts or crashes whichever object comes first on the link line.
#include <tokenprune/tokenprune.hpp>

#include <cstdio>

// mixed_exceptions_noexcept.cpp: makes an invalid call there; its handler ends the program with status 0 when
// `thrown_here` is true and the handler was reached with argument "keep". Does not return.
[[noreturn]] void no_exceptions_part(bool thrown_here);

int main() {
  bool thrown = false;
  try {
    (void)tokenprune::Budget::count(-1);
  } catch (const tokenprune::Error& e) {
    thrown = e.argument() == "keep";
  }
  std::printf("with exceptions: %s\n", thrown ? "Error thrown" : "NO Error");
  std::fflush(stdout);
  no_exceptions_part(thrown);
}
