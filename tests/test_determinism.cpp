// Answers that must not depend on how they were computed: dense vs sparse graph storage, OpenMP thread count,
// repeated calls, the position of exact duplicates; and SPEC 2.2's corner cases that exercise the definition
// itself (all-identical tokens, norms below the 1e-12 floor, a cosine exactly at the threshold).

#include "catch.hpp"
#include "synthetic.hpp"

#include <tokenprune/tokenprune.hpp>

#include <random>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

using namespace tokenprune;

namespace {

using tokenprune::testing::image_like;

struct Outcome {
  std::vector<index_t> kept;
  std::vector<float> scores;
};

Outcome run(GPrune& pruner, const RowMatrix<float>& x, index_t keep) {
  const auto kept = pruner.prune(PruneInputs{.features = x}, Budget::count(keep));
  return {{kept.begin(), kept.end()}, {pruner.scores().begin(), pruner.scores().end()}};
}

}  // namespace

TEST_CASE("determinism: dense and sparse storage give bitwise equal scores", "[gprune][determinism]") {
  const index_t n = GENERATE(1, 5, 255, 256, 257, 600);
  RowMatrix<float> x = image_like(n, 24, static_cast<unsigned>(n));
  for (index_t i = 0; i + 7 < n; i += 9) x.row(i + 7) = x.row(i);  // duplicates too
  GPrune dense, sparse(GPruneConfig{.max_dense_tokens = 0});
  const Outcome a = run(dense, x, n / 3);
  const Outcome b = run(sparse, x, n / 3);
  CHECK(sparse.sparse_edges() > 0);
  CHECK(a.kept == b.kept);
  CHECK(a.scores == b.scores);
}

TEST_CASE("determinism: a dense graph (whole dense rows) and the sparse path agree bit for bit", "[gprune][determinism]") {
  // Tokens around one direction: nearly every pair is an edge, more than the compressed rows' budget of 64 per
  // token, so the dense path keeps whole dense rows; the sparse path must still agree exactly.
  std::mt19937 rng(17);
  std::normal_distribution<float> normal;
  const index_t n = 400, d = 16;
  RowMatrix<float> x(n, d);
  for (index_t i = 0; i < n; ++i)
    for (index_t c = 0; c < d; ++c) x(i, c) = 1.0f + 0.15f * normal(rng);
  GPrune dense, sparse(GPruneConfig{.max_dense_tokens = 0});
  const Outcome a = run(dense, x, 100);
  const Outcome b = run(sparse, x, 100);
  CHECK(sparse.sparse_edges() > static_cast<std::size_t>(64 * n));  // so the dense path used dense rows
  CHECK(a.kept == b.kept);
  CHECK(a.scores == b.scores);
}

TEST_CASE("determinism: repeated calls and reused instances give the same answer", "[gprune][determinism]") {
  const RowMatrix<float> big = image_like(700, 16, 1), small = image_like(90, 16, 2);
  GPrune pruner;
  const Outcome first = run(pruner, big, 100);
  run(pruner, small, 10);  // a different shape in between must leave nothing behind
  const Outcome again = run(pruner, big, 100);
  CHECK(first.kept == again.kept);
  CHECK(first.scores == again.scores);
}

#if defined(_OPENMP)
TEST_CASE("determinism: OpenMP thread count does not change scores", "[gprune][determinism][threads]") {
  const RowMatrix<float> x = image_like(1100, 40, 3);
  const int saved = omp_get_max_threads();
  std::vector<Outcome> outcomes;
  for (int threads : {1, 2, 4}) {
    omp_set_num_threads(threads);
    GPrune pruner;
    pruner.reserve(1100, 40);
    outcomes.push_back(run(pruner, x, 300));
  }
  omp_set_num_threads(saved);
  CHECK(outcomes[0].kept == outcomes[1].kept);
  CHECK(outcomes[0].kept == outcomes[2].kept);
  CHECK(outcomes[0].scores == outcomes[1].scores);
  CHECK(outcomes[0].scores == outcomes[2].scores);
}
#endif

TEST_CASE("determinism: all-identical tokens tie, and ties go to the lower index", "[gprune][corners]") {
  const index_t n = GENERATE(1, 2, 7, 300);
  const index_t d = GENERATE(1, 3, 64);
  RowMatrix<float> x(n, d);
  std::mt19937 rng(static_cast<unsigned>(n * 100 + d));
  std::normal_distribution<float> normal;
  Eigen::RowVectorXf token(d);
  for (auto& v : token) v = normal(rng);
  for (index_t i = 0; i < n; ++i) x.row(i) = token;
  GPrune pruner;
  const index_t keep = (n + 1) / 2;
  const Outcome out = run(pruner, x, keep);
  for (index_t i = 0; i < keep; ++i) CHECK(out.kept[static_cast<std::size_t>(i)] == i);
  for (float s : out.scores) CHECK(s == out.scores[0]);
  // Every token is everyone's neighbour; the mass n * |x| is shared evenly: score = |x| / n.
  for (index_t i = 0; i < n; ++i) CHECK(pruner.degrees()[static_cast<std::size_t>(i)] == n);
  CHECK(out.scores[0] == Approx(token.norm() / static_cast<float>(n)).epsilon(1e-5));
}

TEST_CASE("determinism: exact duplicates score equal wherever they sit", "[gprune][corners]") {
  RowMatrix<float> x = image_like(400, 32, 9);
  for (index_t i = 0; i < 100; ++i) x.row(300 + i) = x.row(3 * i);
  x.row(299) = -0.0f * x.row(299);  // a zero token with negative zeros equals one with positive zeros
  x.row(298).setZero();
  GPrune pruner;
  run(pruner, x, 50);
  for (index_t i = 0; i < 100; ++i) CHECK(pruner.scores()[static_cast<std::size_t>(300 + i)] == pruner.scores()[static_cast<std::size_t>(3 * i)]);
  CHECK(pruner.scores()[298] == 0.0f);
  CHECK(pruner.scores()[299] == 0.0f);
  CHECK(pruner.degrees()[298] == 400);
}

TEST_CASE("determinism: tokens below the 1e-12 norm floor follow the definition", "[gprune][corners]") {
  // u = x / max(|x|, 1e-12): a token of norm 1e-13 has |u| = 0.1, so s_ii = 0.01 < tau: no neighbour at all,
  // a uniform row (degree n), and nobody links to it. A token of norm 1e-11 is an ordinary unit vector.
  RowMatrix<float> x(4, 2);
  x << 1e-13f, 0.0f, 1e-11f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f;
  GPrune pruner;
  run(pruner, x, 2);
  CHECK(pruner.degrees()[0] == 4);
  CHECK(pruner.degrees()[1] == 2);  // itself and [1, 1] (cosine 0.707 >= 0.5)
  CHECK(pruner.degrees()[2] == 2);
  CHECK(pruner.degrees()[3] == 3);
}

TEST_CASE("determinism: large and tiny norms stay finite", "[gprune][corners]") {
  RowMatrix<float> x = image_like(64, 8, 4);
  x.row(0) *= 1e29f;
  x.row(1) *= 1e-30f;
  GPrune pruner;
  const Outcome out = run(pruner, x, 8);
  for (float s : out.scores) CHECK(std::isfinite(s));
  CHECK(out.kept.front() == 0);  // the huge token dominates
}

TEST_CASE("determinism: fp16 and bf16 encodings of Inf and NaN are rejected by element", "[gprune][corners][errors]") {
  const float specials[] = {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN()};
  for (float special : specials) {
    std::vector<Eigen::half> half(12, Eigen::half(0.5f));
    std::vector<Eigen::bfloat16> brain(12, Eigen::bfloat16(0.5f));
    half[7] = Eigen::half(special);  // token 2, feature 1 of a 4 x 3 matrix
    brain[7] = Eigen::bfloat16(special);
    for (const TokenMatrix& x : {TokenMatrix(half.data(), 4, 3), TokenMatrix(brain.data(), 4, 3)}) {
      GPrune pruner;
      try {
        pruner.prune(PruneInputs{.features = x}, Budget::count(1));
        FAIL("a non-finite 16-bit value was accepted");
      } catch (const Error& e) {
        CHECK(e.argument() == "features[2,1]");
      }
    }
  }
}
