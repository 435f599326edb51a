#pragma once
#include <tokenprune/core/abi.hpp>
// Errors: every invalid configuration or input ends in tokenprune::Error, which carries the argument, the bad
// value and the reason, and says all three in its message ("tokenprune: keep = 7: must be in [0, 6]").
// Internal invariants are asserts, not Errors.
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
#include <utility>

namespace tokenprune::inline TOKENPRUNE_ABI {

class Error : public std::invalid_argument {
 public:
  // what() is "tokenprune: <argument> = <value>: <reason>", or "tokenprune: <argument>: <reason>" without a value.
  Error(std::string argument, std::string value, std::string reason)
      : std::invalid_argument(compose(argument, value, reason)),
        argument_(std::move(argument)),
        value_(std::move(value)),
        reason_(std::move(reason)) {}

  // The name of the offending argument or input ("keep", "features[3,2]", "--ratio", "file.npy", ...).
  [[nodiscard]] const std::string& argument() const noexcept { return argument_; }
  // The offending value as text ("7", "nan", "missing"); empty when there is none to show.
  [[nodiscard]] const std::string& value() const noexcept { return value_; }
  // Why it was rejected ("must be in [0, n_tokens] = [0, 6]").
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }

  // The same value and reason under another name: a front end reports a library argument by its own name
  // (the command-line tool turns "keep" into "--keep").
  [[nodiscard]] Error renamed(std::string argument) const { return Error(std::move(argument), value_, reason_); }

 private:
  static std::string compose(const std::string& argument, const std::string& value, const std::string& reason) {
    return "tokenprune: " + argument + (value.empty() ? "" : " = " + value) + ": " + reason;
  }

  std::string argument_, value_, reason_;
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

// Throws Error(argument, value, reason); see Error for the message.
template <class Value>
[[noreturn]] void fail(std::string_view argument, const Value& value, std::string_view reason) {
  std::ostringstream text;
  text.precision(9);
  text << value;
  if (text.view().empty()) text << "\"\"";  // an empty value still reads "argument = value"
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
  throw Error(std::string(argument), text.str(), std::string(reason));
#else
  const Error error(std::string(argument), text.str(), std::string(reason));
  detail::error_handler_slot()(error.argument().c_str(), error.what());
  std::abort();
#endif
}

}  // namespace tokenprune
