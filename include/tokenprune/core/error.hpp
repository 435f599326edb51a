#pragma once
// Errors: every invalid configuration or input ends in tokenprune::Error, whose message names the argument
// and the bad value ("tokenprune: keep = 7: must be in [0, 6]"). Internal invariants are asserts, not Errors.
//
// Builds without exceptions (-fno-exceptions) route the same message to a handler that the engine installs
// with set_error_handler(); the default handler prints the message and aborts, because returning into code that
// assumed success would be worse.

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace tokenprune {

class Error : public std::invalid_argument {
 public:
  Error(std::string argument, const std::string& message)
      : std::invalid_argument(message), argument_(std::move(argument)) {}
  // The name of the offending argument or input ("keep", "features", "--ratio", "file.npy", ...).
  [[nodiscard]] const std::string& argument() const noexcept { return argument_; }

 private:
  std::string argument_;
};

using ErrorHandler = void (*)(const char* argument, const char* message);

namespace detail {
inline void default_error_handler(const char*, const char* message) {
  std::fprintf(stderr, "%s\n", message);
  std::abort();
}
inline ErrorHandler& error_handler_slot() {
  static ErrorHandler handler = &default_error_handler;
  return handler;
}
}  // namespace detail

// Only consulted when exceptions are disabled. The handler must not return normally (abort, longjmp, exit).
inline void set_error_handler(ErrorHandler handler) noexcept {
  detail::error_handler_slot() = handler ? handler : &detail::default_error_handler;
}

// Throws Error("argument", "tokenprune: argument = value: reason").
template <class Value>
[[noreturn]] void fail(std::string_view argument, const Value& value, std::string_view reason) {
  std::ostringstream message;
  message.precision(9);
  message << "tokenprune: " << argument << " = " << value << ": " << reason;
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
  throw Error(std::string(argument), message.str());
#else
  const std::string text = message.str();
  const std::string name(argument);
  detail::error_handler_slot()(name.c_str(), text.c_str());
  std::abort();
#endif
}

}  // namespace tokenprune
