#pragma once
// Runs one reference case folder (case.json + features.npy | attention.npy + expected_keep.npy) through the
// library, the way an engine would: the parameters in case.json pick the pruner, the layout and the budget.

#include <tokenprune/io/npy.hpp>
#include <tokenprune/tokenprune.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
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
  } else {
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

}  // namespace tokenprune::testing
