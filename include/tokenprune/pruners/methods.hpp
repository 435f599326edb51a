#pragma once
#include <tokenprune/core/abi.hpp>
// The built-in methods in the registry (core/registry.hpp), and the process-wide registry itself:
//
//   tokenprune::method_names()                       {"gprune", "fopru-rank", "fopru-row", ...}
//   tokenprune::method_info("gprune")                inputs, parameters with defaults, extra outputs
//   tokenprune::create_pruner("gprune", {{"threshold", 0.6}})   an AnyPruner
//   tokenprune::register_method(info)                a third party's method, by its own name
//
// Each entry maps parameter names to the method's config; the config's validate() still has the last word.

#include <tokenprune/core/registry.hpp>
#include <tokenprune/pruners/cdpruner.hpp>
#include <tokenprune/pruners/cls_attention.hpp>
#include <tokenprune/pruners/dart.hpp>
#include <tokenprune/pruners/divprune.hpp>
#include <tokenprune/pruners/evs.hpp>
#include <tokenprune/pruners/fopru.hpp>
#include <tokenprune/pruners/gprune.hpp>
#include <tokenprune/pruners/visionzip.hpp>
#include <tokenprune/pruners/vispruner.hpp>

#include <mutex>
#include <string>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

namespace detail {

inline ExtraOutput indices_output(std::span<const index_t> indices) {
  return ExtraOutput{indices, {}, static_cast<index_t>(indices.size()), 1, {}};
}
inline ExtraOutput values_output(std::span<const float> values) {
  return ExtraOutput{{}, values, static_cast<index_t>(values.size()), 1, {}};
}
// The greedy methods' pick order and the gain of each pick.
template <class P>
std::optional<ExtraOutput> order_and_gains(const P& pruner, std::string_view name) {
  if (name == "order") return indices_output(pruner.order());
  if (name == "gains") return values_output(pruner.gains());
  return std::nullopt;
}
inline const std::vector<OutputInfo> kOrderAndGains = {
    {"order", "the pick order (int64)"}, {"gains", "the gain of each pick (float32)"}};

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
      {"max_graph_bytes", std::to_string(d.max_graph_bytes),
       "memory for the graph's edges; past it, Gram panels are recomputed at every step (same scores)"},
  };
  m.create = [](const Parameters& p) {
    GPruneConfig c;
    c.threshold = p.number("threshold", c.threshold);
    c.temperature = p.number("temperature", c.temperature);
    const std::int64_t iterations = p.integer("iterations", c.iterations);
    if (iterations < 0 || iterations > 1'000'000) fail("iterations", iterations, "must be in [0, 1000000]");
    c.iterations = static_cast<int>(iterations);
    c.max_dense_tokens = p.integer("max_dense_tokens", c.max_dense_tokens);
    const std::int64_t budget = p.integer("max_graph_bytes", static_cast<std::int64_t>(c.max_graph_bytes));
    if (budget < 0) fail("max_graph_bytes", budget, "must be >= 0");
    c.max_graph_bytes = static_cast<std::size_t>(budget);
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
  m.outputs = {{"axis", "the axis the significance was taken on: received or given"}};
  m.create = [strategy, name = m.name](const Parameters& p) {
    ExtraOutputs<FoPru> outputs = [](const FoPru& f, std::string_view output) -> std::optional<ExtraOutput> {
      if (output != "axis") return std::nullopt;
      ExtraOutput out;
      out.text = f.chosen_axis() == FoPruAxis::received ? "received" : "given";
      return out;
    };
    return AnyPruner(FoPru(FoPruConfig{strategy, fopru_axis(p)}), name, outputs);
  };
  return m;
}

inline MethodInfo visionzip_method() {
  MethodInfo m;
  m.name = "visionzip";
  m.summary = "VisionZip: dominant tokens by [CLS] attention, plus contextual tokens merged from the rest";
  m.inputs = {Input::cls_attention, Input::keys, Input::hidden_states};
  m.parameters = {
      {"dominant", "", "D: tokens kept as they are, [CLS] included (with contextual: the budget is D + C)", true},
      {"contextual", "", "C: merged tokens (default: max(1, floor(5K/32)) of a total budget K)"},
      {"key_heads", "1", "the keys hold this many heads' column blocks, averaged"},
  };
  m.outputs = {{"merged", "the contextual tokens [C, d] (float32), in target order"},
               {"targets", "the target row of each contextual token (int64)"}};
  m.create = [](const Parameters& p) {
    VisionZipConfig c;
    c.contextual = p.integer("contextual", c.contextual);
    c.key_heads = p.integer("key_heads", c.key_heads);
    ExtraOutputs<VisionZip> outputs = [](const VisionZip& v, std::string_view name) -> std::optional<ExtraOutput> {
      ExtraOutput out;
      if (name == "merged") {
        const ConstRowMap<float> merged = v.merged();
        out.values = std::span<const float>(merged.data(), static_cast<std::size_t>(merged.rows() * merged.cols()));
        out.rows = merged.rows();
        out.cols = merged.cols();
      } else if (name == "targets") {
        out.indices = v.targets();
        out.rows = static_cast<index_t>(out.indices.size());
        out.cols = 1;
      } else {
        return std::nullopt;
      }
      return out;
    };
    return AnyPruner(VisionZip(c), "visionzip", outputs);
  };
  m.budget_from = [](const Parameters& p) -> std::optional<Budget> {
    if (!p.contains("dominant")) return std::nullopt;
    if (!p.contains("contextual")) fail("contextual", "missing", "dominant needs contextual: the budget is D + C");
    const std::int64_t d = p.integer("dominant"), c = p.integer("contextual");
    if (d < 1) fail("dominant", d, "must be >= 1 (the [CLS] token is one of them)");
    if (c < 0) fail("contextual", c, "must be >= 0");
    return Budget::count(d + c);
  };
  return m;
}

inline MethodInfo divprune_method() {
  MethodInfo m;
  m.name = "divprune";
  m.summary = "DivPrune: max-min diversity, greedy in cosine distance over the features";
  m.inputs = {Input::features};
  m.outputs = kOrderAndGains;
  m.create = [](const Parameters&) { return AnyPruner(DivPrune(), "divprune", &order_and_gains<DivPrune>); };
  return m;
}

inline MethodInfo cls_attention_method() {
  MethodInfo m;
  m.name = "cls-attention";
  m.summary = "[CLS] attention (FasterVLM): the patches the [CLS] query attends to most, head mean";
  m.inputs = {Input::cls_attention};
  m.create = [](const Parameters&) { return AnyPruner(ClsAttention(), "cls-attention"); };
  return m;
}

inline MethodInfo vispruner_method() {
  MethodInfo m;
  m.name = "vispruner";
  m.summary = "VisPruner: important tokens by [CLS] attention, then diverse ones by iterative duplicate removal";
  m.inputs = {Input::cls_attention, Input::features};
  m.parameters = {{"important_ratio", "0.5", "share of the budget taken by [CLS] attention, in [0, 1]"},
                  {"dedup_step", "8", "tokens removed per duplicate-removal pass, >= 1"}};
  m.outputs = {{"important", "the important tokens alone, ascending (int64)"}};
  m.create = [](const Parameters& p) {
    VisPrunerConfig c;
    c.important_ratio = p.number("important_ratio", c.important_ratio);
    const std::int64_t step = p.integer("dedup_step", c.dedup_step);
    if (step < 1 || step > 1'000'000'000) fail("dedup_step", step, "must be in [1, 1000000000]");
    c.dedup_step = static_cast<int>(step);
    ExtraOutputs<VisPruner> outputs = [](const VisPruner& v, std::string_view name) -> std::optional<ExtraOutput> {
      if (name == "important") return indices_output(v.important());
      return std::nullopt;
    };
    return AnyPruner(VisPruner(c), "vispruner", outputs);
  };
  return m;
}

inline MethodInfo dart_method() {
  MethodInfo m;
  m.name = "dart";
  m.summary = "DART (embedding level): pivots by L1 norm, each keeping the tokens least similar to it";
  m.inputs = {Input::features, Input::text_embeds};
  m.parameters = {{"pivot_image", "4", "image pivots: the visual tokens of largest L1 norm, >= 0"},
                  {"pivot_text", "4", "text pivots: the text tokens of largest L1 norm, >= 0"}};
  m.outputs = {{"pivots", "the image pivots in rank order (int64)"},
               {"text_pivots", "the text pivots (rows of --text) in rank order (int64)"}};
  m.create = [](const Parameters& p) {
    DartConfig c;
    for (auto [name, field] : {std::pair{"pivot_image", &c.pivot_image}, std::pair{"pivot_text", &c.pivot_text}}) {
      const std::int64_t v = p.integer(name, *field);
      if (v < 0 || v > 1'000'000'000) fail(name, v, "must be in [0, 1000000000]");
      *field = static_cast<int>(v);
    }
    ExtraOutputs<Dart> outputs = [](const Dart& d, std::string_view name) -> std::optional<ExtraOutput> {
      if (name == "pivots") return indices_output(d.pivots());
      if (name == "text_pivots") return indices_output(d.text_pivots());
      return std::nullopt;
    };
    return AnyPruner(Dart(c), "dart", outputs);
  };
  return m;
}

inline MethodInfo cdpruner_method() {
  MethodInfo m;
  m.name = "cdpruner";
  m.summary = "CDPruner: conditional DPP (greedy MAP) over the features, weighted by relevance to the text";
  m.inputs = {Input::features, Input::image_embeds, Input::text_embeds, Input::relevance};
  m.parameters = {
      {"theta", "", "relevance emphasis in [0, 1): weights exp(theta / (2 (1 - theta)) r) (default: none, w = r)"},
      {"crops", "1", "the crops layout: n = crops x P tokens, the budget per crop, one relevance normalization"},
  };
  m.outputs = kOrderAndGains;
  m.create = [](const Parameters& p) {
    CDPrunerConfig c;
    c.theta = p.optional_number("theta");
    c.crops = p.integer("crops", c.crops);
    return AnyPruner(CDPruner(c), "cdpruner", &order_and_gains<CDPruner>);
  };
  return m;
}

inline MethodInfo evs_method() {
  MethodInfo m;
  m.name = "evs";
  m.summary = "EVS: video tokens that changed most since the same position in the previous frame";
  m.inputs = {Input::features, Input::video};
  m.parameters = {{"pruning_rate", "", "vLLM's rate q in [0, 1): keeps max(H*W, trunc(n (1 - q))) tokens", true}};
  m.outputs = {{"per_frame", "the kept tokens of each frame (int64)"}};
  m.create = [](const Parameters&) {
    ExtraOutputs<Evs> outputs = [](const Evs& e, std::string_view name) -> std::optional<ExtraOutput> {
      if (name == "per_frame") return indices_output(e.kept_per_frame());
      return std::nullopt;
    };
    return AnyPruner(Evs(), "evs", outputs);
  };
  m.budget_from = [](const Parameters& p) -> std::optional<Budget> {
    if (!p.contains("pruning_rate")) return std::nullopt;
    return Evs::pruning_rate(p.number("pruning_rate"));
  };
  return m;
}

inline void add_builtin_methods(Registry& r) {
  r.add(gprune_method());
  r.add(fopru_method(FoPruStrategy::rank));
  r.add(fopru_method(FoPruStrategy::row));
  r.add(divprune_method());
  r.add(cls_attention_method());
  r.add(cdpruner_method());
  r.add(visionzip_method());
  r.add(vispruner_method());
  r.add(evs_method());
  r.add(dart_method());
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
