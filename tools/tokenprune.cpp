// tokenprune: command-line front end of the library, for scripts and for checking the reference fixtures.
//
//   tokenprune prune --method gprune|fopru-rank|fopru-row (--features F.npy | --attention A.npy)
//                    (--keep K | --ratio R) [--layout flat|llava-next] [--grid RxC]
//                    [--threshold T] [--temperature T] [--iterations M] [--axis auto|received|given]
//                    [--out KEEP.npy] [--scores-out SCORES.npy] [--repeat N] [--report json]
//                    [--isa auto|avx512|avx2|portable]
//   tokenprune check DIR... [--repeat N] [--isa LEVEL] [--scores-dir OUT]
//   tokenprune --version | --help
//
// Exit status: 0 success (check: every case of an implemented method matched), 1 check found a mismatch, 2 bad
// usage or bad input. Every error is exactly one line on stderr, "tokenprune: <argument> = <value>: <reason>", and
// leaves no output file behind: --out and --scores-out are written (atomically, temp file + rename) only after the
// selection succeeded.
//
// `check` runs the cases of the methods this tool implements (kMethods below) and counts the others as "not
// implemented" without failing; a case of an implemented method that cannot be run is an error.
//
// The instruction-set level of the kernels is --isa, else the TOKENPRUNE_ISA environment variable, else the best
// the CPU supports (core/isa.hpp); an invalid or unsupported level is a usage error (exit 2) before any file is read.
//
// `prune` and `check` share one code path: both fill a PruneOptions (from the command line or from case.json),
// and run_prune() validates it, loads the inputs, builds the pruner, reserves, and times prune() alone.

#include <tokenprune/io/npy.hpp>
#include <tokenprune/tokenprune.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace fs = std::filesystem;
using tokenprune::Budget;
using tokenprune::fail;
using tokenprune::index_t;

// ---------------------------------------------------------------------------------------------------------
// Options: what one selection needs, whoever filled it in.
// ---------------------------------------------------------------------------------------------------------
struct PruneOptions {
  std::string method;                 // gprune | fopru-rank | fopru-row
  std::optional<std::string> features;
  std::optional<std::string> attention;
  std::optional<index_t> keep;
  std::optional<double> ratio;
  std::optional<std::string> layout;  // flat (default) | llava-next
  std::optional<std::string> grid;    // "RxC"
  std::optional<double> threshold, temperature;
  std::optional<int> iterations;
  std::optional<std::string> axis;    // auto (default) | received | given
  int repeat = 1;
};

enum class Method { gprune, fopru_rank, fopru_row };

// The methods this tool runs: --method values and case.json "method" values. `check` counts cases of any other
// method as not implemented.
struct MethodName {
  std::string_view name;
  Method method;
};
constexpr MethodName kMethods[] = {
    {"gprune", Method::gprune}, {"fopru-rank", Method::fopru_rank}, {"fopru-row", Method::fopru_row}};

std::optional<Method> method_named(std::string_view name) {
  for (const MethodName& m : kMethods)
    if (m.name == name) return m.method;
  return std::nullopt;
}

// "gprune, fopru-rank or fopru-row" (separator ", " and last " or "), or with `bar` "gprune | fopru-rank | ...".
std::string method_list(bool bar = false) {
  std::string text;
  const std::size_t count = std::size(kMethods);
  for (std::size_t i = 0; i < count; ++i) {
    if (i > 0) text += bar ? " | " : (i + 1 == count ? " or " : ", ");
    text += kMethods[i].name;
  }
  return text;
}

struct GridSpec {
  index_t rows = 0;
  index_t cols = 0;
};

// Everything that can be checked before any file is read.
struct Plan {
  Method method = Method::gprune;
  bool llava_next = false;
  std::optional<GridSpec> grid;
  tokenprune::GPruneConfig gprune{};
  tokenprune::FoPruConfig fopru{};
};

struct Selection {
  std::string method;
  std::string layout;             // gprune only
  std::string input_dtype;        // float32 | float16
  index_t n_tokens = 0;
  index_t dim = 0;                // gprune: feature dim; fopru: heads
  index_t promised = 0;           // kept_count() before the data was looked at
  std::vector<index_t> kept;
  std::vector<double> select_ms;  // one per repeat
  std::string axis_chosen;        // fopru only: received | given
  std::vector<float> scores;      // per-token scores of the last prune() (the pruner's, or the layout's)
  std::string isa;                // instruction-set level the kernels ran at
  double median_ms() const {
    std::vector<double> sorted = select_ms;
    std::sort(sorted.begin(), sorted.end());
    const std::size_t m = sorted.size();
    if (m == 0) return 0.0;
    return m % 2 == 1 ? sorted[m / 2] : 0.5 * (sorted[m / 2 - 1] + sorted[m / 2]);
  }
};

std::string version_string() {
  return "tokenprune " + std::to_string(tokenprune::kVersionMajor) + "." + std::to_string(tokenprune::kVersionMinor) +
         "." + std::to_string(tokenprune::kVersionPatch);
}

// Applies --isa if given, then returns the level in use (TOKENPRUNE_ISA or the best supported one without --isa).
// Either one naming a level that is unknown or that this CPU lacks is an Error naming --isa or TOKENPRUNE_ISA.
tokenprune::Isa select_isa(const std::optional<std::string>& isa) {
  if (isa) {
    try {
      tokenprune::set_isa(*isa);
    } catch (const tokenprune::Error& e) {
      throw e.renamed("--isa");
    }
  }
  return tokenprune::active_isa();
}

// --version: the version, then the instruction-set level in use and the ones this CPU supports.
std::string version_text() {
  return version_string() + "\nisa: " + tokenprune::isa_name(tokenprune::active_isa()) +
         " (supported: " + tokenprune::supported_isas() + ")";
}

// ---------------------------------------------------------------------------------------------------------
// Error messages: the library names its own arguments ("keep", "features[3,2]", a file path); the tool
// rewrites those names into the command-line flags the user typed, so that every message names an option.
// ---------------------------------------------------------------------------------------------------------
std::string one_line(std::string text) {
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

// Library argument name -> command-line flag (with any element suffix such as "[3,2]" kept).
std::optional<std::string> flag_for(const std::string& argument) {
  static const std::pair<std::string_view, std::string_view> names[] = {
      {"keep", "--keep"},           {"ratio", "--ratio"},           {"threshold", "--threshold"},
      {"temperature", "--temperature"}, {"iterations", "--iterations"}, {"features", "--features"},
      {"attention", "--attention"}, {"grid", "--grid"},             {"grid_rows", "--grid"},
      {"grid_cols", "--grid"}};
  for (const auto& [name, flag] : names) {
    if (argument == name) return std::string(flag);
  }
  for (std::string_view stem : {"features", "attention", "grid"}) {
    if (argument.starts_with(stem) && argument.size() > stem.size() &&
        (argument[stem.size()] == '[' || argument[stem.size()] == '.')) {
      return "--" + argument;
    }
  }
  return std::nullopt;
}

// Runs f(); library errors that name a library argument come out naming the matching flag.
template <class F>
decltype(auto) with_flag_names(F&& f) {
  try {
    return f();
  } catch (const tokenprune::Error& e) {
    if (const auto flag = flag_for(e.argument())) throw e.renamed(*flag);
    throw;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Validation that needs no data.
// ---------------------------------------------------------------------------------------------------------
GridSpec parse_grid(const std::string& text) {
  // R and C: decimal, no sign, no leading '+', each in [1, 10^9] (so R * C and 576 + R * (C + 1) cannot overflow).
  const auto x = text.find('x');
  auto number = [&](std::string_view digits) -> index_t {
    if (digits.empty() || digits.size() > 10) fail("--grid", text, "must be RxC with integers R, C >= 1 (e.g. 24x48)");
    index_t value = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') fail("--grid", text, "must be RxC with integers R, C >= 1 (e.g. 24x48)");
      value = value * 10 + (c - '0');
    }
    if (value < 1) fail("--grid", text, "rows and columns must be >= 1");
    if (value > 1'000'000'000) fail("--grid", text, "rows and columns must be <= 1000000000");
    return value;
  };
  if (x == std::string::npos) fail("--grid", text, "must be RxC with integers R, C >= 1 (e.g. 24x48)");
  const std::string_view view(text);
  return GridSpec{number(view.substr(0, x)), number(view.substr(x + 1))};
}

// --keep as typed (CLI11 would saturate an out-of-range integer and echo a value the user never gave).
index_t parse_keep(const std::string& text) {
  index_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end) fail("--keep", text, "must be an integer in [0, n_tokens]");
  return value;
}

Plan make_plan(const PruneOptions& o) {
  Plan plan;
  if (const std::optional<Method> method = method_named(o.method)) {
    plan.method = *method;
  } else if (o.method.empty()) {
    fail("--method", "missing", "required: " + method_list());
  } else {
    fail("--method", o.method, "must be " + method_list());
  }
  const bool gprune = plan.method == Method::gprune;
  const std::string& method = o.method;

  if (o.repeat < 1) fail("--repeat", o.repeat, "must be >= 1");

  // Inputs: exactly the one the method reads.
  if (gprune) {
    if (!o.features) fail("--features", "missing", "--method gprune needs --features F.npy ([n_tokens, dim])");
    if (o.attention) fail("--attention", *o.attention, "not used by --method gprune (it reads --features)");
  } else {
    if (!o.attention)
      fail("--attention", "missing", "--method " + method + " needs --attention A.npy ([heads, n_tokens, n_tokens])");
    if (o.features) fail("--features", *o.features, "not used by --method " + method + " (it reads --attention)");
  }

  // Budget: exactly one of --keep / --ratio.
  if (o.keep && o.ratio) fail("--keep", *o.keep, "give either --keep or --ratio, not both");
  if (!o.keep && !o.ratio) fail("--keep", "missing", "the budget is required: give --keep K or --ratio R");
  if (o.keep && *o.keep < 0) fail("--keep", *o.keep, "must be >= 0");
  if (o.ratio && !(*o.ratio >= 0.0 && *o.ratio <= 1.0)) fail("--ratio", *o.ratio, "must be a number in [0, 1]");

  // Method-specific parameters.
  if (gprune) {
    const std::string layout = o.layout.value_or("flat");
    if (layout == "llava-next") {
      plan.llava_next = true;
    } else if (layout != "flat") {
      fail("--layout", layout, "must be flat or llava-next");
    }
    if (o.axis) fail("--axis", *o.axis, "only used by --method fopru-rank and fopru-row");
    if (o.threshold) plan.gprune.threshold = *o.threshold;
    if (o.temperature) plan.gprune.temperature = *o.temperature;
    if (o.iterations) plan.gprune.iterations = *o.iterations;
    with_flag_names([&] { plan.gprune.validate(); });
    if (plan.llava_next) {
      if (!o.ratio) fail("--ratio", "missing", "--layout llava-next takes its budget as --ratio R (per segment)");
      if (!o.grid) fail("--grid", "missing", "--layout llava-next needs the high-resolution grid --grid RxC");
    } else if (o.grid) {
      fail("--grid", *o.grid, "only used by --layout llava-next and --method fopru-row");
    }
  } else {
    if (o.layout) fail("--layout", *o.layout, "only used by --method gprune");
    if (o.threshold) fail("--threshold", *o.threshold, "only used by --method gprune");
    if (o.temperature) fail("--temperature", *o.temperature, "only used by --method gprune");
    if (o.iterations) fail("--iterations", *o.iterations, "only used by --method gprune");
    const std::string axis = o.axis.value_or("auto");
    if (axis == "auto") {
      plan.fopru.axis = tokenprune::FoPruAxis::automatic;
    } else if (axis == "received") {
      plan.fopru.axis = tokenprune::FoPruAxis::received;
    } else if (axis == "given") {
      plan.fopru.axis = tokenprune::FoPruAxis::given;
    } else {
      fail("--axis", axis, "must be auto, received or given");
    }
    plan.fopru.strategy =
        plan.method == Method::fopru_row ? tokenprune::FoPruStrategy::row : tokenprune::FoPruStrategy::rank;
    if (plan.method == Method::fopru_rank && o.grid)
      fail("--grid", *o.grid, "only used by --layout llava-next and --method fopru-row");
  }
  if (o.grid) plan.grid = parse_grid(*o.grid);
  return plan;
}

// ---------------------------------------------------------------------------------------------------------
// Inputs.
// ---------------------------------------------------------------------------------------------------------
std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

tokenprune::io::NpyArray load_npy(const std::string& flag, const std::string& path) {
  try {
    return tokenprune::io::read_npy(path);
  } catch (const tokenprune::Error& e) {
    throw e.renamed(flag + " " + path);
  }
}

std::string float_dtype(const tokenprune::io::NpyArray& a, const std::string& flag, const std::string& path) {
  switch (a.type) {
    case tokenprune::io::NpyType::f32: return "float32";
    case tokenprune::io::NpyType::f16: return "float16";
    case tokenprune::io::NpyType::i64: break;
  }
  fail(flag + " " + path, "int64", "dtype must be float32 ('<f4') or float16 ('<f2')");
}

tokenprune::TokenMatrix features_view(const tokenprune::io::NpyArray& a) {
  if (a.type == tokenprune::io::NpyType::f16)
    return {reinterpret_cast<const Eigen::half*>(a.data.data()), a.shape[0], a.shape[1]};
  return {reinterpret_cast<const float*>(a.data.data()), a.shape[0], a.shape[1]};
}

tokenprune::AttentionMaps attention_view(const tokenprune::io::NpyArray& a) {
  if (a.type == tokenprune::io::NpyType::f16)
    return {reinterpret_cast<const Eigen::half*>(a.data.data()), a.shape[0], a.shape[1]};
  return {reinterpret_cast<const float*>(a.data.data()), a.shape[0], a.shape[1]};
}

// Checks --keep against n with the flag's own name (the library would say "keep").
void check_budget(const PruneOptions& o, index_t n) {
  if (o.keep && *o.keep > n) {
    std::ostringstream range;
    range << "must be in [0, n_tokens] = [0, " << n << "]";
    fail("--keep", *o.keep, range.str());
  }
}

Budget budget_of(const PruneOptions& o) { return o.keep ? Budget::count(*o.keep) : Budget::ratio(*o.ratio); }

// Calls prune() `repeat` times, timing only that call, and keeps the last selection.
template <class Call>
void timed_selection(int repeat, Selection& out, Call&& call) {
  out.select_ms.clear();
  for (int r = 0; r < repeat; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const std::span<const index_t> kept = call();
    const auto stop = std::chrono::steady_clock::now();
    out.select_ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
    if (r + 1 == repeat) out.kept.assign(kept.begin(), kept.end());
  }
}

Selection run_gprune(const PruneOptions& o, const Plan& plan) {
  const std::string& path = *o.features;
  const tokenprune::io::NpyArray array = load_npy("--features", path);
  Selection s;
  s.method = o.method;
  s.layout = plan.llava_next ? "llava-next" : "flat";
  s.input_dtype = float_dtype(array, "--features", path);
  if (array.shape.size() != 2)
    fail("--features " + path, shape_text(array.shape),
         "must have 2 dimensions [n_tokens, dim], has " + std::to_string(array.shape.size()));
  const index_t n = array.shape[0];
  const index_t dim = array.shape[1];
  if (dim < 1) fail("--features " + path, shape_text(array.shape), "dim must be >= 1");
  s.n_tokens = n;
  s.dim = dim;

  tokenprune::PruneInputs inputs;
  inputs.features = features_view(array);

  with_flag_names([&] {
    if (plan.llava_next) {
      const GridSpec g = *plan.grid;
      const index_t expected = tokenprune::LlavaNextLayout::kBaseTokens + g.rows * (g.cols + 1);
      if (n != expected)
        fail("--grid", *o.grid,
             "--layout llava-next needs 576 + R*(C+1) = " + std::to_string(expected) + " tokens, --features has " +
                 std::to_string(n));
      tokenprune::Segmented<tokenprune::GPrune> pruner{tokenprune::GPrune(plan.gprune)};
      const tokenprune::LlavaNextLayout layout(g.rows, g.cols, *o.ratio);
      s.promised = pruner.kept_count(layout);
      pruner.reserve(n, dim);
      timed_selection(o.repeat, s, [&] { return pruner.prune(inputs, layout); });
      s.scores.assign(pruner.scores().begin(), pruner.scores().end());  // per token; +Inf for the newlines
    } else {
      check_budget(o, n);
      tokenprune::GPrune pruner(plan.gprune);
      const Budget budget = budget_of(o);
      s.promised = pruner.kept_count(inputs.shape(), budget);
      pruner.reserve(n, dim);
      timed_selection(o.repeat, s, [&] { return pruner.prune(inputs, budget); });
      s.scores.assign(pruner.scores().begin(), pruner.scores().end());
    }
  });
  return s;
}

Selection run_fopru(const PruneOptions& o, const Plan& plan) {
  const std::string& path = *o.attention;
  const tokenprune::io::NpyArray array = load_npy("--attention", path);
  Selection s;
  s.method = o.method;
  s.input_dtype = float_dtype(array, "--attention", path);
  if (array.shape.size() != 3)
    fail("--attention " + path, shape_text(array.shape),
         "must have 3 dimensions [heads, n_tokens, n_tokens], has " + std::to_string(array.shape.size()));
  if (array.shape[1] != array.shape[2])
    fail("--attention " + path, shape_text(array.shape), "must be [heads, n_tokens, n_tokens] (square maps)");
  if (array.shape[0] < 1) fail("--attention " + path, shape_text(array.shape), "heads must be >= 1");
  const index_t n = array.shape[1];
  s.n_tokens = n;
  s.dim = array.shape[0];
  check_budget(o, n);

  tokenprune::PruneInputs inputs;
  inputs.attention = attention_view(array);
  if (plan.method == Method::fopru_row) {
    if (plan.grid) {
      const GridSpec g = *plan.grid;
      if (g.rows * g.cols != n)
        fail("--grid", *o.grid,
             "R*C = " + std::to_string(g.rows * g.cols) + " must equal n_tokens = " + std::to_string(n));
      inputs.grid = tokenprune::Grid{g.rows, g.cols};
    } else {
      const auto side = static_cast<index_t>(std::llround(std::sqrt(static_cast<double>(n))));
      if (n < 1 || side * side != n)
        fail("--grid", "missing",
             "--method fopru-row needs --grid RxC when n_tokens = " + std::to_string(n) + " is not a square");
    }
  }

  with_flag_names([&] {
    tokenprune::FoPru pruner(plan.fopru);
    const Budget budget = budget_of(o);
    s.promised = pruner.kept_count(inputs.shape(), budget);
    pruner.reserve(n, 0);
    timed_selection(o.repeat, s, [&] { return pruner.prune(inputs, budget); });
    s.scores.assign(pruner.scores().begin(), pruner.scores().end());
    s.axis_chosen = pruner.chosen_axis() == tokenprune::FoPruAxis::received ? "received" : "given";
  });
  return s;
}

// The one function both subcommands call.
Selection run_prune(const PruneOptions& o) {
  const Plan plan = make_plan(o);
  Selection s = plan.method == Method::gprune ? run_gprune(o, plan) : run_fopru(o, plan);
  if (static_cast<index_t>(s.kept.size()) != s.promised)
    fail("kept", s.kept.size(), "internal error: differs from kept_count() = " + std::to_string(s.promised));
  if (static_cast<index_t>(s.scores.size()) != s.n_tokens)
    fail("scores", s.scores.size(), "internal error: differs from n_tokens = " + std::to_string(s.n_tokens));
  s.isa = tokenprune::isa_name(tokenprune::active_isa());
  return s;
}

// An output file (--out, --scores-out) must be creatable before any work is done (and is written only after the
// selection succeeded).
void check_output_path(const std::string& flag, const std::string& out) {
  if (out.empty()) fail(flag, "\"\"", "must be a file path");
  const fs::path path(out);
  std::error_code error;
  if (fs::is_directory(path, error)) fail(flag, out, "is a directory");
  const fs::path parent = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  if (!fs::is_directory(parent, error)) fail(flag, out, "parent directory does not exist");
}

// Writes one output file through `write` (the npy writers: temp file + rename, so a failed write leaves no file);
// errors name the flag and the path.
template <class Write>
void write_output(const std::string& flag, const std::string& path, Write&& write) {
  try {
    write(path);
  } catch (const tokenprune::Error& e) {
    throw e.renamed(flag + " " + path);
  }
}

// ---------------------------------------------------------------------------------------------------------
// prune
// ---------------------------------------------------------------------------------------------------------
struct PruneCommand {
  PruneOptions options;
  std::optional<std::string> out;
  std::optional<std::string> scores_out;
  std::optional<std::string> report;
  std::optional<std::string> isa;
};

nlohmann::json report_json(const Selection& s, const PruneCommand& c) {
  const PruneOptions& o = c.options;
  const auto path_or_null = [](const std::optional<std::string>& p) {
    return p ? nlohmann::json(*p) : nlohmann::json(nullptr);
  };
  nlohmann::json j;
  j["method"] = s.method;
  j["n_tokens"] = s.n_tokens;
  j["kept"] = s.kept.size();
  j["select_ms"] = s.median_ms();
  j["select_ms_min"] = *std::min_element(s.select_ms.begin(), s.select_ms.end());
  j["select_ms_max"] = *std::max_element(s.select_ms.begin(), s.select_ms.end());
  j["repeat"] = o.repeat;
  j["dtype"] = s.input_dtype;
  if (s.method == "gprune") {
    j["dim"] = s.dim;
    j["layout"] = s.layout;
  } else {
    j["heads"] = s.dim;
    j["axis"] = s.axis_chosen;
  }
  if (o.keep) j["keep"] = *o.keep;
  if (o.ratio) j["ratio"] = *o.ratio;
  j["out"] = path_or_null(c.out);
  j["scores_out"] = path_or_null(c.scores_out);
  j["kept_indices"] = s.kept;
  j["isa"] = s.isa;
  j["version"] = version_string();
  return j;
}

void print_summary(const Selection& s, const PruneCommand& c) {
  const PruneOptions& o = c.options;
  std::ostringstream text;
  text << "method    " << s.method;
  if (s.method == "gprune") {
    text << " (layout " << s.layout << ")";
  } else {
    text << " (axis " << s.axis_chosen << ")";
  }
  text << "\nn_tokens  " << s.n_tokens << " (" << s.input_dtype << ", "
       << (s.method == "gprune" ? "dim " : "heads ") << s.dim << ")\n";
  text << "kept      " << s.kept.size();
  if (s.n_tokens > 0)
    text << " (" << std::fixed << std::setprecision(1) << 100.0 * static_cast<double>(s.kept.size()) / static_cast<double>(s.n_tokens)
         << "%)";
  text << "\nselect    " << std::fixed << std::setprecision(3) << s.median_ms() << " ms";
  if (o.repeat > 1) text << " (median of " << o.repeat << ")";
  text << "\nfirst     ";
  const std::size_t shown = std::min<std::size_t>(s.kept.size(), 12);
  for (std::size_t i = 0; i < shown; ++i) text << (i ? " " : "") << s.kept[i];
  if (s.kept.size() > shown) text << " ...";
  if (s.kept.empty()) text << "(none)";
  text << "\n";
  text << "isa       " << s.isa << "\n";
  if (c.out) text << "out       " << *c.out << "\n";
  if (c.scores_out) text << "scores    " << *c.scores_out << "\n";
  std::cout << text.str() << std::flush;
}

int run_prune_command(const PruneCommand& c) {
  if (c.report && *c.report != "json") fail("--report", *c.report, "must be json");
  // Everything checkable without data first, so that usage errors do not wait for a large file.
  select_isa(c.isa);
  make_plan(c.options);
  if (c.out) check_output_path("--out", *c.out);
  if (c.scores_out) check_output_path("--scores-out", *c.scores_out);
  if (c.out && c.scores_out) {
    std::error_code out_error, scores_error;
    const fs::path out_path = fs::weakly_canonical(*c.out, out_error);
    const fs::path scores_path = fs::weakly_canonical(*c.scores_out, scores_error);
    if (*c.out == *c.scores_out || (!out_error && !scores_error && out_path == scores_path))
      fail("--scores-out", *c.scores_out, "must differ from --out");
  }
  const Selection s = run_prune(c.options);
  if (c.scores_out) {
    const std::int64_t shape[] = {static_cast<std::int64_t>(s.scores.size())};
    write_output("--scores-out", *c.scores_out,
                 [&](const std::string& path) { tokenprune::io::write_npy_f32(path, s.scores, shape); });
  }
  if (c.out) {
    try {
      write_output("--out", *c.out, [&](const std::string& path) { tokenprune::io::write_npy_int64(path, s.kept); });
    } catch (...) {
      if (c.scores_out) {  // all outputs or none
        std::error_code ignored;
        fs::remove(*c.scores_out, ignored);
      }
      throw;
    }
  }
  if (c.report) {
    std::cout << report_json(s, c).dump() << "\n" << std::flush;
  } else {
    print_summary(s, c);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------------------------
std::vector<fs::path> find_cases(const std::string& dir) {
  std::error_code error;
  const fs::path root(dir);
  if (!fs::exists(root, error)) fail("check", dir, "directory does not exist");
  if (!fs::is_directory(root, error)) fail("check", dir, "is not a directory");
  if (fs::exists(root / "case.json", error)) return {root};
  std::vector<fs::path> cases;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    if (entry.is_directory(error) && fs::exists(entry.path() / "case.json", error)) cases.push_back(entry.path());
  }
  if (error) fail("check", dir, "cannot list directory: " + error.message());
  if (cases.empty()) fail("check", dir, "no reference case (a folder with case.json) found");
  std::sort(cases.begin(), cases.end());
  return cases;
}

// case.json, parsed, and its "method". Unreadable, not JSON, or without a string "method": an Error (a case that
// cannot say what it is fails, whatever method it was meant for).
struct CaseSpec {
  nlohmann::json spec;
  std::string method;
};

CaseSpec read_case(const fs::path& dir) {
  const fs::path spec_path = dir / "case.json";
  std::ifstream file(spec_path);
  if (!file) fail(spec_path.string(), "unreadable", "cannot open case.json");
  CaseSpec c;
  try {
    c.spec = nlohmann::json::parse(file);
  } catch (const std::exception& e) {
    fail(spec_path.string(), "invalid JSON", one_line(e.what()));
  }
  try {
    c.method = c.spec.at("method").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    fail(spec_path.string(), "invalid case", one_line(e.what()));
  }
  if (c.method.empty()) fail(spec_path.string(), "invalid case", "\"method\" is empty");
  return c;
}

// case.json of an implemented method -> the same options `prune` builds from its flags.
PruneOptions options_from_case(const fs::path& dir, const CaseSpec& c, int repeat) {
  const fs::path spec_path = dir / "case.json";
  const nlohmann::json& spec = c.spec;
  PruneOptions o;
  o.repeat = repeat;
  o.method = c.method;
  try {
    if (spec.contains("keep")) o.keep = spec.at("keep").get<index_t>();
    if (spec.contains("ratio")) o.ratio = spec.at("ratio").get<double>();
    const auto grid_text = [&] {
      return std::to_string(spec.at("grid_rows").get<index_t>()) + "x" +
             std::to_string(spec.at("grid_cols").get<index_t>());
    };
    if (o.method == "gprune") {
      o.features = (dir / "features.npy").string();
      if (spec.contains("layout")) o.layout = spec.at("layout").get<std::string>();
      if (spec.contains("threshold")) o.threshold = spec.at("threshold").get<double>();
      if (spec.contains("temperature")) o.temperature = spec.at("temperature").get<double>();
      if (spec.contains("iterations")) o.iterations = spec.at("iterations").get<int>();
      if (o.layout == "llava-next") o.grid = grid_text();
    } else {
      o.attention = (dir / "attention.npy").string();
      if (o.method == "fopru-row" && spec.contains("grid_rows")) o.grid = grid_text();
    }
  } catch (const nlohmann::json::exception& e) {
    fail(spec_path.string(), "invalid case", one_line(e.what()));
  }
  return o;
}

std::optional<std::string> reference_axis(const CaseSpec& c) {
  const nlohmann::json& spec = c.spec;
  if (spec.is_object() && spec.contains("axis_chosen_by_reference") && spec["axis_chosen_by_reference"].is_string())
    return spec["axis_chosen_by_reference"].get<std::string>();
  return std::nullopt;
}

std::vector<index_t> expected_keep(const fs::path& dir) {
  const std::string path = (dir / "expected_keep.npy").string();
  const tokenprune::io::NpyArray a = tokenprune::io::read_npy(path);
  if (a.type != tokenprune::io::NpyType::i64 || a.shape.size() != 1)
    fail(path, shape_text(a.shape), "expected_keep.npy must be a 1-D int64 array");
  const auto values = a.values<std::int64_t>();
  return {values.begin(), values.end()};
}

struct CheckCommand {
  std::vector<std::string> dirs;
  int repeat = 3;
  std::optional<std::string> isa;
  std::optional<std::string> scores_dir;  // each case run writes <scores_dir>/<case name>.npy, like --scores-out
};

int run_check_command(const CheckCommand& c) {
  if (c.repeat < 1) fail("--repeat", c.repeat, "must be >= 1");
  select_isa(c.isa);
  std::vector<fs::path> cases;
  for (const std::string& dir : c.dirs) {
    const std::vector<fs::path> found = find_cases(dir);
    cases.insert(cases.end(), found.begin(), found.end());
  }
  std::size_t name_width = 4;
  for (const fs::path& dir : cases) name_width = std::max(name_width, dir.filename().string().size());
  if (c.scores_dir) {
    std::error_code error;
    if (c.scores_dir->empty() || !fs::is_directory(*c.scores_dir, error))
      fail("--scores-dir", c.scores_dir->empty() ? "\"\"" : *c.scores_dir, "must be an existing directory");
    std::vector<std::string> names;
    for (const fs::path& dir : cases) names.push_back(dir.filename().string());
    std::sort(names.begin(), names.end());
    const auto twice = std::adjacent_find(names.begin(), names.end());
    if (twice != names.end())
      fail("--scores-dir", *c.scores_dir, "two cases are named " + *twice + " (check their folders in separate runs)");
  }

  std::size_t passed = 0, failed = 0, errors = 0;
  std::map<std::string, std::size_t> not_implemented;  // method -> cases, by name
  const auto row = [&](const std::string& name, const std::string& method, const std::string& n,
                       const std::string& kept, const std::string& match, const std::string& ms) {
    std::cout << std::left << std::setw(static_cast<int>(name_width)) << name << "  " << std::setw(10) << method
              << std::right << std::setw(9) << n << std::setw(7) << kept << "  " << std::left << std::setw(5) << match
              << std::right << std::setw(12) << ms << "\n";
  };
  row("case", "method", "n_tokens", "kept", "match", "select_ms");
  for (const fs::path& dir : cases) {
    const std::string name = dir.filename().string();
    std::string method = "?";
    try {
      const CaseSpec spec = read_case(dir);
      if (!method_named(spec.method)) {  // a method this tool does not implement (yet): counted, not run
        ++not_implemented[spec.method];
        continue;
      }
      method = spec.method;
      const PruneOptions options = options_from_case(dir, spec, c.repeat);
      const Selection s = run_prune(options);
      const std::vector<index_t> expected = expected_keep(dir);
      bool match = s.kept == expected;
      if (!s.axis_chosen.empty()) {
        const auto axis = reference_axis(spec);
        if (axis && *axis != s.axis_chosen) match = false;
      }
      if (c.scores_dir) {
        const std::int64_t shape[] = {static_cast<std::int64_t>(s.scores.size())};
        write_output("--scores-dir", (fs::path(*c.scores_dir) / (name + ".npy")).string(),
                     [&](const std::string& path) { tokenprune::io::write_npy_f32(path, s.scores, shape); });
      }
      std::ostringstream ms;
      ms << std::fixed << std::setprecision(3) << s.median_ms();
      row(name, s.method, std::to_string(s.n_tokens), std::to_string(s.kept.size()), match ? "yes" : "NO", ms.str());
      (match ? passed : failed) += 1;
    } catch (const std::exception& e) {
      std::cout << std::flush;
      std::cerr << one_line(e.what()) << "\n" << std::flush;
      row(name, method, "-", "-", "ERROR", "-");
      ++failed;
      ++errors;
    }
    std::cout << std::flush;
  }
  // "check: P passed, F failed", then ", N not implemented (method count, ...)" when some cases were not run.
  std::cout << "check: " << passed << " passed, " << failed << " failed";
  std::size_t skipped = 0;
  for (const auto& [m, count] : not_implemented) skipped += count;
  if (skipped > 0) {
    std::cout << ", " << skipped << " not implemented (";
    bool first = true;
    for (const auto& [m, count] : not_implemented) {
      std::cout << (first ? "" : ", ") << m << " " << count;
      first = false;
    }
    std::cout << ")";
  }
  std::cout << "\n" << std::flush;
  if (errors > 0) return 2;
  return failed > 0 ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------------------
int run_main(int argc, char** argv) {
  CLI::App app{"Visual-token pruning (G-Prune, FoPru) on .npy inputs; see `tokenprune prune --help`.", "tokenprune"};
  app.set_version_flag("--version", std::function<std::string()>(version_text),
                       "print the version and the instruction-set levels (in use, supported), then exit");
  app.require_subcommand(1, 1);

  PruneCommand prune;
  std::string method, features, attention, layout, grid, axis, out, scores_out, report, keep, prune_isa, check_isa,
      scores_dir;
  double ratio = 0.0, threshold = 0.0, temperature = 0.0;
  int iterations = 0, repeat = 1;
  CLI::App* p = app.add_subcommand("prune", "select the tokens to keep and write their indices");
  auto* o_method = p->add_option("--method", method, method_list(true));
  auto* o_features = p->add_option("--features", features, "G-Prune input [n, d] (.npy, float32/float16; float64 is read as float32)");
  auto* o_attention = p->add_option("--attention", attention, "FoPru input [heads, n, n] (.npy, float32/float16; float64 is read as float32)");
  auto* o_keep = p->add_option("--keep", keep, "budget: number of tokens to keep")->type_name("INT");
  auto* o_ratio = p->add_option("--ratio", ratio, "budget: fraction in [0, 1], k = floor(R * n)");
  auto* o_layout = p->add_option("--layout", layout, "G-Prune: flat (default) | llava-next");
  auto* o_grid = p->add_option("--grid", grid, "RxC: llava-next high-resolution grid, or fopru-row patch grid");
  auto* o_threshold = p->add_option("--threshold", threshold, "G-Prune edge threshold tau (default 0.5)");
  auto* o_temperature = p->add_option("--temperature", temperature, "G-Prune softmax temperature (default 0.03)");
  auto* o_iterations = p->add_option("--iterations", iterations, "G-Prune propagation steps (default 5)");
  auto* o_axis = p->add_option("--axis", axis, "FoPru significance: auto (default) | received | given");
  auto* o_out = p->add_option("--out", out, "write the kept indices (int64, 1-D, ascending) to this .npy");
  auto* o_scores_out = p->add_option(
      "--scores-out", scores_out,
      "write the per-token scores (float32, 1-D, n_tokens) to this .npy: G-Prune's propagated scores (llava-next: "
      "each segment's own, +inf for the always-kept newline tokens), FoPru's significance");
  p->add_option("--repeat", repeat, "time the selection this many times (median reported)");
  auto* o_report = p->add_option("--report", report, "json: print one JSON object instead of the summary");
  const std::string isa_help =
      "kernel instruction-set level: auto | avx512 | avx2 | portable (default: the TOKENPRUNE_ISA environment "
      "variable, else auto = the best this CPU supports; every level gives the same answers)";
  auto* o_prune_isa = p->add_option("--isa", prune_isa, isa_help)->type_name("LEVEL");

  CheckCommand check;
  CLI::App* c = app.add_subcommand("check", "run reference case folders (case.json) and compare with expected_keep.npy");
  c->add_option("DIR", check.dirs, "case folders, or folders of case folders")->required();
  c->add_option("--repeat", check.repeat, "timing repeats per case (median reported)");
  auto* o_check_isa = c->add_option("--isa", check_isa, isa_help)->type_name("LEVEL");
  auto* o_scores_dir = c->add_option("--scores-dir", scores_dir,
                                     "write each case's per-token scores (as prune --scores-out) to DIR/<case>.npy")
                           ->type_name("DIR");

  // CLI11 would call an unknown first word "A subcommand is required"; name it instead.
  if (argc > 1) {
    const std::string_view first = argv[1];
    if (!first.starts_with('-') && first != "prune" && first != "check")
      fail("subcommand", first, "unknown: expected prune or check (see tokenprune --help)");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    throw tokenprune::Error("command line", "", one_line(e.what()));
  }

  if (p->parsed()) {
    PruneOptions& o = prune.options;
    o.method = method;
    if (o_features->count()) o.features = features;
    if (o_attention->count()) o.attention = attention;
    if (o_keep->count()) o.keep = parse_keep(keep);
    if (o_ratio->count()) o.ratio = ratio;
    if (o_layout->count()) o.layout = layout;
    if (o_grid->count()) o.grid = grid;
    if (o_threshold->count()) o.threshold = threshold;
    if (o_temperature->count()) o.temperature = temperature;
    if (o_iterations->count()) o.iterations = iterations;
    if (o_axis->count()) o.axis = axis;
    o.repeat = repeat;
    if (o_out->count()) prune.out = out;
    if (o_scores_out->count()) prune.scores_out = scores_out;
    if (o_report->count()) prune.report = report;
    if (o_prune_isa->count()) prune.isa = prune_isa;
    if (!o_method->count()) fail("--method", "missing", "required: " + method_list());
    return run_prune_command(prune);
  }
  if (o_check_isa->count()) check.isa = check_isa;
  if (o_scores_dir->count()) check.scores_dir = scores_dir;
  return run_check_command(check);
}

}  // namespace

int main(int argc, char** argv) {
  std::string message;
  try {
    return run_main(argc, argv);
  } catch (const std::bad_alloc&) {
    message = "tokenprune: out of memory";
  } catch (const std::exception& e) {
    message = e.what();
    if (!message.starts_with("tokenprune:")) message = "tokenprune: " + message;
  } catch (...) {
    message = "tokenprune: unknown error";
  }
  std::cout << std::flush;
  std::cerr << one_line(message) << "\n" << std::flush;
  return 2;
}
