// VisPruner (methods/vispruner.md): the file's hand-checkable example exactly (selection, important part,
// passes), an independent float64 re-implementation of the definition (exact where every decision gap is
// clear of fp32 rounding, by invariants and overlap where it is not), the authors' budgets at n = 576 on an
// input whose cosine orders are well separated, the properties the file names (T kept for every input, the
// pass count, rho = 1 is top-T), zero and tiny feature rows, 16-bit and strided inputs, bitwise-identical
// results at every ISA level and executor, errors and reuse after an error.

#include "catch.hpp"
#include "synthetic.hpp"

#include <tokenprune/tokenprune.hpp>
#include <tokenprune/pruners/vispruner.hpp>

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
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// One test input: the [CLS] rows [heads, n] and the features [n, d], fp32.
struct Case {
  Matrix cls;       // [heads, n]
  Matrix features;  // [n, d]
  [[nodiscard]] tp::PruneInputs inputs() const {
    tp::PruneInputs in;
    in.cls_attention = tp::TokenMatrix(cls);
    in.features = tp::TokenMatrix(features);
    return in;
  }
};

// ---------------------------------------------------------------------------------------------------------
// The definition in float64, written from the method file without the library: importance as the head mean,
// the full descending order, and the duplicate-removal passes with cosines computed in double. It also
// reports the smallest relative gap of every comparison that can change the answer (as the fixtures define it),
// so a test knows whether an fp32 implementation must agree exactly.
// ---------------------------------------------------------------------------------------------------------
struct Oracle {
  std::vector<Index> keep, important;
  Index passes = 0;
  std::vector<Index> sizes;  // |L| before each pass
  double min_gap = std::numeric_limits<double>::infinity();
};

double rel_gap(double a, double b, double floor) { return std::abs(a - b) / std::max({std::abs(a), std::abs(b), floor}); }

Oracle oracle(const Case& c, Index T, double rho, int step) {
  const Index heads = c.cls.rows(), n = c.cls.cols(), d = c.features.cols();
  std::vector<double> s(static_cast<std::size_t>(n));
  for (Index j = 0; j < n; ++j) {
    double total = 0.0;
    for (Index h = 0; h < heads; ++h) total += c.cls(h, j);
    s[static_cast<std::size_t>(j)] = total / static_cast<double>(heads);
  }
  std::vector<Index> pi(static_cast<std::size_t>(n));
  std::iota(pi.begin(), pi.end(), Index{0});
  std::sort(pi.begin(), pi.end(), [&](Index a, Index b) {
    const double sa = s[static_cast<std::size_t>(a)], sb = s[static_cast<std::size_t>(b)];
    return sa > sb || (sa == sb && a < b);
  });
  Oracle out;
  const auto t_imp = static_cast<Index>(std::floor(static_cast<double>(T) * rho));
  const Index t_div = T - t_imp;
  auto s_of = [&](Index position) { return s[static_cast<std::size_t>(pi[static_cast<std::size_t>(position)])]; };
  if (t_imp > 0 && t_imp < n) out.min_gap = std::min(out.min_gap, rel_gap(s_of(t_imp - 1), s_of(t_imp), 0.0));
  if (t_div > 0)
    for (Index p = t_imp; p + 1 < n; ++p) out.min_gap = std::min(out.min_gap, rel_gap(s_of(p), s_of(p + 1), 0.0));
  out.important.assign(pi.begin(), pi.begin() + t_imp);
  std::sort(out.important.begin(), out.important.end());

  // Unit rows in double (a zero row stays zero) and their cosine table.
  std::vector<double> u(static_cast<std::size_t>(n * d));
  for (Index i = 0; i < n; ++i) {
    double norm = 0.0;
    for (Index k = 0; k < d; ++k) norm += double(c.features(i, k)) * double(c.features(i, k));
    norm = std::sqrt(norm);
    for (Index k = 0; k < d; ++k) u[static_cast<std::size_t>(i * d + k)] = norm > 0.0 ? c.features(i, k) / norm : 0.0;
  }
  std::vector<double> cosine;
  auto cos = [&](Index i, Index j) { return cosine[static_cast<std::size_t>(i * n + j)]; };

  std::vector<Index> L(pi.begin() + t_imp, pi.end());
  if (t_div > 0 && static_cast<Index>(L.size()) > t_div) {
    cosine.assign(static_cast<std::size_t>(n * n), 0.0);
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < n; ++j) {
        double dot = 0.0;
        for (Index k = 0; k < d; ++k) dot += u[static_cast<std::size_t>(i * d + k)] * u[static_cast<std::size_t>(j * d + k)];
        cosine[static_cast<std::size_t>(i * n + j)] = dot;
      }
  }
  while (t_div > 0) {
    const auto R = static_cast<Index>(L.size());
    const Index q = std::min<Index>(step, R - t_div);
    if (q <= 0) break;
    out.sizes.push_back(R);
    std::vector<Index> a, b;
    for (Index p = 0; p < R; ++p) (p % 2 == 0 ? a : b).push_back(L[static_cast<std::size_t>(p)]);
    std::vector<std::pair<double, Index>> scored;  // (score, position in a)
    for (std::size_t i = 0; i < a.size(); ++i) {
      double best = -std::numeric_limits<double>::infinity();
      for (Index bj : b) best = std::max(best, cos(a[i], bj));
      scored.emplace_back(best, static_cast<Index>(i));
    }
    std::sort(scored.begin(), scored.end(), [](const auto& x, const auto& y) {
      return x.first > y.first || (x.first == y.first && x.second < y.second);
    });
    const auto drop = static_cast<std::size_t>(std::min<Index>(q, static_cast<Index>(a.size())));
    std::vector<Index> next;
    for (std::size_t t = drop; t < scored.size(); ++t) next.push_back(a[static_cast<std::size_t>(scored[t].second)]);
    next.insert(next.end(), b.begin(), b.end());
    const bool last = static_cast<Index>(next.size()) - t_div <= 0;
    if (drop < scored.size()) out.min_gap = std::min(out.min_gap, rel_gap(scored[drop - 1].first, scored[drop].first, 0.01));
    if (!last)  // the next split depends on the order of every kept a token
      for (std::size_t t = drop; t + 1 < scored.size(); ++t)
        out.min_gap = std::min(out.min_gap, rel_gap(scored[t].first, scored[t + 1].first, 0.01));
    L = std::move(next);
    ++out.passes;
  }
  out.keep = out.important;
  if (t_div > 0) out.keep.insert(out.keep.end(), L.begin(), L.end());
  std::sort(out.keep.begin(), out.keep.end());
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Inputs.
// ---------------------------------------------------------------------------------------------------------

// Random [CLS] rows: positive, softmax-like, heads differing.
Matrix random_cls(Index heads, Index n, std::mt19937& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  Matrix cls(heads, n);
  for (Index h = 0; h < heads; ++h) {
    double total = 0.0;
    std::vector<double> row(static_cast<std::size_t>(n));
    for (auto& v : row) total += (v = std::exp(1.5 * normal(rng)));
    for (Index j = 0; j < n; ++j) cls(h, j) = static_cast<float>(row[static_cast<std::size_t>(j)] / (total * 1.25));
  }
  return cls;
}

Case random_case(Index heads, Index n, Index d, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Case c{random_cls(heads, n, rng), Matrix(n, d)};
  std::normal_distribution<float> normal;
  for (Index i = 0; i < n; ++i)
    for (Index k = 0; k < d; ++k) c.features(i, k) = normal(rng);
  return c;
}

Case image_case(Index heads, Index n, Index d, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Case c{random_cls(heads, n, rng), tp::testing::image_like(n, d, seed)};
  return c;
}

// Cosines that factor as a_i a_j (i != j): u_i = a_i e_0 + sqrt(1 - a_i^2) e_{1+i}, with the a_i a random
// permutation of evenly spaced values in [0.1, 0.9]. Every score order in a pass is then the order of the a_i,
// well separated (the file's stress input); importance: a spaced permutation, split unevenly over two heads.
Case factored_case(Index n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Index> rank_a(static_cast<std::size_t>(n)), rank_s(static_cast<std::size_t>(n));
  std::iota(rank_a.begin(), rank_a.end(), Index{0});
  std::iota(rank_s.begin(), rank_s.end(), Index{0});
  std::shuffle(rank_a.begin(), rank_a.end(), rng);
  std::shuffle(rank_s.begin(), rank_s.end(), rng);
  Case c{Matrix(2, n), Matrix::Zero(n, n + 1)};
  std::uniform_real_distribution<double> split(0.2, 0.8);
  for (Index i = 0; i < n; ++i) {
    const double a = 0.1 + 0.8 * static_cast<double>(rank_a[static_cast<std::size_t>(i)]) / static_cast<double>(n - 1);
    c.features(i, 0) = static_cast<float>(a);
    c.features(i, 1 + i) = static_cast<float>(std::sqrt(1.0 - a * a));
    const double s = (1.0 + static_cast<double>(rank_s[static_cast<std::size_t>(i)])) / (static_cast<double>(n) * n);
    const double share = split(rng);
    c.cls(0, i) = static_cast<float>(2.0 * s * share);
    c.cls(1, i) = static_cast<float>(2.0 * s * (1.0 - share));
  }
  return c;
}

template <class F>
tp::Error error_of(F&& f) {
  try {
    f();
  } catch (const tp::Error& e) {
    return e;
  }
  FAIL("no tokenprune::Error thrown");
  return tp::Error("", "", "");
}

Index overlap(const std::vector<Index>& a, const std::vector<Index>& b) {
  std::vector<Index> both;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
  return static_cast<Index>(both.size());
}

// The invariants every selection satisfies, whatever fp32 rounding decided.
void check_invariants(const tp::VisPruner& pruner, std::span<const Index> kept, Index n, Index T, const Oracle& o) {
  REQUIRE(static_cast<Index>(kept.size()) == T);
  CHECK(std::is_sorted(kept.begin(), kept.end()));
  CHECK(std::adjacent_find(kept.begin(), kept.end()) == kept.end());
  CHECK((kept.empty() || (kept.front() >= 0 && kept.back() < n)));
  CHECK(to_vector(pruner.important()) == o.important);
  CHECK(std::includes(kept.begin(), kept.end(), pruner.important().begin(), pruner.important().end()));
  CHECK(pruner.dedup_passes() == o.passes);
}

}  // namespace

TEST_CASE("vispruner: the file's hand-checkable example", "[vispruner]") {
  const std::vector<double> s{60, 12, 95, 33, 41, 150, 27, 18, 70, 52, 9, 36, 120, 22, 45, 15, 64, 30, 5, 80};
  const std::vector<double> angles{0, 5, 40, 42, 90, 100, 101, 150, 180, 183, 200, 240, 245, 260, 300, 305, 330, 12, 120, 60};
  Case c{Matrix(1, 20), Matrix(20, 2)};
  const double pi = std::acos(-1.0);
  for (Index j = 0; j < 20; ++j) {
    c.cls(0, j) = static_cast<float>(s[static_cast<std::size_t>(j)] / 1000.0);
    c.features(j, 0) = static_cast<float>(std::cos(angles[static_cast<std::size_t>(j)] * pi / 180.0));
    c.features(j, 1) = static_cast<float>(std::sin(angles[static_cast<std::size_t>(j)] * pi / 180.0));
  }
  tp::VisPruner pruner({0.2, 8});
  CHECK(pruner.kept_count(tp::TokenShape{20}, tp::Budget::count(10)) == 10);
  CHECK(pruner.important_count(10) == 2);
  const std::vector<Index> kept = to_vector(pruner.prune(c.inputs(), tp::Budget::count(10)));
  CHECK(kept == std::vector<Index>{1, 3, 5, 7, 9, 12, 13, 16, 18, 19});
  CHECK(to_vector(pruner.important()) == std::vector<Index>{5, 12});
  CHECK(pruner.dedup_passes() == 2);
  for (Index j = 0; j < 20; ++j) CHECK(pruner.scores()[static_cast<std::size_t>(j)] == c.cls(0, j));
  // The oracle agrees with the file too (so its comparisons below test the definition).
  const Oracle o = oracle(c, 10, 0.2, 8);
  CHECK(o.keep == kept);
  CHECK(o.sizes == std::vector<Index>{18, 10});
}

TEST_CASE("vispruner: matches the float64 oracle on random inputs", "[vispruner]") {
  std::uint32_t seed = 100;
  int exact = 0, total = 0;
  for (Index n : {8, 16, 31, 64, 100, 196})
    for (Index d : {3, 16})
      for (double rho : {0.0, 0.25, 0.5, 0.75, 1.0})
        for (int step : {1, 3, 8}) {
          const Case c = random_case(2, n, d, seed++);
          tp::VisPruner pruner({rho, step});
          for (Index T : {Index{0}, Index{1}, n / 5, n / 2, n - 3, n - 1, n}) {
            INFO("n " << n << " d " << d << " rho " << rho << " step " << step << " T " << T);
            const Oracle o = oracle(c, T, rho, step);
            const auto kept = pruner.prune(c.inputs(), tp::Budget::count(T));
            check_invariants(pruner, kept, n, T, o);
            ++total;
            if (o.min_gap > 1e-5) {
              ++exact;
              CHECK(to_vector(kept) == o.keep);
            } else {
              CHECK(overlap(to_vector(kept), o.keep) >= T - T / 4 - 1);
            }
          }
        }
  CHECK(exact > total * 3 / 4);  // most random cases are clear of fp32 rounding: the exact branch is exercised
}

TEST_CASE("vispruner: the authors' budgets at n = 576 on the separated stress input", "[vispruner]") {
  const Case c = factored_case(576, 9);
  tp::VisPruner default_pruner;  // rho 0.5, step 8
  for (auto [T, rho] : std::vector<std::pair<Index, double>>{{64, 0.5}, {64, 0.75}, {128, 0.5}, {192, 0.5}, {32, 0.5}}) {
    INFO("T " << T << " rho " << rho);
    tp::VisPruner pruner({rho, 8});
    const Oracle o = oracle(c, T, rho, 8);
    REQUIRE(o.min_gap > 1e-4);
    const auto kept = pruner.prune(c.inputs(), tp::Budget::count(T));
    check_invariants(pruner, kept, 576, T, o);
    CHECK(to_vector(kept) == o.keep);
    // In the authors' range every pass has q <= |a|: ceil((n - T) / 8) passes.
    CHECK(pruner.dedup_passes() == (576 - T + 7) / 8);
  }
  CHECK(to_vector(default_pruner.prune(c.inputs(), tp::Budget::count(64))) == oracle(c, 64, 0.5, 8).keep);
}

TEST_CASE("vispruner: image-like inputs at n = 576 by invariants and overlap", "[vispruner]") {
  for (std::uint32_t seed : {1u, 2u, 3u}) {
    const Case c = image_case(16, 576, 64, seed);
    for (Index T : {64, 128, 192, 568}) {
      INFO("seed " << seed << " T " << T);
      tp::VisPruner pruner;
      const Oracle o = oracle(c, T, 0.5, 8);
      const std::vector<Index> kept = to_vector(pruner.prune(c.inputs(), tp::Budget::count(T)));
      check_invariants(pruner, kept, 576, T, o);
      // The file measured 4 to 17 of 64 tokens differing on average between fp32 and float64 answers.
      CHECK(overlap(kept, o.keep) >= T - T / 2);
      if (o.min_gap > 1e-5) CHECK(kept == o.keep);
    }
  }
}

TEST_CASE("vispruner: properties of the definition", "[vispruner]") {
  const Case c = image_case(4, 100, 24, 5);
  const auto by_s = [&](Index T) {  // top T by the head mean, ascending
    return oracle(c, T, 1.0, 8).important;
  };
  SECTION("rho = 1 is a plain top-T by attention, no pass") {
    tp::VisPruner pruner({1.0, 8});
    for (Index T : {0, 1, 37, 100}) {
      CHECK(to_vector(pruner.prune(c.inputs(), tp::Budget::count(T))) == by_s(T));
      CHECK(to_vector(pruner.important()) == by_s(T));
      CHECK(pruner.dedup_passes() == 0);
    }
  }
  SECTION("T = n keeps everything without a pass; T = 0 keeps nothing") {
    tp::VisPruner pruner;
    std::vector<Index> all(100);
    std::iota(all.begin(), all.end(), Index{0});
    CHECK(to_vector(pruner.prune(c.inputs(), tp::Budget::count(100))) == all);
    CHECK(pruner.dedup_passes() == 0);
    CHECK(pruner.prune(c.inputs(), tp::Budget::count(0)).empty());
    CHECK(pruner.important().empty());
  }
  SECTION("exactly T for configurations where the reference raises or drops a token") {
    // n = 16, T = 4, rho = 0.5 (RuntimeError there); n = 16, T = 5, rho = 0.25 (4 tokens there); odd |L|.
    const Case small = image_case(2, 16, 8, 6);
    for (auto [T, rho] : std::vector<std::pair<Index, double>>{{4, 0.5}, {5, 0.25}, {7, 0.3}, {1, 0.0}, {3, 0.6}}) {
      tp::VisPruner pruner({rho, 8});
      const auto kept = pruner.prune(small.inputs(), tp::Budget::count(T));
      const Oracle o = oracle(small, T, rho, 8);
      check_invariants(pruner, kept, 16, T, o);
      if (o.min_gap > 1e-5) CHECK(to_vector(kept) == o.keep);
    }
    const Case odd = factored_case(576, 4);
    tp::VisPruner pruner({0.3, 8});  // T = 64: T_imp = 19, |L| = 557 odd
    const Oracle o = oracle(odd, 64, 0.3, 8);
    const auto kept = pruner.prune(odd.inputs(), tp::Budget::count(64));
    check_invariants(pruner, kept, 576, 64, o);
    CHECK(to_vector(kept) == o.keep);
  }
  SECTION("ratio budget: T = floor(r * n), T_imp = floor(T * rho)") {
    tp::VisPruner pruner({0.3, 8});
    CHECK(pruner.prune(c.inputs(), tp::Budget::ratio(0.255)).size() == 25);
    CHECK(pruner.important().size() == 7);
    CHECK(pruner.kept_count(tp::TokenShape{576}, tp::Budget::ratio(0.1)) == 57);
    CHECK(pruner.important_count(64) == 19);
  }
}

TEST_CASE("vispruner: zero and tiny feature rows, duplicates", "[vispruner]") {
  Case c = random_case(2, 40, 6, 77);
  c.features.row(3).setZero();
  c.features.row(17).setZero();
  c.features.row(8) = c.features.row(30);  // duplicates: exactly tied cosines
  c.features.row(9) = c.features.row(30);
  tp::VisPruner pruner;
  for (Index T : {4, 10, 20, 33}) {
    const Oracle o = oracle(c, T, 0.5, 8);
    const auto kept = to_vector(pruner.prune(c.inputs(), tp::Budget::count(T)));
    check_invariants(pruner, kept, 40, T, o);
    CHECK(kept == o.keep);
  }
  // A row scaled to a norm far below 1e-12 is still its unit vector: the same answer as unscaled.
  const std::vector<Index> reference = to_vector(pruner.prune(c.inputs(), tp::Budget::count(12)));
  Case tiny = c;
  tiny.features.row(5) *= 1e-25f;
  tiny.features.row(21) *= 2e-20f;
  CHECK(to_vector(pruner.prune(tiny.inputs(), tp::Budget::count(12))) == reference);
}

TEST_CASE("vispruner: 16-bit and strided inputs read the same values", "[vispruner]") {
  const Index heads = 3, n = 60, d = 20;
  const Case c = image_case(heads, n, d, 12);
  auto run16 = [&]<class T>(T) {
    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> cls16 = c.cls.cast<T>();
    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> x16 = c.features.cast<T>();
    const Case widened{cls16.template cast<float>(), x16.template cast<float>()};
    tp::VisPruner pruner;
    const std::vector<Index> expected = to_vector(pruner.prune(widened.inputs(), tp::Budget::count(16)));
    const std::vector<float> expected_scores = to_floats(pruner.scores());
    tp::PruneInputs in;
    in.cls_attention = tp::TokenMatrix(cls16);
    in.features = tp::TokenMatrix(x16);
    CHECK(to_vector(pruner.prune(in, tp::Budget::count(16))) == expected);
    CHECK(same_bits(to_floats(pruner.scores()), expected_scores));
  };
  run16(Eigen::half{});
  run16(Eigen::bfloat16{});

  tp::VisPruner pruner;
  const std::vector<Index> expected = to_vector(pruner.prune(c.inputs(), tp::Budget::count(16)));
  const std::vector<float> expected_scores = to_floats(pruner.scores());
  // Features as the patch rows of a padded [1 + n, d + 5] buffer; the [CLS] rows as columns 1.. of [H, 1 + n]
  // maps rows with a stride.
  Matrix big = Matrix::Constant(1 + n, d + 5, std::numeric_limits<float>::quiet_NaN());
  big.block(1, 0, n, d) = c.features;
  Matrix rows = Matrix::Constant(heads, n + 9, std::numeric_limits<float>::quiet_NaN());
  rows.block(0, 1, heads, n) = c.cls;
  tp::PruneInputs in;
  in.features = tp::TokenMatrix(big.data() + (d + 5), n, d, d + 5);
  in.cls_attention = tp::TokenMatrix(rows.data() + 1, heads, n, n + 9);
  CHECK(to_vector(pruner.prune(in, tp::Budget::count(16))) == expected);
  CHECK(same_bits(to_floats(pruner.scores()), expected_scores));
  // The [CLS] row viewed inside full maps [H, 1 + n, 1 + n].
  std::vector<float> maps(static_cast<std::size_t>(heads * (1 + n) * (1 + n)), 0.01f);
  for (Index h = 0; h < heads; ++h)
    for (Index j = 0; j < n; ++j) maps[static_cast<std::size_t>(h * (1 + n) * (1 + n) + 1 + j)] = c.cls(h, j);
  in.cls_attention = tp::cls_query_row(tp::AttentionMaps(maps.data(), heads, 1 + n));
  CHECK(to_vector(pruner.prune(in, tp::Budget::count(16))) == expected);
}

TEST_CASE("vispruner: bitwise identical at every ISA level and with any executor", "[vispruner][levels]") {
  const tp::Isa saved = tp::active_isa();
  // Image-like at n = 576: thousands of close cosine decisions, so any rounding difference would show.
  const Case c = image_case(16, 576, 256, 21);
  std::vector<float> first_scores;
  std::vector<Index> first_kept;
  int levels = 0;
  for (tp::Isa isa : tp::kAllIsas) {
    if (!tp::isa_supported(isa)) continue;
    tp::set_isa(isa);
    ++levels;
    for (bool sequential : {false, true}) {
      tp::VisPruner pruner;
      if (sequential) pruner.set_executor(tp::Executor::sequential());
      const std::vector<Index> kept = to_vector(pruner.prune(c.inputs(), tp::Budget::count(64)));
      if (first_kept.empty()) {
        first_kept = kept;
        first_scores = to_floats(pruner.scores());
      } else {
        INFO("level " << tp::isa_name(isa) << " sequential " << sequential);
        CHECK(kept == first_kept);
        CHECK(same_bits(to_floats(pruner.scores()), first_scores));
      }
    }
  }
  tp::set_isa(saved);
  CHECK(levels >= 1);
}

TEST_CASE("vispruner: errors name the argument, and the pruner stays usable", "[vispruner][errors]") {
  Case c = random_case(2, 24, 5, 31);
  tp::VisPruner pruner;
  const std::vector<Index> good = to_vector(pruner.prune(c.inputs(), tp::Budget::count(8)));

  CHECK(error_of([] { tp::VisPruner({-0.1, 8}); }).argument() == "important_ratio");
  CHECK(error_of([] { tp::VisPruner({1.5, 8}); }).argument() == "important_ratio");
  CHECK(error_of([] { tp::VisPruner({std::nan(""), 8}); }).argument() == "important_ratio");
  CHECK(error_of([] { tp::VisPruner({0.5, 0}); }).argument() == "dedup_step");
  CHECK(error_of([] { tp::VisPrunerConfig{0.5, -3}.validate(); }).argument() == "dedup_step");
  CHECK(error_of([&] { pruner.reserve(-1, 4); }).argument() == "max_tokens");
  CHECK(error_of([&] { pruner.reserve(4, -1); }).argument() == "dim");

  tp::PruneInputs no_cls = c.inputs();
  no_cls.cls_attention = {};
  CHECK(error_of([&] { (void)pruner.prune(no_cls, tp::Budget::count(2)); }).argument() == "cls_attention");
  tp::PruneInputs no_features = c.inputs();
  no_features.features = {};
  CHECK(error_of([&] { (void)pruner.prune(no_features, tp::Budget::count(2)); }).argument() == "features");

  CHECK(error_of([&] { (void)pruner.prune(c.inputs(), tp::Budget::count(25)); }).argument() == "keep");

  const Matrix fewer = c.features.topRows(23);
  tp::PruneInputs mismatch = c.inputs();
  mismatch.features = tp::TokenMatrix(fewer);
  CHECK(error_of([&] { (void)pruner.prune(mismatch, tp::Budget::count(2)); }).argument() == "cls_attention.cols");

  Case bad = c;
  bad.features(3, 2) = std::numeric_limits<float>::quiet_NaN();
  CHECK(error_of([&] { (void)pruner.prune(bad.inputs(), tp::Budget::count(8)); }).argument() == "features[3,2]");
  bad = c;
  bad.features(20, 4) = -std::numeric_limits<float>::infinity();
  // rho = 1: the features are not used by the selection, but they are still validated.
  tp::VisPruner top_only({1.0, 8});
  CHECK(error_of([&] { (void)top_only.prune(bad.inputs(), tp::Budget::count(8)); }).argument() == "features[20,4]");
  bad = c;
  bad.cls(1, 7) = std::numeric_limits<float>::infinity();
  CHECK(error_of([&] { (void)pruner.prune(bad.inputs(), tp::Budget::count(8)); }).argument() == "cls_attention[1,7]");
  // Finite values whose norm overflows fp32.
  bad = c;
  bad.features.row(6).setConstant(3e38f);
  CHECK(error_of([&] { (void)pruner.prune(bad.inputs(), tp::Budget::count(8)); }).argument() == "features[6]");

  CHECK(to_vector(pruner.prune(c.inputs(), tp::Budget::count(8))) == good);
}

TEST_CASE("vispruner: reserve keeps the workspace in place", "[vispruner]") {
  tp::VisPruner pruner;
  pruner.reserve(576, 64);
  const Case big = image_case(16, 576, 64, 3);
  (void)pruner.prune(big.inputs(), tp::Budget::count(64));
  const float* scores = pruner.scores().data();
  const Index* kept = pruner.kept().data();
  for (Index n : {Index{16}, Index{576}, Index{100}}) {
    const Case c = image_case(2, n, 64, static_cast<std::uint32_t>(n));
    (void)pruner.prune(c.inputs(), tp::Budget::count(n / 4));
    CHECK(pruner.scores().data() == scores);
    CHECK(pruner.kept().data() == kept);
  }
}
