// The method registry (core/registry.hpp, pruners/methods.hpp): every built-in method by name, Parameters and
// their errors, AnyPruner against the concrete pruners, a third party's method, and Segmented<AnyPruner> for every
// method whose inputs can be split into segments. Methods are driven from their MethodInfo alone, so a method
// added to the registry is covered here without a line of its own.

#include "catch.hpp"
#include "method_inputs.hpp"

#include <tokenprune/tokenprune.hpp>

#include <algorithm>
#include <numeric>
#include <set>
#include <string>
#include <vector>

namespace tp = tokenprune;
using Index = tp::index_t;

namespace {

std::vector<Index> to_vector(std::span<const Index> s) { return {s.begin(), s.end()}; }

template <class F>
std::string error_argument(F&& f) {
  try {
    f();
  } catch (const tp::Error& e) {
    return e.argument();
  }
  return "(no error)";
}

// A third party's pruner: keeps the first k tokens (scores n - i), reads the features.
class FirstTokens {
 public:
  explicit FirstTokens(Index offset = 0) : offset_(offset) {}
  [[nodiscard]] Index kept_count(const tp::TokenShape& shape, tp::Budget budget) const {
    return budget.resolve(shape.n_tokens);
  }
  void reserve(Index max_tokens, Index) {
    kept_.reserve(static_cast<std::size_t>(max_tokens));
    scores_.reserve(static_cast<std::size_t>(max_tokens));
  }
  std::span<const Index> prune(const tp::PruneInputs& inputs, tp::Budget budget) {
    const Index n = inputs.n_tokens();
    const Index k = budget.resolve(n);
    kept_.resize(static_cast<std::size_t>(k));
    std::iota(kept_.begin(), kept_.end(), Index{0});
    scores_.resize(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) scores_[static_cast<std::size_t>(i)] = static_cast<float>(n - i + offset_);
    return kept_;
  }
  [[nodiscard]] std::span<const float> scores() const noexcept { return scores_; }

 private:
  Index offset_;
  std::vector<Index> kept_;
  std::vector<float> scores_;
};

}  // namespace

TEST_CASE("registry: every built-in method by name", "[registry]") {
  const std::vector<std::string> names = tp::method_names();
  for (const char* expected : {"gprune", "fopru-rank", "fopru-row", "divprune", "cls-attention", "cdpruner",
                               "visionzip", "vispruner", "evs", "dart"})
    CHECK(std::find(names.begin(), names.end(), expected) != names.end());
  CHECK(std::set<std::string>(names.begin(), names.end()).size() == names.size());
  for (const std::string& name : names) {
    INFO("method " << name);
    const tp::MethodInfo& info = tp::method_info(name);
    CHECK(info.name == name);
    CHECK_FALSE(info.summary.empty());
    CHECK_FALSE(info.inputs.empty());
    for (const tp::ParameterInfo& p : info.parameters) {
      CHECK_FALSE(p.help.empty());
      CHECK(p.name.find('-') == std::string::npos);  // snake_case: the tool's flag swaps '_' for '-'
    }
  }
  CHECK(error_argument([] { (void)tp::method_info("no-such-method"); }) == "method");
  CHECK(error_argument([] { (void)tp::create_pruner(""); }) == "method");
}

TEST_CASE("registry: each method through AnyPruner keeps kept_count() ascending indices, with its outputs", "[registry]") {
  const Index n = 64, d = 32;
  for (const std::string& name : tp::method_names()) {
    INFO("method " << name);
    const tp::MethodInfo& info = tp::method_info(name);
    const tp::testing::MethodInputs m = tp::testing::make_method_inputs(info, n, d, 7);
    tp::AnyPruner pruner = tp::create_pruner(name);
    CHECK(pruner.name() == name);
    const tp::Budget budget = tp::Budget::count(16);
    const Index promised = pruner.kept_count(m.inputs.shape(), budget);
    pruner.reserve(n, d);
    const std::vector<Index> kept = to_vector(pruner.prune(m.inputs, budget));
    CHECK(static_cast<Index>(kept.size()) == promised);
    CHECK(std::adjacent_find(kept.begin(), kept.end(), std::greater_equal<>()) == kept.end());
    const Index rows = info.reads(tp::Input::hidden_states) ? n + 1 : n;  // VisionZip's rows include [CLS]
    for (Index k : kept) CHECK((k >= 0 && k < rows));
    CHECK(static_cast<Index>(pruner.scores().size()) == n);
    for (const tp::OutputInfo& out : info.outputs) {
      INFO("output " << out.name);
      CHECK(pruner.output(out.name).has_value());
    }
    CHECK_FALSE(pruner.output("no-such-output").has_value());
    // The same answer as a second instance built from the same name: nothing is shared between them.
    tp::AnyPruner again = tp::create_pruner(name);
    CHECK(to_vector(again.prune(m.inputs, budget)) == kept);
  }
}

TEST_CASE("registry: AnyPruner gives the concrete pruner's answer and reaches it", "[registry]") {
  const tp::testing::MethodInputs m = tp::testing::make_method_inputs(tp::method_info("gprune"), 64, 16, 3);
  tp::GPrune direct(tp::GPruneConfig{0.6, 0.05, 3});
  tp::AnyPruner named = tp::create_pruner("gprune", {{"threshold", 0.6}, {"temperature", "0.05"}, {"iterations", 3}});
  const auto budget = tp::Budget::ratio(0.25);
  CHECK(to_vector(named.prune(m.inputs, budget)) == to_vector(direct.prune(m.inputs, budget)));
  REQUIRE(named.target<tp::GPrune>() != nullptr);
  CHECK(named.target<tp::GPrune>()->config().threshold == 0.6);
  CHECK(named.target<tp::FoPru>() == nullptr);
  const auto s1 = named.scores(), s2 = direct.scores();
  CHECK(std::equal(s1.begin(), s1.end(), s2.begin(), s2.end()));

  tp::AnyPruner empty;
  CHECK(empty.empty());
  CHECK(error_argument([&] { (void)empty.scores(); }) == "pruner");
}

TEST_CASE("registry: parameters are checked by name and by value", "[registry]") {
  CHECK(error_argument([] { (void)tp::create_pruner("gprune", {{"axis", "given"}}); }) == "axis");
  CHECK(error_argument([] { (void)tp::create_pruner("gprune", {{"threshold", "half"}}); }) == "threshold");
  CHECK(error_argument([] { (void)tp::create_pruner("gprune", {{"threshold", 1.5}}); }) == "threshold");
  CHECK(error_argument([] { (void)tp::create_pruner("gprune", {{"iterations", 2.5}}); }) == "iterations");
  CHECK(error_argument([] { (void)tp::create_pruner("fopru-rank", {{"axis", "both"}}); }) == "axis");
  CHECK(error_argument([] { (void)tp::create_pruner("vispruner", {{"dedup_step", 0}}); }) == "dedup_step");
  CHECK(error_argument([] { (void)tp::create_pruner("cdpruner", {{"theta", 1.0}}); }) == "theta");
  CHECK(error_argument([] { (void)tp::create_pruner("dart", {{"pivot_image", -1}}); }) == "pivot_image");
  // Budgets from parameters.
  const tp::MethodInfo& zip = tp::method_info("visionzip");
  REQUIRE(zip.budget_from);
  const auto from_split = zip.budget_from(tp::Parameters{{"dominant", 54}, {"contextual", 10}});
  REQUIRE(from_split.has_value());
  CHECK(from_split->keep() == 64);
  CHECK_FALSE(zip.budget_from(tp::Parameters{{"contextual", 10}}).has_value());
  CHECK(error_argument([&] { (void)zip.budget_from(tp::Parameters{{"dominant", 54}}); }) == "contextual");
  const auto evs = tp::method_info("evs").budget_from(tp::Parameters{{"pruning_rate", 0.9}});
  REQUIRE(evs.has_value());
  CHECK(evs->resolve(1000) == 99);  // vLLM's int(1000 * (1 - 0.9))
  CHECK(error_argument([] { (void)tp::method_info("evs").budget_from(tp::Parameters{{"pruning_rate", 1.0}}); }) ==
        "pruning_rate");
}

TEST_CASE("registry: Parameters convert as typed and reject what does not parse", "[registry]") {
  tp::Parameters p{{"a", 3}, {"b", 2.5}, {"c", "7"}, {"d", "0.25"}, {"e", true}, {"f", "rank"}, {"g", "1e3"}};
  CHECK(p.integer("a") == 3);
  CHECK(p.number("a") == 3.0);
  CHECK(p.number("b") == 2.5);
  CHECK(p.integer("c") == 7);
  CHECK(p.number("d") == 0.25);
  CHECK(p.boolean("e", false));
  CHECK(p.text("f", "") == "rank");
  CHECK(p.number("g") == 1000.0);
  CHECK(p.integer("missing", 11) == 11);
  CHECK_FALSE(p.optional_number("missing").has_value());
  CHECK(error_argument([&] { (void)p.integer("b"); }) == "b");      // 2.5 is no integer
  CHECK(error_argument([&] { (void)p.integer("d"); }) == "d");      // nor is "0.25"
  CHECK(error_argument([&] { (void)p.number("f"); }) == "f");       // "rank" is no number
  CHECK(error_argument([&] { (void)p.text("a", ""); }) == "a");     // 3 is no text
  CHECK(error_argument([&] { (void)p.boolean("f", false); }) == "f");
  CHECK(error_argument([&] { (void)p.number("missing"); }) == "missing");
  p.set("a", 4.0);  // a double stays a double (not truncated through an int overload)
  CHECK(p.number("a") == 4.0);
  p.set("h", 0.5);
  CHECK(p.number("h") == 0.5);
}

TEST_CASE("registry: a third party registers its own method and every front end reaches it", "[registry]") {
  static bool registered = false;  // the registry is process-wide: register once even if this test repeats
  if (!registered) {
    tp::MethodInfo info;
    info.name = "test-first-tokens";
    info.summary = "keeps the first k tokens (a test method)";
    info.inputs = {tp::Input::features};
    info.parameters = {{"offset", "0", "added to every score"}};
    info.create = [](const tp::Parameters& p) {
      return tp::AnyPruner(FirstTokens(p.integer("offset", 0)), "test-first-tokens");
    };
    tp::register_method(info);
    registered = true;
    CHECK(error_argument([&] { tp::register_method(info); }) == "method.name");  // a name is registered once
  }
  const std::vector<std::string> names = tp::method_names();
  CHECK(std::find(names.begin(), names.end(), "test-first-tokens") != names.end());
  std::vector<float> x(12 * 3, 1.0f);
  tp::PruneInputs in;
  in.features = tp::TokenMatrix(x.data(), 12, 3);
  tp::AnyPruner p = tp::create_pruner("test-first-tokens", {{"offset", 5}});
  CHECK(to_vector(p.prune(in, tp::Budget::count(3))) == std::vector<Index>{0, 1, 2});
  CHECK(p.scores()[0] == 17.0f);
  CHECK(error_argument([] { (void)tp::create_pruner("test-first-tokens", {{"threshold", 0.5}}); }) == "threshold");
}

TEST_CASE("registry: Segmented<AnyPruner> prunes every segment as an image of its own, for every method", "[registry]") {
  const Index n = 128, d = 32, half = n / 2;
  for (const std::string& name : tp::method_names()) {
    INFO("method " << name);
    const tp::MethodInfo& info = tp::method_info(name);
    if (name.rfind("test-", 0) == 0) continue;
    const tp::testing::MethodInputs m = tp::testing::make_method_inputs(info, n, d, 11);
    std::vector<Index> first(static_cast<std::size_t>(half)), second(static_cast<std::size_t>(half));
    std::iota(first.begin(), first.end(), Index{0});
    std::iota(second.begin(), second.end(), half);
    const Index side = 8;  // each half is an 8 x 8 grid, or a video of half / 16 frames of 4 x 4
    const tp::Segment segments[] = {
        {first, tp::Budget::count(12), tp::Grid{side, side}, info.reads(tp::Input::video) ? tp::VideoGrid{half / 16, 4, 4} : tp::VideoGrid{}},
        {second, tp::Budget::count(20), tp::Grid{side, side}, info.reads(tp::Input::video) ? tp::VideoGrid{half / 16, 4, 4} : tp::VideoGrid{}}};
    const tp::SegmentLayout layout{n, segments, {}};
    tp::Segmented<tp::AnyPruner> segmented{tp::create_pruner(name)};
    segmented.reserve(n, d);
    tp::PruneInputs whole = m.inputs;
    whole.grid = {};
    whole.video = {};
    if (info.reads(tp::Input::hidden_states)) {
      // One [CLS] row per image: VisionZip is run per image (crop), never split (layouts/segments.hpp).
      CHECK(error_argument([&] { (void)segmented.prune(whole, layout); }) == "hidden_states");
      continue;
    }
    const std::vector<Index> kept = to_vector(segmented.prune(whole, layout));
    CHECK(static_cast<Index>(kept.size()) == segmented.kept_count(layout));
    // Each half alone, as its own image: the same tokens (offset by the half's start).
    std::vector<Index> expected;
    for (int s = 0; s < 2; ++s) {
      tp::PruneInputs part = m.inputs;
      const Index start = s * half;
      if (!part.features.empty()) part.features = part.features.rows(start, half);
      if (!part.cls_attention.empty()) part.cls_attention = part.cls_attention.columns(start, half);
      if (!part.image_embeds.empty()) part.image_embeds = part.image_embeds.rows(start, half);
      if (!part.attention.empty()) part.attention = part.attention.block(start, half);
      part.grid = segments[s].grid;
      part.video = segments[s].video;
      tp::AnyPruner alone = tp::create_pruner(name);
      for (Index i : alone.prune(part, segments[s].budget)) expected.push_back(i + start);
    }
    CHECK(kept == expected);
  }
}
