// The command-line tool (tools/tokenprune.cpp), run as a subprocess the way scripts use it: reference cases
// through `prune --out` and `check`, the JSON report, every usage/input error (exit 2, one stderr line naming
// the argument, no output file), malformed .npy files, and a deterministic mutation loop over a valid file
// (every run must end by itself with status 0 or 2: never a signal, never another status). Also: cases of methods
// not implemented are counted by `check`, not failed; --version and the instruction-set level (TOKENPRUNE_ISA,
// --isa); --scores-out.

#include "catch.hpp"
#include "reference_case.hpp"

#include <tokenprune/io/npy.hpp>
#include <tokenprune/tokenprune.hpp>

#include <nlohmann/json.hpp>

#if defined(TOKENPRUNE_TOOL_PATH)

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

namespace fs = std::filesystem;
using tokenprune::index_t;

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("tokenprune_tool_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

struct RunResult {
  bool exited = false;     // ended by itself with an exit status
  int status = -1;         // its exit status
  int signal = 0;          // the signal that ended it, if any
  bool timed_out = false;  // killed by us
  std::string out, err;

  [[nodiscard]] std::string describe() const {
    std::ostringstream text;
    if (timed_out) text << "TIMED OUT; ";
    if (exited) text << "exit " << status;
    else text << "signal " << signal << " (" << strsignal(signal) << ")";
    text << "\n--- stdout ---\n" << out << "--- stderr ---\n" << err;
    return text.str();
  }
  [[nodiscard]] std::size_t err_lines() const { return static_cast<std::size_t>(std::count(err.begin(), err.end(), '\n')); }
};

// This process's environment with `overrides` ("NAME=value") replacing any variable of the same name.
std::vector<std::string> environment_with(const std::vector<std::string>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    const bool replaced = std::any_of(overrides.begin(), overrides.end(),
                                      [&](const std::string& o) { return o.substr(0, o.find('=')) == name; });
    if (!replaced) env.push_back(entry);
  }
  env.insert(env.end(), overrides.begin(), overrides.end());
  return env;
}

// Runs the tool with `args`, stdout and stderr redirected to files, stdin from /dev/null, and the environment
// variables `env` ("NAME=value") set on top of this process's own.
RunResult run_tool(const std::vector<std::string>& args, double timeout_seconds = 300.0,
                   const std::vector<std::string>& env = {}) {
  TempDir io;
  const std::string out_path = io.file("stdout"), err_path = io.file("stderr");
  std::vector<std::string> storage{TOKENPRUNE_TOOL_PATH};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> env_storage = environment_with(env);
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  RunResult result;
  if (spawned != 0) {
    result.err = std::string("posix_spawn failed: ") + std::strerror(spawned);
    return result;
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  auto pause = std::chrono::microseconds(100);
  int wstatus = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &wstatus, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) {
      result.err = std::string("waitpid failed: ") + std::strerror(errno);
      return result;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &wstatus, 0);
      result.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(5000));
  }
  result.exited = WIFEXITED(wstatus);
  if (result.exited) result.status = WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) result.signal = WTERMSIG(wstatus);
  result.out = slurp(out_path);
  result.err = slurp(err_path);
  return result;
}

std::vector<index_t> read_indices(const fs::path& path) {
  const tokenprune::io::NpyArray a = tokenprune::io::read_npy(path.string());
  REQUIRE(a.type == tokenprune::io::NpyType::i64);
  REQUIRE(a.shape.size() == 1);
  const auto values = a.values<std::int64_t>();
  return {values.begin(), values.end()};
}

bool strictly_ascending(const std::vector<index_t>& v) {
  return std::adjacent_find(v.begin(), v.end(), [](index_t a, index_t b) { return a >= b; }) == v.end();
}

// An .npy 1.0 image with any header values, so that the test can write what numpy never would.
std::string npy_image(const std::string& descr, bool fortran, const std::string& shape, const std::string& payload) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                       ", 'shape': " + shape + ", }";
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + payload;
}

template <class T>
std::string as_payload(const std::vector<T>& values) {
  return {reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)};
}

// The case folders below `root` of the methods the library implements (tests/reference_case.hpp).
std::vector<fs::path> case_dirs(const fs::path& root) { return tokenprune::testing::partition_cases(root).implemented; }

std::vector<float> read_scores(const fs::path& path) {
  const tokenprune::io::NpyArray a = tokenprune::io::read_npy(path.string());
  REQUIRE(a.type == tokenprune::io::NpyType::f32);
  REQUIRE(a.shape.size() == 1);
  const auto values = a.values<float>();
  return {values.begin(), values.end()};
}

// The k best indices by score (descending, equal scores: lower index first), ascending.
std::vector<index_t> top_k(const std::vector<float>& scores, index_t k) {
  std::vector<index_t> order(scores.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<index_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) {
    return scores[static_cast<std::size_t>(a)] > scores[static_cast<std::size_t>(b)];
  });
  order.resize(static_cast<std::size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

// The levels `tokenprune --version` says this CPU supports ("isa: avx2 (supported: avx2 portable)").
std::vector<std::string> supported_levels(const std::string& version_output) {
  const std::string marker = "(supported: ";
  const std::size_t at = version_output.find(marker);
  if (at == std::string::npos) return {};
  const std::size_t end = version_output.find(')', at);
  std::istringstream words(version_output.substr(at + marker.size(), end - at - marker.size()));
  std::vector<std::string> levels;
  for (std::string w; words >> w;) levels.push_back(w);
  return levels;
}

// `prune` arguments equivalent to a reference case's case.json.
std::vector<std::string> prune_args(const fs::path& dir) {
  std::ifstream file(dir / "case.json");
  const nlohmann::json spec = nlohmann::json::parse(file);
  const std::string method = spec.at("method");
  const tokenprune::MethodInfo& info = tokenprune::method_info(method);
  std::vector<std::string> args{"prune", "--method", method};
  const auto text = [](const nlohmann::json& v) {
    if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
    if (v.is_string()) return v.get<std::string>();
    std::ostringstream out;
    out.precision(17);
    out << v.get<double>();
    return out.str();
  };
  // Input files by name, as far as the method reads them.
  using tokenprune::Input;
  const std::pair<const char*, bool> files[] = {
      {"features", info.reads(Input::features) || info.reads(Input::hidden_states)},
      {"attention", info.reads(Input::attention) || info.reads(Input::cls_attention)},
      {"keys", info.reads(Input::keys)},
      {"image_embeds", info.reads(Input::image_embeds)},
      {"text_embeds", info.reads(Input::text_embeds)}};
  for (const auto& [name, read] : files) {
    if (!read || !fs::exists(dir / (std::string(name) + ".npy"))) continue;
    std::string flag = std::string("--") + name;
    std::replace(flag.begin(), flag.end(), '_', '-');
    args.insert(args.end(), {flag, (dir / (std::string(name) + ".npy")).string()});
  }
  const bool has_budget = spec.contains("keep") || spec.contains("ratio");
  if (spec.contains("keep")) {
    args.insert(args.end(), {"--keep", text(spec.at("keep"))});
  } else if (spec.contains("ratio")) {
    args.insert(args.end(), {"--ratio", text(spec.at("ratio"))});
  }
  const std::string layout = spec.value("layout", "flat");
  args.insert(args.end(), {"--layout", layout});
  const auto grid = [&] { return text(spec.at("grid_rows")) + "x" + text(spec.at("grid_cols")); };
  if (spec.contains("grid_t")) {
    args.insert(args.end(), {"--frames", text(spec.at("grid_t")), "--grid", text(spec.at("grid_h")) + "x" + text(spec.at("grid_w"))});
  } else if (spec.contains("grid_rows") && (layout == "llava-next" || info.reads(Input::grid))) {
    args.insert(args.end(), {"--grid", grid()});
  }
  for (const tokenprune::ParameterInfo& p : info.parameters) {
    if (!spec.contains(p.name) || spec.at(p.name).is_null() || (p.sets_budget && has_budget)) continue;
    std::string flag = "--" + p.name;
    std::replace(flag.begin(), flag.end(), '_', '-');
    args.insert(args.end(), {flag, text(spec.at(p.name))});
  }
  return args;
}

// Runs every case below `root` through `prune --out` and compares the file with expected_keep.npy.
void run_cases_through_prune(const fs::path& root, std::size_t minimum) {
  const std::vector<fs::path> cases = case_dirs(root);
  REQUIRE(cases.size() >= minimum);
  TempDir tmp;
  std::size_t matched = 0;
  for (const fs::path& dir : cases) {
    INFO("case " << dir.filename().string());
    const std::string out = tmp.file(dir.filename().string() + ".npy");
    std::vector<std::string> args = prune_args(dir);
    args.insert(args.end(), {"--out", out});
    const RunResult r = run_tool(args);
    INFO(r.describe());
    REQUIRE(r.exited);
    REQUIRE(r.status == 0);
    REQUIRE(r.err.empty());
    const std::vector<index_t> kept = read_indices(out);
    const std::vector<index_t> expected = read_indices(dir / "expected_keep.npy");
    CHECK(kept == expected);
    if (kept == expected) ++matched;
  }
  CHECK(matched == cases.size());
}

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

const fs::path kBundled = fs::path(TOKENPRUNE_TEST_DATA_DIR) / "reference";
const fs::path kSmallFeatures = kBundled / "gprune_flat_16x8_image_k4" / "features.npy";   // [16, 8] float32, k = 4
const fs::path kSmallAttention = kBundled / "fopru_rank_probs_h1_n16_k4" / "attention.npy";  // [1, 16, 16] float32

// Exit 2, exactly one stderr line starting "tokenprune: " that mentions `mention`, nothing on stdout.
void require_usage_error(const RunResult& r, const std::string& mention) {
  INFO(r.describe());
  REQUIRE(r.exited);
  REQUIRE(r.status == 2);
  REQUIRE(r.err_lines() == 1);
  REQUIRE(r.err.back() == '\n');
  CHECK(r.err.rfind("tokenprune: ", 0) == 0);
  CHECK(r.err.find(mention) != std::string::npos);
  CHECK(r.out.empty());
}

// Float32 bits -> float16 bits (round to nearest even), through Eigen.
std::vector<std::uint16_t> to_half_bits(std::span<const float> values) {
  std::vector<std::uint16_t> bits;
  for (float v : values) bits.push_back(Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(v)));
  return bits;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// (a) reference cases through `prune --out`
// ---------------------------------------------------------------------------------------------------------
TEST_CASE("tool: bundled reference cases through prune --out", "[tool]") {
  run_cases_through_prune(kBundled, 70);
}

TEST_CASE("tool: shared reference cases through prune --out", "[tool][shared]") {
  const fs::path root = TOKENPRUNE_SHARED_FIXTURES_DIR;
  if (!fs::is_directory(root)) {
    REQUIRE_FALSE(in_ci());
    WARN("no shared fixtures at " << root.string() << "; only the bundled cases ran through the tool");
    return;
  }
  run_cases_through_prune(root, 251);
}

// ---------------------------------------------------------------------------------------------------------
// (b) check
// ---------------------------------------------------------------------------------------------------------
TEST_CASE("tool: check passes on the bundled cases", "[tool]") {
  const std::size_t n = case_dirs(kBundled).size();
  const RunResult r = run_tool({"check", kBundled.string(), "--repeat", "1"});
  INFO(r.describe());
  REQUIRE(r.exited);
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  const std::string summary = "check: " + std::to_string(n) + " passed, 0 failed\n";
  REQUIRE(r.out.size() >= summary.size());
  CHECK(r.out.substr(r.out.size() - summary.size()) == summary);
  // One line per case (plus the header and the summary), each saying yes.
  CHECK(static_cast<std::size_t>(std::count(r.out.begin(), r.out.end(), '\n')) == n + 2);
  for (const fs::path& dir : case_dirs(kBundled)) CHECK(r.out.find(dir.filename().string()) != std::string::npos);
  CHECK(r.out.find(" NO ") == std::string::npos);
}

TEST_CASE("tool: check passes on the shared cases", "[tool][shared]") {
  const fs::path root = TOKENPRUNE_SHARED_FIXTURES_DIR;
  if (!fs::is_directory(root)) {
    REQUIRE_FALSE(in_ci());
    return;
  }
  // The tool's methods and the tests' (both the registry's) must agree: the tool runs exactly the cases
  // the tests run, and counts the rest by method the same way.
  const tokenprune::testing::CaseSet set = tokenprune::testing::partition_cases(root);
  REQUIRE(set.implemented.size() >= 251);
  const RunResult r = run_tool({"check", root.string(), "--repeat", "1"});
  INFO(r.describe());
  REQUIRE(r.exited);
  REQUIRE(r.status == 0);
  const std::string summary = "check: " + std::to_string(set.implemented.size()) + " passed, 0 failed" +
                              (set.not_implemented.empty() ? "" : ", " + set.not_implemented_text()) + "\n";
  CHECK(r.out.find(summary) != std::string::npos);
  // One line per case run (plus the header and the summary); the others have no line.
  CHECK(static_cast<std::size_t>(std::count(r.out.begin(), r.out.end(), '\n')) == set.implemented.size() + 2);
}

TEST_CASE("tool: check reports a mismatch with exit 1 and bad cases with exit 2", "[tool]") {
  TempDir tmp;
  const fs::path source = kBundled / "gprune_flat_16x8_image_k4";
  const fs::path bad = tmp.path / "cases" / "altered";
  fs::create_directories(bad);
  for (const char* name : {"case.json", "features.npy"}) fs::copy_file(source / name, bad / name);
  const std::vector<std::int64_t> wrong{0, 1, 2, 3};
  tokenprune::io::write_npy_int64((bad / "expected_keep.npy").string(), wrong);

  SECTION("a case folder directly") {
    const RunResult r = run_tool({"check", bad.string()});
    INFO(r.describe());
    REQUIRE(r.exited);
    CHECK(r.status == 1);
    CHECK(r.out.find(" NO ") != std::string::npos);
    CHECK(r.out.find("check: 0 passed, 1 failed\n") != std::string::npos);
  }
  SECTION("a folder of cases, together with a good one") {
    const RunResult r = run_tool({"check", (tmp.path / "cases").string(), source.string()});
    INFO(r.describe());
    REQUIRE(r.exited);
    CHECK(r.status == 1);
    CHECK(r.out.find("check: 1 passed, 1 failed\n") != std::string::npos);
  }
  SECTION("a broken case is bad input") {
    fs::remove(bad / "features.npy");
    const RunResult r = run_tool({"check", bad.string()});
    INFO(r.describe());
    REQUIRE(r.exited);
    CHECK(r.status == 2);
    CHECK(r.err_lines() == 1);
    CHECK(r.err.find("features.npy") != std::string::npos);
    CHECK(r.out.find("check: 0 passed, 1 failed\n") != std::string::npos);
  }
  SECTION("missing or empty folders") {
    require_usage_error(run_tool({"check", (tmp.path / "nowhere").string()}), "nowhere");
    fs::create_directories(tmp.path / "empty");
    require_usage_error(run_tool({"check", (tmp.path / "empty").string()}), "empty");
    require_usage_error(run_tool({"check", kBundled.string(), "--repeat", "0"}), "--repeat");
  }
}

TEST_CASE("tool: check counts cases of unimplemented methods, and still fails known-method mismatches", "[tool]") {
  TempDir tmp;
  const fs::path source = kBundled / "gprune_flat_16x8_image_k4";
  const fs::path cases = tmp.path / "cases";
  // Two cases of methods the tool does not implement (with files a real case of theirs might have), one of a third.
  const auto unknown_case = [&](const std::string& name, const std::string& method) {
    fs::create_directories(cases / name);
    write_file(cases / name / "case.json", R"({"method": ")" + method + R"(", "keep": 4, "n_tokens": 16})");
    fs::copy_file(source / "features.npy", cases / name / "features.npy");
    fs::copy_file(source / "expected_keep.npy", cases / name / "expected_keep.npy");
  };
  unknown_case("future_a", "zz-future-a");
  unknown_case("future_b", "zz-future-a");
  unknown_case("zz_future", "zz-future-method");
  // A good gprune case, and a gprune case whose expected answer is wrong.
  fs::create_directories(cases / "good");
  for (const char* name : {"case.json", "features.npy", "expected_keep.npy"}) fs::copy_file(source / name, cases / "good" / name);
  const fs::path altered = tmp.path / "altered";
  fs::create_directories(altered);
  for (const char* name : {"case.json", "features.npy"}) fs::copy_file(source / name, altered / name);
  tokenprune::io::write_npy_int64((altered / "expected_keep.npy").string(), std::vector<std::int64_t>{0, 1, 2, 3});
  const std::string counts = "3 not implemented (zz-future-a 2, zz-future-method 1)";

  SECTION("unimplemented cases are counted, not failed") {
    const RunResult r = run_tool({"check", cases.string(), "--repeat", "1"});
    INFO(r.describe());
    REQUIRE(r.exited);
    CHECK(r.status == 0);
    CHECK(r.err.empty());
    CHECK(r.out.find("check: 1 passed, 0 failed, " + counts + "\n") != std::string::npos);
    CHECK(r.out.find("future_a") == std::string::npos);  // no line of their own
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 3);
    // The tests' own list agrees.
    CHECK(tokenprune::testing::partition_cases(cases).not_implemented_text() == counts);
  }
  SECTION("only unimplemented cases") {
    const RunResult r = run_tool({"check", (cases / "future_a").string()});
    INFO(r.describe());
    REQUIRE(r.exited);
    CHECK(r.status == 0);
    CHECK(r.out.find("check: 0 passed, 0 failed, 1 not implemented (zz-future-a 1)\n") != std::string::npos);
  }
  SECTION("a known-method mismatch still fails beside them") {
    const RunResult r = run_tool({"check", cases.string(), altered.string(), "--repeat", "1"});
    INFO(r.describe());
    REQUIRE(r.exited);
    CHECK(r.status == 1);
    CHECK(r.out.find(" NO ") != std::string::npos);
    CHECK(r.out.find("check: 1 passed, 1 failed, " + counts + "\n") != std::string::npos);
  }
  SECTION("a malformed case of a known method is an error, not a skip") {
    write_file(altered / "case.json", R"({"method": "gprune", "layout": "flat", "keep": "four"})");
    const RunResult r = run_tool({"check", cases.string(), altered.string(), "--repeat", "1"});
    INFO(r.describe());
    REQUIRE(r.exited);
    CHECK(r.status == 2);
    CHECK(r.err_lines() == 1);
    CHECK(r.err.find("case.json") != std::string::npos);
    CHECK(r.out.find("ERROR") != std::string::npos);
    CHECK(r.out.find("check: 1 passed, 1 failed, " + counts + "\n") != std::string::npos);
  }
  SECTION("a case.json without a method, or not JSON, is an error") {
    for (const std::string& text : {std::string(R"({"keep": 4})"), std::string(R"({"method": 7})"),
                                    std::string(R"({"method": ""})"), std::string(R"({"method": "zz-future-a",)")}) {
      INFO("case.json: " << text);
      write_file(altered / "case.json", text);
      const RunResult r = run_tool({"check", cases.string(), altered.string(), "--repeat", "1"});
      INFO(r.describe());
      REQUIRE(r.exited);
      CHECK(r.status == 2);
      CHECK(r.err_lines() == 1);
      CHECK(r.err.find("case.json") != std::string::npos);
      CHECK(r.out.find("check: 1 passed, 1 failed, " + counts + "\n") != std::string::npos);
    }
  }
}

TEST_CASE("tool: check --scores-dir writes each run case's scores as prune --scores-out does", "[tool]") {
  TempDir tmp;
  const fs::path cases = tmp.path / "cases", scores = tmp.path / "scores";
  fs::create_directories(scores);
  fs::create_directories(cases);
  for (const char* name : {"gprune_flat_144x64_image_k36", "fopru_row_probs_h4_n64_k32"})
    fs::copy(kBundled / name, cases / name, fs::copy_options::recursive);
  fs::create_directories(cases / "not_yet");
  write_file(cases / "not_yet" / "case.json", R"({"method": "zz-future-a", "keep": 4})");
  const RunResult r = run_tool({"check", cases.string(), "--repeat", "1", "--scores-dir", scores.string()});
  INFO(r.describe());
  REQUIRE(r.exited);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("check: 2 passed, 0 failed, 1 not implemented (zz-future-a 1)\n") != std::string::npos);
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(scores)) {
    (void)entry;
    ++files;
  }
  CHECK(files == 2);
  for (const char* name : {"gprune_flat_144x64_image_k36", "fopru_row_probs_h4_n64_k32"}) {
    INFO("case " << name);
    std::vector<std::string> args = prune_args(cases / name);
    args.insert(args.end(), {"--scores-out", tmp.file("prune.npy")});
    const RunResult p = run_tool(args);
    INFO(p.describe());
    REQUIRE(p.status == 0);
    CHECK(slurp(scores / (std::string(name) + ".npy")) == slurp(tmp.path / "prune.npy"));
  }
  // Not a directory; two cases of one name.
  require_usage_error(run_tool({"check", cases.string(), "--scores-dir", (tmp.path / "nowhere").string()}), "--scores-dir");
  require_usage_error(run_tool({"check", cases.string(), (kBundled / "gprune_flat_144x64_image_k36").string(),
                                "--scores-dir", scores.string()}),
                      "gprune_flat_144x64_image_k36");
}

// ---------------------------------------------------------------------------------------------------------
// (c) --report json and the human summary
// ---------------------------------------------------------------------------------------------------------
TEST_CASE("tool: --report json is one parseable object", "[tool]") {
  const fs::path dir = kBundled / "gprune_flat_144x64_image_k36";
  std::vector<std::string> args = prune_args(dir);
  args.insert(args.end(), {"--repeat", "3", "--report", "json"});
  const RunResult r = run_tool(args);
  INFO(r.describe());
  REQUIRE(r.exited);
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  REQUIRE(j.is_object());
  CHECK(j.at("method") == "gprune");
  CHECK(j.at("n_tokens") == 144);
  CHECK(j.at("kept") == 36);
  CHECK(j.at("repeat") == 3);
  REQUIRE(j.at("select_ms").is_number());
  CHECK(j.at("select_ms").get<double>() >= 0.0);
  CHECK(j.at("select_ms_min").get<double>() <= j.at("select_ms").get<double>());
  CHECK(j.at("kept_indices").get<std::vector<index_t>>() == read_indices(dir / "expected_keep.npy"));
  REQUIRE(j.at("isa").is_string());
  CHECK(tokenprune::parse_isa(j.at("isa").get<std::string>()).has_value());
  CHECK(j.at("scores_out").is_null());

  const fs::path fopru = kBundled / "fopru_row_probs_h4_n64_k32";
  std::vector<std::string> fargs = prune_args(fopru);
  fargs.insert(fargs.end(), {"--report", "json"});
  const RunResult f = run_tool(fargs);
  INFO(f.describe());
  REQUIRE(f.exited);
  REQUIRE(f.status == 0);
  const nlohmann::json fj = nlohmann::json::parse(f.out);
  CHECK(fj.at("method") == "fopru-row");
  CHECK(fj.at("n_tokens") == 64);
  CHECK(fj.at("kept") == 32);
  CHECK(fj.at("select_ms").is_number());
  CHECK((fj.at("axis") == "received" || fj.at("axis") == "given"));
  CHECK(fj.at("isa").is_string());
}

TEST_CASE("tool: human summary, --help and --version", "[tool]") {
  const RunResult r = run_tool({"prune", "--method", "gprune", "--features", kSmallFeatures.string(), "--keep", "4"});
  INFO(r.describe());
  REQUIRE(r.exited);
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  for (const char* word : {"gprune", "n_tokens", "16", "kept", "ms", "4 9 10 11", "\nisa       "})
    CHECK(r.out.find(word) != std::string::npos);

  for (const std::vector<std::string>& help : {std::vector<std::string>{"--help"}, {"prune", "--help"}, {"check", "--help"}}) {
    const RunResult h = run_tool(help);
    INFO(h.describe());
    REQUIRE(h.exited);
    CHECK(h.status == 0);
    CHECK(h.out.find("Usage") != std::string::npos);
  }
  const RunResult v = run_tool({"--version"});
  INFO(v.describe());
  REQUIRE(v.exited);
  CHECK(v.status == 0);
  const std::string version = "tokenprune " + std::to_string(tokenprune::kVersionMajor) + "." +
                              std::to_string(tokenprune::kVersionMinor) + "." + std::to_string(tokenprune::kVersionPatch) + "\n";
  CHECK(v.out.rfind(version, 0) == 0);
  // "isa: <in use> (supported: <levels, fastest first>)": the level in use is TOKENPRUNE_ISA's (which the tool
  // inherits from this process), else the best supported level.
  const char* env = std::getenv("TOKENPRUNE_ISA");
  const std::string in_use = env != nullptr && *env != '\0' && std::string(env) != "auto" ? std::string(env)
                                                                                            : tokenprune::isa_name(tokenprune::best_isa());
  const std::string isa_line = "isa: " + in_use + " (supported: " + tokenprune::supported_isas() + ")\n";
  std::string methods;
  for (const std::string& name : tokenprune::method_names())  // the built-ins (test_registry.cpp adds a test-* one)
    if (name.rfind("test-", 0) != 0) methods += (methods.empty() ? "" : ", ") + name;
  CHECK(v.out == version + isa_line + "methods: " + methods + "\n");
  const std::vector<std::string> levels = supported_levels(v.out);
  CHECK(std::find(levels.begin(), levels.end(), "portable") != levels.end());
}

// ---------------------------------------------------------------------------------------------------------
// (c2) instruction-set level: TOKENPRUNE_ISA and --isa
// ---------------------------------------------------------------------------------------------------------
TEST_CASE("tool: TOKENPRUNE_ISA and --isa pick the level, bad values exit 2 naming them", "[tool][isa]") {
  TempDir tmp;
  const fs::path dir = kBundled / "gprune_flat_144x64_image_k36";
  const std::vector<index_t> expected = read_indices(dir / "expected_keep.npy");
  const std::string out = tmp.file("out.npy");

  SECTION("an invalid or unsupported TOKENPRUNE_ISA: exit 2, one line naming it, no output file") {
    std::vector<std::string> bad = {"bogus", "AVX2", "sse2"};
    for (tokenprune::Isa isa : tokenprune::kAllIsas)
      if (!tokenprune::isa_supported(isa)) bad.emplace_back(tokenprune::isa_name(isa));  // unsupported here
    for (const std::string& value : bad) {
      INFO("TOKENPRUNE_ISA=" << value);
      std::vector<std::string> args = prune_args(dir);
      args.insert(args.begin() + 1, {"--out", out});
      const RunResult r = run_tool(args, 300.0, {"TOKENPRUNE_ISA=" + value});
      require_usage_error(r, "TOKENPRUNE_ISA = " + value);
      CHECK_FALSE(fs::exists(out));
      require_usage_error(run_tool({"check", kBundled.string()}, 300.0, {"TOKENPRUNE_ISA=" + value}), "TOKENPRUNE_ISA");
      require_usage_error(run_tool({"--version"}, 300.0, {"TOKENPRUNE_ISA=" + value}), "TOKENPRUNE_ISA");
    }
    // --isa overrides the environment variable; a bad --isa is named as such.
    std::vector<std::string> args = prune_args(dir);
    args.insert(args.end(), {"--isa", "portable", "--report", "json"});
    const RunResult r = run_tool(args, 300.0, {"TOKENPRUNE_ISA=bogus"});
    INFO(r.describe());
    REQUIRE(r.exited);
    REQUIRE(r.status == 0);
    CHECK(nlohmann::json::parse(r.out).at("isa") == "portable");
    args = prune_args(dir);
    args.insert(args.end(), {"--isa", "bogus"});
    require_usage_error(run_tool(args), "--isa = bogus");
    require_usage_error(run_tool({"check", kBundled.string(), "--isa", "bogus"}), "--isa = bogus");
  }
  SECTION("portable is always supported and gives the reference answer") {
    std::vector<std::string> args = prune_args(dir);
    args.insert(args.end(), {"--out", out, "--report", "json"});
    const RunResult r = run_tool(args, 300.0, {"TOKENPRUNE_ISA=portable"});
    INFO(r.describe());
    REQUIRE(r.exited);
    REQUIRE(r.status == 0);
    CHECK(nlohmann::json::parse(r.out).at("isa") == "portable");
    CHECK(read_indices(out) == expected);
    const RunResult v = run_tool({"--version"}, 300.0, {"TOKENPRUNE_ISA=portable"});
    INFO(v.describe());
    CHECK(v.status == 0);
    CHECK(v.out.find("\nisa: portable (supported: ") != std::string::npos);
    const RunResult c = run_tool({"check", kBundled.string(), "--repeat", "1"}, 300.0, {"TOKENPRUNE_ISA=portable"});
    INFO(c.describe());
    CHECK(c.status == 0);
  }
  SECTION("every supported level: the same kept indices and bitwise the same scores") {
    const std::vector<std::string> levels = supported_levels(run_tool({"--version"}).out);
    REQUIRE_FALSE(levels.empty());
    for (const fs::path& case_dir : {dir, kBundled / "gprune_flat_144x64_clustered_k14", kBundled / "fopru_row_probs_h4_n64_k32"}) {
      std::string first_scores;
      for (const std::string& level : levels) {
        INFO("case " << case_dir.filename().string() << ", TOKENPRUNE_ISA=" << level);
        const std::string scores = tmp.file("scores_" + level + ".npy");
        std::vector<std::string> args = prune_args(case_dir);
        args.insert(args.end(), {"--out", out, "--scores-out", scores, "--report", "json"});
        const RunResult r = run_tool(args, 300.0, {"TOKENPRUNE_ISA=" + level});
        INFO(r.describe());
        REQUIRE(r.exited);
        REQUIRE(r.status == 0);
        CHECK(nlohmann::json::parse(r.out).at("isa") == level);
        CHECK(read_indices(out) == read_indices(case_dir / "expected_keep.npy"));
        if (first_scores.empty()) first_scores = slurp(scores);
        else CHECK(slurp(scores) == first_scores);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// (c3) --scores-out
// ---------------------------------------------------------------------------------------------------------
TEST_CASE("tool: --scores-out writes the per-token scores behind the selection", "[tool]") {
  TempDir tmp;
  const std::string out = tmp.file("out.npy"), scores = tmp.file("scores.npy");

  SECTION("flat G-Prune: n_tokens float32 scores whose top-k is the kept set") {
    for (const char* name : {"gprune_flat_144x64_image_k36", "gprune_flat_144x64_image_dup_k36", "gprune_flat_16x8_image_k4"}) {
      const fs::path dir = kBundled / name;
      INFO("case " << name);
      std::vector<std::string> args = prune_args(dir);
      args.insert(args.end(), {"--out", out, "--scores-out", scores, "--report", "json"});
      const RunResult r = run_tool(args);
      INFO(r.describe());
      REQUIRE(r.exited);
      REQUIRE(r.status == 0);
      const nlohmann::json j = nlohmann::json::parse(r.out);
      CHECK(j.at("scores_out") == scores);
      const std::vector<float> values = read_scores(scores);
      const std::vector<index_t> kept = read_indices(out);
      REQUIRE(values.size() == j.at("n_tokens").get<std::size_t>());
      CHECK(std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); }));
      CHECK(kept == read_indices(dir / "expected_keep.npy"));
      CHECK(top_k(values, static_cast<index_t>(kept.size())) == kept);
    }
  }
  SECTION("LLaVA-NeXT layout: one score per token, +inf for the newline tokens") {
    // 576 base tokens, then a 3x4 grid with a newline after each row: 591 tokens of seeded random features.
    const index_t rows = 3, cols = 4, n = 576 + rows * (cols + 1), dim = 8;
    std::mt19937 rng(11u);
    std::vector<float> features(static_cast<std::size_t>(n * dim));
    for (float& v : features) v = static_cast<float>(rng() % 2001) / 1000.0f - 1.0f;
    write_file(tmp.path / "next.npy", npy_image("<f4", false, "(" + std::to_string(n) + ", " + std::to_string(dim) + ")",
                                                as_payload(features)));
    const RunResult r = run_tool({"prune", "--method", "gprune", "--features", tmp.file("next.npy"), "--layout",
                                  "llava-next", "--grid", "3x4", "--ratio", "0.5", "--out", out, "--scores-out", scores});
    INFO(r.describe());
    REQUIRE(r.exited);
    REQUIRE(r.status == 0);
    const std::vector<float> values = read_scores(scores);
    REQUIRE(static_cast<index_t>(values.size()) == n);
    for (index_t row = 0; row < rows; ++row) {  // the newline closing each grid row is always kept
      const float v = values[static_cast<std::size_t>(576 + row * (cols + 1) + cols)];
      CHECK((std::isinf(v) && v > 0));
    }
    CHECK(std::count_if(values.begin(), values.end(), [](float v) { return std::isinf(v); }) == rows);
    const std::vector<index_t> kept = read_indices(out);
    // Within the base view, the kept tokens are the top-k of its scores (each segment is pruned on its own).
    std::vector<float> base(values.begin(), values.begin() + 576);
    std::vector<index_t> kept_base;
    for (index_t t : kept)
      if (t < 576) kept_base.push_back(t);
    CHECK(top_k(base, static_cast<index_t>(kept_base.size())) == kept_base);
  }
  SECTION("FoPru: n_tokens finite scores; rank keeps their top-k") {
    const fs::path dir = kBundled / "fopru_rank_probs_h4_n64_k16";
    std::vector<std::string> args = prune_args(dir);
    args.insert(args.end(), {"--out", out, "--scores-out", scores});
    const RunResult r = run_tool(args);
    INFO(r.describe());
    REQUIRE(r.exited);
    REQUIRE(r.status == 0);
    const std::vector<float> values = read_scores(scores);
    REQUIRE(values.size() == 64);
    CHECK(std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); }));
    const std::vector<index_t> kept = read_indices(out);
    CHECK(top_k(values, static_cast<index_t>(kept.size())) == kept);
  }
  SECTION("without --out; and a failed run writes no file") {
    const RunResult r = run_tool({"prune", "--method", "gprune", "--features", kSmallFeatures.string(), "--keep", "4",
                                  "--scores-out", scores});
    INFO(r.describe());
    REQUIRE(r.exited);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("\nscores    " + scores + "\n") != std::string::npos);
    CHECK(read_scores(scores).size() == 16);
    fs::remove(scores);
    require_usage_error(run_tool({"prune", "--method", "gprune", "--features", kSmallFeatures.string(), "--keep", "17",
                                  "--out", out, "--scores-out", scores}),
                        "--keep");
    CHECK_FALSE(fs::exists(scores));
    CHECK_FALSE(fs::exists(out));
  }
}

// ---------------------------------------------------------------------------------------------------------
// (d) every usage and input error: exit 2, one line naming the argument, no --out file
// ---------------------------------------------------------------------------------------------------------
TEST_CASE("tool: usage and input errors exit 2 with one line and no output file", "[tool]") {
  TempDir tmp;
  const std::string F = kSmallFeatures.string(), A = kSmallAttention.string();
  const std::string R = (kBundled / "fopru_row_probs_h1_n16_k4" / "attention.npy").string();

  // Inputs with a defect the tool must name.
  const tokenprune::io::NpyArray features = tokenprune::io::read_npy(F);
  std::vector<float> values(features.values<float>().begin(), features.values<float>().end());
  std::vector<float> with_nan = values;
  with_nan[21] = std::numeric_limits<float>::quiet_NaN();
  write_file(tmp.path / "nan_features.npy", npy_image("<f4", false, "(16, 8)", as_payload(with_nan)));
  std::vector<float> with_inf = values;
  with_inf[3] = std::numeric_limits<float>::infinity();
  write_file(tmp.path / "inf_features.npy", npy_image("<f4", false, "(16, 8)", as_payload(with_inf)));
  std::vector<std::uint16_t> half_nan = to_half_bits(values);
  half_nan[7] = 0x7e00;
  write_file(tmp.path / "nan_half.npy", npy_image("<f2", false, "(16, 8)", as_payload(half_nan)));
  write_file(tmp.path / "flat.npy", npy_image("<f4", false, "(128,)", as_payload(values)));
  write_file(tmp.path / "three_d.npy", npy_image("<f4", false, "(2, 8, 8)", as_payload(values)));
  write_file(tmp.path / "int64.npy", npy_image("<i8", false, "(8, 8)", as_payload(std::vector<std::int64_t>(64, 1))));
  write_file(tmp.path / "zero_dim.npy", npy_image("<f4", false, "(16, 0)", ""));
  const tokenprune::io::NpyArray attention = tokenprune::io::read_npy(A);
  std::vector<float> maps(attention.values<float>().begin(), attention.values<float>().end());
  write_file(tmp.path / "attn_2d.npy", npy_image("<f4", false, "(16, 16)", as_payload(maps)));
  write_file(tmp.path / "attn_nonsquare.npy", npy_image("<f4", false, "(2, 8, 16)", as_payload(maps)));
  write_file(tmp.path / "attn_no_heads.npy", npy_image("<f4", false, "(0, 16, 16)", ""));
  std::vector<float> maps_nan = maps;
  maps_nan[37] = std::numeric_limits<float>::quiet_NaN();
  write_file(tmp.path / "attn_nan.npy", npy_image("<f4", false, "(1, 16, 16)", as_payload(maps_nan)));
  write_file(tmp.path / "attn_n15.npy",
             npy_image("<f4", false, "(1, 15, 15)", as_payload(std::vector<float>(maps.begin(), maps.begin() + 225))));
  fs::create_directories(tmp.path / "a_directory.npy");

  const std::string T = tmp.path.string() + "/";
  struct ErrorCase {
    std::string what;
    std::vector<std::string> args;
    std::string mention;
  };
  const std::vector<ErrorCase> cases = {
      {"no subcommand", {}, "subcommand"},
      {"unknown subcommand", {"frobnicate"}, "frobnicate"},
      {"unknown option", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--bogus"}, "--bogus"},
      {"option without value", {"prune", "--method", "gprune", "--features", F, "--keep"}, "--keep"},
      {"non-numeric keep", {"prune", "--method", "gprune", "--features", F, "--keep", "abc"}, "--keep"},
      {"non-numeric ratio", {"prune", "--method", "gprune", "--features", F, "--ratio", "half"}, "--ratio"},
      {"missing method", {"prune", "--features", F, "--keep", "4"}, "--method"},
      {"unknown method", {"prune", "--method", "zz-no-such-method", "--features", F, "--keep", "4"}, "--method"},
      {"missing features", {"prune", "--method", "gprune", "--keep", "4"}, "--features"},
      {"missing attention (rank)", {"prune", "--method", "fopru-rank", "--keep", "4"}, "--attention"},
      {"missing attention (row)", {"prune", "--method", "fopru-row", "--keep", "4"}, "--attention"},
      {"features for fopru", {"prune", "--method", "fopru-rank", "--attention", A, "--features", F, "--keep", "4"}, "--features"},
      {"both keep and ratio", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--ratio", "0.5"}, "--ratio"},
      {"neither keep nor ratio", {"prune", "--method", "gprune", "--features", F}, "--keep"},
      {"keep above n", {"prune", "--method", "gprune", "--features", F, "--keep", "700"}, "--keep = 700: must be in [0, n_tokens] = [0, 16]"},
      {"keep above n (fopru)", {"prune", "--method", "fopru-rank", "--attention", A, "--keep", "17"}, "--keep = 17"},
      {"keep overflow", {"prune", "--method", "gprune", "--features", F, "--keep", "99999999999999999999999"}, "--keep = 99999999999999999999999"},
      {"duplicate keep", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--keep", "5"}, "--keep"},
      {"negative keep", {"prune", "--method", "gprune", "--features", F, "--keep", "-1"}, "--keep"},
      {"ratio above 1", {"prune", "--method", "gprune", "--features", F, "--ratio", "1.5"}, "--ratio"},
      {"ratio NaN", {"prune", "--method", "gprune", "--features", F, "--ratio", "nan"}, "--ratio"},
      {"grid 3x", {"prune", "--method", "fopru-row", "--attention", R, "--keep", "4", "--grid", "3x"}, "--grid"},
      {"grid 0x5", {"prune", "--method", "fopru-row", "--attention", R, "--keep", "4", "--grid", "0x5"}, "--grid"},
      {"grid axb", {"prune", "--method", "fopru-row", "--attention", R, "--keep", "4", "--grid", "axb"}, "--grid"},
      {"grid -4x-4", {"prune", "--method", "fopru-row", "--attention", R, "--keep", "4", "--grid=-4x-4"}, "--grid"},
      {"grid huge", {"prune", "--method", "fopru-row", "--attention", R, "--keep", "4", "--grid", "99999999999x2"}, "--grid"},
      {"grid not n", {"prune", "--method", "fopru-row", "--attention", R, "--keep", "4", "--grid", "3x5"}, "--grid"},
      {"grid for rank", {"prune", "--method", "fopru-rank", "--attention", A, "--keep", "4", "--grid", "4x4"}, "--grid"},
      {"grid for flat", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--grid", "4x4"}, "--grid"},
      {"llava-next with keep", {"prune", "--method", "gprune", "--features", F, "--layout", "llava-next", "--keep", "4", "--grid", "2x3"}, "--ratio"},
      {"llava-next without grid", {"prune", "--method", "gprune", "--features", F, "--layout", "llava-next", "--ratio", "0.5"}, "--grid"},
      {"llava-next wrong n", {"prune", "--method", "gprune", "--features", F, "--layout", "llava-next", "--ratio", "0.5", "--grid", "2x3"}, "584"},
      {"unknown layout", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--layout", "anyres"}, "--layout"},
      {"layout for fopru", {"prune", "--method", "fopru-rank", "--attention", A, "--keep", "4", "--layout", "llava-next"}, "--layout"},
      {"unknown axis", {"prune", "--method", "fopru-rank", "--attention", A, "--keep", "4", "--axis", "both"}, "--axis"},
      {"axis for gprune", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--axis", "given"}, "--axis"},
      {"threshold 0", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--threshold", "0"}, "--threshold"},
      {"temperature -1", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--temperature", "-1"}, "--temperature"},
      {"iterations -1", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--iterations", "-1"}, "--iterations"},
      {"threshold for fopru", {"prune", "--method", "fopru-rank", "--attention", A, "--keep", "4", "--threshold", "0.5"}, "--threshold"},
      {"repeat 0", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--repeat", "0"}, "--repeat"},
      {"repeat -3", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--repeat", "-3"}, "--repeat"},
      {"report xml", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--report", "xml"}, "--report"},
      {"isa unknown", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--isa", "sse9"}, "--isa = sse9"},
      {"isa without value", {"prune", "--method", "gprune", "--features", F, "--keep", "4", "--isa"}, "--isa"},
      {"features missing file", {"prune", "--method", "gprune", "--features", T + "nope.npy", "--keep", "4"}, "--features"},
      {"features is a directory", {"prune", "--method", "gprune", "--features", T + "a_directory.npy", "--keep", "4"}, "--features"},
      {"features 1-D", {"prune", "--method", "gprune", "--features", T + "flat.npy", "--keep", "4"}, "--features"},
      {"features 3-D", {"prune", "--method", "gprune", "--features", T + "three_d.npy", "--keep", "4"}, "--features"},
      {"features int64", {"prune", "--method", "gprune", "--features", T + "int64.npy", "--keep", "4"}, "--features"},
      {"features dim 0", {"prune", "--method", "gprune", "--features", T + "zero_dim.npy", "--keep", "4"}, "--features"},
      {"features NaN", {"prune", "--method", "gprune", "--features", T + "nan_features.npy", "--keep", "4"}, "--features[2,5]"},
      {"features Inf", {"prune", "--method", "gprune", "--features", T + "inf_features.npy", "--keep", "4"}, "--features[0,3]"},
      {"features float16 NaN", {"prune", "--method", "gprune", "--features", T + "nan_half.npy", "--keep", "4"}, "--features[0,7]"},
      {"attention 2-D", {"prune", "--method", "fopru-rank", "--attention", T + "attn_2d.npy", "--keep", "4"}, "--attention"},
      {"attention not [heads, n, n]", {"prune", "--method", "fopru-rank", "--attention", T + "attn_nonsquare.npy", "--keep", "4"}, "--attention"},
      {"attention zero heads", {"prune", "--method", "fopru-rank", "--attention", T + "attn_no_heads.npy", "--keep", "4"}, "--attention"},
      {"attention NaN", {"prune", "--method", "fopru-rank", "--attention", T + "attn_nan.npy", "--keep", "4"}, "--attention[0,2,5]"},
      {"attention is features", {"prune", "--method", "fopru-row", "--attention", F, "--keep", "4"}, "--attention"},
      {"fopru-row, n = 15 and no grid", {"prune", "--method", "fopru-row", "--attention", T + "attn_n15.npy", "--keep", "4"}, "--grid"},
  };
  for (const ErrorCase& c : cases) {
    INFO("error case: " << c.what);
    const std::string out = T + "out.npy", scores = T + "scores.npy";
    std::vector<std::string> args = c.args;
    // (--out goes first so that it cannot become the value of a trailing option that lacks one.)
    if (!args.empty() && args.front() == "prune") args.insert(args.begin() + 1, {"--out", out, "--scores-out", scores});
    require_usage_error(run_tool(args), c.mention);
    CHECK_FALSE(fs::exists(out));
    CHECK_FALSE(fs::exists(scores));
  }
  // --out into a missing directory, and onto a directory.
  require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--out", T + "missing/out.npy"}),
                      "--out");
  CHECK_FALSE(fs::exists(tmp.path / "missing"));
  require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--out", T + "a_directory.npy"}),
                      "--out");
  // The same for --scores-out, which must also differ from --out; neither file is written.
  require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--out", T + "out.npy",
                                "--scores-out", T + "missing/scores.npy"}),
                      "--scores-out");
  require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--scores-out", T + "a_directory.npy"}),
                      "--scores-out");
  require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--out", T + "same.npy",
                                "--scores-out", T + "./same.npy"}),
                      "--scores-out");
  require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--scores-out", ""}),
                      "--scores-out");
  CHECK_FALSE(fs::exists(tmp.path / "out.npy"));
  CHECK_FALSE(fs::exists(tmp.path / "same.npy"));
  // No temp files left behind by any of these runs.
  for (const auto& entry : fs::directory_iterator(tmp.path))
    CHECK(entry.path().filename().string().find(".tmp-") == std::string::npos);
}

// ---------------------------------------------------------------------------------------------------------
// (e) malformed and unusual .npy files
// ---------------------------------------------------------------------------------------------------------
TEST_CASE("tool: malformed npy files are rejected, Fortran order and float16 accepted", "[tool]") {
  TempDir tmp;
  const std::string original = slurp(kSmallFeatures);
  const tokenprune::io::NpyArray features = tokenprune::io::read_npy(kSmallFeatures.string());
  const std::vector<float> values(features.values<float>().begin(), features.values<float>().end());
  const std::vector<index_t> expected = read_indices(kSmallFeatures.parent_path() / "expected_keep.npy");
  const std::string out = tmp.file("out.npy");
  const auto prune_features = [&](const std::string& path) {
    return run_tool({"prune", "--method", "gprune", "--features", path, "--keep", "4", "--out", out});
  };

  SECTION("rejected") {
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"truncated.npy", original.substr(0, original.size() - 5)},
        {"truncated_header.npy", original.substr(0, 40)},
        {"empty.npy", ""},
        {"huge_shape.npy", npy_image("<f4", false, "(100000000000, 100000000)", as_payload(values))},
        {"huge_rows.npy", npy_image("<f4", false, "(100000000000, 8)", as_payload(values))},
        {"big_endian.npy", npy_image(">f4", false, "(16, 8)", as_payload(values))},
        {"bad_magic.npy", "\x93NUMPZ" + original.substr(6)},
        {"text.npy", "this is not an npy file at all\n"},
        {"trailing.npy", original + "xyz"},
        {"negative_dim.npy", npy_image("<f4", false, "(-16, 8)", as_payload(values))},
        {"bad_version.npy", original.substr(0, 6) + "\x07" + original.substr(7)},
    };
    for (const auto& [name, bytes] : bad) {
      INFO("file " << name);
      write_file(tmp.path / name, bytes);
      const RunResult r = prune_features(tmp.file(name));
      require_usage_error(r, "--features");
      CHECK(r.err.find(name) != std::string::npos);
      CHECK_FALSE(fs::exists(out));
    }
  }
  SECTION("float64 features (numpy's default) are read as float32 and give the same answer") {
    const std::vector<double> wide(values.begin(), values.end());  // exact: the float32 values widened
    std::string bytes(wide.size() * sizeof(double), '\0');
    std::memcpy(bytes.data(), wide.data(), bytes.size());
    write_file(tmp.path / "float64.npy", npy_image("<f8", false, "(16, 8)", bytes));
    const RunResult r = prune_features(tmp.file("float64.npy"));
    INFO(r.describe());
    REQUIRE(r.exited);
    REQUIRE(r.status == 0);
    CHECK(read_indices(out) == expected);
  }
  SECTION("Fortran order gives the same answer") {
    std::vector<float> column_major(values.size());
    for (index_t i = 0; i < 16; ++i)
      for (index_t j = 0; j < 8; ++j) column_major[static_cast<std::size_t>(j * 16 + i)] = values[static_cast<std::size_t>(i * 8 + j)];
    write_file(tmp.path / "fortran.npy", npy_image("<f4", true, "(16, 8)", as_payload(column_major)));
    const RunResult r = prune_features(tmp.file("fortran.npy"));
    INFO(r.describe());
    REQUIRE(r.exited);
    REQUIRE(r.status == 0);
    CHECK(read_indices(out) == expected);
  }
  SECTION("float16 features and attention are accepted") {
    write_file(tmp.path / "half.npy", npy_image("<f2", false, "(16, 8)", as_payload(to_half_bits(values))));
    const RunResult r = run_tool({"prune", "--method", "gprune", "--features", tmp.file("half.npy"), "--keep", "4",
                                  "--out", out, "--report", "json"});
    INFO(r.describe());
    REQUIRE(r.exited);
    REQUIRE(r.status == 0);
    CHECK(nlohmann::json::parse(r.out).at("dtype") == "float16");
    const std::vector<index_t> kept = read_indices(out);
    CHECK(kept.size() == 4);
    CHECK(strictly_ascending(kept));

    const tokenprune::io::NpyArray attention = tokenprune::io::read_npy(kSmallAttention.string());
    const std::vector<float> maps(attention.values<float>().begin(), attention.values<float>().end());
    write_file(tmp.path / "half_attention.npy", npy_image("<f2", false, "(1, 16, 16)", as_payload(to_half_bits(maps))));
    const RunResult a = run_tool({"prune", "--method", "fopru-rank", "--attention", tmp.file("half_attention.npy"),
                                  "--keep", "4", "--out", out, "--report", "json"});
    INFO(a.describe());
    REQUIRE(a.exited);
    REQUIRE(a.status == 0);
    CHECK(nlohmann::json::parse(a.out).at("kept") == 4);
    CHECK(strictly_ascending(read_indices(out)));
  }
  SECTION("a file of zero tokens keeps zero tokens") {
    write_file(tmp.path / "none.npy", npy_image("<f4", false, "(0, 8)", ""));
    const RunResult r = run_tool({"prune", "--method", "gprune", "--features", tmp.file("none.npy"), "--keep", "0", "--out", out});
    INFO(r.describe());
    REQUIRE(r.exited);
    REQUIRE(r.status == 0);
    CHECK(read_indices(out).empty());
  }
}

// ---------------------------------------------------------------------------------------------------------
// (f) mutation loop: every run ends by itself with status 0 or 2
// ---------------------------------------------------------------------------------------------------------
namespace {

// Deterministic mutants of a valid .npy image (std::mt19937's sequence is fixed by the standard; no distributions).
std::vector<std::string> mutants(const std::string& base, std::size_t count, std::uint32_t seed) {
  std::mt19937 rng(seed);
  const auto pick = [&rng](std::size_t m) { return m == 0 ? std::size_t{0} : static_cast<std::size_t>(rng() % m); };
  const std::size_t header_end = 10 + (static_cast<unsigned char>(base[8]) | (static_cast<unsigned char>(base[9]) << 8));
  const std::size_t shape_at = base.find("'shape': (");
  using namespace std::string_literals;
  const std::string special = "()[],:'\" \n\t\r-+.xLeE0123456789{}TF\x93\x00\xff"s;
  std::vector<std::string> out;
  for (std::size_t i = 0; i < count; ++i) {
    std::string m = base;
    switch (i % 6) {
      case 0: {  // flip bits of 1-3 header bytes (magic, version, length, dict)
        for (std::size_t f = 0, flips = 1 + pick(3); f < flips; ++f) m[pick(header_end)] ^= static_cast<char>(1 + pick(255));
        break;
      }
      case 1: {  // flip bytes of the data (NaN, Inf, denormals, huge values)
        for (std::size_t f = 0, flips = 1 + pick(8); f < flips; ++f)
          m[header_end + pick(m.size() - header_end)] ^= static_cast<char>(1 + pick(255));
        break;
      }
      case 2: {  // cut anywhere, or append junk
        if (pick(4) == 0) m += std::string(1 + pick(64), static_cast<char>(pick(256)));
        else m.resize(pick(m.size()));
        break;
      }
      case 3: {  // shape digits: change, insert, delete
        std::vector<std::size_t> digits;
        for (std::size_t p = shape_at; p < header_end && m[p] != ')'; ++p)
          if (m[p] >= '0' && m[p] <= '9') digits.push_back(p);
        const std::size_t p = digits[pick(digits.size())];
        switch (pick(4)) {
          case 0: m[p] = static_cast<char>('0' + pick(10)); break;
          case 1: m.insert(p, std::string(1 + pick(12), static_cast<char>('0' + pick(10)))); break;
          case 2: m.erase(p, 1); break;
          default: m[p] = '0'; break;
        }
        break;
      }
      case 4: {  // header text: one character replaced by something syntactically interesting
        const std::size_t p = 10 + pick(header_end - 10);
        m[p] = special[pick(special.size())];
        break;
      }
      default: {  // the length field or the version, set to extreme or nearby values
        const std::size_t p = 6 + pick(4);
        const char values[] = {'\0', '\x01', '\x02', '\x03', '\x7f', '\x80', '\xff'};
        m[p] = pick(2) ? values[pick(sizeof values)] : static_cast<char>(m[p] + (pick(2) ? 1 : -1));
        break;
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

void run_mutants(const std::vector<std::string>& files, const std::vector<std::string>& tool_args_before_path,
                 const std::vector<std::string>& tool_args_after_path, std::map<std::string, int>& seen) {
  TempDir tmp;
  const std::string input = tmp.file("mutant.npy"), out = tmp.file("out.npy");
  for (std::size_t i = 0; i < files.size(); ++i) {
    write_file(input, files[i]);
    std::error_code ignored;
    fs::remove(out, ignored);
    std::vector<std::string> args = tool_args_before_path;
    args.push_back(input);
    args.insert(args.end(), tool_args_after_path.begin(), tool_args_after_path.end());
    args.insert(args.end(), {"--out", out});
    const RunResult r = run_tool(args, 120.0);
    INFO("mutant " << i << "\n" << r.describe());
    REQUIRE(r.exited);  // never a signal, never a hang
    REQUIRE((r.status == 0 || r.status == 2));
    if (r.status == 0) {
      REQUIRE(fs::exists(out));
      CHECK(strictly_ascending(read_indices(out)));
      ++seen["exit 0"];
    } else {
      CHECK(r.err_lines() == 1);
      CHECK_FALSE(fs::exists(out));
      ++seen["exit 2"];
    }
  }
}

}  // namespace

TEST_CASE("tool: mutated npy inputs end with status 0 or 2", "[tool][mutation]") {
  std::map<std::string, int> seen;
  const std::vector<std::string> features = mutants(slurp(kSmallFeatures), 200, 20240601u);
  run_mutants(features, {"prune", "--method", "gprune", "--features"}, {"--keep", "4"}, seen);
  const std::vector<std::string> attention = mutants(slurp(kSmallAttention), 60, 7u);
  run_mutants(attention, {"prune", "--method", "fopru-row", "--attention"}, {"--keep", "8"}, seen);
  WARN("mutants: " << features.size() + attention.size() << " runs, " << seen["exit 0"] << " exit 0, " << seen["exit 2"]
                   << " exit 2");
  CHECK(seen["exit 0"] > 10);  // the loop exercised successful parses too, not only early rejections
  CHECK(seen["exit 2"] > 100);
}

#else

TEST_CASE("tool: not built", "[tool]") {
  // A CI run without the tool would pass every tool test vacuously.
  const char* ci = std::getenv("CI");
  REQUIRE_FALSE((ci != nullptr && std::string(ci) == "true"));
  WARN("TOKENPRUNE_TOOL_PATH is not defined: the command-line tool was not built");
}

#endif

// ---------------------------------------------------------------------------------------------------------
// (g) the methods beyond G-Prune and FoPru: budgets from parameters, extra outputs, input routing
// ---------------------------------------------------------------------------------------------------------
namespace {
std::vector<float> read_floats(const fs::path& path) {
  const tokenprune::io::NpyArray a = tokenprune::io::read_npy(path.string());
  const auto v = a.values<float>();
  return {v.begin(), v.end()};
}
}  // namespace

TEST_CASE("tool: VisionZip's budget from --dominant/--contextual and its merged tokens", "[tool]") {
  const fs::path dir = kBundled / "visionzip_clustered_n16_k8_dom6_ctx2_d8_h2";
  TempDir tmp;
  const std::vector<std::string> base{"prune", "--method", "visionzip", "--attention", (dir / "attention.npy").string(),
                                      "--keys", (dir / "keys.npy").string(), "--features", (dir / "features.npy").string()};
  std::vector<std::string> args = base;
  args.insert(args.end(), {"--dominant", "6", "--contextual", "2", "--out", tmp.file("keep.npy"), "--merged-out",
                           tmp.file("merged.npy"), "--targets", tmp.file("targets.npy")});
  const RunResult r = run_tool(args);
  INFO(r.describe());
  REQUIRE(r.status == 0);
  CHECK(read_indices(tmp.path / "keep.npy") == read_indices(dir / "expected_keep.npy"));
  CHECK(read_indices(tmp.path / "targets.npy") == read_indices(dir / "expected_targets.npy"));
  const std::vector<float> merged = read_floats(tmp.path / "merged.npy"), expected = read_floats(dir / "expected_merged.npy");
  REQUIRE(merged.size() == expected.size());
  REQUIRE(merged.size() == 2 * 8);
  for (std::size_t i = 0; i < merged.size(); ++i) CHECK(std::fabs(merged[i] - expected[i]) <= 1e-4f * (1.0f + std::fabs(expected[i])));
  const tokenprune::io::NpyArray shape = tokenprune::io::read_npy(tmp.file("merged.npy"));
  CHECK(shape.shape == std::vector<std::int64_t>{2, 8});

  // The same split from a total budget and --contextual.
  std::vector<std::string> total = base;
  total.insert(total.end(), {"--keep", "8", "--contextual", "2", "--out", tmp.file("keep2.npy")});
  REQUIRE(run_tool(total).status == 0);
  CHECK(read_indices(tmp.path / "keep2.npy") == read_indices(dir / "expected_keep.npy"));

  std::vector<std::string> both = base;
  both.insert(both.end(), {"--dominant", "6", "--contextual", "2", "--keep", "8"});
  require_usage_error(run_tool(both), "--keep");
  std::vector<std::string> alone = base;
  alone.insert(alone.end(), {"--dominant", "6"});
  require_usage_error(run_tool(alone), "--contextual");
  std::vector<std::string> too_many = base;
  too_many.insert(too_many.end(), {"--dominant", "6", "--contextual", "12", "--out", tmp.file("never.npy")});
  require_usage_error(run_tool(too_many), "--contextual");
  CHECK_FALSE(fs::exists(tmp.path / "never.npy"));
}

TEST_CASE("tool: DivPrune's pick order and gains, EVS's pruning rate", "[tool]") {
  TempDir tmp;
  const fs::path div = kBundled / "divprune_image_dup_n64_d64_k16";
  const RunResult r = run_tool({"prune", "--method", "divprune", "--features", (div / "features.npy").string(), "--keep",
                                "16", "--order", tmp.file("order.npy"), "--gains", tmp.file("gains.npy")});
  INFO(r.describe());
  REQUIRE(r.status == 0);
  CHECK(read_indices(tmp.path / "order.npy") == read_indices(div / "expected_selection_order.npy"));
  const std::vector<float> gains = read_floats(tmp.path / "gains.npy"), expected = read_floats(div / "expected_selection_gain.npy");
  REQUIRE(gains.size() == expected.size());
  for (std::size_t i = 0; i < gains.size(); ++i) CHECK(std::fabs(gains[i] - expected[i]) <= 1e-5f);

  // --pruning-rate 0.75 is vLLM's count: max(16, int(64 * 0.25)) = 16, the case's keep.
  const fs::path evs = kBundled / "evs_drift_n64_t4x4x4_d16_q0.75_k16";
  const std::vector<std::string> video{"prune", "--method", "evs", "--features", (evs / "features.npy").string(),
                                       "--frames", "4", "--grid", "4x4"};
  std::vector<std::string> rate = video;
  rate.insert(rate.end(), {"--pruning-rate", "0.75", "--out", tmp.file("evs.npy")});
  REQUIRE(run_tool(rate).status == 0);
  CHECK(read_indices(tmp.path / "evs.npy") == read_indices(evs / "expected_keep.npy"));
  std::vector<std::string> bad_rate = video;
  bad_rate.insert(bad_rate.end(), {"--pruning-rate", "1"});
  require_usage_error(run_tool(bad_rate), "--pruning-rate");
  require_usage_error(run_tool({"prune", "--method", "evs", "--features", (evs / "features.npy").string(), "--keep", "4"}),
                      "--frames");
  std::vector<std::string> wrong_grid = video;
  wrong_grid[8] = "4x5";
  wrong_grid.insert(wrong_grid.end(), {"--keep", "4"});
  require_usage_error(run_tool(wrong_grid), "--frames");
}

TEST_CASE("tool: inputs and flags a method does not read are errors naming them", "[tool]") {
  const fs::path div = kBundled / "divprune_image_dup_n64_d64_k16";
  const std::string F = (div / "features.npy").string();
  require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--keys", F}), "--keys");
  require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--theta", "0.5"}), "--theta");
  require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--order", "o.npy"}), "--order");
  require_usage_error(run_tool({"prune", "--method", "divprune", "--features", F, "--keep", "4", "--frames", "2"}), "--frames");
  require_usage_error(run_tool({"prune", "--method", "vispruner", "--features", F, "--keep", "4"}), "--attention");
  require_usage_error(run_tool({"prune", "--method", "cdpruner", "--features", F, "--keep", "4", "--layout", "crops"}), "--crops");
  require_usage_error(run_tool({"prune", "--method", "dart", "--features", F, "--keep", "4", "--pivot-image", "-1"}), "--pivot-image");
}

TEST_CASE("tool: the [CLS] row alone gives the same selection as the maps, [CLS] first or last", "[tool]") {
  TempDir tmp;
  const fs::path dir = kBundled / "cls_attention_probs_h1_n16_k8";
  const tokenprune::io::NpyArray maps = tokenprune::io::read_npy((dir / "attention.npy").string());
  const index_t heads = maps.shape[0], total = maps.shape[1];
  const auto values = maps.values<float>();
  std::vector<float> row, last_maps(values.size());
  for (index_t h = 0; h < heads; ++h)
    for (index_t j = 0; j < total; ++j) row.push_back(values[static_cast<std::size_t>((h * total) * total + j)]);
  const std::int64_t row_shape[] = {heads, total};
  tokenprune::io::write_npy_f32(tmp.file("row.npy"), row, row_shape);
  // The same maps with [CLS] moved from first to last (rows and columns rotated by one).
  for (index_t h = 0; h < heads; ++h)
    for (index_t i = 0; i < total; ++i)
      for (index_t j = 0; j < total; ++j)
        last_maps[static_cast<std::size_t>((h * total + (i + total - 1) % total) * total + (j + total - 1) % total)] =
            values[static_cast<std::size_t>((h * total + i) * total + j)];
  const std::int64_t maps_shape[] = {heads, total, total};
  tokenprune::io::write_npy_f32(tmp.file("last.npy"), last_maps, maps_shape);
  const std::vector<index_t> expected = read_indices(dir / "expected_keep.npy");
  REQUIRE(run_tool({"prune", "--method", "cls-attention", "--attention", tmp.file("row.npy"), "--keep", "8", "--out",
                    tmp.file("a.npy")}).status == 0);
  CHECK(read_indices(tmp.path / "a.npy") == expected);
  REQUIRE(run_tool({"prune", "--method", "cls-attention", "--attention", tmp.file("last.npy"), "--cls-index",
                    std::to_string(total - 1), "--keep", "8", "--out", tmp.file("b.npy")}).status == 0);
  CHECK(read_indices(tmp.path / "b.npy") == expected);
  require_usage_error(run_tool({"prune", "--method", "cls-attention", "--attention", tmp.file("last.npy"), "--cls-index",
                                "3", "--keep", "8"}), "--cls-index");
}

// ---------------------------------------------------------------------------------------------------------
// --picture / --image (tools/picture.hpp; the tool has them when CMake found stb, libstb-dev): the PNG is written
// and decodes to the expected size, dropped patches are dimmed (score picture) or greyed out (photo), LLaVA-NeXT,
// video and --grid layouts, and every error is one line naming --picture or --image with no file left behind.
// ---------------------------------------------------------------------------------------------------------
#if defined(TOKENPRUNE_TOOL_PATH) && defined(TOKENPRUNE_TOOL_PICTURE)

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace {

struct Decoded {
  int width = 0, height = 0;
  std::vector<unsigned char> rgb;
  [[nodiscard]] const unsigned char* at(int x, int y) const {
    return rgb.data() + (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) * 3;
  }
};

Decoded decode_png(const fs::path& path) {
  Decoded d;
  int channels = 0;
  unsigned char* data = stbi_load(path.string().c_str(), &d.width, &d.height, &channels, 3);
  REQUIRE(data != nullptr);
  d.rgb.assign(data, data + static_cast<std::size_t>(d.width) * static_cast<std::size_t>(d.height) * 3);
  stbi_image_free(data);
  return d;
}

double luminance(const unsigned char* p) { return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]; }

// Random float32 features [n, dim] as .npy.
void write_random_features(const fs::path& path, index_t n, index_t dim, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> values(static_cast<std::size_t>(n * dim));
  for (float& v : values) v = normal(rng);
  const std::int64_t shape[] = {n, dim};
  tokenprune::io::write_npy_f32(path.string(), values, shape);
}

}  // namespace

TEST_CASE("tool: --picture draws what was kept as a PNG, --image the photograph with dropped patches greyed out",
          "[tool][picture]") {
  TempDir tmp;
  const std::string F = kSmallFeatures.string();  // 16 tokens: a 4x4 grid, 84 px cells, 336 x 336
  const int cell = 84;

  SECTION("score picture: every token kept vs 4 kept; dropped cells are the same colour dimmed, kept cells unchanged") {
    const std::string all = tmp.file("all.png"), part = tmp.file("part.png"), out = tmp.file("keep.npy");
    const RunResult r_all = run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "16", "--picture", all});
    INFO(r_all.describe());
    REQUIRE(r_all.status == 0);
    CHECK(r_all.out.find("picture   " + all) != std::string::npos);
    const RunResult r = run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--picture", part,
                                  "--out", out});
    INFO(r.describe());
    REQUIRE(r.status == 0);
    const Decoded full = decode_png(all), pic = decode_png(part);
    REQUIRE(pic.width == 4 * cell);
    REQUIRE(pic.height == 4 * cell);
    REQUIRE(full.width == pic.width);
    const std::vector<index_t> kept = read_indices(out);
    REQUIRE(kept.size() == 4);
    int dimmed = 0;
    for (index_t t = 0; t < 16; ++t) {
      const bool is_kept = std::find(kept.begin(), kept.end(), t) != kept.end();
      for (const auto& [dx, dy] : {std::pair{cell / 2, cell / 2}, std::pair{1, 1}, std::pair{cell - 2, cell - 2}}) {
        const int x = static_cast<int>(t % 4) * cell + dx, y = static_cast<int>(t / 4) * cell + dy;
        const unsigned char *a = full.at(x, y), *b = pic.at(x, y);
        INFO("token " << t << (is_kept ? " kept" : " dropped") << " at (" << x << ", " << y << ")");
        if (is_kept) {
          CHECK((a[0] == b[0] && a[1] == b[1] && a[2] == b[2]));
        } else {
          for (int k = 0; k < 3; ++k) CHECK(std::abs(static_cast<int>(b[k]) - std::lround(0.35 * a[k])) <= 1);
          CHECK(luminance(b) < 0.5 * luminance(a));
          ++dimmed;
        }
      }
    }
    CHECK(dimmed == 12 * 3);
  }

  SECTION("--image: the photograph resized to the grid; kept patches in colour, dropped ones grey") {
    // A colourful 60 x 45 photo: red rises left to right, green top to bottom, blue constant.
    const int w = 60, h = 45;
    std::vector<unsigned char> photo(static_cast<std::size_t>(w * h * 3));
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        unsigned char* p = photo.data() + static_cast<std::size_t>((y * w + x) * 3);
        p[0] = static_cast<unsigned char>(40 + 200 * x / (w - 1));
        p[1] = static_cast<unsigned char>(20 + 120 * y / (h - 1));
        p[2] = 200;
      }
    const std::string photo_path = tmp.file("photo.png"), all = tmp.file("all.png"), part = tmp.file("part.png"),
                      out = tmp.file("keep.npy");
    REQUIRE(stbi_write_png(photo_path.c_str(), w, h, 3, photo.data(), w * 3) != 0);
    REQUIRE(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "16", "--picture", all, "--image",
                      photo_path}).status == 0);
    const RunResult r = run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--picture", part,
                                  "--image", photo_path, "--out", out});
    INFO(r.describe());
    REQUIRE(r.status == 0);
    const Decoded full = decode_png(all), pic = decode_png(part);
    REQUIRE(pic.width == 4 * cell);
    REQUIRE(pic.height == 4 * cell);
    const std::vector<index_t> kept = read_indices(out);
    // The all-kept picture is the photo: red grows to the right, green downwards.
    CHECK(full.at(pic.width - 5, 5)[0] > full.at(5, 5)[0] + 100);
    CHECK(full.at(5, pic.height - 5)[1] > full.at(5, 5)[1] + 60);
    for (index_t t = 0; t < 16; ++t) {
      const bool is_kept = std::find(kept.begin(), kept.end(), t) != kept.end();
      const int x = static_cast<int>(t % 4) * cell + cell / 2, y = static_cast<int>(t / 4) * cell + cell / 2;
      const unsigned char *a = full.at(x, y), *b = pic.at(x, y);
      INFO("token " << t << (is_kept ? " kept" : " dropped"));
      if (is_kept) {
        CHECK((a[0] == b[0] && a[1] == b[1] && a[2] == b[2]));
        CHECK(b[2] > b[1]);  // in colour
      } else {
        CHECK((b[0] == b[1] && b[1] == b[2]));  // grey
        CHECK(b[0] > 150);                       // greyed out, light
      }
    }
  }

  SECTION("layouts: llava-next side by side, video frames as a strip, fopru-row's --grid") {
    const fs::path next = tmp.path / "next.npy";
    write_random_features(next, 576 + 2 * (3 + 1), 8, 5u);  // base 24x24, then a 2x3 grid with a newline per row
    const std::string p1 = tmp.file("next.png");
    RunResult r = run_tool({"prune", "--method", "gprune", "--features", next.string(), "--layout", "llava-next",
                            "--grid", "2x3", "--ratio", "0.5", "--picture", p1});
    INFO(r.describe());
    REQUIRE(r.status == 0);
    Decoded d = decode_png(p1);
    CHECK(d.width == 24 * 14 + 8 + 3 * 168);  // base 336 px, 8 px gap, high-res 2 rows of 168 px cells
    CHECK(d.height == 336);
    CHECK((d.at(336 + 4, 100)[0] == 255 && d.at(336 + 4, 100)[1] == 255));  // the gap is background

    const fs::path video = kBundled / "evs_drift_n64_t4x4x4_d16_q0.75_k16" / "features.npy";
    const std::string p2 = tmp.file("video.png");
    r = run_tool({"prune", "--method", "evs", "--features", video.string(), "--frames", "4", "--grid", "4x4",
                  "--pruning-rate", "0.75", "--picture", p2});
    INFO(r.describe());
    REQUIRE(r.status == 0);
    d = decode_png(p2);
    CHECK(d.width == 4 * (4 * 42) + 3 * 8);
    CHECK(d.height == 4 * 42);

    const fs::path maps = kBundled / "fopru_row_logits_h1_n16_k4" / "attention.npy";
    const std::string p3 = tmp.file("row.png");
    r = run_tool({"prune", "--method", "fopru-row", "--attention", maps.string(), "--grid", "2x8", "--keep", "8",
                  "--picture", p3});
    INFO(r.describe());
    REQUIRE(r.status == 0);
    d = decode_png(p3);
    CHECK(d.width == 8 * 42);
    CHECK(d.height == 2 * 42);
  }

  SECTION("errors: one line naming --picture or --image, exit 2, nothing written") {
    const std::string pic = tmp.file("p.png"), out = tmp.file("k.npy");
    const fs::path odd = tmp.path / "odd.npy";
    write_random_features(odd, 15, 4, 9u);
    require_usage_error(run_tool({"prune", "--method", "gprune", "--features", odd.string(), "--keep", "3", "--picture",
                                  pic, "--out", out}),
                        "--picture = " + pic + ": 15 tokens are not a square grid");
    require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--picture",
                                  tmp.file("missing/p.png"), "--out", out}),
                        "--picture = " + tmp.file("missing/p.png") + ": parent directory does not exist");
    require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--picture",
                                  tmp.path.string()}),
                        "--picture = " + tmp.path.string() + ": is a directory");
    require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--picture", pic,
                                  "--out", pic}),
                        "must differ from");
    require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--image", F}),
                        "--image = " + F + ": only used with --picture");
    require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--picture", pic,
                                  "--image", tmp.file("none.png"), "--out", out}),
                        "--image = " + tmp.file("none.png") + ": file does not exist");
    require_usage_error(run_tool({"prune", "--method", "gprune", "--features", F, "--keep", "4", "--picture", pic,
                                  "--image", F, "--out", out}),
                        "--image = " + F + ": cannot decode the image");
    // A bad --picture is caught before any input is read: a missing features file is not what is reported.
    require_usage_error(run_tool({"prune", "--method", "gprune", "--features", tmp.file("absent.npy"), "--keep", "4",
                                  "--picture", tmp.file("missing/p.png")}),
                        "--picture");
    CHECK_FALSE(fs::exists(pic));
    CHECK_FALSE(fs::exists(out));
    for (const auto& entry : fs::directory_iterator(tmp.path))  // no temporary file left either
      CHECK(entry.path().filename().string().find(".tmp-") == std::string::npos);
  }
}

#elif defined(TOKENPRUNE_TOOL_PATH)

TEST_CASE("tool: --picture not built (stb missing)", "[tool][picture]") {
  const char* ci = std::getenv("CI");
  REQUIRE_FALSE((ci != nullptr && std::string(ci) == "true"));  // CI must have libstb-dev
  WARN("the tool was built without --picture: stb (Debian libstb-dev) was not found when CMake configured");
}

#endif
