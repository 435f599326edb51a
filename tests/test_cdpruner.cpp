// CDPruner (methods/cdpruner.md): the method file's hand-checkable case, an independent float64 re-implementation
// (explicit Gram-Schmidt residuals in feature space, not the incremental kernel form), the crops layout, rule 7,
// properties, every error path, 16-bit and strided inputs and bitwise equality across ISA levels.

#include "catch.hpp"

#include <tokenprune/pruners/cdpruner.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace tp = tokenprune;

namespace {

using Index = tp::index_t;

std::vector<Index> to_vector(std::span<const Index> s) { return {s.begin(), s.end()}; }

// A row-major float matrix with a row stride.
struct Matrix {
  Index rows = 0, cols = 0, stride = 0;
  std::vector<float> values;
  Matrix(Index r, Index c, Index s = -1) : rows(r), cols(c), stride(s < 0 ? c : s), values(static_cast<std::size_t>(r * stride)) {}
  float& at(Index i, Index j) { return values[static_cast<std::size_t>(i * stride + j)]; }
  float at(Index i, Index j) const { return values[static_cast<std::size_t>(i * stride + j)]; }
  [[nodiscard]] tp::TokenMatrix view() const { return tp::TokenMatrix(values.data(), rows, cols, stride); }
};

Matrix from_rows(const std::vector<std::vector<float>>& rows) {
  Matrix m(static_cast<Index>(rows.size()), static_cast<Index>(rows[0].size()));
  for (Index i = 0; i < m.rows; ++i)
    for (Index j = 0; j < m.cols; ++j) m.at(i, j) = rows[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)];
  return m;
}

Matrix random_matrix(Index rows, Index cols, std::mt19937& rng, Index stride = -1) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Matrix m(rows, cols, stride);
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) m.at(i, j) = normal(rng);
  return m;
}

// Clustered features: a few centres plus noise, so that the DPP's diversity matters.
Matrix clustered(Index rows, Index cols, Index centres, float noise, std::mt19937& rng) {
  const Matrix c = random_matrix(centres, cols, rng);
  std::normal_distribution<float> normal(0.0f, noise);
  std::uniform_int_distribution<Index> pick(0, centres - 1);
  Matrix m(rows, cols);
  for (Index i = 0; i < rows; ++i) {
    const Index g = pick(rng);
    for (Index j = 0; j < cols; ++j) m.at(i, j) = c.at(g, j) + normal(rng);
  }
  return m;
}

// ------------------------------------------------------------------------------- the float64 oracle
// Straight from the definition: relevance, min-max, weights; then per segment the greedy with
// g_i = w_i^2 rho_i, rho_i the squared distance of u_i from the span of the picked u (modified Gram-Schmidt on
// an explicit orthonormal basis). Also returns the smallest relative gap between a pick and its runner-up.
struct Oracle {
  std::vector<Index> keep;
  std::vector<Index> order;
  std::vector<double> r;
  double min_gap = std::numeric_limits<double>::infinity();
};

std::vector<double> oracle_relevance(const Matrix& e, const Matrix& t) {
  std::vector<double> a(static_cast<std::size_t>(e.rows));
  for (Index i = 0; i < e.rows; ++i) {
    double sum = 0.0;
    for (Index k = 0; k < t.rows; ++k) {
      double dot = 0.0, ne = 0.0, nt = 0.0;
      for (Index c = 0; c < e.cols; ++c) {
        dot += double(e.at(i, c)) * t.at(k, c);
        ne += double(e.at(i, c)) * e.at(i, c);
        nt += double(t.at(k, c)) * t.at(k, c);
      }
      sum += dot / std::sqrt(ne * nt);
    }
    a[static_cast<std::size_t>(i)] = -sum / double(t.rows);
  }
  return a;
}

Oracle oracle(const Matrix& x, const std::vector<double>& a, Index k, std::optional<double> theta, Index crops = 1) {
  const Index n = x.rows, d = x.cols, p = n / crops;
  Oracle out;
  const double lo = *std::min_element(a.begin(), a.end()), hi = *std::max_element(a.begin(), a.end());
  std::vector<double> w(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const double r = hi == lo ? 1.0 : (a[static_cast<std::size_t>(i)] - lo + 1e-6) / (hi - lo);
    out.r.push_back(r);
    w[static_cast<std::size_t>(i)] = theta ? std::exp(*theta / (2 * (1 - *theta)) * r) : r;
  }
  for (Index b = 0; b < crops; ++b) {
    std::vector<std::vector<double>> residual(static_cast<std::size_t>(p), std::vector<double>(static_cast<std::size_t>(d)));
    for (Index i = 0; i < p; ++i) {
      double norm = 0.0;
      for (Index c = 0; c < d; ++c) norm += double(x.at(b * p + i, c)) * x.at(b * p + i, c);
      for (Index c = 0; c < d; ++c) residual[static_cast<std::size_t>(i)][static_cast<std::size_t>(c)] = x.at(b * p + i, c) / std::sqrt(norm);
    }
    std::vector<bool> picked(static_cast<std::size_t>(p), false);
    std::vector<Index> segment;
    for (Index t = 0; t < k; ++t) {
      Index best = -1;
      double best_gain = 0.0, runner_up = 0.0;
      for (Index i = 0; i < p; ++i) {
        if (picked[static_cast<std::size_t>(i)]) continue;
        double rho = 0.0;
        for (double v : residual[static_cast<std::size_t>(i)]) rho += v * v;
        if (rho <= 1e-4) continue;
        const double wi = w[static_cast<std::size_t>(b * p + i)];
        const double gain = wi * wi * rho;
        if (best < 0 || gain > best_gain) {
          runner_up = best_gain;
          best_gain = gain;
          best = i;
        } else {
          runner_up = std::max(runner_up, gain);
        }
      }
      if (best < 0) {  // rule 7
        std::vector<Index> rest;
        for (Index i = 0; i < p; ++i)
          if (!picked[static_cast<std::size_t>(i)]) rest.push_back(i);
        std::stable_sort(rest.begin(), rest.end(), [&](Index i, Index j) {
          return w[static_cast<std::size_t>(b * p + i)] > w[static_cast<std::size_t>(b * p + j)];
        });
        for (Index q = 0; t < k; ++q, ++t) segment.push_back(rest[static_cast<std::size_t>(q)]);
        break;
      }
      if (runner_up > 0) out.min_gap = std::min(out.min_gap, (best_gain - runner_up) / best_gain);
      picked[static_cast<std::size_t>(best)] = true;
      segment.push_back(best);
      // Orthonormal direction of the pick's residual, removed from every other residual.
      std::vector<double> q = residual[static_cast<std::size_t>(best)];
      double norm = 0.0;
      for (double v : q) norm += v * v;
      for (double& v : q) v /= std::sqrt(norm);
      for (Index i = 0; i < p; ++i) {
        auto& res = residual[static_cast<std::size_t>(i)];
        double dot = 0.0;
        for (Index c = 0; c < d; ++c) dot += res[static_cast<std::size_t>(c)] * q[static_cast<std::size_t>(c)];
        for (Index c = 0; c < d; ++c) res[static_cast<std::size_t>(c)] -= dot * q[static_cast<std::size_t>(c)];
      }
    }
    for (Index i : segment) out.order.push_back(b * p + i);
  }
  out.keep = out.order;
  std::sort(out.keep.begin(), out.keep.end());
  return out;
}

// The method file's hand-checkable case.
const Matrix kX = from_rows({{0.6f, 0, 0.8f}, {0, 0, 1}, {0, 1, 0}, {0.96f, 0.28f, 0}, {0, 3, 4}, {1, 0, 0}});
const Matrix kE = from_rows({{4, 3}, {3, 4}, {0, 1}, {-3, 4}, {1, 0}, {-4, 3}});
const Matrix kT = from_rows({{2, 0}});

tp::PruneInputs embeds_inputs(const Matrix& x, const Matrix& e, const Matrix& t) {
  tp::PruneInputs in;
  in.features = x.view();
  in.image_embeds = e.view();
  in.text_embeds = t.view();
  return in;
}

std::vector<Index> hand_keep(Index k, std::optional<double> theta = std::nullopt, Index crops = 1) {
  tp::CDPruner pruner({theta, crops});
  return to_vector(pruner.prune(embeds_inputs(kX, kE, kT), tp::Budget::count(k)));
}

template <class F>
void expect_error(F&& f, const std::string& argument) {
  try {
    f();
    FAIL("no tokenprune::Error thrown; expected one naming " << argument);
  } catch (const tp::Error& e) {
    CHECK(e.argument() == argument);
  }
}

}  // namespace

TEST_CASE("cdpruner: the method file's hand-checkable case", "[cdpruner]") {
  tp::CDPruner pruner;
  const auto in = embeds_inputs(kX, kE, kT);
  CHECK(to_vector(pruner.prune(in, tp::Budget::count(3))) == std::vector<Index>{1, 2, 5});
  const std::vector<double> r = {0.1111117, 0.2222228, 0.5555561, 0.8888894, 5.556e-7, 1.0000006};
  REQUIRE(pruner.scores().size() == 6);
  for (std::size_t i = 0; i < 6; ++i) CHECK(pruner.scores()[i] == Approx(r[i]).epsilon(1e-6).margin(1e-10));  // the file prints 5.556e-7
  CHECK(to_vector(pruner.order()) == std::vector<Index>{5, 2, 1});
  REQUIRE(pruner.gains().size() == 3);
  CHECK(pruner.gains()[0] == Approx(1.0000011).epsilon(1e-6));
  CHECK(pruner.gains()[1] == Approx(0.3086426).epsilon(1e-6));
  CHECK(pruner.gains()[2] == Approx(0.0493830).epsilon(1e-5));

  CHECK(hand_keep(0).empty());
  CHECK(hand_keep(1) == std::vector<Index>{5});
  CHECK(hand_keep(2) == std::vector<Index>{2, 5});
  CHECK(hand_keep(3, 0.5) == std::vector<Index>{1, 2, 5});
  CHECK(hand_keep(3, 0.9) == std::vector<Index>{1, 3, 5});
  // Rule 7: after three picks the span is R^3; the heaviest unpicked tokens follow.
  CHECK(hand_keep(4) == std::vector<Index>{1, 2, 3, 5});
  CHECK(hand_keep(5) == std::vector<Index>{0, 1, 2, 3, 5});
  CHECK(hand_keep(6) == std::vector<Index>{0, 1, 2, 3, 4, 5});
  // Crops: B = 2, P = 3, k = 1, one normalization group.
  CHECK(hand_keep(1, std::nullopt, 2) == std::vector<Index>{2, 5});

  // The raw relevance a instead of the embeddings gives the same answer.
  const std::vector<float> a = {-0.8f, -0.6f, 0.0f, 0.6f, -1.0f, 0.8f};
  tp::PruneInputs raw;
  raw.features = kX.view();
  raw.relevance = a;
  CHECK(to_vector(pruner.prune(raw, tp::Budget::count(3))) == std::vector<Index>{1, 2, 5});
  CHECK(to_vector(pruner.prune(raw, tp::Budget::ratio(0.5))) == std::vector<Index>{1, 2, 5});
  CHECK(to_vector(pruner.order()) == std::vector<Index>{5, 2, 1});
}

TEST_CASE("cdpruner: kept_count is known before data", "[cdpruner]") {
  tp::CDPruner flat;
  CHECK(flat.kept_count({576}, tp::Budget::count(64)) == 64);
  CHECK(flat.kept_count({576}, tp::Budget::ratio(0.25)) == 144);
  tp::CDPruner crops({std::nullopt, 5});
  CHECK(crops.kept_count({2880}, tp::Budget::count(32)) == 160);
  CHECK(crops.kept_count({2880}, tp::Budget::ratio(0.1)) == 5 * 57);
  expect_error([&] { (void)crops.kept_count({2881}, tp::Budget::count(1)); }, "crops");
  expect_error([&] { (void)crops.kept_count({2880}, tp::Budget::count(577)); }, "keep");
}

TEST_CASE("cdpruner: agrees with a float64 Gram-Schmidt re-implementation", "[cdpruner]") {
  std::mt19937 rng(20251);
  int compared = 0, cases = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const Index crops = trial % 3 == 0 ? 3 : 1;
    const Index p = 12 + trial % 5 * 9;
    const Index n = crops * p;
    const Index d = trial % 4 == 0 ? 5 : 16 + trial % 7 * 5;  // d = 5: the rank runs out, rule 7 at work
    const Index e = 8, m = 1 + trial % 3;
    const Index k = std::min<Index>(p, 1 + trial % 9 + (trial % 4 == 0 ? 4 : 0));
    const std::optional<double> theta = trial % 5 == 1 ? std::optional<double>(0.6) : std::nullopt;
    const Matrix x = trial % 2 ? clustered(n, d, 4, 0.4f, rng) : random_matrix(n, d, rng);
    const Matrix im = random_matrix(n, e, rng), text = random_matrix(m, e, rng);
    const Oracle want = oracle(x, oracle_relevance(im, text), k, theta, crops);
    tp::CDPruner pruner({theta, crops});
    const auto keep = to_vector(pruner.prune(embeds_inputs(x, im, text), tp::Budget::count(k)));
    REQUIRE(static_cast<Index>(keep.size()) == crops * k);
    REQUIRE(std::is_sorted(keep.begin(), keep.end()));
    REQUIRE(std::adjacent_find(keep.begin(), keep.end()) == keep.end());
    for (std::size_t i = 0; i < want.r.size(); ++i) CHECK(pruner.scores()[i] == Approx(want.r[i]).epsilon(1e-5).margin(1e-6));
    ++cases;
    if (want.min_gap < 1e-4) continue;  // decided by rounding in any fp32 implementation
    ++compared;
    INFO("trial " << trial << " n " << n << " d " << d << " k " << k);
    CHECK(keep == want.keep);
    CHECK(to_vector(pruner.order()) == want.order);
  }
  CHECK(compared >= cases * 3 / 4);
}

TEST_CASE("cdpruner: properties", "[cdpruner]") {
  std::mt19937 rng(7);
  const Index n = 48, d = 24;
  const Matrix x = clustered(n, d, 6, 0.3f, rng);
  const Matrix im = random_matrix(n, 8, rng), text = random_matrix(1, 8, rng);
  tp::CDPruner pruner;
  const auto in = embeds_inputs(x, im, text);
  const auto keep = to_vector(pruner.prune(in, tp::Budget::count(12)));

  SECTION("order is a permutation of the kept set, gains never increase and stay above the rule-7 floor") {
    auto order = to_vector(pruner.order());
    std::sort(order.begin(), order.end());
    CHECK(order == keep);
    const auto gains = pruner.gains();
    for (std::size_t t = 1; t < gains.size(); ++t) CHECK(gains[t] <= gains[t - 1]);
    for (std::size_t t = 0; t < gains.size(); ++t) {
      const double r = pruner.scores()[static_cast<std::size_t>(pruner.order()[t])];
      CHECK(gains[t] > 1e-4 * r * r * (1 - 1e-5));
    }
  }
  SECTION("positive per-row scaling of the features changes nothing (cosine kernel)") {
    Matrix scaled = x;
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < d; ++j) scaled.at(i, j) *= static_cast<float>(1 << (i % 5));  // exact powers of two
    CHECK(to_vector(pruner.prune(embeds_inputs(scaled, im, text), tp::Budget::count(12))) == keep);
  }
  SECTION("theta = 0 is a pure diversity DPP: the relevance does not matter") {
    tp::CDPruner diverse({0.0, 1});
    const auto a = to_vector(diverse.prune(in, tp::Budget::count(10)));
    const Matrix other_text = random_matrix(1, 8, rng);
    const auto b = to_vector(diverse.prune(embeds_inputs(x, im, other_text), tp::Budget::count(10)));
    CHECK(a == b);
    CHECK(diverse.order()[0] == 0);  // all gains 1: ties go to the lower index
  }
  SECTION("all relevances equal (D = 0): r = 1 everywhere") {
    const std::vector<float> flat(static_cast<std::size_t>(n), 0.25f);
    tp::PruneInputs raw;
    raw.features = x.view();
    raw.relevance = flat;
    CHECK(pruner.prune(raw, tp::Budget::count(5)).size() == 5);
    for (float r : pruner.scores()) CHECK(r == 1.0f);
    CHECK(pruner.order()[0] == 0);
  }
  SECTION("an exact duplicate of a picked token is never picked while candidates remain") {
    Matrix dup = x;
    const Index first = pruner.order()[0];
    for (Index j = 0; j < d; ++j) dup.at(n - 1, j) = x.at(first, j);
    const auto again = to_vector(pruner.prune(embeds_inputs(dup, im, text), tp::Budget::count(20)));
    CHECK(!(std::find(again.begin(), again.end(), n - 1) != again.end() &&
            std::find(again.begin(), again.end(), first) != again.end()));
  }
  SECTION("one token") {
    Matrix one(1, 3);
    one.at(0, 0) = 2.0f;
    const std::vector<float> a = {0.5f};
    tp::PruneInputs raw;
    raw.features = one.view();
    raw.relevance = a;
    CHECK(to_vector(pruner.prune(raw, tp::Budget::count(1))) == std::vector<Index>{0});
    CHECK(pruner.scores()[0] == 1.0f);
    CHECK(pruner.prune(raw, tp::Budget::count(0)).empty());
  }
}

TEST_CASE("cdpruner: rule 7 when the rank runs out", "[cdpruner]") {
  // 8 tokens of rank 2 (the method file's example), k = 6: two picks by the DPP, then descending w.
  Matrix x(8, 4);
  for (Index i = 0; i < 8; ++i) {
    x.at(i, 0) = static_cast<float>(1 + i % 3);
    x.at(i, 1) = static_cast<float>(i % 2 ? 1 : -2);
  }
  const std::vector<float> a = {0.1f, 0.7f, 0.3f, 0.9f, 0.2f, 0.5f, 0.6f, 0.4f};
  tp::PruneInputs raw;
  raw.features = x.view();
  raw.relevance = a;
  tp::CDPruner pruner;
  const auto keep = to_vector(pruner.prune(raw, tp::Budget::count(6)));
  REQUIRE(keep.size() == 6);
  Matrix xm = x;
  const Oracle want = oracle(xm, std::vector<double>(a.begin(), a.end()), 6, std::nullopt);
  CHECK(keep == want.keep);
  CHECK(to_vector(pruner.order()) == want.order);
  // Token 3 (a = 0.9) first; the remaining picks after the rank is exhausted follow descending a.
  CHECK(pruner.order()[0] == 3);
  CHECK(to_vector(pruner.order()).size() == 6);
  CHECK(to_vector(pruner.prune(raw, tp::Budget::count(8))) == std::vector<Index>{0, 1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("cdpruner: crops run one DPP per crop over one normalization group", "[cdpruner]") {
  std::mt19937 rng(99);
  const Index crops = 4, p = 20, n = crops * p, d = 16;
  const Matrix x = clustered(n, d, 5, 0.3f, rng);
  const Matrix im = random_matrix(n, 8, rng), text = random_matrix(2, 8, rng);
  tp::CDPruner pruner({std::nullopt, crops});
  const auto keep = to_vector(pruner.prune(embeds_inputs(x, im, text), tp::Budget::count(5)));
  REQUIRE(keep.size() == 20);
  for (Index b = 0; b < crops; ++b)
    CHECK(std::count_if(keep.begin(), keep.end(), [&](Index i) { return i / p == b; }) == 5);
  const auto a = oracle_relevance(im, text);
  const Oracle want = oracle(x, a, 5, std::nullopt, crops);
  CHECK(keep == want.keep);
  // Ratio: per crop.
  CHECK(pruner.prune(embeds_inputs(x, im, text), tp::Budget::ratio(0.5)).size() == 40);
  expect_error([&] { pruner.prune(embeds_inputs(x, im, text), tp::Budget::count(21)); }, "keep");
}

TEST_CASE("cdpruner: errors name the argument and leave the pruner usable", "[cdpruner]") {
  tp::CDPruner pruner;
  const auto good = embeds_inputs(kX, kE, kT);
  const std::vector<Index> expected = {1, 2, 5};

  expect_error([] { tp::CDPruner bad({-0.1, 1}); }, "theta");
  expect_error([] { tp::CDPruner bad({1.0, 1}); }, "theta");
  expect_error([] { tp::CDPruner bad({std::numeric_limits<double>::quiet_NaN(), 1}); }, "theta");
  expect_error([] { tp::CDPruner bad({std::nullopt, 0}); }, "crops");

  {
    tp::PruneInputs in = good;
    in.features = {};
    expect_error([&] { pruner.prune(in, tp::Budget::count(1)); }, "features");
  }
  {
    tp::PruneInputs in = good;
    in.image_embeds = {};
    expect_error([&] { pruner.prune(in, tp::Budget::count(1)); }, "image_embeds");
  }
  {
    tp::PruneInputs in = good;
    in.text_embeds = {};
    expect_error([&] { pruner.prune(in, tp::Budget::count(1)); }, "text_embeds");
  }
  {
    const Matrix wide(1, 3);
    tp::PruneInputs in = good;
    in.text_embeds = wide.view();
    expect_error([&] { pruner.prune(in, tp::Budget::count(1)); }, "text_embeds.dim");
  }
  {
    const Matrix none(0, 2);
    tp::PruneInputs in = good;
    in.text_embeds = none.view();
    expect_error([&] { pruner.prune(in, tp::Budget::count(1)); }, "text_embeds.n_tokens");
  }
  {
    const Matrix fewer = from_rows({{4, 3}, {3, 4}, {0, 1}, {-3, 4}, {1, 0}});
    tp::PruneInputs in = good;
    in.image_embeds = fewer.view();
    expect_error([&] { pruner.prune(in, tp::Budget::count(1)); }, "image_embeds.n_tokens");
  }
  {
    const std::vector<float> a = {1, 2, 3};
    tp::PruneInputs in;
    in.features = kX.view();
    in.relevance = a;
    expect_error([&] { pruner.prune(in, tp::Budget::count(1)); }, "relevance.size");
  }
  expect_error([&] { pruner.prune(good, tp::Budget::count(7)); }, "keep");
  {
    tp::CDPruner crops({std::nullopt, 4});
    expect_error([&] { crops.prune(good, tp::Budget::count(1)); }, "crops");
  }
  // Zero rows of X, E and T.
  {
    Matrix x = kX;
    for (Index j = 0; j < 3; ++j) x.at(4, j) = 0.0f;
    expect_error([&] { pruner.prune(embeds_inputs(x, kE, kT), tp::Budget::count(1)); }, "features[4]");
    Matrix e = kE;
    e.at(2, 0) = e.at(2, 1) = 0.0f;
    expect_error([&] { pruner.prune(embeds_inputs(kX, e, kT), tp::Budget::count(1)); }, "image_embeds[2]");
    Matrix t = kT;
    t.at(0, 0) = 0.0f;
    expect_error([&] { pruner.prune(embeds_inputs(kX, kE, t), tp::Budget::count(1)); }, "text_embeds[0]");
  }
  // NaN and Inf anywhere, named by element.
  {
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    Matrix x = kX;
    x.at(3, 2) = nan;
    expect_error([&] { pruner.prune(embeds_inputs(x, kE, kT), tp::Budget::count(1)); }, "features[3,2]");
    Matrix e = kE;
    e.at(5, 1) = inf;
    expect_error([&] { pruner.prune(embeds_inputs(kX, e, kT), tp::Budget::count(1)); }, "image_embeds[5,1]");
    Matrix t = kT;
    t.at(0, 1) = nan;
    expect_error([&] { pruner.prune(embeds_inputs(kX, kE, t), tp::Budget::count(1)); }, "text_embeds[0,1]");
    std::vector<float> a = {-0.8f, -0.6f, 0.0f, 0.6f, -1.0f, 0.8f};
    a[4] = nan;
    tp::PruneInputs raw;
    raw.features = kX.view();
    raw.relevance = a;
    expect_error([&] { pruner.prune(raw, tp::Budget::count(1)); }, "relevance[4]");
  }
  expect_error([&] { pruner.reserve(-1, 3); }, "max_tokens");
  // Still usable, and the same answer as a fresh instance.
  CHECK(to_vector(pruner.prune(good, tp::Budget::count(3))) == expected);
}

TEST_CASE("cdpruner: fp16 and bf16 inputs and strided views", "[cdpruner]") {
  std::mt19937 rng(31);
  const Index n = 64, d = 40, e = 12;
  const Matrix x = clustered(n, d, 5, 0.5f, rng);
  const Matrix im = random_matrix(n, e, rng), text = random_matrix(2, e, rng);
  auto run = [](const tp::PruneInputs& in, Index k) {
    tp::CDPruner pruner;
    auto keep = to_vector(pruner.prune(in, tp::Budget::count(k)));
    std::vector<float> scores(pruner.scores().begin(), pruner.scores().end());
    std::vector<float> gains(pruner.gains().begin(), pruner.gains().end());
    return std::make_tuple(keep, scores, gains);
  };
  // 16-bit inputs against fp32 inputs holding the same (rounded) values: bitwise the same results.
  auto check_type = [&]<class T>(T) {
    std::vector<T> xs(x.values.size()), es(im.values.size()), ts(text.values.size());
    Matrix xr = x, er = im, tr = text;
    auto round = [](const std::vector<float>& src, std::vector<T>& dst, std::vector<float>& back) {
      for (std::size_t i = 0; i < src.size(); ++i) {
        dst[i] = T(src[i]);
        back[i] = static_cast<float>(dst[i]);
      }
    };
    round(x.values, xs, xr.values);
    round(im.values, es, er.values);
    round(text.values, ts, tr.values);
    tp::PruneInputs half;
    half.features = tp::TokenMatrix(xs.data(), n, d);
    half.image_embeds = tp::TokenMatrix(es.data(), n, e);
    half.text_embeds = tp::TokenMatrix(ts.data(), 2, e);
    CHECK(run(half, 16) == run(embeds_inputs(xr, er, tr), 16));
  };
  check_type(Eigen::half{});
  check_type(Eigen::bfloat16{});

  // Strided rows: the same values with a row stride larger than the width.
  Matrix xs(n, d, d + 7), es(n, e, e + 3);
  for (Index i = 0; i < n; ++i) {
    for (Index j = 0; j < d; ++j) xs.at(i, j) = x.at(i, j);
    for (Index j = 0; j < e; ++j) es.at(i, j) = im.at(i, j);
    xs.at(i, d) = std::numeric_limits<float>::quiet_NaN();  // padding is never read
  }
  CHECK(run(embeds_inputs(xs, es, text), 16) == run(embeds_inputs(x, im, text), 16));
}

TEST_CASE("cdpruner: bitwise the same at every ISA level and with any executor", "[cdpruner]") {
  std::mt19937 rng(5);
  const Index crops = 2, n = 2 * 150, d = 300, e = 20;
  const Matrix x = clustered(n, d, 12, 0.4f, rng);
  const Matrix im = random_matrix(n, e, rng), text = random_matrix(1, e, rng);
  const tp::Isa saved = tp::active_isa();
  struct Result {
    std::vector<Index> keep, order;
    std::vector<float> scores, gains;
    bool operator==(const Result&) const = default;
  };
  auto run = [&](tp::Executor executor) {
    tp::CDPruner pruner({0.5, crops});
    pruner.set_executor(executor);
    pruner.reserve(n, d, e, 1);
    Result r;
    r.keep = to_vector(pruner.prune(embeds_inputs(x, im, text), tp::Budget::count(40)));
    r.order = to_vector(pruner.order());
    r.gains.assign(pruner.gains().begin(), pruner.gains().end());
    // 37 of 150 per crop: the rows of S on demand (4 k <= P); 40: the triangle.
    const auto small = to_vector(pruner.prune(embeds_inputs(x, im, text), tp::Budget::count(37)));
    r.keep.insert(r.keep.end(), small.begin(), small.end());
    r.order.insert(r.order.end(), pruner.order().begin(), pruner.order().end());
    r.scores.assign(pruner.scores().begin(), pruner.scores().end());
    r.gains.insert(r.gains.end(), pruner.gains().begin(), pruner.gains().end());
    return r;
  };
  std::optional<Result> first;
  for (tp::Isa isa : tp::kAllIsas) {
    if (!tp::isa_supported(isa)) continue;
    tp::set_isa(isa);
    INFO("level " << tp::isa_name(isa));
    for (const tp::Executor executor : {tp::Executor{}, tp::Executor::sequential()}) {
      const Result r = run(executor);
      if (!first) first = r;
      CHECK(r == *first);
    }
  }
  tp::set_isa(saved);
  REQUIRE(first);
  CHECK(first->keep.size() == 80 + 74);
}

// Budgets with 4 k <= P take the rows of S as the picks need them (8 at a time); larger budgets the lower triangle.
// The greedy is a prefix process, so the run with k = P / 4 + 1 (triangle) must start with the picks and gains of
// k = P / 4 (rows), to the bit. Several batches and misses occur at these sizes; d = 1300 runs the rows in parallel.
TEST_CASE("cdpruner: rows of S on demand give the bits of the triangle", "[cdpruner]") {
  std::mt19937 rng(8);
  struct Shape {
    Index crops, p, d, centres;
  };
  for (const Shape shape : {Shape{2, 150, 300, 12}, Shape{1, 430, 1300, 40}, Shape{1, 64, 5, 3}}) {
    const Index n = shape.crops * shape.p, e = 16;
    const Matrix x = clustered(n, shape.d, shape.centres, 0.4f, rng);
    const Matrix im = random_matrix(n, e, rng), text = random_matrix(1, e, rng);
    const Index k = shape.p / 4;
    for (const tp::Executor executor : {tp::Executor{}, tp::Executor::sequential()}) {
      INFO("crops " << shape.crops << " P " << shape.p << " d " << shape.d << " k " << k);
      auto run = [&](Index budget) {
        tp::CDPruner pruner({std::nullopt, shape.crops});
        pruner.set_executor(executor);
        pruner.reserve(n, shape.d, e, 1);
        (void)pruner.prune(embeds_inputs(x, im, text), tp::Budget::count(budget));
        return std::make_pair(to_vector(pruner.order()),
                              std::vector<float>(pruner.gains().begin(), pruner.gains().end()));
      };
      const auto [rows_order, rows_gains] = run(k);
      const auto [tri_order, tri_gains] = run(k + 1);
      REQUIRE(static_cast<Index>(rows_order.size()) == shape.crops * k);
      for (Index c = 0; c < shape.crops; ++c)
        for (Index t = 0; t < k; ++t) {
          const auto a = static_cast<std::size_t>(c * k + t), b = static_cast<std::size_t>(c * (k + 1) + t);
          CHECK(rows_order[a] == tri_order[b]);
          CHECK(rows_gains[a] == tri_gains[b]);
        }
    }
  }
}

TEST_CASE("cdpruner: reserve keeps the spans in place across calls within its bounds", "[cdpruner]") {
  std::mt19937 rng(11);
  tp::CDPruner pruner({std::nullopt, 1});
  pruner.reserve(100, 32, 8, 2);
  const Matrix x = random_matrix(100, 32, rng), im = random_matrix(100, 8, rng), t = random_matrix(2, 8, rng);
  const Index* kept = pruner.prune(embeds_inputs(x, im, t), tp::Budget::count(50)).data();
  const Index* order = pruner.order().data();
  const float* scores = pruner.scores().data();
  const Matrix x2 = random_matrix(60, 20, rng), im2 = random_matrix(60, 8, rng), t2 = random_matrix(1, 8, rng);
  CHECK(pruner.prune(embeds_inputs(x2, im2, t2), tp::Budget::count(7)).data() == kept);
  CHECK(pruner.order().data() == order);
  CHECK(pruner.scores().data() == scores);
  CHECK(pruner.prune(embeds_inputs(x, im, t), tp::Budget::count(100)).data() == kept);
}
