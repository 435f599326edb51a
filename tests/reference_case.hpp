#pragma once
// Runs one reference case folder (case.json, input .npy files, expected_keep.npy and other expected_*.npy) through
// the library, the way an engine would: the parameters in case.json pick the pruner, the layout and the budget.
//
// The shared fixtures may hold cases of methods the library does not implement: the registry (pruners/methods.hpp)
// is the one list of those it does, for these tests and for the command-line tool alike; partition_cases() counts
// the other cases by method instead of running them. A case.json that is not JSON or has no "method" string is an
// error, not a skip.

#include <tokenprune/io/npy.hpp>
#include <tokenprune/tokenprune.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tokenprune::testing {

struct CaseResult {
  std::vector<index_t> expected;
  std::vector<index_t> kept;
  index_t kept_count = 0;  // what kept_count() promised before the data was looked at
  std::string extras;      // empty, or which extra expected output differed (axis, order, gains, merged, ...)
};

inline TokenMatrix matrix_view(const io::NpyArray& a, const char* what) {
  if (a.shape.size() != 2) fail(what, a.shape.size(), "expected 2 dimensions");
  if (a.type == io::NpyType::f16)
    return TokenMatrix(reinterpret_cast<const Eigen::half*>(a.data.data()), a.shape[0], a.shape[1]);
  return TokenMatrix(a.values<float>().data(), a.shape[0], a.shape[1]);
}
inline TokenMatrix features_view(const io::NpyArray& a) { return matrix_view(a, "features.npy"); }

inline AttentionMaps maps_view(const io::NpyArray& a) {
  if (a.shape.size() != 3) fail("attention.npy", a.shape.size(), "expected 3 dimensions");
  return AttentionMaps(a.values<float>().data(), a.shape[0], a.shape[1]);
}

// The case's parameters for the method, by one rule: every case.json key that names a parameter of the method
// (null: absent), leaving out parameters that set the budget when the case gives its own "keep" or "ratio".
inline Parameters case_parameters(const nlohmann::json& spec, const MethodInfo& info) {
  Parameters p;
  const bool has_budget = spec.contains("keep") || spec.contains("ratio");
  for (const ParameterInfo& param : info.parameters) {
    if (!spec.contains(param.name) || spec.at(param.name).is_null()) continue;
    if (param.sets_budget && has_budget) continue;
    const nlohmann::json& v = spec.at(param.name);
    if (v.is_boolean()) {
      p.set(param.name, v.get<bool>());
    } else if (v.is_number_integer()) {
      p.set(param.name, v.get<std::int64_t>());
    } else if (v.is_number()) {
      p.set(param.name, v.get<double>());
    } else {
      p.set(param.name, v.get<std::string>());
    }
  }
  return p;
}

// Compares the case's other expected files with the pruner's outputs (see tools/tokenprune.cpp compare_extras for
// the same rule); returns what differed, or an empty string.
inline std::string compare_outputs(const std::filesystem::path& dir, const nlohmann::json& spec, const AnyPruner& pruner) {
  if (spec.contains("axis_chosen_by_reference")) {
    const auto axis = pruner.output("axis");
    if (!axis || axis->text != spec.at("axis_chosen_by_reference").get<std::string>()) return "axis";
  }
  static const std::pair<const char*, const char*> names[] = {
      {"expected_selection_order.npy", "order"}, {"expected_selection_gain.npy", "gains"},
      {"expected_targets.npy", "targets"},       {"expected_merged.npy", "merged"},
      {"expected_important.npy", "important"},   {"expected_scores.npy", "scores"}};
  for (const auto& [file, name] : names) {
    if (!std::filesystem::exists(dir / file)) continue;
    const io::NpyArray a = io::read_npy((dir / file).string());
    const std::string out = name;
    std::span<const float> got;
    if (out == "scores") {
      got = pruner.scores();
    } else {
      const auto extra = pruner.output(out);
      if (!extra) return out + " (missing)";
      if (a.type == io::NpyType::i64) {
        const auto v = a.values<std::int64_t>();
        if (!std::equal(v.begin(), v.end(), extra->indices.begin(), extra->indices.end())) return out;
        continue;
      }
      got = extra->values;
    }
    const auto expected = a.values<float>();
    if (expected.size() != got.size()) return out + " (size)";
    double atol = 0.0, rtol = 0.0;
    for (const std::string& key : {out + "_tolerance", std::string("gain_tolerance")}) {
      if (!spec.contains(key)) continue;
      const nlohmann::json& t = spec.at(key);
      atol = t.value("atol", t.value("abs", 0.0));
      rtol = t.value("rtol", t.value("rel", 0.0));
      break;
    }
    for (std::size_t i = 0; i < expected.size(); ++i)
      if (!(std::fabs(double(got[i]) - expected[i]) <= atol + rtol * std::fabs(double(expected[i]))))
        return out + "[" + std::to_string(i) + "]";
  }
  return "";
}

// Runs one case through the registry: the method by its name, the inputs by the files present and what the
// method reads, the parameters by case_parameters(), the budget from "keep" (else "ratio", else the parameters).
inline CaseResult run_reference_case(const std::filesystem::path& dir) {
  std::ifstream spec_file(dir / "case.json");
  const nlohmann::json spec = nlohmann::json::parse(spec_file);
  CaseResult result;
  const io::NpyArray expected = io::read_npy((dir / "expected_keep.npy").string());
  const auto values = expected.values<std::int64_t>();
  result.expected.assign(values.begin(), values.end());

  const std::string method = spec.at("method");
  const MethodInfo& info = method_info(method);
  std::map<std::string, io::NpyArray> arrays;
  for (const char* name : {"features", "attention", "keys", "image_embeds", "text_embeds", "relevance"})
    if (std::filesystem::exists(dir / (std::string(name) + ".npy")))
      arrays[name] = io::read_npy((dir / (std::string(name) + ".npy")).string());
  PruneInputs inputs;
  index_t dim = 0;
  if (arrays.count("features")) {
    (info.reads(Input::hidden_states) ? inputs.hidden_states : inputs.features) = features_view(arrays["features"]);
    dim = arrays["features"].shape[1];
  }
  if (arrays.count("attention")) {
    if (info.reads(Input::cls_attention)) {
      inputs.cls_attention = cls_query_row(maps_view(arrays["attention"]), spec.value("cls_index", index_t{0}));
    } else {
      inputs.attention = maps_view(arrays["attention"]);
    }
  }
  if (arrays.count("keys")) inputs.keys = matrix_view(arrays["keys"], "keys.npy");
  if (arrays.count("image_embeds")) inputs.image_embeds = matrix_view(arrays["image_embeds"], "image_embeds.npy");
  if (arrays.count("text_embeds")) inputs.text_embeds = matrix_view(arrays["text_embeds"], "text_embeds.npy");
  if (arrays.count("relevance")) inputs.relevance = arrays["relevance"].values<float>();
  if (spec.contains("grid_t")) inputs.video = VideoGrid{spec.at("grid_t"), spec.at("grid_h"), spec.at("grid_w")};
  if (spec.contains("grid_rows") && info.reads(Input::grid)) inputs.grid = Grid{spec.at("grid_rows"), spec.at("grid_cols")};

  const Parameters parameters = case_parameters(spec, info);
  AnyPruner pruner = create_pruner(method, parameters);
  if (spec.value("layout", std::string("flat")) == "llava-next") {
    Segmented<AnyPruner> segmented{std::move(pruner)};
    LlavaNextLayout layout(spec.at("grid_rows"), spec.at("grid_cols"), spec.at("ratio"));
    result.kept_count = segmented.kept_count(layout);
    auto kept = segmented.prune(inputs, layout);
    result.kept.assign(kept.begin(), kept.end());
    return result;
  }
  std::optional<Budget> budget;
  if (spec.contains("keep")) {
    budget = Budget::count(spec.at("keep"));
  } else if (spec.contains("ratio")) {
    budget = Budget::ratio(spec.at("ratio"));
  } else if (info.budget_from) {
    budget = info.budget_from(parameters);
  }
  if (!budget) fail((dir / "case.json").string(), "no budget", "the case gives no keep, ratio or budget parameters");
  result.kept_count = pruner.kept_count(inputs.shape(), *budget);
  pruner.reserve(inputs.n_tokens(), dim);
  auto kept = pruner.prune(inputs, *budget);
  result.kept.assign(kept.begin(), kept.end());
  result.extras = compare_outputs(dir, spec, pruner);
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

// Whether the library's registry has the method of a case.json "method" (the command-line tool runs the same
// registry, so `tokenprune check` runs exactly these cases).
inline bool method_implemented(std::string_view method) { return registry().find(method) != nullptr; }

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
