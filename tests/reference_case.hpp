#pragma once
// Runs one reference case folder (case.json + features.npy | attention.npy + expected_keep.npy) through the
// library, the way an engine would: the parameters in case.json pick the pruner, the layout and the budget.
//
// The shared fixtures also hold cases of methods the library does not implement yet. implemented_methods() is the
// one list of the methods it does (the command-line tool keeps the same list, kMethods in tools/tokenprune.cpp;
// the tool tests compare the two through `tokenprune check`): partition_cases() counts the other cases by method
// instead of running them. A case.json that is not JSON or has no "method" string is an error, not a skip.

#include <tokenprune/io/npy.hpp>
#include <tokenprune/tokenprune.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace tokenprune::testing {

struct CaseResult {
  std::vector<index_t> expected;
  std::vector<index_t> kept;
  index_t kept_count = 0;       // what kept_count() promised before the data was looked at
  std::string axis_expected;    // FoPru: the reference's axis choice
  std::string axis_chosen;
};

inline TokenMatrix features_view(const io::NpyArray& a) {
  if (a.shape.size() != 2) fail("features.npy", a.shape.size(), "expected 2 dimensions");
  if (a.type == io::NpyType::f16)
    return TokenMatrix(reinterpret_cast<const Eigen::half*>(a.data.data()), a.shape[0], a.shape[1]);
  return TokenMatrix(a.values<float>().data(), a.shape[0], a.shape[1]);
}

inline CaseResult run_reference_case(const std::filesystem::path& dir) {
  std::ifstream spec_file(dir / "case.json");
  const nlohmann::json spec = nlohmann::json::parse(spec_file);
  CaseResult result;
  const io::NpyArray expected = io::read_npy((dir / "expected_keep.npy").string());
  const auto values = expected.values<std::int64_t>();
  result.expected.assign(values.begin(), values.end());

  const std::string method = spec.at("method");
  if (method == "gprune") {
    const io::NpyArray features = io::read_npy((dir / "features.npy").string());
    GPruneConfig config;
    config.threshold = spec.at("threshold");
    config.temperature = spec.at("temperature");
    config.iterations = spec.at("iterations");
    PruneInputs inputs;
    inputs.features = features_view(features);
    if (spec.at("layout") == "llava-next") {
      Segmented<GPrune> pruner{GPrune(config)};
      LlavaNextLayout layout(spec.at("grid_rows"), spec.at("grid_cols"), spec.at("ratio"));
      result.kept_count = pruner.kept_count(layout);
      auto kept = pruner.prune(inputs, layout);
      result.kept.assign(kept.begin(), kept.end());
    } else {
      GPrune pruner(config);
      const Budget budget = Budget::count(spec.at("keep"));
      result.kept_count = pruner.kept_count(inputs.shape(), budget);
      auto kept = pruner.prune(inputs, budget);
      result.kept.assign(kept.begin(), kept.end());
    }
  } else if (method == "fopru-rank" || method == "fopru-row") {
    const io::NpyArray attention = io::read_npy((dir / "attention.npy").string());
    FoPruConfig config;
    config.strategy = method == "fopru-row" ? FoPruStrategy::row : FoPruStrategy::rank;
    FoPru pruner(config);
    PruneInputs inputs;
    inputs.attention = AttentionMaps(attention.values<float>().data(), attention.shape[0], attention.shape[1]);
    if (spec.contains("grid_rows")) inputs.grid = Grid{spec.at("grid_rows"), spec.at("grid_cols")};
    const Budget budget = Budget::count(spec.at("keep"));
    result.kept_count = pruner.kept_count(inputs.shape(), budget);
    auto kept = pruner.prune(inputs, budget);
    result.kept.assign(kept.begin(), kept.end());
    result.axis_expected = spec.at("axis_chosen_by_reference");
    result.axis_chosen = pruner.chosen_axis() == FoPruAxis::received ? "received" : "given";
  } else {
    fail((dir / "case.json").string(), method, "method not implemented (see implemented_methods())");
  }
  return result;
}

// Every case folder below `root`, sorted by name.
inline std::vector<std::filesystem::path> reference_cases(const std::filesystem::path& root) {
  std::vector<std::filesystem::path> cases;
  if (!std::filesystem::is_directory(root)) return cases;
  for (const auto& entry : std::filesystem::directory_iterator(root))
    if (std::filesystem::exists(entry.path() / "case.json")) cases.push_back(entry.path());
  std::sort(cases.begin(), cases.end());
  return cases;
}

// The case.json "method" values that run_reference_case() runs (and that `tokenprune check` runs).
inline constexpr std::array<std::string_view, 3> implemented_methods() { return {"gprune", "fopru-rank", "fopru-row"}; }

inline bool method_implemented(std::string_view method) {
  const auto methods = implemented_methods();
  return std::find(methods.begin(), methods.end(), method) != methods.end();
}

// case.json's "method"; an Error when the file is missing, not JSON, or has no non-empty "method" string.
inline std::string case_method(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "case.json";
  std::ifstream file(path);
  if (!file) fail(path.string(), "unreadable", "cannot open case.json");
  const nlohmann::json spec = nlohmann::json::parse(file, nullptr, false);
  if (spec.is_discarded()) fail(path.string(), "invalid JSON", "case.json does not parse");
  if (!spec.is_object() || !spec.contains("method") || !spec["method"].is_string() ||
      spec["method"].get<std::string>().empty())
    fail(path.string(), "invalid case", "case.json needs a non-empty string \"method\"");
  return spec["method"].get<std::string>();
}

struct CaseSet {
  std::vector<std::filesystem::path> implemented;       // cases to run, sorted by name
  std::map<std::string, std::size_t> not_implemented;   // method -> number of its cases, by method name
  [[nodiscard]] std::size_t not_implemented_total() const {
    std::size_t total = 0;
    for (const auto& [method, count] : not_implemented) total += count;
    return total;
  }
  // "169 not implemented (cdpruner 36, cls-attention 20, ...)", or "0 not implemented".
  [[nodiscard]] std::string not_implemented_text() const {
    std::string text = std::to_string(not_implemented_total()) + " not implemented";
    std::string detail;
    for (const auto& [method, count] : not_implemented)
      detail += (detail.empty() ? "" : ", ") + method + " " + std::to_string(count);
    return detail.empty() ? text : text + " (" + detail + ")";
  }
};

// Every case folder below `root`, split into the ones of implemented methods and a count of the others.
inline CaseSet partition_cases(const std::filesystem::path& root) {
  CaseSet set;
  for (const auto& dir : reference_cases(root)) {
    const std::string method = case_method(dir);
    if (method_implemented(method)) {
      set.implemented.push_back(dir);
    } else {
      ++set.not_implemented[method];
    }
  }
  return set;
}

}  // namespace tokenprune::testing
