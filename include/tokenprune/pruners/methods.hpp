#pragma once
// The built-in methods in the registry (core/registry.hpp), and the process-wide registry itself:
//
//   tokenprune::method_names()                       {"gprune", "fopru-rank", "fopru-row", ...}
//   tokenprune::method_info("gprune")                inputs, parameters with defaults, extra outputs
//   tokenprune::create_pruner("gprune", {{"threshold", 0.6}})   an AnyPruner
//   tokenprune::register_method(info)                a third party's method, by its own name
//
// Each entry maps parameter names to the method's config; the config's validate() still has the last word.

#include <tokenprune/core/registry.hpp>
#include <tokenprune/pruners/fopru.hpp>
#include <tokenprune/pruners/gprune.hpp>

#include <mutex>
#include <string>
#include <vector>

namespace tokenprune {

namespace detail {

inline FoPruAxis fopru_axis(const Parameters& p) {
  const std::string axis = p.text("axis", "auto");
  if (axis == "auto") return FoPruAxis::automatic;
  if (axis == "received") return FoPruAxis::received;
  if (axis == "given") return FoPruAxis::given;
  fail("axis", axis, "must be auto, received or given");
}

inline MethodInfo gprune_method() {
  MethodInfo m;
  m.name = "gprune";
  m.summary = "G-Prune: information propagation over the cosine-similarity graph of the features";
  m.inputs = {Input::features};
  const GPruneConfig d{};
  m.parameters = {
      {"threshold", "0.5", "edge threshold tau in (0, 1]: cosine similarity at or above which tokens are linked"},
      {"temperature", "0.03", "softmax temperature T > 0 over a token's neighbours"},
      {"iterations", "5", "propagation steps m >= 0"},
      {"max_dense_tokens", std::to_string(d.max_dense_tokens), "largest graph kept as a dense matrix"},
  };
  m.create = [](const Parameters& p) {
    GPruneConfig c;
    c.threshold = p.number("threshold", c.threshold);
    c.temperature = p.number("temperature", c.temperature);
    const std::int64_t iterations = p.integer("iterations", c.iterations);
    if (iterations < 0 || iterations > 1'000'000) fail("iterations", iterations, "must be in [0, 1000000]");
    c.iterations = static_cast<int>(iterations);
    c.max_dense_tokens = p.integer("max_dense_tokens", c.max_dense_tokens);
    return AnyPruner(GPrune(c), "gprune");
  };
  return m;
}

inline MethodInfo fopru_method(FoPruStrategy strategy) {
  MethodInfo m;
  const bool row = strategy == FoPruStrategy::row;
  m.name = row ? "fopru-row" : "fopru-rank";
  m.summary = row ? "FoPru row strategy: the most significant whole rows of the patch grid"
                  : "FoPru rank strategy: the most significant tokens by the encoder's attention";
  m.inputs = {Input::attention, Input::query_keys, Input::significance};
  if (row) m.inputs.push_back(Input::grid);
  m.parameters = {{"axis", "auto", "significance: auto (the reference's variance rule) | received | given"}};
  m.create = [strategy, name = m.name](const Parameters& p) {
    return AnyPruner(FoPru(FoPruConfig{strategy, fopru_axis(p)}), name);
  };
  return m;
}

inline void add_builtin_methods(Registry& r) {
  r.add(gprune_method());
  r.add(fopru_method(FoPruStrategy::rank));
  r.add(fopru_method(FoPruStrategy::row));
}

}  // namespace detail

// The process-wide registry, with the built-in methods.
inline Registry& registry() {
  static Registry r;
  static std::once_flag built_in;
  std::call_once(built_in, [] { detail::add_builtin_methods(r); });
  return r;
}

inline std::vector<std::string> method_names() { return registry().names(); }
inline const MethodInfo& method_info(std::string_view name) { return registry().at(name); }
inline AnyPruner create_pruner(std::string_view name, const Parameters& parameters = {}) {
  return registry().create(name, parameters);
}
inline void register_method(MethodInfo info) { registry().add(std::move(info)); }

}  // namespace tokenprune
