#pragma once
#include <tokenprune/core/abi.hpp>
// The method registry: every pruner by name, built from named parameters into an AnyPruner. The command-line
// tool and the Python binding drive every method through it; a third party adds its own with register_method().
// The built-in methods are registered in pruners/methods.hpp (included by tokenprune.hpp), which also defines
// method_names(), method_info() and create_pruner().
//
// What a MethodInfo says is what a front end needs without knowing the method: which inputs it reads (so a
// tool can route a file to the right PruneInputs member), its parameters with defaults and help, its extra
// outputs, and, for methods whose budget is naturally given by parameters (VisionZip's dominant + contextual
// counts, EVS's pruning rate), how those become a Budget.

#include <tokenprune/core/any_pruner.hpp>
#include <tokenprune/core/parameters.hpp>

#include <algorithm>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

// The PruneInputs members a method can read.
enum class Input {
  features,       // PruneInputs::features
  attention,      // PruneInputs::attention (maps without [CLS])
  query_keys,     // PruneInputs::query_keys
  significance,   // PruneInputs::significance
  grid,           // PruneInputs::grid
  cls_attention,  // PruneInputs::cls_attention ([CLS] query row)
  hidden_states,  // PruneInputs::hidden_states ([CLS] at row 0)
  keys,           // PruneInputs::keys ([CLS] at row 0)
  image_embeds,   // PruneInputs::image_embeds
  text_embeds,    // PruneInputs::text_embeds
  relevance,      // PruneInputs::relevance
  video,          // PruneInputs::video
};

struct ParameterInfo {
  std::string name;           // snake_case; the tool's flag is --name with '-' for '_'
  std::string default_value;  // as text; empty: no default (absent means "not used")
  std::string help;
  // The parameter gives the budget (VisionZip's dominant, EVS's pruning_rate): a caller with a count or ratio
  // leaves it out. Such parameters are read by budget_from, not by create.
  bool sets_budget = false;
};

struct OutputInfo {
  std::string name;  // AnyPruner::output(name)
  std::string help;
};

struct MethodInfo {
  std::string name;     // the --method value and case.json "method", e.g. "gprune"
  std::string summary;  // one line
  std::vector<Input> inputs;
  std::vector<ParameterInfo> parameters;
  std::vector<OutputInfo> outputs;
  // Builds the pruner; unknown parameter names are rejected before this is called.
  std::function<AnyPruner(const Parameters&)> create;
  // The budget that parameters imply (nullopt: the caller gives one as usual). Optional.
  std::function<std::optional<Budget>(const Parameters&)> budget_from{};

  [[nodiscard]] bool reads(Input input) const { return std::find(inputs.begin(), inputs.end(), input) != inputs.end(); }
  [[nodiscard]] const ParameterInfo* parameter(std::string_view parameter_name) const {
    for (const ParameterInfo& p : parameters)
      if (p.name == parameter_name) return &p;
    return nullptr;
  }
  [[nodiscard]] const OutputInfo* output(std::string_view output_name) const {
    for (const OutputInfo& o : outputs)
      if (o.name == output_name) return &o;
    return nullptr;
  }
};

// A list of methods by name. Use the process-wide one through register_method() / method_info() /
// create_pruner() (pruners/methods.hpp); adding is safe from any thread, but add before use.
class Registry {
 public:
  void add(MethodInfo info) {
    if (info.name.empty()) fail("method.name", "\"\"", "a method needs a name");
    if (!info.create) fail("method.create", info.name, "a method needs a factory");
    const std::lock_guard<std::mutex> lock(mutex_);
    for (const MethodInfo& m : methods_)
      if (m.name == info.name) fail("method.name", info.name, "a method of this name is already registered");
    methods_.push_back(std::move(info));
  }

  [[nodiscard]] const MethodInfo* find(std::string_view name) const {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (const MethodInfo& m : methods_)
      if (m.name == name) return &m;
    return nullptr;
  }

  [[nodiscard]] const MethodInfo& at(std::string_view name) const {
    if (const MethodInfo* m = find(name)) return *m;
    fail("method", name.empty() ? std::string_view("\"\"") : name, "unknown: must be one of " + list(", "));
  }

  // Registration order (the built-ins first).
  [[nodiscard]] std::vector<std::string> names() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    for (const MethodInfo& m : methods_) out.push_back(m.name);
    return out;
  }

  [[nodiscard]] std::string list(std::string_view separator) const {
    std::string text;
    for (const std::string& n : names()) text += (text.empty() ? "" : std::string(separator)) + n;
    return text;
  }

  // Checks every parameter name against the method's list, then builds it.
  [[nodiscard]] AnyPruner create(std::string_view name, const Parameters& parameters) const {
    const MethodInfo& info = at(name);
    for (const std::string& given : parameters.names()) {
      if (info.parameter(given) == nullptr) {
        std::string known;
        for (const ParameterInfo& p : info.parameters) known += (known.empty() ? "" : ", ") + p.name;
        fail(given, parameters.text_of(given),
             "not a parameter of method " + info.name + (known.empty() ? " (it has none)" : " (it has: " + known + ")"));
      }
    }
    return info.create(parameters);
  }

 private:
  mutable std::mutex mutex_;
  std::deque<MethodInfo> methods_;  // a deque: references returned by find() and at() survive later add() calls
};

}  // namespace tokenprune
