// The reference fixtures: cases computed by the published reference code. The small ones are copied into
// tests/data/reference so the suite passes on its own; the whole ../shared/fixtures/reference folder runs when it
// exists, and must exist when CI=true (a CI run that silently skipped it would prove nothing).
//
// The shared folder also holds cases of methods not implemented yet: those are counted (and reported) by method,
// not run. Every case of an implemented method runs and must reproduce its answer; the minimum counts below are
// of implemented cases only.

#include "catch.hpp"
#include "reference_case.hpp"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>

#include <unistd.h>

namespace {

void check_cases(const std::filesystem::path& root, std::size_t minimum_cases) {
  const tokenprune::testing::CaseSet set = tokenprune::testing::partition_cases(root);
  if (set.not_implemented_total() > 0)
    WARN(root.string() << ": " << set.implemented.size() << " cases run, " << set.not_implemented_text());
  REQUIRE(set.implemented.size() >= minimum_cases);
  for (const auto& dir : set.implemented) {
    INFO("case " << dir.filename().string());
    const auto result = tokenprune::testing::run_reference_case(dir);
    CHECK(result.kept == result.expected);
    CHECK(result.kept_count == static_cast<tokenprune::index_t>(result.kept.size()));
    CHECK(result.extras.empty());
  }
}

struct TempCases {
  std::filesystem::path path;
  TempCases() {
    path = std::filesystem::temp_directory_path() /
           ("tokenprune_reference_" + std::to_string(::getpid()) + "_" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    std::filesystem::create_directories(path);
  }
  ~TempCases() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempCases(const TempCases&) = delete;
  TempCases& operator=(const TempCases&) = delete;
  void add(const std::string& name, const std::string& case_json) const {
    std::filesystem::create_directories(path / name);
    std::ofstream(path / name / "case.json") << case_json;
  }
};

}  // namespace

TEST_CASE("reference: bundled fixtures reproduce exactly", "[reference]") {
  const std::filesystem::path root = std::filesystem::path(TOKENPRUNE_TEST_DATA_DIR) / "reference";
  CHECK(tokenprune::testing::partition_cases(root).not_implemented.empty());  // the bundled subset is all runnable
  check_cases(root, 70);
}

TEST_CASE("reference: every shared fixture reproduces exactly", "[reference][shared]") {
  const std::filesystem::path root = TOKENPRUNE_SHARED_FIXTURES_DIR;
  const char* ci = std::getenv("CI");
  const bool in_ci = ci != nullptr && std::string(ci) == "true";
  if (!std::filesystem::is_directory(root)) {
    REQUIRE_FALSE(in_ci);  // CI always has ../shared beside the clone
    WARN("no shared fixtures at " << root.string() << "; only the bundled subset ran");
    return;
  }
  check_cases(root, 251);
}

TEST_CASE("reference: cases of unimplemented methods are counted, malformed cases are errors", "[reference]") {
  using tokenprune::testing::partition_cases;
  for (const std::string& method : tokenprune::method_names()) CHECK(tokenprune::testing::method_implemented(method));
  CHECK_FALSE(tokenprune::testing::method_implemented("zz-future-a"));

  TempCases tmp;
  tmp.add("a_gprune", R"({"method": "gprune", "layout": "flat", "keep": 4})");
  tmp.add("b_future", R"({"method": "zz-future-a", "keep": 4})");
  tmp.add("c_future", R"({"method": "zz-future-a"})");
  tmp.add("d_future", R"({"method": "zz-future-b"})");
  const tokenprune::testing::CaseSet set = partition_cases(tmp.path);
  REQUIRE(set.implemented.size() == 1);
  CHECK(set.implemented[0].filename() == "a_gprune");
  CHECK(set.not_implemented.size() == 2);
  CHECK(set.not_implemented.at("zz-future-a") == 2);
  CHECK(set.not_implemented.at("zz-future-b") == 1);
  CHECK(set.not_implemented_text() == "3 not implemented (zz-future-a 2, zz-future-b 1)");
  // A known method whose case is incomplete (no features.npy, no expected_keep.npy) fails when run.
  CHECK_THROWS_AS(tokenprune::testing::run_reference_case(set.implemented[0]), tokenprune::Error);

  SECTION("no method") {
    tmp.add("e_bad", R"({"keep": 4})");
    CHECK_THROWS_AS(partition_cases(tmp.path), tokenprune::Error);
  }
  SECTION("method not a string") {
    tmp.add("e_bad", R"({"method": 3})");
    CHECK_THROWS_AS(partition_cases(tmp.path), tokenprune::Error);
  }
  SECTION("empty method") {
    tmp.add("e_bad", R"({"method": ""})");
    CHECK_THROWS_AS(partition_cases(tmp.path), tokenprune::Error);
  }
  SECTION("not JSON") {
    tmp.add("e_bad", R"({"method": "gprune",)");
    CHECK_THROWS_AS(partition_cases(tmp.path), tokenprune::Error);
  }
}
