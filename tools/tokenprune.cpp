// tokenprune: command-line front end of the library, for scripts and for checking the reference fixtures.
//
//   tokenprune prune --method NAME (input files: --features F.npy, --attention A.npy, --keys, --image-embeds,
//                    --text-embeds, --relevance, ...) (--keep K | --ratio R | the method's budget parameters)
//                    [--layout flat|llava-next|crops] [--grid RxC] [--frames T] [--<parameter> VALUE ...]
//                    [--out KEEP.npy] [--scores-out SCORES.npy] [--<output> FILE.npy ...] [--repeat N]
//                    [--picture KEPT.png [--image PHOTO.png]]
//                    [--report json] [--isa auto|avx512|avx2|portable]
//   tokenprune check DIR... [--repeat N] [--isa LEVEL] [--scores-dir OUT]
//   tokenprune --version | --help
//
// Exit status: 0 success (check: every case of an implemented method matched), 1 check found a mismatch, 2 bad
// usage or bad input. Every error is exactly one line on stderr, "tokenprune: <argument> = <value>: <reason>", and
// leaves no output file behind: --out and --scores-out are written (atomically, temp file + rename) only after the
// selection succeeded.
//
// Every method comes from the library's registry (pruners/methods.hpp): its inputs, parameters and outputs become
// flags here, and nothing in this file names a method. `check` runs the cases of the registered methods and counts
// the others as "not implemented" without failing; a case of a registered method that cannot be run is an error.
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
#if defined(TOKENPRUNE_TOOL_PICTURE)
#include "picture.hpp"  // --picture, --image (stb; CMake defines TOKENPRUNE_TOOL_PICTURE when it found it)
#endif

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
// Options: what one selection needs, whoever filled it in (the command line or a case.json). Nothing here knows a
// method: the registry's MethodInfo says which inputs a method reads and which parameters it takes.
// ---------------------------------------------------------------------------------------------------------

// The input files the tool reads, by flag. Where each goes in PruneInputs depends on what the method reads.
constexpr std::string_view kInputFlags[] = {"features", "attention", "cls-attention", "keys",
                                            "image-embeds", "text-embeds", "text", "relevance"};

struct PruneOptions {
  std::string method;
  std::map<std::string, std::string> files;  // input flag without "--" (kInputFlags) -> .npy path
  std::optional<index_t> keep;
  std::optional<double> ratio;
  std::optional<std::string> layout;         // flat (default) | llava-next | crops
  std::optional<std::string> grid;           // "RxC"
  std::optional<index_t> frames;             // video: frames of --grid each
  std::optional<index_t> cls_index;          // [CLS] position in --attention (0 or last)
  tokenprune::Parameters parameters;         // method parameters by name, as typed
  int repeat = 1;
};

std::string method_list(std::string_view separator = ", ") { return tokenprune::registry().list(separator); }

// "--some-name" for a parameter or output "some_name".
std::string flag_of(std::string_view name) {
  std::string flag = "--" + std::string(name);
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}
// The parameter name of a flag (without "--"): '-' -> '_'.
std::string name_of(std::string_view flag) {
  std::string name(flag);
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

struct GridSpec {
  index_t rows = 0;
  index_t cols = 0;
};

// Everything that can be checked before any file is read.
struct Plan {
  const tokenprune::MethodInfo* info = nullptr;
  bool llava_next = false;
  std::optional<GridSpec> grid;
  std::optional<Budget> budget;  // from --keep/--ratio or the method's parameters
};

// One extra output of the last prune(), copied out of the pruner.
struct Output {
  std::vector<index_t> indices;
  std::vector<float> values;
  index_t rows = 0, cols = 0;
  std::string text;
};

struct Selection {
  std::string method;
  std::string layout;             // flat | llava-next | crops
  std::string input_dtype;        // float32 | float16 (of the first input)
  index_t n_tokens = 0;
  std::optional<index_t> dim;     // feature dimension, when features were given
  std::optional<index_t> heads;   // attention heads, when attention was given
  index_t promised = 0;           // kept_count() before the data was looked at
  std::vector<index_t> kept;
  std::vector<double> select_ms;  // one per repeat
  std::vector<float> scores;      // per-token scores of the last prune() (the pruner's, or the layout's)
  std::map<std::string, Output> outputs;  // the method's extra outputs, by name
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

// --version: the version, then the instruction-set level in use and the ones this CPU supports, and the methods.
std::string version_text() {
  return version_string() + "\nisa: " + tokenprune::isa_name(tokenprune::active_isa()) +
         " (supported: " + tokenprune::supported_isas() + ")\nmethods: " + method_list();
}

// ---------------------------------------------------------------------------------------------------------
// Error messages: the library names its own arguments ("keep", "features[3,2]", "threshold", a file path); the
// tool rewrites those names into the command-line flags the user typed, so that every message names an option.
// ---------------------------------------------------------------------------------------------------------
std::string one_line(std::string text) {
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

// The PruneInputs member each input flag was loaded into, for naming errors ("hidden_states[3,2]" came from
// --features). Filled as the files are routed.
using InputNames = std::vector<std::pair<std::string, std::string>>;  // library member -> flag

// Library argument name -> command-line flag (with any element suffix such as "[3,2]" kept).
std::optional<std::string> flag_for(const std::string& argument, const InputNames& inputs) {
  static const std::pair<std::string_view, std::string_view> names[] = {
      {"keep", "--keep"}, {"ratio", "--ratio"}, {"grid", "--grid"}, {"grid_rows", "--grid"}, {"grid_cols", "--grid"},
      {"grid.rows", "--grid"}, {"grid.cols", "--grid"}, {"grid.rows*grid.cols", "--grid"}, {"video", "--grid"},
      {"video.rows", "--grid"}, {"video.cols", "--grid"}, {"video.frames*video.rows*video.cols", "--frames"},
      {"video.frames", "--frames"}, {"cls_index", "--cls-index"}};
  for (const auto& [name, flag] : names)
    if (argument == name) return std::string(flag);
  // The members that were loaded name the flag they came from; the others (missing inputs) their usual flag.
  InputNames members = inputs;
  for (const auto& [member, flag] : {std::pair{"features", "--features"}, std::pair{"hidden_states", "--features"},
                                     std::pair{"attention", "--attention"}, std::pair{"cls_attention", "--attention"},
                                     std::pair{"keys", "--keys"}, std::pair{"image_embeds", "--image-embeds"},
                                     std::pair{"text_embeds", "--text-embeds"}, std::pair{"relevance", "--relevance"}})
    members.emplace_back(member, flag);
  for (const auto& [member, flag] : members) {
    if (argument == member) return flag;
    if (argument.starts_with(member) && argument.size() > member.size() &&
        (argument[member.size()] == '[' || argument[member.size()] == '.'))
      return flag + argument.substr(member.size());
  }
  for (const std::string& method : tokenprune::method_names())
    if (tokenprune::method_info(method).parameter(argument) != nullptr) return flag_of(argument);
  return std::nullopt;
}

// Runs f(); library errors that name a library argument come out naming the matching flag.
template <class F>
decltype(auto) with_flag_names(const InputNames& inputs, F&& f) {
  try {
    return f();
  } catch (const tokenprune::Error& e) {
    if (const auto flag = flag_for(e.argument(), inputs)) throw e.renamed(*flag);
    throw;
  }
}
template <class F>
decltype(auto) with_flag_names(F&& f) {
  return with_flag_names(InputNames{}, std::forward<F>(f));
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

// An integer flag as typed (CLI11 would saturate an out-of-range integer and echo a value the user never gave).
index_t parse_integer(const std::string& flag, const std::string& text, const std::string& rule) {
  index_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end) fail(flag, text, rule);
  return value;
}
index_t parse_keep(const std::string& text) { return parse_integer("--keep", text, "must be an integer in [0, n_tokens]"); }

// "features, attention" -> "--features or --attention".
std::string input_flags_text(const tokenprune::MethodInfo& info) {
  std::vector<std::string> flags;
  for (tokenprune::Input in : info.inputs) {
    switch (in) {
      case tokenprune::Input::features:
      case tokenprune::Input::hidden_states: flags.emplace_back("--features"); break;
      case tokenprune::Input::attention:
      case tokenprune::Input::cls_attention: flags.emplace_back("--attention"); break;
      case tokenprune::Input::keys: flags.emplace_back("--keys"); break;
      case tokenprune::Input::image_embeds: flags.emplace_back("--image-embeds"); break;
      case tokenprune::Input::text_embeds: flags.emplace_back("--text-embeds"); break;
      case tokenprune::Input::relevance: flags.emplace_back("--relevance"); break;
      default: break;
    }
  }
  std::string text;
  for (const std::string& f : flags)
    if (text.find(f) == std::string::npos) text += (text.empty() ? "" : ", ") + f;
  return text;
}

// Whether the method takes the input file of `flag` at all.
bool method_reads_flag(const tokenprune::MethodInfo& info, std::string_view flag) {
  using tokenprune::Input;
  if (flag == "features") return info.reads(Input::features) || info.reads(Input::hidden_states);
  if (flag == "attention") return info.reads(Input::attention) || info.reads(Input::cls_attention);
  if (flag == "cls-attention") return info.reads(Input::cls_attention);
  if (flag == "keys") return info.reads(Input::keys);
  if (flag == "image-embeds") return info.reads(Input::image_embeds);
  if (flag == "text-embeds" || flag == "text") return info.reads(Input::text_embeds);
  if (flag == "relevance") return info.reads(Input::relevance);
  return false;
}

Plan make_plan(const PruneOptions& o) {
  Plan plan;
  if (o.method.empty()) fail("--method", "missing", "required: " + method_list());
  plan.info = tokenprune::registry().find(o.method);
  if (plan.info == nullptr) fail("--method", o.method, "must be one of " + method_list());
  const tokenprune::MethodInfo& info = *plan.info;
  const std::string& method = o.method;
  using tokenprune::Input;

  if (o.repeat < 1) fail("--repeat", o.repeat, "must be >= 1");

  // Inputs: only those the method reads, and at least one.
  for (const auto& [flag, path] : o.files)
    if (!method_reads_flag(info, flag))
      fail("--" + flag, path, "not used by --method " + method + " (it reads " + input_flags_text(info) + ")");
  if (o.files.empty()) {
    const std::string flags = input_flags_text(info);
    const std::string first = flags.substr(0, flags.find(','));
    fail(first, "missing", "--method " + method + " needs " + flags);
  }
  if (o.cls_index && !info.reads(Input::cls_attention))
    fail("--cls-index", *o.cls_index, "only used by methods that read the [CLS] attention row");

  // Parameters: the registry checks the names and the config its values (by building the pruner once).
  with_flag_names([&] { (void)tokenprune::registry().create(method, o.parameters); });

  // Budget: exactly one of --keep / --ratio, or the method's own budget parameters.
  if (o.keep && o.ratio) fail("--keep", *o.keep, "give either --keep or --ratio, not both");
  if (o.keep && *o.keep < 0) fail("--keep", *o.keep, "must be >= 0");
  if (o.ratio && !(*o.ratio >= 0.0 && *o.ratio <= 1.0)) fail("--ratio", *o.ratio, "must be a number in [0, 1]");
  std::optional<Budget> implied;
  if (info.budget_from) implied = with_flag_names([&] { return info.budget_from(o.parameters); });
  if (implied && (o.keep || o.ratio))
    fail(o.keep ? "--keep" : "--ratio", o.keep ? std::to_string(*o.keep) : std::to_string(*o.ratio),
         "the budget is already given by the method's parameters: give one or the other");
  if (!implied && !o.keep && !o.ratio) fail("--keep", "missing", "the budget is required: give --keep K or --ratio R");
  if (o.keep) plan.budget = Budget::count(*o.keep);
  if (o.ratio) plan.budget = Budget::ratio(*o.ratio);
  if (implied) plan.budget = implied;

  // Layout and grids.
  const std::string layout = o.layout.value_or("flat");
  if (layout == "llava-next") {
    plan.llava_next = true;
    if (!info.reads(Input::features)) fail("--layout", layout, "--method " + method + " does not read --features");
    if (!o.ratio) fail("--ratio", "missing", "--layout llava-next takes its budget as --ratio R (per segment)");
    if (!o.grid) fail("--grid", "missing", "--layout llava-next needs the high-resolution grid --grid RxC");
  } else if (layout == "crops") {
    if (info.parameter("crops") == nullptr)
      fail("--layout", layout, "--method " + method + " has no crops layout (it has no --crops)");
    if (!o.parameters.contains("crops")) fail("--crops", "missing", "--layout crops needs --crops B");
  } else if (layout != "flat") {
    fail("--layout", layout, "must be flat, llava-next or crops");
  }
  if (layout != "crops" && o.parameters.contains("crops") && o.parameters.integer("crops") != 1)
    fail("--crops", o.parameters.text_of("crops"), "only used with --layout crops");
  const bool video = info.reads(Input::video);
  if (o.frames && !video) fail("--frames", *o.frames, "only used by methods that read a video (frames x grid)");
  if (video && !o.frames) fail("--frames", "missing", "--method " + method + " needs --frames T and --grid HxW");
  if (video && !o.grid) fail("--grid", "missing", "--method " + method + " needs --grid HxW (one frame's grid)");
  if (o.frames && *o.frames < 1) fail("--frames", *o.frames, "must be >= 1");
  if (o.grid && !plan.llava_next && !video && !info.reads(Input::grid))
    fail("--grid", *o.grid, "only used by --layout llava-next, --method fopru-row and video methods");
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

// A float32/float16 array viewed as rows x cols with the given row stride and first element (all in elements).
tokenprune::TokenMatrix matrix_view(const tokenprune::io::NpyArray& a, index_t offset, index_t rows, index_t cols,
                                    index_t stride) {
  if (a.type == tokenprune::io::NpyType::f16)
    return {reinterpret_cast<const Eigen::half*>(a.data.data()) + offset, rows, cols, stride};
  return {reinterpret_cast<const float*>(a.data.data()) + offset, rows, cols, stride};
}

tokenprune::AttentionMaps attention_view(const tokenprune::io::NpyArray& a) {
  if (a.type == tokenprune::io::NpyType::f16)
    return {reinterpret_cast<const Eigen::half*>(a.data.data()), a.shape[0], a.shape[1]};
  return {reinterpret_cast<const float*>(a.data.data()), a.shape[0], a.shape[1]};
}

// The loaded files and the PruneInputs that view them (the arrays own the memory; inputs never copy).
struct LoadedInputs {
  std::map<std::string, tokenprune::io::NpyArray> arrays;  // by flag
  tokenprune::PruneInputs inputs;
  InputNames names;                                         // PruneInputs member -> flag, for messages
  std::string first_dtype;
  std::optional<index_t> dim, heads;
};

void require_dims(const tokenprune::io::NpyArray& a, const std::string& what, std::size_t lo, std::size_t hi,
                  const std::string& expected) {
  if (a.shape.size() < lo || a.shape.size() > hi)
    fail(what, shape_text(a.shape), "must be " + expected + ", has " + std::to_string(a.shape.size()) + " dimensions");
}

// Reads every input file and routes it to the PruneInputs member the method reads.
LoadedInputs load_inputs(const PruneOptions& o, const Plan& plan) {
  using tokenprune::Input;
  const tokenprune::MethodInfo& info = *plan.info;
  LoadedInputs in;
  for (const std::string_view flag_name : kInputFlags) {
    const auto file = o.files.find(std::string(flag_name));
    if (file == o.files.end()) continue;
    const std::string flag = "--" + file->first;
    const std::string& path = file->second;
    const std::string what = flag + " " + path;
    tokenprune::io::NpyArray& a = in.arrays[file->first] = load_npy(flag, path);
    const std::string dtype = float_dtype(a, flag, path);
    if (in.first_dtype.empty()) in.first_dtype = dtype;
    auto matrix = [&](const char* member) {
      require_dims(a, what, 2, 2, "2-D [rows, cols]");
      in.names.emplace_back(member, flag);
      return matrix_view(a, 0, a.shape[0], a.shape[1], a.shape[1]);
    };
    tokenprune::PruneInputs& p = in.inputs;
    if (flag_name == "features") {
      if (info.reads(Input::hidden_states)) {
        p.hidden_states = matrix("hidden_states");
      } else {
        require_dims(a, what, 2, 2, "2-D [n_tokens, dim]");
        p.features = matrix("features");
      }
      if (a.shape[1] < 1) fail(what, shape_text(a.shape), "dim must be >= 1");
      in.dim = a.shape[1];
    } else if (flag_name == "attention" && !info.reads(Input::cls_attention)) {
      require_dims(a, what, 3, 3, "3-D [heads, n_tokens, n_tokens]");
      if (a.shape[1] != a.shape[2]) fail(what, shape_text(a.shape), "must be [heads, n_tokens, n_tokens] (square maps)");
      if (a.shape[0] < 1) fail(what, shape_text(a.shape), "heads must be >= 1");
      in.names.emplace_back("attention", flag);
      p.attention = attention_view(a);
      in.heads = a.shape[0];
    } else if (flag_name == "attention") {
      // The [CLS] query row: from maps [heads, 1+n, 1+n] or the row alone [heads, 1+n], [CLS] at --cls-index.
      require_dims(a, what, 2, 3, "[heads, 1+n, 1+n] maps or the [CLS] row [heads, 1+n]");
      const index_t heads = a.shape[0], total = a.shape[1];
      if (heads < 1) fail(what, shape_text(a.shape), "heads must be >= 1");
      if (total < 1) fail(what, shape_text(a.shape), "must include the [CLS] token");
      const index_t cls = o.cls_index.value_or(0);
      if (cls != 0 && cls != total - 1) fail("--cls-index", cls, "must be 0 or the last token, " + std::to_string(total - 1));
      in.names.emplace_back("cls_attention", flag);
      if (a.shape.size() == 3) {
        if (a.shape[2] != total) fail(what, shape_text(a.shape), "must be [heads, 1+n, 1+n] (square maps)");
        p.cls_attention = tokenprune::cls_query_row(attention_view(a), cls);
      } else {
        p.cls_attention = matrix_view(a, cls == 0 ? 1 : 0, heads, total - 1, total);
      }
      in.heads = heads;
    } else if (flag_name == "cls-attention") {
      require_dims(a, what, 1, 2, "[heads, n] or [n]");
      in.names.emplace_back("cls_attention", flag);
      p.cls_attention = a.shape.size() == 2 ? matrix_view(a, 0, a.shape[0], a.shape[1], a.shape[1])
                                            : matrix_view(a, 0, 1, a.shape[0], a.shape[0]);
      in.heads = a.shape.size() == 2 ? a.shape[0] : 1;
    } else if (flag_name == "keys") {
      p.keys = matrix("keys");
    } else if (flag_name == "image-embeds") {
      p.image_embeds = matrix("image_embeds");
    } else if (flag_name == "text-embeds" || flag_name == "text") {
      if (!p.text_embeds.empty()) fail(flag, path, "give --text-embeds or --text, not both");
      p.text_embeds = matrix("text_embeds");
    } else if (flag_name == "relevance") {
      require_dims(a, what, 1, 1, "1-D [n_tokens]");
      if (a.type != tokenprune::io::NpyType::f32) fail(what, dtype, "must be float32");
      in.names.emplace_back("relevance", flag);
      p.relevance = a.values<float>();
    }
  }
  if (plan.grid && !plan.llava_next) {
    if (info.reads(Input::video)) {
      in.inputs.video = tokenprune::VideoGrid{*o.frames, plan.grid->rows, plan.grid->cols};
    } else {
      in.inputs.grid = tokenprune::Grid{plan.grid->rows, plan.grid->cols};
    }
  }
  return in;
}

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

// The one function both subcommands call: validate, load, build the pruner by name, reserve, time prune().
Selection run_prune(const PruneOptions& o) {
  const Plan plan = make_plan(o);
  const tokenprune::MethodInfo& info = *plan.info;
  LoadedInputs loaded = load_inputs(o, plan);
  Selection s;
  s.method = o.method;
  s.layout = o.layout.value_or("flat");
  s.input_dtype = loaded.first_dtype;
  s.dim = loaded.dim;
  s.heads = loaded.heads;
  const tokenprune::PruneInputs& inputs = loaded.inputs;

  with_flag_names(loaded.names, [&] {
    const index_t n = inputs.n_tokens();
    s.n_tokens = n;
    const index_t dim = loaded.dim.value_or(0);
    tokenprune::AnyPruner pruner = tokenprune::registry().create(o.method, o.parameters);
    if (plan.llava_next) {
      const GridSpec g = *plan.grid;
      const index_t expected = tokenprune::LlavaNextLayout::kBaseTokens + g.rows * (g.cols + 1);
      if (n != expected)
        fail("--grid", *o.grid,
             "--layout llava-next needs 576 + R*(C+1) = " + std::to_string(expected) + " tokens, --features has " +
                 std::to_string(n));
      tokenprune::Segmented<tokenprune::AnyPruner> segmented{std::move(pruner)};
      const tokenprune::LlavaNextLayout layout(g.rows, g.cols, *o.ratio);
      s.promised = segmented.kept_count(layout);
      segmented.reserve(n, dim);
      timed_selection(o.repeat, s, [&] { return segmented.prune(inputs, layout); });
      s.scores.assign(segmented.scores().begin(), segmented.scores().end());  // per token; +Inf for the newlines
      return;
    }
    const Budget budget = *plan.budget;
    s.promised = pruner.kept_count(inputs.shape(), budget);
    pruner.reserve(n, dim);
    timed_selection(o.repeat, s, [&] { return pruner.prune(inputs, budget); });
    s.scores.assign(pruner.scores().begin(), pruner.scores().end());
    for (const tokenprune::OutputInfo& out : info.outputs) {
      const std::optional<tokenprune::ExtraOutput> extra = pruner.output(out.name);
      if (!extra) continue;
      Output& copy = s.outputs[out.name];
      copy.indices.assign(extra->indices.begin(), extra->indices.end());
      copy.values.assign(extra->values.begin(), extra->values.end());
      copy.rows = extra->rows;
      copy.cols = extra->cols;
      copy.text = std::string(extra->text);
    }
  });
  if (static_cast<index_t>(s.kept.size()) != s.promised)
    fail("kept", s.kept.size(), "internal error: differs from kept_count() = " + std::to_string(s.promised));
  s.isa = tokenprune::isa_name(tokenprune::active_isa());
  return s;
}

// An output file must be creatable before any work is done (and is written only after the selection succeeded).
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

// One output as .npy: indices as int64, values as float32 [rows] or [rows, cols].
void write_extra(const std::string& flag, const std::string& path, const Output& o) {
  write_output(flag, path, [&](const std::string& target) {
    if (!o.text.empty()) fail(flag, o.text, "is a word, not an array: it is in --report json");
    if (!o.values.empty() || o.indices.empty()) {
      std::vector<std::int64_t> shape{static_cast<std::int64_t>(o.rows)};
      if (o.cols != 1) shape.push_back(static_cast<std::int64_t>(o.cols));
      tokenprune::io::write_npy_f32(target, o.values, shape);
    } else {
      tokenprune::io::write_npy_int64(target, o.indices);
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// prune
// ---------------------------------------------------------------------------------------------------------
struct PruneCommand {
  PruneOptions options;
  std::optional<std::string> out;
  std::optional<std::string> scores_out;
  std::map<std::string, std::pair<std::string, std::string>> extra_out;  // output name -> (flag, path)
  std::optional<std::string> report;
  std::optional<std::string> isa;
  std::optional<std::string> picture, image;  // --picture PNG of what was kept, --image the photograph under it
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
  j["layout"] = s.layout;
  if (s.dim) j["dim"] = *s.dim;
  if (s.heads) j["heads"] = *s.heads;
  if (o.keep) j["keep"] = *o.keep;
  if (o.ratio) j["ratio"] = *o.ratio;
  nlohmann::json parameters = nlohmann::json::object();
  for (const std::string& name : o.parameters.names()) parameters[name] = o.parameters.text_of(name);
  j["parameters"] = parameters;
  for (const auto& [name, output] : s.outputs) {
    if (!output.text.empty()) {
      j[name] = output.text;
    } else if (!output.values.empty()) {
      j["outputs"][name] = {{"rows", output.rows}, {"cols", output.cols}};
    } else {
      j["outputs"][name] = output.indices;
    }
  }
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
  text << "method    " << s.method << " (layout " << s.layout;
  for (const auto& [name, output] : s.outputs)
    if (!output.text.empty()) text << ", " << name << " " << output.text;
  text << ")";
  text << "\nn_tokens  " << s.n_tokens << " (" << s.input_dtype;
  if (s.dim) text << ", dim " << *s.dim;
  if (s.heads) text << ", heads " << *s.heads;
  text << ")\n";
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
  if (c.picture) text << "picture   " << *c.picture << "\n";
  for (const auto& [name, flag_path] : c.extra_out) text << std::left << std::setw(10) << name << flag_path.second << "\n";
  std::cout << text.str() << std::flush;
}

int run_prune_command(const PruneCommand& c) {
  if (c.report && *c.report != "json") fail("--report", *c.report, "must be json");
  // Everything checkable without data first, so that usage errors do not wait for a large file.
  select_isa(c.isa);
  const Plan plan = make_plan(c.options);
  std::vector<std::pair<std::string, std::string>> paths;  // flag, path of every output file
  if (c.out) paths.emplace_back("--out", *c.out);
  if (c.scores_out) paths.emplace_back("--scores-out", *c.scores_out);
  if (c.picture) paths.emplace_back("--picture", *c.picture);
  if (c.image && !c.picture) fail("--image", *c.image, "only used with --picture");
  for (const auto& [name, flag_path] : c.extra_out) {
    if (plan.info->output(name) == nullptr)
      fail(flag_path.first, flag_path.second, "--method " + c.options.method + " has no output " + name);
    paths.push_back(flag_path);
  }
  for (const auto& [flag, path] : paths) check_output_path(flag, path);
  for (std::size_t i = 0; i < paths.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      std::error_code a_error, b_error;
      const fs::path a = fs::weakly_canonical(paths[i].second, a_error);
      const fs::path b = fs::weakly_canonical(paths[j].second, b_error);
      if (paths[i].second == paths[j].second || (!a_error && !b_error && a == b))
        fail(paths[i].first, paths[i].second, "must differ from " + paths[j].first);
    }
  }
#if defined(TOKENPRUNE_TOOL_PICTURE)
  std::optional<tokenprune_picture::Image> photo;
  if (c.image) photo = tokenprune_picture::load_image(*c.image);
#endif
  const Selection s = run_prune(c.options);
  for (const auto& [name, flag_path] : c.extra_out)
    if (s.outputs.find(name) == s.outputs.end())
      fail(flag_path.first, flag_path.second, "--method " + c.options.method + " produced no " + name + " here");
#if defined(TOKENPRUNE_TOOL_PICTURE)
  std::vector<unsigned char> png;  // drawn before any file is written: a picture that cannot be drawn writes nothing
  if (c.picture) {
    tokenprune_picture::Shape shape{s.n_tokens, s.layout == "llava-next", std::nullopt, c.options.frames};
    if (c.options.grid) shape.grid = std::pair{parse_grid(*c.options.grid).rows, parse_grid(*c.options.grid).cols};
    png = tokenprune_picture::encode_png(tokenprune_picture::render(tokenprune_picture::panels_for(shape, *c.picture),
                                                                    s.scores, s.kept, photo ? &*photo : nullptr));
  }
#endif
  // All outputs or none: a failed write removes the files written before it.
  std::vector<std::string> written;
  try {
#if defined(TOKENPRUNE_TOOL_PICTURE)
    if (c.picture) {
      tokenprune_picture::write_file_atomically(*c.picture, png);
      written.push_back(*c.picture);
    }
#endif
    for (const auto& [name, flag_path] : c.extra_out) {
      write_extra(flag_path.first, flag_path.second, s.outputs.at(name));
      written.push_back(flag_path.second);
    }
    if (c.scores_out) {
      const std::int64_t shape[] = {static_cast<std::int64_t>(s.scores.size())};
      write_output("--scores-out", *c.scores_out,
                   [&](const std::string& path) { tokenprune::io::write_npy_f32(path, s.scores, shape); });
      written.push_back(*c.scores_out);
    }
    if (c.out)
      write_output("--out", *c.out, [&](const std::string& path) { tokenprune::io::write_npy_int64(path, s.kept); });
  } catch (...) {
    for (const std::string& path : written) {
      std::error_code ignored;
      fs::remove(path, ignored);
    }
    throw;
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

// case.json -> the same options `prune` builds from its flags, by one rule for every method: the input files
// present in the folder (<flag with '_'>.npy), "keep" (else "ratio"), the layout and grids, and every key that
// names a parameter of the method (parameters that set the budget only when the case gives no "keep").
PruneOptions options_from_case(const fs::path& dir, const CaseSpec& c, int repeat) {
  const fs::path spec_path = dir / "case.json";
  const nlohmann::json& spec = c.spec;
  const tokenprune::MethodInfo& info = tokenprune::method_info(c.method);
  PruneOptions o;
  o.repeat = repeat;
  o.method = c.method;
  try {
    for (const std::string_view flag : kInputFlags) {
      const fs::path file = dir / (name_of(flag) + ".npy");
      if (fs::exists(file) && method_reads_flag(info, flag)) o.files[std::string(flag)] = file.string();
    }
    if (o.files.empty()) {
      const std::string flags = input_flags_text(info);
      fail((dir / (name_of(flags.substr(2, flags.find(',') - 2)) + ".npy")).string(), "missing",
           "the case has no input file that --method " + c.method + " reads");
    }
    if (spec.contains("keep")) {
      o.keep = spec.at("keep").get<index_t>();
    } else if (spec.contains("ratio")) {
      o.ratio = spec.at("ratio").get<double>();
    }
    const std::string layout = spec.value("layout", std::string("flat"));
    if (layout != "flat") o.layout = layout;
    if (spec.contains("grid_t")) {
      o.frames = spec.at("grid_t").get<index_t>();
      o.grid = std::to_string(spec.at("grid_h").get<index_t>()) + "x" + std::to_string(spec.at("grid_w").get<index_t>());
    } else if (spec.contains("grid_rows") && (layout == "llava-next" || info.reads(tokenprune::Input::grid))) {
      o.grid = std::to_string(spec.at("grid_rows").get<index_t>()) + "x" +
               std::to_string(spec.at("grid_cols").get<index_t>());
    }
    if (spec.contains("cls_index") && info.reads(tokenprune::Input::cls_attention))
      o.cls_index = spec.at("cls_index").get<index_t>();
    for (const tokenprune::ParameterInfo& p : info.parameters) {
      if (!spec.contains(p.name) || spec.at(p.name).is_null()) continue;
      if (p.sets_budget && (o.keep || o.ratio)) continue;
      const nlohmann::json& v = spec.at(p.name);
      if (v.is_boolean()) {
        o.parameters.set(p.name, v.get<bool>());
      } else if (v.is_number_integer()) {
        o.parameters.set(p.name, v.get<std::int64_t>());
      } else if (v.is_number()) {
        o.parameters.set(p.name, v.get<double>());
      } else {
        o.parameters.set(p.name, v.get<std::string>());
      }
    }
  } catch (const nlohmann::json::exception& e) {
    fail(spec_path.string(), "invalid case", one_line(e.what()));
  }
  return o;
}

std::vector<index_t> expected_indices(const fs::path& dir, const std::string& name) {
  const std::string path = (dir / name).string();
  const tokenprune::io::NpyArray a = tokenprune::io::read_npy(path);
  if (a.type != tokenprune::io::NpyType::i64 || a.shape.size() != 1)
    fail(path, shape_text(a.shape), name + " must be a 1-D int64 array");
  const auto values = a.values<std::int64_t>();
  return {values.begin(), values.end()};
}

// What a case expects besides expected_keep.npy, by one rule: "axis_chosen_by_reference" against the "axis" output,
// expected_<name>.npy (int64) against output <name>'s indices (expected_selection_order -> order), and float
// expected arrays against outputs of the same name within the case's "<name>_tolerance" (or "gain_tolerance").
// Returns an empty string on agreement, else what differed.
std::string compare_extras(const fs::path& dir, const nlohmann::json& spec, const Selection& s) {
  const auto axis = spec.find("axis_chosen_by_reference");
  if (axis != spec.end() && axis->is_string()) {
    const auto got = s.outputs.find("axis");
    if (got == s.outputs.end() || got->second.text != axis->get<std::string>()) return "axis";
  }
  static const std::pair<std::string_view, std::string_view> names[] = {
      {"expected_selection_order.npy", "order"}, {"expected_selection_gain.npy", "gains"},
      {"expected_targets.npy", "targets"},       {"expected_merged.npy", "merged"},
      {"expected_important.npy", "important"},   {"expected_scores.npy", "scores"}};
  for (const auto& [file, output] : names) {
    const fs::path path = dir / file;
    if (!fs::exists(path)) continue;
    const tokenprune::io::NpyArray a = tokenprune::io::read_npy(path.string());
    const std::string out(output);
    const std::vector<float>* got_values = nullptr;
    if (out == "scores") {
      got_values = &s.scores;
    } else {
      const auto it = s.outputs.find(out);
      if (it == s.outputs.end()) return out + " (missing)";
      if (a.type == tokenprune::io::NpyType::i64) {
        const auto v = a.values<std::int64_t>();
        if (!std::equal(v.begin(), v.end(), it->second.indices.begin(), it->second.indices.end())) return out;
        continue;
      }
      got_values = &it->second.values;
    }
    const auto expected = a.values<float>();
    if (expected.size() != got_values->size()) return out + " (size)";
    double atol = 0.0, rtol = 0.0;
    for (const std::string& key : {out + "_tolerance", std::string("gain_tolerance")}) {
      if (!spec.contains(key)) continue;
      const nlohmann::json& t = spec.at(key);
      atol = t.value("atol", t.value("abs", 0.0));
      rtol = t.value("rtol", t.value("rel", 0.0));
      break;
    }
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const double e = expected[i], g = (*got_values)[i];
      if (!(std::fabs(g - e) <= atol + rtol * std::fabs(e))) return out + "[" + std::to_string(i) + "]";
    }
  }
  return "";
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
    std::cout << std::left << std::setw(static_cast<int>(name_width)) << name << "  " << std::setw(13) << method
              << std::right << std::setw(9) << n << std::setw(7) << kept << "  " << std::left << std::setw(5) << match
              << std::right << std::setw(12) << ms << "\n";
  };
  row("case", "method", "n_tokens", "kept", "match", "select_ms");
  for (const fs::path& dir : cases) {
    const std::string name = dir.filename().string();
    std::string method = "?";
    try {
      const CaseSpec spec = read_case(dir);
      if (tokenprune::registry().find(spec.method) == nullptr) {  // not implemented (yet): counted, not run
        ++not_implemented[spec.method];
        continue;
      }
      method = spec.method;
      const PruneOptions options = options_from_case(dir, spec, c.repeat);
      const Selection s = run_prune(options);
      const std::vector<index_t> expected = expected_indices(dir, "expected_keep.npy");
      std::string differs = s.kept == expected ? "" : "kept";
      if (differs.empty()) differs = compare_extras(dir, spec.spec, s);
      if (!differs.empty()) std::cerr << "tokenprune: " << name << ": " << differs << " differs from the reference\n";
      if (c.scores_dir) {
        const std::int64_t shape[] = {static_cast<std::int64_t>(s.scores.size())};
        write_output("--scores-dir", (fs::path(*c.scores_dir) / (name + ".npy")).string(),
                     [&](const std::string& path) { tokenprune::io::write_npy_f32(path, s.scores, shape); });
      }
      std::ostringstream ms;
      ms << std::fixed << std::setprecision(3) << s.median_ms();
      const bool match = differs.empty();
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
// Command line: the fixed flags, one flag per input file, and one per parameter and output of every registered
// method (--<name>, '_' -> '-'), so that a method added to the registry is on the command line with no code here.
// ---------------------------------------------------------------------------------------------------------
int run_main(int argc, char** argv) {
  CLI::App app{"Visual-token pruning on .npy inputs, every method of the registry; see `tokenprune prune --help`.",
               "tokenprune"};
  app.set_version_flag("--version", std::function<std::string()>(version_text),
                       "print the version, the instruction-set levels (in use, supported) and the methods, then exit");
  app.require_subcommand(1, 1);

  PruneCommand prune;
  std::string method, layout, grid, frames, cls_index, out, scores_out, report, keep, prune_isa, check_isa, scores_dir;
  double ratio = 0.0;
  int repeat = 1;
  CLI::App* p = app.add_subcommand("prune", "select the tokens to keep and write their indices");
  auto* o_method = p->add_option("--method", method, method_list(" | "));
  static const std::map<std::string_view, std::string_view> input_help = {
      {"features", "token features [n, d] (VisionZip: hidden states [1+n, d], [CLS] first)"},
      {"attention", "attention maps [heads, n, n] (FoPru), or with [CLS]: [heads, 1+n, 1+n] or its [CLS] row [heads, 1+n]"},
      {"cls-attention", "the [CLS] query row over the patch keys, [heads, n] or [n]"},
      {"keys", "VisionZip's metric: the layer's keys [1+n, dk] ([CLS] first; [1+n, heads*dk] with --key-heads)"},
      {"image-embeds", "CDPruner: CLIP image embeddings of the patches [n, e]"},
      {"text-embeds", "text embeddings [m, e] (CDPruner: CLIP text; DART: the LLM's text embeddings)"},
      {"text", "the same as --text-embeds (DART's name)"},
      {"relevance", "CDPruner: raw relevance [n] (float32), instead of the two embeddings"}};
  std::map<std::string, std::string> files;
  std::map<std::string, CLI::Option*> file_options;
  for (const std::string_view flag : kInputFlags) {
    file_options[std::string(flag)] =
        p->add_option("--" + std::string(flag), files[std::string(flag)],
                      std::string(input_help.at(flag)) + " (.npy, float32/float16; float64 is read as float32)");
  }
  auto* o_keep = p->add_option("--keep", keep, "budget: number of tokens to keep")->type_name("INT");
  auto* o_ratio = p->add_option("--ratio", ratio, "budget: fraction in [0, 1], k = floor(R * n)");
  auto* o_layout = p->add_option("--layout", layout, "flat (default) | llava-next (segments) | crops (CDPruner)");
  auto* o_grid = p->add_option("--grid", grid, "RxC: llava-next high-resolution grid, fopru-row patch grid, or a video frame's grid");
  auto* o_frames = p->add_option("--frames", frames, "video methods: number of frames")->type_name("INT");
  auto* o_cls_index = p->add_option("--cls-index", cls_index, "position of [CLS] in --attention: 0 (default) or the last")->type_name("INT");
  // Parameters and outputs of every method, by name; several methods may share one (e.g. --keep-like counts).
  std::map<std::string, std::string> parameter_values;
  std::map<std::string, CLI::Option*> parameter_options;
  std::map<std::string, std::string> output_paths;
  std::map<std::string, std::pair<std::string, CLI::Option*>> output_options;  // flag -> (output name, option)
  for (const std::string& name : tokenprune::method_names()) {
    const tokenprune::MethodInfo& info = tokenprune::method_info(name);
    for (const tokenprune::ParameterInfo& param : info.parameters) {
      if (parameter_options.count(param.name)) {
        parameter_options[param.name]->description(parameter_options[param.name]->get_description() + "; " + name);
        continue;
      }
      const std::string help = param.help + (param.default_value.empty() ? "" : " (default " + param.default_value + ")") +
                               ". Methods: " + name;
      parameter_options[param.name] = p->add_option(flag_of(param.name), parameter_values[param.name], help);
    }
    for (const tokenprune::OutputInfo& output : info.outputs) {
      for (const std::string& flag : {flag_of(output.name), flag_of(output.name) + "-out"}) {
        if (output_options.count(flag) || output.name == "axis") continue;
        output_options[flag] = {output.name, p->add_option(flag, output_paths[flag], "write " + output.help + " (.npy)")};
      }
    }
  }
  auto* o_out = p->add_option("--out", out, "write the kept indices (int64, 1-D, ascending) to this .npy");
  auto* o_scores_out = p->add_option(
      "--scores-out,--scores", scores_out,
      "write the per-token scores (float32, 1-D, n_tokens) to this .npy: the values the method ranked (llava-next: "
      "each segment's own, +inf for the always-kept newline tokens)");
  p->add_option("--repeat", repeat, "time the selection this many times (median reported)");
  auto* o_report = p->add_option("--report", report, "json: print one JSON object instead of the summary");
  const std::string isa_help =
      "kernel instruction-set level: auto | avx512 | avx2 | portable (default: the TOKENPRUNE_ISA environment "
      "variable, else auto = the best this CPU supports; every level gives the same answers)";
  auto* o_prune_isa = p->add_option("--isa", prune_isa, isa_help)->type_name("LEVEL");
#if defined(TOKENPRUNE_TOOL_PICTURE)
  std::string picture, image;
  auto* o_picture = p->add_option("--picture", picture,
                                  "write a PNG of what was kept: the patch grid, each token's score as a colour scale "
                                  "(viridis), dropped tokens dimmed (llava-next: base view and high-resolution grid "
                                  "side by side; video: the frames as a strip)")->type_name("PNG");
  auto* o_image = p->add_option("--image", image,
                                "with --picture: the photograph (PNG, JPEG, ...) resized to the token grid, dropped "
                                "patches greyed out")->type_name("PHOTO");
#else
  p->footer("--picture and --image are not in this build: stb was not found when it was configured (Debian: "
            "apt-get install libstb-dev, then configure again)");
#endif

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
    for (const auto& [flag, option] : file_options)
      if (option->count()) o.files[flag] = files[flag];
    if (o_keep->count()) o.keep = parse_keep(keep);
    if (o_ratio->count()) o.ratio = ratio;
    if (o_layout->count()) o.layout = layout;
    if (o_grid->count()) o.grid = grid;
    if (o_frames->count()) o.frames = parse_integer("--frames", frames, "must be an integer >= 1");
    if (o_cls_index->count()) o.cls_index = parse_integer("--cls-index", cls_index, "must be 0 or the last token");
    for (const auto& [name, option] : parameter_options)
      if (option->count()) o.parameters.set(name, parameter_values[name]);
    for (const auto& [flag, name_option] : output_options) {
      const auto& [name, option] = name_option;
      if (!option->count()) continue;
      if (prune.extra_out.count(name)) fail(flag, output_paths[flag], "given twice (" + prune.extra_out[name].first + ")");
      prune.extra_out[name] = {flag, output_paths[flag]};
    }
    o.repeat = repeat;
    if (o_out->count()) prune.out = out;
    if (o_scores_out->count()) prune.scores_out = scores_out;
    if (o_report->count()) prune.report = report;
    if (o_prune_isa->count()) prune.isa = prune_isa;
#if defined(TOKENPRUNE_TOOL_PICTURE)
    if (o_picture->count()) prune.picture = picture;
    if (o_image->count()) prune.image = image;
#endif
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
