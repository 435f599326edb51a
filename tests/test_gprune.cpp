// G-Prune (SPEC 2.2): the hand-checkable case, an independent float64 dense re-implementation written from the
// spec text, mathematical properties, 16-bit inputs, strided buffers and segment layouts.

#include "catch.hpp"

#include <tokenprune/tokenprune.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace tp = tokenprune;

namespace {

using Matrix = tp::RowMatrix<float>;
using Index = tp::index_t;

std::vector<Index> to_vector(std::span<const Index> s) { return {s.begin(), s.end()}; }
std::vector<double> to_doubles(std::span<const float> s) { return {s.begin(), s.end()}; }

// ---------------------------------------------------------------------------------------------------------
// Independent reference, written from SPEC 2.2 the way the authors' PyTorch code does it: dense matrices,
// softmax over the full row with the finite logit -5000 for non-edges, P^m by repeated products. Float64.
// ---------------------------------------------------------------------------------------------------------
struct Reference {
  std::vector<double> norm, score;
  std::vector<Index> degree;
  double min_threshold_distance = std::numeric_limits<double>::infinity();  // over off-diagonal pairs
};

Reference reference_gprune(const Matrix& features, double tau, double temperature, int iterations) {
  const Eigen::Index n = features.rows();
  const Eigen::MatrixXd x = features.cast<double>();
  Reference ref;
  const Eigen::VectorXd w = x.rowwise().norm();  // step 1
  // Step 2. Cosine as x_i.x_j / (w_i w_j): the same number as u_i.u_j with u = x / max(w, 1e-12) for every token
  // used here (norms are 0 or far above 1e-12), and exactly +-1 for d = 1. s_ii = 1 for non-zero tokens.
  Eigen::MatrixXd s = Eigen::MatrixXd::Zero(n, n);
  for (Eigen::Index i = 0; i < n; ++i)
    for (Eigen::Index j = 0; j < n; ++j) {
      if (w[i] == 0.0 || w[j] == 0.0) continue;
      s(i, j) = i == j ? 1.0 : x.row(i).dot(x.row(j)) / (w[i] * w[j]);
      if (i != j && s(i, j) != tau)
        ref.min_threshold_distance = std::min(ref.min_threshold_distance, std::abs(s(i, j) - tau));
    }
  // Steps 3-4: logits s/T on edges (s >= tau), -5000 elsewhere; softmax over the whole row.
  Eigen::MatrixXd p(n, n);
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = 0; j < n; ++j) p(i, j) = s(i, j) >= tau ? s(i, j) / temperature : -5000.0;
    const double row_max = p.row(i).maxCoeff();
    p.row(i) = (p.row(i).array() - row_max).exp().matrix();
    p.row(i) /= p.row(i).sum();
  }
  // Step 5: degree = #{j : P_ij > 0}.
  ref.degree.resize(static_cast<std::size_t>(n));
  for (Eigen::Index i = 0; i < n; ++i) ref.degree[static_cast<std::size_t>(i)] = (p.row(i).array() > 0.0).count();
  // Step 6: v = w^T P^m (matrix_power by repeated products).
  Eigen::MatrixXd pm = Eigen::MatrixXd::Identity(n, n);
  for (int step = 0; step < iterations; ++step) pm = (pm * p).eval();
  const Eigen::RowVectorXd v = w.transpose() * pm;
  // Step 7.
  for (Eigen::Index j = 0; j < n; ++j) {
    ref.norm.push_back(w[j]);
    ref.score.push_back(v[j] / static_cast<double>(ref.degree[static_cast<std::size_t>(j)]));
  }
  return ref;
}

// Top k by score descending, ties to the lower index; ascending output (SPEC 2.1), by a full stable sort.
std::vector<Index> reference_top_k(const std::vector<double>& score, Index k) {
  std::vector<Index> order(score.size());
  std::iota(order.begin(), order.end(), Index{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](Index a, Index b) { return score[static_cast<std::size_t>(a)] > score[static_cast<std::size_t>(b)]; });
  order.resize(static_cast<std::size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

// Clustered random tokens: a few directions plus noise and varied norms, so that graphs have real edges for
// every threshold; token n/2 is a zero vector when n >= 7 (the uniform-row path).
Matrix random_tokens(Index n, Index d, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.5f, 2.0f);
  const Index clusters = 3;
  Matrix centers(clusters, d);
  for (Index c = 0; c < clusters; ++c)
    for (Index j = 0; j < d; ++j) centers(c, j) = normal(rng);
  Matrix x(n, d);
  for (Index i = 0; i < n; ++i) {
    const float noise = (i % 2 == 0) ? 0.3f : 1.0f;
    const float s = scale(rng);
    for (Index j = 0; j < d; ++j) x(i, j) = s * (centers(i % clusters, j) + noise * normal(rng));
  }
  if (n >= 7) x.row(n / 2).setZero();
  return x;
}

// f() throws a tokenprune::Error naming `argument`.
template <class F>
void expect_error(F&& f, const std::string& argument) {
  try {
    f();
    FAIL("no tokenprune::Error for " << argument);
  } catch (const tp::Error& e) {
    INFO(e.what());
    CHECK(e.argument().find(argument) != std::string::npos);
    CHECK(std::string(e.what()).find(argument) != std::string::npos);
  }
}

tp::PruneInputs features(const tp::TokenMatrix& x) {
  tp::PruneInputs in;
  in.features = x;
  return in;
}

std::vector<Index> gprune_keep(const Matrix& x, Index k, tp::GPruneConfig config = {}) {
  tp::GPrune pruner(config);
  return to_vector(pruner.prune(features(x), tp::Budget::count(k)));
}

bool strictly_ascending(const std::vector<Index>& v) {
  for (std::size_t i = 1; i < v.size(); ++i)
    if (v[i] <= v[i - 1]) return false;
  return true;
}

}  // namespace

TEST_CASE("gprune: SPEC 2.2 hand-checkable case", "[gprune]") {
  Matrix x(6, 2);
  x << 1, 0, 0.99f, 0.1f, 0, 2, 0.6f, 0.8f, 3, 0.2f, -1, 0.5f;
  tp::GPrune pruner;  // defaults tau 0.5, T 0.03, m 5
  const auto kept = to_vector(pruner.prune(features(x), tp::Budget::count(3)));
  CHECK(kept == std::vector<Index>{2, 4, 5});

  const std::vector<Index> degrees{4, 4, 2, 5, 4, 1};
  CHECK(to_vector(pruner.degrees()) == degrees);
  const std::vector<double> expected{0.4075983204, 0.4152418561, 0.9968383845, 0.2012511276, 0.4276009627, 1.118033989};
  const auto scores = pruner.scores();
  REQUIRE(scores.size() == 6);
  for (std::size_t i = 0; i < 6; ++i) {
    INFO("token " << i);
    CHECK(std::abs(scores[i] - expected[i]) <= 1e-6 * expected[i]);
  }
  // The reference below reproduces the same numbers (a check of the reference itself).
  const Reference ref = reference_gprune(x, 0.5, 0.03, 5);
  for (std::size_t i = 0; i < 6; ++i) CHECK(std::abs(ref.score[i] - expected[i]) <= 1e-6 * expected[i]);
  CHECK(ref.degree == degrees);
}

TEST_CASE("gprune: agrees with a float64 dense reference on random inputs", "[gprune][reference]") {
  const std::vector<Index> ns{1, 2, 7, 64, 130};
  const std::vector<Index> ds{1, 3, 16};
  const std::vector<double> taus{0.3, 0.5, 0.9, 1.0};
  const std::vector<double> temperatures{0.01, 0.03, 0.1};
  const std::vector<int> iteration_counts{0, 1, 5};
  int runs = 0, kept_sets_compared = 0, kept_sets_skipped = 0;
  std::uint32_t seed = 1234;
  for (Index n : ns)
    for (Index d : ds)
      for (double tau : taus)
        for (double temperature : temperatures)
          for (int m : iteration_counts) {
            // Pairs within float rounding of tau could be edges in one precision and not the other; such inputs
            // test rounding, not the algorithm, so draw again (deterministically).
            Matrix x;
            Reference ref;
            for (int attempt = 0;; ++attempt) {
              REQUIRE(attempt < 50);
              x = random_tokens(n, d, seed++);
              ref = reference_gprune(x, tau, temperature, m);
              if (ref.min_threshold_distance > 2e-6) break;
            }
            INFO("n=" << n << " d=" << d << " tau=" << tau << " T=" << temperature << " m=" << m);
            tp::GPrune pruner(tp::GPruneConfig{tau, temperature, m});
            const Index k_mid = n / 2;
            const auto kept_mid = to_vector(pruner.prune(features(x), tp::Budget::count(k_mid)));
            ++runs;

            // Scores to 1e-4 relative (an absolute floor of 1e-9 of the total mass for exact zeros).
            const auto scores = pruner.scores();
            REQUIRE(scores.size() == static_cast<std::size_t>(n));
            const double mass = std::accumulate(ref.norm.begin(), ref.norm.end(), 0.0);
            for (Index j = 0; j < n; ++j) {
              const double r = ref.score[static_cast<std::size_t>(j)];
              INFO("token " << j << " library " << scores[static_cast<std::size_t>(j)] << " reference " << r);
              REQUIRE(std::abs(scores[static_cast<std::size_t>(j)] - r) <= 1e-4 * std::abs(r) + 1e-9 * mass);
            }
            REQUIRE(to_vector(pruner.degrees()) == ref.degree);

            // Kept sets for several k, wherever the k-th gap is clear of float rounding.
            std::vector<double> sorted = ref.score;
            std::sort(sorted.begin(), sorted.end(), std::greater<>());
            for (Index k : {Index{0}, Index{1}, n / 3, k_mid, n - 1, n}) {
              if (k < 0 || k > n) continue;
              const bool clear = k == 0 || k == n ||
                                 sorted[static_cast<std::size_t>(k - 1)] - sorted[static_cast<std::size_t>(k)] >
                                     1e-3 * std::abs(sorted[static_cast<std::size_t>(k - 1)]);
              const auto kept = k == k_mid ? kept_mid : to_vector(pruner.prune(features(x), tp::Budget::count(k)));
              REQUIRE(kept.size() == static_cast<std::size_t>(k));
              REQUIRE(strictly_ascending(kept));
              if (!clear) {
                ++kept_sets_skipped;
                continue;
              }
              INFO("k=" << k);
              REQUIRE(kept == reference_top_k(ref.score, k));
              ++kept_sets_compared;
            }
          }
  CHECK(runs == 5 * 3 * 4 * 3 * 3);
  // Most comparisons must actually happen (ties are common only for n <= 2, d = 1 and tau = 1).
  CHECK(kept_sets_compared > 4 * kept_sets_skipped);
}

TEST_CASE("gprune: properties", "[gprune]") {
  SECTION("mass is conserved: sum of score * degree equals the sum of norms") {
    for (int m : {0, 1, 5, 20}) {
      const Matrix x = random_tokens(97, 8, 77u + static_cast<std::uint32_t>(m));
      tp::GPrune pruner(tp::GPruneConfig{0.4, 0.05, m});
      pruner.prune(features(x), tp::Budget::ratio(0.5));
      double mass = 0.0, total_norm = 0.0;
      for (Index j = 0; j < x.rows(); ++j) {
        mass += double(pruner.scores()[static_cast<std::size_t>(j)]) * double(pruner.degrees()[static_cast<std::size_t>(j)]);
        total_norm += x.row(j).cast<double>().norm();
      }
      INFO("m=" << m);
      CHECK(std::abs(mass - total_norm) <= 1e-5 * total_norm);
    }
  }
  SECTION("an isolated token keeps its norm; a zero vector scores 0 with degree n") {
    Matrix x(4, 3);
    x << 3, 0, 0,  // isolated: orthogonal to everything else
        0, 1, 1,   //
        0, 1, 1.2f, 0, 0, 0;
    tp::GPrune pruner;
    pruner.prune(features(x), tp::Budget::count(2));
    CHECK(pruner.degrees()[0] == 1);
    CHECK(std::abs(pruner.scores()[0] - 3.0f) <= 1e-6f * 3.0f);
    CHECK(pruner.degrees()[3] == 4);
    CHECK(pruner.scores()[3] == 0.0f);
    CHECK(to_vector(pruner.prune(features(x), tp::Budget::count(1))) == std::vector<Index>{0});
  }
  SECTION("exact duplicates share their mass and score equally (half their norm)") {
    Matrix x(4, 2);
    x << 1, 2, 4, 0, 1, 2, 0, -5;  // tokens 0 and 2 duplicate; 1 and 3 isolated (cosines 0.447, -0.894, 0)
    tp::GPrune pruner;
    pruner.prune(features(x), tp::Budget::count(2));
    const float w = std::sqrt(5.0f);
    CHECK(pruner.degrees()[0] == 2);
    CHECK(pruner.degrees()[2] == 2);
    CHECK(std::abs(pruner.scores()[0] - pruner.scores()[2]) <= 1e-6f * w);
    CHECK(std::abs(pruner.scores()[0] - w / 2) <= 1e-5f * w);
    CHECK(std::abs(pruner.scores()[1] - 4.0f) <= 1e-6f * 4);
    // Isolated tokens (norms 4 and 5) beat the duplicates (score 1.118 each).
    CHECK(to_vector(pruner.prune(features(x), tp::Budget::count(2))) == std::vector<Index>{1, 3});
  }
  SECTION("keep 0 and keep n; output strictly ascending with exactly kept_count entries") {
    const Matrix x = random_tokens(50, 5, 9);
    tp::GPrune pruner;
    CHECK(pruner.prune(features(x), tp::Budget::count(0)).empty());
    std::vector<Index> all(50);
    std::iota(all.begin(), all.end(), Index{0});
    CHECK(to_vector(pruner.prune(features(x), tp::Budget::count(50))) == all);
    for (double r : {0.0, 0.1, 0.29, 0.5, 0.77, 1.0}) {
      const auto budget = tp::Budget::ratio(r);
      const Index expected = pruner.kept_count(tp::TokenShape{50}, budget);
      CHECK(expected == static_cast<Index>(std::floor(r * 50.0)));
      const auto kept = to_vector(pruner.prune(features(x), budget));
      CHECK(static_cast<Index>(kept.size()) == expected);
      CHECK(strictly_ascending(kept));
    }
    CHECK_THROWS_AS(pruner.prune(features(x), tp::Budget::count(51)), tp::Error);
  }
  SECTION("equal scores rank the lower index first") {
    // Orthogonal tokens are all isolated: score = norm. Tokens 1..4 tie exactly at 2; token 5 has 3.
    Matrix x = Matrix::Zero(6, 6);
    const float norms[6] = {1, 2, 2, 2, 2, 3};
    for (int i = 0; i < 6; ++i) x(i, i) = norms[i];
    CHECK(gprune_keep(x, 1) == std::vector<Index>{5});
    CHECK(gprune_keep(x, 2) == std::vector<Index>{1, 5});
    CHECK(gprune_keep(x, 3) == std::vector<Index>{1, 2, 5});
    CHECK(gprune_keep(x, 5) == std::vector<Index>{1, 2, 3, 4, 5});
    // Reversed order: the tie still goes to the lowest indices.
    Matrix y = x.colwise().reverse();
    CHECK(gprune_keep(y, 2) == std::vector<Index>{0, 1});
    CHECK(gprune_keep(y, 3) == std::vector<Index>{0, 1, 2});
  }
  SECTION("a cosine exactly at the threshold is an edge") {
    // cos([1,0], [3,4]) = 0.6; in fp32 the computed cosine is the float nearest 0.6 (1 * u_0 + 0 * u_1 is exact).
    Matrix x(3, 2);
    x << 1, 0, 3, 4, 0, -1;
    const double at = static_cast<double>(0.6f);
    const double above = static_cast<double>(std::nextafter(0.6f, 1.0f));
    tp::GPrune edge(tp::GPruneConfig{at, 0.03, 5});
    edge.prune(features(x), tp::Budget::count(1));
    CHECK(to_vector(edge.degrees()) == std::vector<Index>{2, 2, 1});
    tp::GPrune no_edge(tp::GPruneConfig{above, 0.03, 5});
    no_edge.prune(features(x), tp::Budget::count(1));
    CHECK(to_vector(no_edge.degrees()) == std::vector<Index>{1, 1, 1});
    // tau = 1 links exactly parallel tokens (cosine 1 for [1,0] and [7,0]) but nothing else.
    Matrix y(3, 2);
    y << 1, 0, 7, 0, 1, 1e-3f;
    tp::GPrune one(tp::GPruneConfig{1.0, 0.03, 5});
    one.prune(features(y), tp::Budget::count(1));
    CHECK(to_vector(one.degrees()) == std::vector<Index>{2, 2, 1});
  }
  SECTION("n = 1 and a single all-zero sequence") {
    Matrix one(1, 4);
    one << 1, 2, 3, 4;
    CHECK(gprune_keep(one, 1) == std::vector<Index>{0});
    Matrix zeros = Matrix::Zero(3, 4);
    tp::GPrune pruner;
    CHECK(to_vector(pruner.prune(features(zeros), tp::Budget::count(2))) == std::vector<Index>{0, 1});
    CHECK(to_vector(pruner.degrees()) == std::vector<Index>{3, 3, 3});
  }
}

TEST_CASE("gprune: invalid configuration and input", "[gprune][errors]") {
  expect_error([] { tp::GPrune(tp::GPruneConfig{0.0, 0.03, 5}); }, "threshold");
  expect_error([] { tp::GPrune(tp::GPruneConfig{1.5, 0.03, 5}); }, "threshold");
  expect_error([] { tp::GPrune(tp::GPruneConfig{std::nan(""), 0.03, 5}); }, "threshold");
  expect_error([] { tp::GPrune(tp::GPruneConfig{0.5, 0.0, 5}); }, "temperature");
  expect_error([] { tp::GPrune(tp::GPruneConfig{0.5, -1.0, 5}); }, "temperature");
  expect_error([] { tp::GPrune(tp::GPruneConfig{0.5, 0.03, -1}); }, "iterations");
  expect_error([] { tp::GPrune().prune(tp::PruneInputs{}, tp::Budget::count(0)); }, "features");

  Matrix x = random_tokens(8, 4, 3);
  x(5, 2) = std::numeric_limits<float>::quiet_NaN();
  try {
    tp::GPrune().prune(features(x), tp::Budget::count(2));
    FAIL("NaN accepted");
  } catch (const tp::Error& e) {
    CHECK(std::string(e.what()).find("features[5,2]") != std::string::npos);
    CHECK(std::string(e.what()).find("nan") != std::string::npos);
  }
  x(5, 2) = 0.0f;
  x(1, 3) = -std::numeric_limits<float>::infinity();
  try {
    tp::GPrune().prune(features(x), tp::Budget::count(2));
    FAIL("Inf accepted");
  } catch (const tp::Error& e) {
    CHECK(std::string(e.what()).find("features[1,3]") != std::string::npos);
  }
}

TEST_CASE("gprune: fp16 and bf16 inputs", "[gprune][dtype]") {
  const Index n = 200, d = 32;
  const Matrix original = random_tokens(n, d, 2024);

  SECTION("identical to fp32 holding the same representable values") {
    const tp::RowMatrix<Eigen::half> h = original.cast<Eigen::half>();
    const tp::RowMatrix<Eigen::bfloat16> b = original.cast<Eigen::bfloat16>();
    const Matrix h_as_float = h.cast<float>();
    const Matrix b_as_float = b.cast<float>();
    for (Index k : {Index{1}, Index{37}, Index{100}, Index{199}}) {
      tp::GPrune p16, p32;
      CHECK(to_vector(p16.prune(features(h), tp::Budget::count(k))) ==
            to_vector(p32.prune(features(h_as_float), tp::Budget::count(k))));
      CHECK(to_doubles(p16.scores()) == to_doubles(p32.scores()));
      CHECK(to_vector(p16.prune(features(b), tp::Budget::count(k))) ==
            to_vector(p32.prune(features(b_as_float), tp::Budget::count(k))));
      CHECK(to_doubles(p16.scores()) == to_doubles(p32.scores()));
    }
  }
  SECTION("agreement with fp32 on the unrounded values") {
    // Rounding the inputs moves cosines by ~1e-3 (fp16) or ~1e-2 (bf16), which can flip edges near tau and moves
    // softmax weights by up to |ds| / T; the clustered data keeps most score gaps wider than that. Measured with
    // these exact inputs (n = 200, d = 32, k = n/4 = 50, default params):
    //   8 seeds (this test):  fp16 mean overlap 1.0000, worst 1.00;  bf16 mean 0.9975, worst 0.98 (1 of 50 differs)
    //   200 seeds (offline):  fp16 mean 0.9996, worst 0.98;          bf16 mean 0.9985, worst 0.98
    //   (k = n/2, 200 seeds:  fp16 mean 0.9998, worst 0.99;          bf16 mean 0.9980, worst 0.99)
    // Bounds: at most 2 of 50 tokens differ on any seed, and at most 1% on average.
    double worst16 = 1.0, worst_bf = 1.0, mean16 = 0.0, mean_bf = 0.0;
    const int seeds = 8;
    const Index k = n / 4;
    for (int s = 0; s < seeds; ++s) {
      const Matrix x = random_tokens(n, d, 500u + static_cast<std::uint32_t>(s));
      const tp::RowMatrix<Eigen::half> h = x.cast<Eigen::half>();
      const tp::RowMatrix<Eigen::bfloat16> b = x.cast<Eigen::bfloat16>();
      tp::GPrune pruner;
      const auto ref = to_vector(pruner.prune(features(x), tp::Budget::count(k)));
      auto overlap = [&](const std::vector<Index>& kept) {
        std::vector<Index> common;
        std::set_intersection(ref.begin(), ref.end(), kept.begin(), kept.end(), std::back_inserter(common));
        return static_cast<double>(common.size()) / static_cast<double>(k);
      };
      const double o16 = overlap(to_vector(pruner.prune(features(h), tp::Budget::count(k))));
      const double obf = overlap(to_vector(pruner.prune(features(b), tp::Budget::count(k))));
      worst16 = std::min(worst16, o16);
      worst_bf = std::min(worst_bf, obf);
      mean16 += o16 / seeds;
      mean_bf += obf / seeds;
    }
    INFO("fp16 mean " << mean16 << " worst " << worst16 << "; bf16 mean " << mean_bf << " worst " << worst_bf);
    CHECK(worst16 >= 0.96);
    CHECK(mean16 >= 0.99);
    CHECK(worst_bf >= 0.96);
    CHECK(mean_bf >= 0.99);
  }
}

TEST_CASE("gprune: a padded row stride gives the same answer as a dense buffer", "[gprune][views]") {
  const Index n = 70, d = 12, stride = 19;
  const Matrix dense = random_tokens(n, d, 31);
  std::vector<float> padded(static_cast<std::size_t>(n * stride), std::numeric_limits<float>::quiet_NaN());
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < d; ++j) padded[static_cast<std::size_t>(i * stride + j)] = dense(i, j);
  // The padding holds NaN: reading it would be rejected, so success also proves it is never read.
  const tp::TokenMatrix view(padded.data(), n, d, stride);
  tp::GPrune a, b;
  CHECK(to_vector(a.prune(features(view), tp::Budget::count(20))) ==
        to_vector(b.prune(features(dense), tp::Budget::count(20))));
  CHECK(to_doubles(a.scores()) == to_doubles(b.scores()));
  // The same through an Eigen Map with an OuterStride.
  const tp::ConstRowMap<float> map(padded.data(), n, d, Eigen::OuterStride<>(stride));
  CHECK(to_vector(a.prune(features(map), tp::Budget::count(20))) ==
        to_vector(b.prune(features(dense), tp::Budget::count(20))));
}

namespace {
// Prunes rows `tokens` of x on their own (a fresh pruner, a dense copy) and maps the result back.
std::vector<Index> prune_alone(const Matrix& x, const std::vector<Index>& tokens, tp::Budget budget) {
  Matrix sub(static_cast<Index>(tokens.size()), x.cols());
  for (std::size_t i = 0; i < tokens.size(); ++i) sub.row(static_cast<Index>(i)) = x.row(tokens[i]);
  tp::GPrune pruner;
  std::vector<Index> out;
  for (Index local : pruner.prune(features(sub), budget)) out.push_back(tokens[static_cast<std::size_t>(local)]);
  return out;
}
std::vector<Index> range(Index first, Index count) {
  std::vector<Index> v(static_cast<std::size_t>(count));
  std::iota(v.begin(), v.end(), first);
  return v;
}
}  // namespace

TEST_CASE("gprune: Segmented with the LLaVA-NeXT layout", "[gprune][segments]") {
  // base 16 tokens, then 3 rows of [4 grid tokens, newline]: n = 16 + 3 * 5 = 31; newlines at 20, 25, 30.
  const Index base = 16, rows = 3, cols = 4;
  const double ratio = 0.5;
  tp::LlavaNextLayout layout(rows, cols, ratio, base);
  REQUIRE(layout.n_tokens() == 31);
  const std::vector<Index> newlines{20, 25, 30};
  std::vector<Index> grid_tokens;
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) grid_tokens.push_back(base + r * (cols + 1) + c);

  tp::Segmented<tp::GPrune> pruner;
  // floor(0.5 * 16) + floor(0.5 * 12) + 3 newlines, known before any data exists.
  CHECK(pruner.kept_count(layout) == 8 + 6 + 3);

  for (std::uint32_t seed : {1u, 2u, 3u}) {
    const Matrix x = random_tokens(31, 6, seed);
    const auto kept = to_vector(pruner.prune(features(x), layout));
    CHECK(kept.size() == 17);
    CHECK(strictly_ascending(kept));
    for (Index t : newlines) CHECK(std::binary_search(kept.begin(), kept.end(), t));
    CHECK(std::isinf(pruner.scores()[20]));

    std::vector<Index> expected = prune_alone(x, range(0, base), tp::Budget::ratio(ratio));
    const auto grid_kept = prune_alone(x, grid_tokens, tp::Budget::ratio(ratio));
    expected.insert(expected.end(), grid_kept.begin(), grid_kept.end());
    expected.insert(expected.end(), newlines.begin(), newlines.end());
    std::sort(expected.begin(), expected.end());
    CHECK(kept == expected);
  }

  SECTION("the newline tokens are never read") {
    Matrix x = random_tokens(31, 6, 4);
    const auto clean = to_vector(pruner.prune(features(x), layout));
    for (Index t : newlines) x.row(t).setConstant(1e6f);
    CHECK(to_vector(pruner.prune(features(x), layout)) == clean);
  }
}

TEST_CASE("gprune: a segment's scattered rows are read in place, with the bits of a gathered copy",
          "[gprune][segments]") {
  // LLaVA-NeXT-like: 40 base tokens, then 6 rows of [9 grid tokens, newline]. Segmented hands the grid to
  // GPrune::prune_feature_rows (no gathered copy); it must give what GPrune gives on the gathered rows.
  const Index base = 40, rows = 6, cols = 9, n = base + rows * (cols + 1), d = 12;
  tp::LlavaNextLayout layout(rows, cols, 0.5, base);
  REQUIRE(layout.n_tokens() == n);
  std::vector<Index> grid;
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) grid.push_back(base + r * (cols + 1) + c);
  Matrix x = random_tokens(n, d, 31);
  x.row(grid[7]) = x.row(grid[20]);  // duplicates inside the grid take the merged-node path
  x.row(grid[30]) = 2.0f * x.row(grid[20]);

  auto check_dtype = [&]<class T>(T) {
    const tp::RowMatrix<T> xt = x.cast<T>();
    tp::RowMatrix<T> gathered(static_cast<Index>(grid.size()), d);
    for (std::size_t i = 0; i < grid.size(); ++i) gathered.row(static_cast<Index>(i)) = xt.row(grid[i]);
    tp::GPrune alone;
    const auto alone_kept = to_vector(alone.prune(features(gathered), tp::Budget::ratio(0.5)));
    const std::vector<float> alone_scores(alone.scores().begin(), alone.scores().end());

    tp::GPrune direct;
    CHECK(to_vector(direct.prune_feature_rows(xt, grid, tp::Budget::ratio(0.5))) == alone_kept);
    CHECK(std::equal(alone_scores.begin(), alone_scores.end(), direct.scores().begin(), direct.scores().end(),
                     [](float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }));

    tp::Segmented<tp::GPrune> segmented;
    tp::Segmented<tp::AnyPruner> erased{tp::create_pruner("gprune")};
    REQUIRE(erased.pruner().reads_feature_rows());
    const auto kept = to_vector(segmented.prune(features(xt), layout));
    CHECK(to_vector(erased.prune(features(xt), layout)) == kept);
    for (std::size_t i = 0; i < grid.size(); ++i) {
      INFO("grid token " << grid[i]);
      CHECK(std::bit_cast<std::uint32_t>(segmented.scores()[static_cast<std::size_t>(grid[i])]) ==
            std::bit_cast<std::uint32_t>(alone_scores[i]));
      CHECK(std::bit_cast<std::uint32_t>(erased.scores()[static_cast<std::size_t>(grid[i])]) ==
            std::bit_cast<std::uint32_t>(alone_scores[i]));
    }
    for (Index local : alone_kept) CHECK(std::binary_search(kept.begin(), kept.end(), grid[static_cast<std::size_t>(local)]));
  };
  check_dtype(float{});
  check_dtype(Eigen::half{});
  check_dtype(Eigen::bfloat16{});

  SECTION("errors name the row of the whole buffer") {
    Matrix bad = x;
    bad(grid[25], 4) = std::numeric_limits<float>::quiet_NaN();  // grid token 25 is row 40 + 2 * 10 + 7 = 67
    REQUIRE(grid[25] == 67);
    tp::Segmented<tp::GPrune> segmented;
    try {
      segmented.prune(features(bad), layout);
      FAIL("NaN accepted");
    } catch (const tp::Error& e) {
      CHECK(std::string(e.what()).find("features[67,4]") != std::string::npos);
    }
    const std::vector<Index> outside{3, n};
    expect_error([&] { tp::GPrune().prune_feature_rows(x, outside, tp::Budget::count(1)); }, "rows");
    expect_error([&] { tp::GPrune().prune_feature_rows(tp::TokenMatrix{}, grid, tp::Budget::count(1)); }, "features");
    tp::AnyPruner divprune = tp::create_pruner("divprune");
    CHECK_FALSE(divprune.reads_feature_rows());
    expect_error([&] { divprune.prune_feature_rows(x, grid, tp::Budget::count(1)); }, "prune_feature_rows");
  }
}

TEST_CASE("gprune: general segments: two images, video frames, always-kept text", "[gprune][segments]") {
  tp::Segmented<tp::GPrune> pruner;
  SECTION("two images in one sequence with different budgets") {
    // [2 text][image A: 10 tokens][2 text][image B: 16 tokens] = 30 tokens
    const Matrix x = random_tokens(30, 8, 11);
    const auto a = range(2, 10), b = range(14, 16);
    const std::vector<Index> text{0, 1, 12, 13};
    const tp::Segment segments[] = {{a, tp::Budget::count(3)}, {b, tp::Budget::ratio(0.25)}};
    const tp::SegmentLayout layout{30, segments, text};
    CHECK(pruner.kept_count(layout) == 3 + 4 + 4);
    const auto kept = to_vector(pruner.prune(features(x), layout));
    std::vector<Index> expected = prune_alone(x, a, tp::Budget::count(3));
    const auto kb = prune_alone(x, b, tp::Budget::ratio(0.25));
    expected.insert(expected.end(), kb.begin(), kb.end());
    expected.insert(expected.end(), text.begin(), text.end());
    std::sort(expected.begin(), expected.end());
    CHECK(kept == expected);

    // Image A's selection does not depend on image B's content.
    Matrix y = x;
    y.middleRows(14, 16) = random_tokens(16, 8, 12);
    const auto kept_y = to_vector(pruner.prune(features(y), layout));
    std::vector<Index> a_x, a_y;
    std::copy_if(kept.begin(), kept.end(), std::back_inserter(a_x), [](Index t) { return t >= 2 && t < 12; });
    std::copy_if(kept_y.begin(), kept_y.end(), std::back_inserter(a_y), [](Index t) { return t >= 2 && t < 12; });
    CHECK(a_x == a_y);
  }
  SECTION("video frames, each its own graph and budget, in fp16") {
    const Index frames = 4, per_frame = 9;
    const Matrix x = random_tokens(frames * per_frame, 5, 21);
    const tp::RowMatrix<Eigen::half> h = x.cast<Eigen::half>();
    const Matrix rounded = h.cast<float>();
    std::vector<std::vector<Index>> tokens;
    std::vector<tp::Segment> segments;
    for (Index f = 0; f < frames; ++f) tokens.push_back(range(f * per_frame, per_frame));
    for (Index f = 0; f < frames; ++f)
      segments.push_back({tokens[static_cast<std::size_t>(f)], tp::Budget::count(f + 1)});
    const tp::SegmentLayout layout{frames * per_frame, segments, {}};
    CHECK(pruner.kept_count(layout) == 1 + 2 + 3 + 4);
    const auto kept = to_vector(pruner.prune(features(h), layout));
    std::vector<Index> expected;
    for (Index f = 0; f < frames; ++f) {
      const auto part = prune_alone(rounded, tokens[static_cast<std::size_t>(f)], tp::Budget::count(f + 1));
      expected.insert(expected.end(), part.begin(), part.end());
    }
    CHECK(kept == expected);
  }
  SECTION("invalid layouts throw") {
    const Matrix x = random_tokens(12, 4, 5);
    auto expect_layout_error = [&](const tp::SegmentLayout& layout, const std::string& argument) {
      try {
        pruner.prune(features(x), layout);
        FAIL("layout accepted");
      } catch (const tp::Error& e) {
        INFO(e.what());
        CHECK(std::string(e.what()).find(argument) != std::string::npos);
      }
    };
    const std::vector<Index> first{0, 1, 2, 3, 4, 5}, overlapping{5, 6, 7}, unsorted{6, 8, 7}, outside{10, 11, 12},
        duplicate{6, 6, 7}, second{6, 7, 8};
    const std::vector<Index> keep_inside{3}, none{};
    const tp::Segment overlap[] = {{first, tp::Budget::count(1)}, {overlapping, tp::Budget::count(1)}};
    expect_layout_error({12, overlap, none}, "segment.tokens = 5");
    const tp::Segment bad_order[] = {{unsorted, tp::Budget::count(1)}};
    expect_layout_error({12, bad_order, none}, "segment.tokens = 7");
    const tp::Segment dup[] = {{duplicate, tp::Budget::count(1)}};
    expect_layout_error({12, dup, none}, "segment.tokens = 6");
    const tp::Segment out_of_range[] = {{outside, tp::Budget::count(1)}};
    expect_layout_error({12, out_of_range, none}, "segment.tokens = 12");
    const tp::Segment ok[] = {{first, tp::Budget::count(1)}, {second, tp::Budget::count(1)}};
    expect_layout_error({12, ok, keep_inside}, "always_keep = 3");
    expect_layout_error({13, ok, none}, "layout.n_tokens = 13");
    const tp::Segment too_many[] = {{second, tp::Budget::count(4)}};
    expect_layout_error({12, too_many, none}, "keep = 4");
  }
}

TEST_CASE("gprune: merged tokens (parallel, different norms) and zero rows agree with the float64 reference",
          "[gprune][reference]") {
  // Tokens that are positive multiples of others have equal unit vectors (bitwise for power-of-two factors,
  // where the library merges them into one node; to rounding otherwise), and several zero rows take the
  // uniform-row path. The reference knows nothing of merging.
  for (const std::uint32_t seed : {7u, 8u, 9u}) {
    Matrix x = random_tokens(90, 12, seed);
    for (Index i = 0; i < 30; i += 3) x.row(60 + i / 3) = x.row(i) * (i % 2 == 0 ? 4.0f : 0.375f);  // 2^2 and not
    for (Index i : {Index{5}, Index{17}, Index{88}}) x.row(i).setZero();
    const Reference ref = reference_gprune(x, 0.5, 0.03, 5);
    REQUIRE(ref.min_threshold_distance > 2e-6);
    tp::GPrune pruner;
    const auto kept = to_vector(pruner.prune(features(x), tp::Budget::count(30)));
    const double mass = std::accumulate(ref.norm.begin(), ref.norm.end(), 0.0);
    for (Index j = 0; j < x.rows(); ++j) {
      const double r = ref.score[static_cast<std::size_t>(j)];
      INFO("seed " << seed << " token " << j << " library " << pruner.scores()[j] << " reference " << r);
      CHECK(std::abs(pruner.scores()[static_cast<std::size_t>(j)] - r) <= 1e-4 * std::abs(r) + 1e-9 * mass);
    }
    CHECK(to_vector(pruner.degrees()) == ref.degree);
    std::vector<double> sorted = ref.score;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    if (sorted[29] - sorted[30] > 1e-3 * std::abs(sorted[29])) CHECK(kept == reference_top_k(ref.score, 30));
  }
}
