// The reference fixtures: cases computed by the published reference code. The small ones are copied into
// tests/data/reference so the suite passes on its own; the whole ../shared/fixtures/reference folder runs when it
// exists, and must exist when CI=true (a CI run that silently skipped it would prove nothing).

#include "catch.hpp"
#include "reference_case.hpp"

#include <cstdlib>
#include <string>

namespace {

void check_cases(const std::filesystem::path& root, std::size_t minimum_cases) {
  const auto cases = tokenprune::testing::reference_cases(root);
  REQUIRE(cases.size() >= minimum_cases);
  for (const auto& dir : cases) {
    INFO("case " << dir.filename().string());
    const auto result = tokenprune::testing::run_reference_case(dir);
    CHECK(result.kept == result.expected);
    CHECK(result.kept_count == static_cast<tokenprune::index_t>(result.kept.size()));
    CHECK(result.axis_chosen == result.axis_expected);
  }
}

}  // namespace

TEST_CASE("reference: bundled fixtures reproduce exactly", "[reference]") {
  check_cases(std::filesystem::path(TOKENPRUNE_TEST_DATA_DIR) / "reference", 40);
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
  check_cases(root, 82);
}
