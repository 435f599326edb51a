// DivPrune (shared/methods/divprune.md): the hand-checkable case, an independent float64 re-implementation of the
// greedy max-min selection, the prefix and gain properties, duplicates and zero tokens, 16-bit and strided
// inputs, bitwise identity across ISA levels and executors, errors and reuse after them.

#include "catch.hpp"
#include "isa_levels.hpp"
#include "synthetic.hpp"

#include <tokenprune/core/isa.hpp>
#include <tokenprune/pruners/divprune.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace tp = tokenprune;

namespace {

using Index = tp::index_t;
using Matrix = tp::RowMatrix<float>;

std::vector<Index> to_vector(std::span<const Index> s) { return {s.begin(), s.end()}; }
std::vector<float> to_floats(std::span<const float> s) { return {s.begin(), s.end()}; }

std::vector<std::uint32_t> bits_of(std::span<const float> s) {
  std::vector<std::uint32_t> out(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) std::memcpy(&out[i], &s[i], sizeof(float));
  return out;
}

tp::PruneInputs features(const tp::TokenMatrix& x) {
  tp::PruneInputs in;
  in.features = x;
  return in;
}

// The method file's hand-checkable case (token 5 = 2 x token 2).
Matrix hand_case() {
  Matrix x(6, 3);
  x << -1, 0, 2, -1, 1, 0, 0, 1, 2, 1, 3, 3, 0, -1, 3, 0, 2, 4;
  return x;
}

// Straight from the definition, in float64: full distance matrix, the minimum over all earlier picks recomputed
// at every step, argmax over the unpicked tokens with the first maximum. `margin` receives the smallest gap between
// the chosen value and the best other candidate over all decisions.
struct Reference {
  std::vector<Index> order;
  std::vector<double> gains;
  double margin = std::numeric_limits<double>::infinity();
};
Reference reference_divprune(const Matrix& x, Index k) {
  const Index n = x.rows(), d = x.cols();
  std::vector<std::vector<double>> u(static_cast<std::size_t>(n), std::vector<double>(static_cast<std::size_t>(d)));
  for (Index i = 0; i < n; ++i) {
    double s = 0;
    for (Index j = 0; j < d; ++j) s += double(x(i, j)) * double(x(i, j));
    const double norm = std::max(std::sqrt(s), 1e-12);
    for (Index j = 0; j < d; ++j) u[i][j] = double(x(i, j)) / norm;
  }
  auto dist = [&](Index a, Index b) {
    double s = 0;
    for (Index j = 0; j < d; ++j) s += u[a][j] * u[b][j];
    return 1.0 - s;
  };
  Reference ref;
  std::vector<bool> picked(static_cast<std::size_t>(n), false);
  for (Index t = 0; t < k; ++t) {
    std::vector<double> value(static_cast<std::size_t>(n), -1e300);
    for (Index i = 0; i < n; ++i) {
      if (picked[i]) continue;
      double m = std::numeric_limits<double>::infinity();
      if (t == 0) {
        for (Index j = 0; j < n; ++j)
          if (j != i) m = std::min(m, dist(i, j));
        if (n == 1) m = 0;
      } else {
        for (Index s : ref.order) m = std::min(m, dist(s, i));
      }
      value[i] = m;
    }
    Index best = -1;
    for (Index i = 0; i < n; ++i)
      if (!picked[i] && (best < 0 || value[i] > value[best])) best = i;
    for (Index i = 0; i < n; ++i)
      if (!picked[i] && i != best) ref.margin = std::min(ref.margin, value[best] - value[i]);
    picked[best] = true;
    ref.order.push_back(best);
    ref.gains.push_back(value[best]);
  }
  return ref;
}

// Random tokens: a few directions plus noise, varied norms.
Matrix clustered(Index n, Index d, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.3f, 3.0f);
  Matrix centers(4, d);
  for (auto& v : centers.reshaped()) v = normal(rng);
  Matrix x(n, d);
  for (Index i = 0; i < n; ++i) {
    const float s = scale(rng);
    for (Index j = 0; j < d; ++j) x(i, j) = s * (centers(i % 4, j) + 0.6f * normal(rng));
  }
  return x;
}

using tokenprune::testing::IsaGuard;

bool strictly_ascending(const std::vector<Index>& v) {
  for (std::size_t i = 1; i < v.size(); ++i)
    if (v[i] <= v[i - 1]) return false;
  return true;
}

}  // namespace

TEST_CASE("divprune: the method file's hand-checkable case", "[divprune]") {
  const Matrix x = hand_case();
  tp::DivPrune pruner;
  const auto kept = to_vector(pruner.prune(features(x), tp::Budget::count(6)));
  CHECK(kept == std::vector<Index>{0, 1, 2, 3, 4, 5});
  CHECK(to_vector(pruner.order()) == std::vector<Index>{1, 4, 3, 0, 2, 5});  // not the reference's [.., 2, 0]
  const std::vector<double> gains{0.675557, 1.223607, 0.564714, 0.151472, 0.076619, 0.0};
  REQUIRE(pruner.gains().size() == 6);
  for (std::size_t t = 0; t < 6; ++t) {
    INFO("pick " << t);
    CHECK(std::abs(pruner.gains()[t] - gains[t]) <= 2e-6);
  }
  const std::vector<std::vector<Index>> expected{{}, {1}, {1, 4}, {1, 3, 4}, {0, 1, 3, 4}, {0, 1, 2, 3, 4}};
  for (Index k = 0; k <= 5; ++k) {
    INFO("k = " << k);
    CHECK(to_vector(pruner.prune(features(x), tp::Budget::count(k))) == expected[static_cast<std::size_t>(k)]);
  }
  SECTION("scores: gains of the picks, distance to the nearest pick otherwise") {
    pruner.prune(features(x), tp::Budget::count(2));  // picks 1 then 4
    const std::vector<double> want{0.683772, 0.675557, 0.683772, 0.675557, 1.223607, 0.683772};
    // Tokens 0, 2, 3, 5: min(D to 1, D to 4); D(4, .) from the definition.
    const Matrix xs = hand_case();
    auto d = [&](Index a, Index b) {
      return 1.0 - double(xs.row(a).dot(xs.row(b))) / (double(xs.row(a).norm()) * double(xs.row(b).norm()));
    };
    const auto scores = pruner.scores();
    REQUIRE(scores.size() == 6);
    CHECK(std::abs(scores[1] - want[1]) <= 2e-6);
    CHECK(std::abs(scores[4] - want[4]) <= 2e-6);
    for (Index i : {0, 2, 3, 5}) {
      INFO("token " << i);
      CHECK(std::abs(scores[static_cast<std::size_t>(i)] - std::min(d(i, 1), d(i, 4))) <= 2e-6);
    }
    // k = 0: every score is the nearest-other distance.
    pruner.prune(features(x), tp::Budget::count(0));
    const std::vector<double> nearest{0.151472, 0.675557, 0, 0.076619, 0.151472, 0};
    for (std::size_t i = 0; i < 6; ++i) CHECK(std::abs(pruner.scores()[i] - nearest[i]) <= 2e-6);
    CHECK(pruner.order().empty());
    CHECK(pruner.gains().empty());
  }
}

TEST_CASE("divprune: agrees with a float64 re-implementation on random inputs", "[divprune]") {
  int compared = 0;
  for (std::uint32_t seed = 1; seed <= 24; ++seed) {
    const Index n = 8 + static_cast<Index>(seed * 7 % 90), d = 3 + static_cast<Index>(seed * 5 % 40);
    const Matrix x = seed % 2 ? clustered(n, d, seed) : tp::testing::image_like(n, d, seed);
    const Index k = 1 + static_cast<Index>(seed * 11) % n;
    const Reference ref = reference_divprune(x, k);
    tp::DivPrune pruner;
    const auto kept = to_vector(pruner.prune(features(x), tp::Budget::count(k)));
    INFO("seed " << seed << " n " << n << " d " << d << " k " << k << " margin " << ref.margin);
    REQUIRE(static_cast<Index>(kept.size()) == k);
    CHECK(strictly_ascending(kept));
    REQUIRE(pruner.gains().size() == static_cast<std::size_t>(k));
    if (ref.margin < 1e-5) continue;  // a decision closer than fp32 can resolve
    ++compared;
    for (Index t = 0; t < k; ++t) CHECK(std::abs(pruner.gains()[static_cast<std::size_t>(t)] - ref.gains[static_cast<std::size_t>(t)]) <= 1e-5);
    CHECK(to_vector(pruner.order()) == ref.order);
    std::vector<Index> sorted = ref.order;
    std::sort(sorted.begin(), sorted.end());
    CHECK(kept == sorted);
  }
  CHECK(compared >= 16);
}

TEST_CASE("divprune: properties", "[divprune]") {
  const Matrix x = clustered(120, 24, 77);
  tp::DivPrune pruner;
  pruner.prune(features(x), tp::Budget::count(120));
  const auto full_order = to_vector(pruner.order());
  const auto full_gains = to_floats(pruner.gains());
  SECTION("a permutation; gains non-increasing from the second pick") {
    std::vector<Index> sorted = full_order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<Index> all(120);
    std::iota(all.begin(), all.end(), Index{0});
    CHECK(sorted == all);
    for (std::size_t t = 2; t < full_gains.size(); ++t) CHECK(full_gains[t] <= full_gains[t - 1]);
  }
  SECTION("prefix: the first k' picks are the run with budget k'") {
    for (Index k : {0, 1, 2, 5, 17, 60, 119}) {
      INFO("k = " << k);
      const auto kept = to_vector(pruner.prune(features(x), tp::Budget::count(k)));
      CHECK(to_vector(pruner.order()) == std::vector<Index>(full_order.begin(), full_order.begin() + k));
      CHECK(to_floats(pruner.gains()) == std::vector<float>(full_gains.begin(), full_gains.begin() + k));
      std::vector<Index> prefix(full_order.begin(), full_order.begin() + k);
      std::sort(prefix.begin(), prefix.end());
      CHECK(kept == prefix);
    }
  }
  SECTION("ratio budget: floor(r n)") {
    CHECK(pruner.kept_count(tp::TokenShape{120}, tp::Budget::ratio(0.098)) == 11);
    CHECK(pruner.prune(features(x), tp::Budget::ratio(0.098)).size() == 11);
    CHECK(pruner.kept_count(tp::TokenShape{576}, tp::Budget::ratio(0.05)) == 28);  // the reference rounds to 29
  }
}

TEST_CASE("divprune: duplicates, zero tokens, tiny inputs", "[divprune]") {
  tp::DivPrune pruner;
  SECTION("a far direction held by two twins: no twin is the first pick; ties go to the lower index") {
    Matrix x = clustered(30, 8, 5);
    x.row(7).setConstant(0.0f);
    x(7, 0) = -50.0f;  // far from everything ...
    x.row(21) = x.row(7);  // ... but its twin is at distance 0
    pruner.prune(features(x), tp::Budget::count(1));
    CHECK(pruner.order()[0] != 7);
    CHECK(pruner.order()[0] != 21);
    pruner.prune(features(x), tp::Budget::count(0));  // scores: nearest-other distances
    CHECK(pruner.scores()[7] == 0.0f);
    CHECK(pruner.scores()[21] == 0.0f);
    // Once one twin is picked the other gains 0; all 30 picks: 7 before 21 (equal at every step).
    pruner.prune(features(x), tp::Budget::count(30));
    const auto order = to_vector(pruner.order());
    const auto at7 = std::find(order.begin(), order.end(), 7) - order.begin();
    const auto at21 = std::find(order.begin(), order.end(), 21) - order.begin();
    CHECK(at7 < at21);
    CHECK(pruner.gains()[static_cast<std::size_t>(at21)] == 0.0f);
  }
  SECTION("all tokens identical: picks in index order, exactly k distinct") {
    Matrix x(10, 4);
    for (Index i = 0; i < 10; ++i) x.row(i) << 1, 2, 3, 4;
    const auto kept = to_vector(pruner.prune(features(x), tp::Budget::count(7)));
    CHECK(kept == std::vector<Index>{0, 1, 2, 3, 4, 5, 6});
    CHECK(to_vector(pruner.order()) == kept);
  }
  SECTION("a zero token is at distance 1 from every other token") {
    Matrix x(3, 2);
    x << 1, 0, 0, 0, -1, 0;  // D(0,2) = 2, D(0,1) = D(1,2) = 1
    pruner.prune(features(x), tp::Budget::count(0));
    CHECK(to_floats(pruner.scores()) == std::vector<float>{1.0f, 1.0f, 1.0f});
    const auto kept = to_vector(pruner.prune(features(x), tp::Budget::count(2)));
    CHECK(to_vector(pruner.order()) == std::vector<Index>{0, 2});  // tie at 1 for the first pick: token 0
    CHECK(kept == std::vector<Index>{0, 2});
    CHECK(to_floats(pruner.gains()) == std::vector<float>{1.0f, 2.0f});
  }
  SECTION("n = 1 and n = 0") {
    Matrix one(1, 3);
    one << 1, 2, 3;
    CHECK(to_vector(pruner.prune(features(one), tp::Budget::count(1))) == std::vector<Index>{0});
    CHECK(to_floats(pruner.gains()) == std::vector<float>{0.0f});
    CHECK(to_floats(pruner.scores()) == std::vector<float>{0.0f});
    Matrix none(0, 3);
    CHECK(pruner.prune(features(none), tp::Budget::count(0)).empty());
    CHECK(pruner.scores().empty());
    CHECK(pruner.prune(features(none), tp::Budget::ratio(0.5)).empty());
  }
  SECTION("dim 0: every token is a zero token") {
    Matrix x(4, 0);
    CHECK(to_vector(pruner.prune(features(x), tp::Budget::count(2))) == std::vector<Index>{0, 1});
  }
}

TEST_CASE("divprune: fp16/bf16 inputs and strided views", "[divprune]") {
  const Matrix x = tp::testing::image_like(70, 20, 3);
  tp::DivPrune pruner;
  auto run = [&](const tp::TokenMatrix& view) {
    const auto kept = to_vector(pruner.prune(features(view), tp::Budget::count(13)));
    return std::make_tuple(kept, to_vector(pruner.order()), bits_of(pruner.scores()), bits_of(pruner.gains()));
  };
  SECTION("16-bit inputs equal the fp32 run on their widened values") {
    const tp::RowMatrix<Eigen::half> h = x.cast<Eigen::half>();
    const tp::RowMatrix<Eigen::bfloat16> b = x.cast<Eigen::bfloat16>();
    const Matrix hw = h.cast<float>(), bw = b.cast<float>();
    CHECK(run(h) == run(hw));
    CHECK(run(b) == run(bw));
  }
  SECTION("a row stride larger than dim (a column block of a wider buffer)") {
    Matrix wide = Matrix::Constant(70, 29, 1e30f);  // padding that must not be read
    wide.leftCols(20) = x;
    const tp::TokenMatrix view(wide.data(), 70, 20, 29);
    CHECK(run(view) == run(x));
    const tp::RowMatrix<Eigen::half> wh = wide.cast<Eigen::half>().eval();
    const tp::RowMatrix<Eigen::half> xh = x.cast<Eigen::half>();
    CHECK(run(tp::TokenMatrix(wh.data(), 70, 20, 29)) == run(xh));
  }
}

TEST_CASE("divprune: bitwise identical at every ISA level and with any executor", "[divprune]") {
  // Sizes that cross the Gram's tile and panel edges (kTile 288, kPanel 48) and depth blocks (256).
  const Matrix x = tp::testing::image_like(301, 300, 11);
  IsaGuard guard;
  std::vector<Index> kept0, order0;
  std::vector<std::uint32_t> scores0, gains0;
  bool first = true;
  for (tp::Isa isa : tp::testing::supported_levels()) {
    INFO("level " << tp::isa_name(isa));
    tp::set_isa(isa);
    for (bool sequential : {false, true}) {
      tp::DivPrune pruner;
      if (sequential) pruner.set_executor(tp::Executor::sequential());
      const auto kept = to_vector(pruner.prune(features(x), tp::Budget::count(40)));
      if (first) {
        kept0 = kept;
        order0 = to_vector(pruner.order());
        scores0 = bits_of(pruner.scores());
        gains0 = bits_of(pruner.gains());
        first = false;
        continue;
      }
      CHECK(kept == kept0);
      CHECK(to_vector(pruner.order()) == order0);
      CHECK(bits_of(pruner.scores()) == scores0);
      CHECK(bits_of(pruner.gains()) == gains0);
    }
  }
}

TEST_CASE("divprune: reserve keeps the buffers in place", "[divprune]") {
  tp::DivPrune pruner;
  pruner.reserve(200, 64);
  const Matrix big = clustered(200, 64, 1), small = clustered(50, 16, 2);
  const auto kept = pruner.prune(features(big), tp::Budget::count(30));
  const float* scores = pruner.scores().data();
  const Index* order = pruner.order().data();
  const Index* kept_data = kept.data();
  for (const Matrix* m : {&small, &big, &small}) {
    const auto again = pruner.prune(features(*m), tp::Budget::count(20));
    CHECK(again.data() == kept_data);
    CHECK(pruner.scores().data() == scores);
    CHECK(pruner.order().data() == order);
  }
  CHECK_THROWS_AS(pruner.reserve(-1, 3), tp::Error);
  CHECK_THROWS_AS(pruner.reserve(3, -1), tp::Error);
}

TEST_CASE("divprune: errors name the argument, and the pruner stays usable", "[divprune]") {
  const Matrix x = hand_case();
  tp::DivPrune pruner;
  auto argument_of = [&](const tp::PruneInputs& in, tp::Budget budget) -> std::string {
    try {
      pruner.prune(in, budget);
    } catch (const tp::Error& e) {
      return e.argument();
    }
    return "no error";
  };
  CHECK(argument_of(tp::PruneInputs{}, tp::Budget::count(1)) == "features");
  CHECK(argument_of(features(x), tp::Budget::count(7)) == "keep");
  CHECK_THROWS_AS(tp::Budget::ratio(1.5), tp::Error);
  CHECK_THROWS_AS(tp::Budget::count(-1), tp::Error);
  Matrix bad = x;
  bad(3, 2) = std::numeric_limits<float>::quiet_NaN();
  CHECK(argument_of(features(bad), tp::Budget::count(2)) == "features[3,2]");
  bad(3, 2) = 1.0f;
  bad(4, 0) = -std::numeric_limits<float>::infinity();
  CHECK(argument_of(features(bad), tp::Budget::count(2)) == "features[4,0]");
  const tp::RowMatrix<Eigen::half> bad_half = bad.cast<Eigen::half>();
  CHECK(argument_of(features(bad_half), tp::Budget::count(2)) == "features[4,0]");
  tp::PruneInputs disagree = features(x);
  const std::vector<float> significance(5, 1.0f);
  disagree.significance = significance;
  CHECK(argument_of(disagree, tp::Budget::count(2)) == "significance.size");
  // Usable afterwards, with the same answer.
  CHECK(to_vector(pruner.prune(features(x), tp::Budget::count(3))) == std::vector<Index>{1, 3, 4});
  CHECK(to_vector(pruner.order()) == std::vector<Index>{1, 4, 3});
}
