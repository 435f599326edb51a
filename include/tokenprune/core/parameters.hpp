#pragma once
#include <tokenprune/core/abi.hpp>
// Method parameters by name, for building a pruner from a name (core/registry.hpp): what a command line, a config
// file or Python keyword arguments hand over. Values are typed (bool, integer, number, text) or text to be parsed
// ("0.5" is a number), so a front end may pass every value as it was typed. Reading a value as the wrong kind, or
// text that does not parse completely, is an Error naming the parameter.

#include <tokenprune/core/error.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

class Parameters {
 public:
  using Value = std::variant<bool, std::int64_t, double, std::string>;

  Parameters() = default;
  Parameters(std::initializer_list<std::pair<const std::string, Value>> values) : values_(values) {}

  // One overload per kind, so that a double never converts to an integer and a C string never to bool.
  Parameters& set(std::string name, bool value) { return put(std::move(name), Value(value)); }
  Parameters& set(std::string name, int value) { return put(std::move(name), Value(std::int64_t{value})); }
  Parameters& set(std::string name, long value) { return put(std::move(name), Value(std::int64_t{value})); }
  Parameters& set(std::string name, long long value) { return put(std::move(name), Value(std::int64_t{value})); }
  Parameters& set(std::string name, double value) { return put(std::move(name), Value(value)); }
  Parameters& set(std::string name, std::string text) { return put(std::move(name), Value(std::move(text))); }
  Parameters& set(std::string name, const char* text) { return put(std::move(name), Value(std::string(text))); }
  Parameters& set(std::string name, Value value) { return put(std::move(name), std::move(value)); }

  [[nodiscard]] bool contains(std::string_view name) const { return values_.find(name) != values_.end(); }
  [[nodiscard]] bool empty() const noexcept { return values_.empty(); }
  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& entry : values_) out.push_back(entry.first);
    return out;
  }
  // The value as text, as a message would show it.
  [[nodiscard]] std::string text_of(std::string_view name) const {
    const Value& v = at(name);
    if (const auto* s = std::get_if<std::string>(&v)) return *s;
    if (const auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
    if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
    std::ostringstream text;
    text.precision(17);
    text << std::get<double>(v);
    return text.str();
  }

  // A real number: a number, an integer, or text that parses completely as one.
  [[nodiscard]] double number(std::string_view name, double fallback) const {
    return contains(name) ? number(name) : fallback;
  }
  [[nodiscard]] double number(std::string_view name) const {
    const Value& v = at(name);
    if (const auto* d = std::get_if<double>(&v)) return *d;
    if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
    if (const auto* s = std::get_if<std::string>(&v)) {
      char* end = nullptr;
      const double value = std::strtod(s->c_str(), &end);
      if (!s->empty() && end == s->c_str() + s->size()) return value;
    }
    fail(name, text_of(name), "must be a number");
  }
  [[nodiscard]] std::optional<double> optional_number(std::string_view name) const {
    if (!contains(name)) return std::nullopt;
    return number(name);
  }

  // An integer: an integer, an integral number, or text that parses completely as a decimal integer.
  [[nodiscard]] std::int64_t integer(std::string_view name, std::int64_t fallback) const {
    return contains(name) ? integer(name) : fallback;
  }
  [[nodiscard]] std::int64_t integer(std::string_view name) const {
    const Value& v = at(name);
    if (const auto* i = std::get_if<std::int64_t>(&v)) return *i;
    if (const auto* d = std::get_if<double>(&v)) {
      if (std::isfinite(*d) && std::trunc(*d) == *d && std::fabs(*d) < 9.0e15) return static_cast<std::int64_t>(*d);
    }
    if (const auto* s = std::get_if<std::string>(&v)) {
      std::int64_t value = 0;
      const char* end = s->data() + s->size();
      const auto [ptr, error] = std::from_chars(s->data(), end, value);
      if (!s->empty() && error == std::errc() && ptr == end) return value;
    }
    fail(name, text_of(name), "must be an integer");
  }

  // true / false (also the text "true", "false", "1", "0").
  [[nodiscard]] bool boolean(std::string_view name, bool fallback) const {
    if (!contains(name)) return fallback;
    const Value& v = at(name);
    if (const auto* b = std::get_if<bool>(&v)) return *b;
    if (const auto* i = std::get_if<std::int64_t>(&v); i && (*i == 0 || *i == 1)) return *i == 1;
    if (const auto* s = std::get_if<std::string>(&v)) {
      if (*s == "true" || *s == "1") return true;
      if (*s == "false" || *s == "0") return false;
    }
    fail(name, text_of(name), "must be true or false");
  }

  // Text (a choice such as "auto" or "rank").
  [[nodiscard]] std::string text(std::string_view name, std::string fallback) const {
    if (!contains(name)) return fallback;
    const Value& v = at(name);
    if (const auto* s = std::get_if<std::string>(&v)) return *s;
    fail(name, text_of(name), "must be text");
  }

 private:
  [[nodiscard]] const Value& at(std::string_view name) const {
    const auto it = values_.find(name);
    if (it == values_.end()) fail(name, "missing", "parameter not given");
    return it->second;
  }

  Parameters& put(std::string name, Value value) {
    values_.insert_or_assign(std::move(name), std::move(value));
    return *this;
  }

  std::map<std::string, Value, std::less<>> values_;
};

}  // namespace tokenprune
