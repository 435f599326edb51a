// DART, embedding-level variant (shared/methods/dart.md, "Normative definition (embedding level, exact count)"):
// the hand-checkable case and its listed counts, an independent float64 re-implementation on random inputs, the
// properties (exact count, no duplicates, pivots kept and in rank order, ties to the lower index), the 1e-8 norm
// floor, text embeddings absent or empty, 16-bit and strided inputs, ISA levels and executors, errors.

#include "catch.hpp"
#include "isa_levels.hpp"
#include "synthetic.hpp"

#include <tokenprune/core/isa.hpp>
#include <tokenprune/pruners/dart.hpp>

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

std::vector<std::uint32_t> bits_of(std::span<const float> s) {
  std::vector<std::uint32_t> out(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) std::memcpy(&out[i], &s[i], sizeof(float));
  return out;
}

tp::PruneInputs inputs(const tp::TokenMatrix& v, const tp::TokenMatrix& u = {}) {
  tp::PruneInputs in;
  in.features = v;
  in.text_embeds = u;
  return in;
}

Matrix hand_v() {
  Matrix v(8, 3);
  v << 3, 0.2f, 0, 2.4f, 0.6f, 0.1f, 0.1f, 2, 0.3f, 0.2f, 1.5f, 1.1f, -1, 0.1f, 0.2f, 0.3f, -1.2f, 0.5f, 0.2f, 0.1f,
      -1.4f, 1, 0.9f, 0.8f;
  return v;
}
Matrix hand_u() {
  Matrix u(2, 3);
  u << 0.1f, 0, 2.2f, 0.5f, -0.4f, 0.1f;
  return u;
}

// The definition in float64, written from the method file. `margin` receives the smallest relative gap of any
// decision (pivot ranks and quota boundaries) so that a caller can skip inputs fp32 cannot resolve.
struct Reference {
  std::vector<Index> kept, pivots;
  double margin = std::numeric_limits<double>::infinity();
};
Reference reference_dart(const Matrix& v, const Matrix& u, Index k, int p_img, int p_txt) {
  const Index n = v.rows(), m = u.rows(), d = v.cols();
  auto l1 = [&](const Matrix& x, Index i) {
    double s = 0;
    for (Index j = 0; j < d; ++j) s += std::abs(double(x(i, j)));
    return s;
  };
  auto norm = [&](const Matrix& x, Index i) {
    double s = 0;
    for (Index j = 0; j < d; ++j) s += double(x(i, j)) * double(x(i, j));
    return std::sqrt(s);
  };
  Reference ref;
  auto top = [&](const Matrix& x, Index rows, Index count) {
    std::vector<Index> idx(static_cast<std::size_t>(rows));
    std::iota(idx.begin(), idx.end(), Index{0});
    std::stable_sort(idx.begin(), idx.end(), [&](Index a, Index b) { return l1(x, a) > l1(x, b); });
    for (Index r = 0; r + 1 < rows && r < count; ++r)
      ref.margin = std::min(ref.margin, (l1(x, idx[r]) - l1(x, idx[r + 1])) / l1(x, idx[r]));
    idx.resize(static_cast<std::size_t>(count));
    return idx;
  };
  const std::vector<Index> image = top(v, n, std::min<Index>(p_img, k));
  const std::vector<Index> text = top(u, m, std::min<Index>(p_txt, m));
  ref.pivots = image;
  std::vector<Index> kept = image;
  std::vector<Index> pool;
  for (Index c = 0; c < n; ++c)
    if (std::find(image.begin(), image.end(), c) == image.end()) pool.push_back(c);
  struct Pivot {
    const Matrix* x;
    Index row;
  };
  std::vector<Pivot> pivots;
  for (Index i : image) pivots.push_back({&v, i});
  for (Index j : text) pivots.push_back({&u, j});
  const auto count = static_cast<Index>(pivots.size());
  for (Index j = 0; j < count; ++j) {
    const Index rem = k - static_cast<Index>(kept.size());
    if (rem == 0 || pool.empty()) break;
    const Index q = (rem + (count - j) - 1) / (count - j);
    const Matrix& px = *pivots[j].x;
    const Index pr = pivots[j].row;
    std::vector<double> sigma(static_cast<std::size_t>(n));
    for (Index c : pool) {
      double dot = 0;
      for (Index t = 0; t < d; ++t) dot += double(px(pr, t)) * double(v(c, t));
      sigma[c] = dot / (std::max(norm(px, pr), 1e-8) * std::max(norm(v, c), 1e-8));
    }
    std::stable_sort(pool.begin(), pool.end(), [&](Index a, Index b) { return sigma[a] < sigma[b]; });
    if (q < static_cast<Index>(pool.size())) ref.margin = std::min(ref.margin, sigma[pool[q]] - sigma[pool[q - 1]]);
    kept.insert(kept.end(), pool.begin(), pool.begin() + q);
    pool.erase(pool.begin(), pool.begin() + q);
    std::sort(pool.begin(), pool.end());
  }
  std::sort(kept.begin(), kept.end());
  ref.kept = kept;
  return ref;
}

Matrix random_matrix(Index rows, Index d, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.2f, 3.0f);
  Matrix x(rows, d);
  for (Index i = 0; i < rows; ++i) {
    const float s = scale(rng);
    for (Index j = 0; j < d; ++j) x(i, j) = s * normal(rng);
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

TEST_CASE("dart: the method file's hand-checkable case and its other counts", "[dart]") {
  const Matrix v = hand_v(), u = hand_u();
  tp::Dart pruner(tp::DartConfig{1, 1});
  CHECK(to_vector(pruner.prune(inputs(v, u), tp::Budget::count(5))) == std::vector<Index>{0, 1, 2, 4, 6});
  CHECK(to_vector(pruner.pivots()) == std::vector<Index>{0});
  CHECK(to_vector(pruner.text_pivots()) == std::vector<Index>{0});
  const std::vector<double> l1{3.2, 3.1, 2.4, 2.8, 1.3, 2.0, 1.7, 2.7};
  REQUIRE(pruner.scores().size() == 8);
  for (std::size_t i = 0; i < 8; ++i) CHECK(std::abs(pruner.scores()[i] - l1[i]) <= 1e-6);
  REQUIRE(pruner.text_scores().size() == 2);
  CHECK(std::abs(pruner.text_scores()[0] - 2.3) <= 1e-6);
  CHECK(std::abs(pruner.text_scores()[1] - 1.0) <= 1e-6);
  const std::vector<std::vector<Index>> expected{
      {}, {0}, {0, 4}, {0, 4, 6}, {0, 2, 4, 6}, {0, 1, 2, 4, 6}, {0, 1, 2, 4, 5, 6}, {}, {0, 1, 2, 3, 4, 5, 6, 7}};
  for (Index k : {0, 1, 2, 3, 4, 5, 6, 8}) {
    INFO("k = " << k);
    CHECK(to_vector(pruner.prune(inputs(v, u), tp::Budget::count(k))) == expected[static_cast<std::size_t>(k)]);
    CHECK(to_vector(pruner.pivots()) == (k == 0 ? std::vector<Index>{} : std::vector<Index>{0}));
  }
  // k = 7 is not listed in the file: the float64 reference decides it.
  CHECK(to_vector(pruner.prune(inputs(v, u), tp::Budget::count(7))) == reference_dart(v, u, 7, 1, 1).kept);
  // The float64 reference reproduces the file's listed answers (a check of the reference itself).
  for (Index k : {0, 1, 2, 3, 4, 5, 6, 8}) CHECK(reference_dart(v, u, k, 1, 1).kept == expected[static_cast<std::size_t>(k)]);
}

TEST_CASE("dart: agrees with a float64 re-implementation on random inputs", "[dart]") {
  int compared = 0;
  for (std::uint32_t seed = 1; seed <= 40; ++seed) {
    const Index n = 5 + static_cast<Index>(seed * 13 % 120), d = 2 + static_cast<Index>(seed * 7 % 50);
    const Index m = static_cast<Index>(seed % 5 == 0 ? 0 : seed * 3 % 17);
    const int p_img = static_cast<int>(seed % 6), p_txt = static_cast<int>(seed % 4 == 0 ? 0 : 1 + seed % 5);
    if (p_img == 0 && (p_txt == 0 || m == 0)) continue;
    const Matrix v = seed % 3 ? random_matrix(n, d, seed) : tp::testing::image_like(n, d, seed);
    const Matrix u = random_matrix(m, d, seed + 1000);
    for (Index k : {Index{1}, n / 7, n / 3, n / 2, n - 1, n}) {
      const Reference ref = reference_dart(v, u, k, p_img, p_txt);
      INFO("seed " << seed << " n " << n << " d " << d << " m " << m << " p " << p_img << "+" << p_txt << " k " << k
                   << " margin " << ref.margin);
      tp::Dart pruner(tp::DartConfig{p_img, p_txt});
      const auto kept = to_vector(pruner.prune(inputs(v, u), tp::Budget::count(k)));
      REQUIRE(static_cast<Index>(kept.size()) == k);
      CHECK(strictly_ascending(kept));
      if (ref.margin < 1e-5) continue;
      ++compared;
      CHECK(kept == ref.kept);
      CHECK(to_vector(pruner.pivots()) == ref.pivots);
    }
  }
  CHECK(compared >= 100);
}

TEST_CASE("dart: properties", "[dart]") {
  const Matrix v = tp::testing::image_like(90, 16, 4), u = random_matrix(11, 16, 5);
  SECTION("exact count, no duplicates, pivots kept and in rank order, for every k and pivot counts") {
    for (int p_img : {0, 1, 4, 9})
      for (int p_txt : {0, 2, 4, 20}) {
        if (p_img + p_txt == 0) continue;
        tp::Dart pruner(tp::DartConfig{p_img, p_txt});
        for (Index k = 0; k <= 90; k += 7) {
          INFO("p " << p_img << "+" << p_txt << " k " << k);
          const auto kept = to_vector(pruner.prune(inputs(v, u), tp::Budget::count(k)));
          CHECK(static_cast<Index>(kept.size()) == k);
          CHECK(strictly_ascending(kept));
          CHECK(pruner.kept_count(tp::TokenShape{90}, tp::Budget::count(k)) == k);
          const auto pivots = to_vector(pruner.pivots());
          CHECK(static_cast<Index>(pivots.size()) == std::min<Index>(p_img, k));
          CHECK(static_cast<Index>(pruner.text_pivots().size()) == (k == 0 ? 0 : std::min<Index>(p_txt, 11)));
          const auto l = pruner.scores();
          for (std::size_t r = 0; r < pivots.size(); ++r) {
            CHECK(std::binary_search(kept.begin(), kept.end(), pivots[r]));
            if (r > 0) CHECK(l[pivots[r - 1]] >= l[pivots[r]]);
          }
          // Every non-pivot has an L1 norm no larger than the last pivot's.
          if (!pivots.empty())
            for (Index i = 0; i < 90; ++i)
              if (std::find(pivots.begin(), pivots.end(), i) == pivots.end()) CHECK(l[i] <= l[pivots.back()]);
        }
      }
  }
  SECTION("pivot ties go to the lower index") {
    // Tokens 2, 5 and 7 share the largest L1 norm (permuted entries).
    Matrix x = random_matrix(10, 3, 9) * 0.1f;
    x.row(2) << 1, -2, 3;
    x.row(5) << 3, 1, -2;
    x.row(7) << -2, 3, 1;
    tp::Dart pruner(tp::DartConfig{2, 0});
    pruner.prune(inputs(x), tp::Budget::count(4));
    CHECK(to_vector(pruner.pivots()) == std::vector<Index>{2, 5});
  }
  SECTION("similarity ties go to the lower index") {
    // A pivot and identical pool tokens: every quota takes the lowest indices.
    Matrix x(8, 2);
    x.row(0) << 5, 0;
    for (Index i = 1; i < 8; ++i) x.row(i) << 0, 1;
    tp::Dart pruner(tp::DartConfig{1, 0});
    CHECK(to_vector(pruner.prune(inputs(x), tp::Budget::count(4))) == std::vector<Index>{0, 1, 2, 3});
  }
  SECTION("ratio budget: floor(r n)") {
    tp::Dart pruner;
    CHECK(pruner.prune(inputs(v, u), tp::Budget::ratio(0.25)).size() == 22);
  }
  SECTION("text embeddings absent, or present with 0 rows, are the same") {
    tp::Dart pruner;
    const auto absent = to_vector(pruner.prune(inputs(v), tp::Budget::count(20)));
    CHECK(pruner.text_pivots().empty());
    const Matrix empty(0, 16);
    CHECK(to_vector(pruner.prune(inputs(v, empty), tp::Budget::count(20))) == absent);
    const Matrix empty_other_dim(0, 3);  // no rows: the width is not compared
    CHECK(to_vector(pruner.prune(inputs(v, empty_other_dim), tp::Budget::count(20))) == absent);
    CHECK(absent == reference_dart(v, empty, 20, 4, 4).kept);
  }
}

TEST_CASE("dart: the cosine floors each norm at 1e-8", "[dart]") {
  // Pivot v0; tiny token 1 points exactly away from it but its norm 1e-10 is floored: sigma = -0.01 > sigma_2.
  Matrix x(3, 2);
  x << 1, 0, -1e-10f, 0, -0.5f, 0.1f;
  tp::Dart pruner(tp::DartConfig{1, 0});
  CHECK(to_vector(pruner.prune(inputs(x), tp::Budget::count(2))) == std::vector<Index>{0, 2});
  CHECK(reference_dart(x, Matrix(0, 2), 2, 1, 0).kept == std::vector<Index>{0, 2});
  // Norms between 1e-12 and 1e-8 and below 1e-12 alike.
  x(1, 0) = -1e-13f;
  CHECK(to_vector(pruner.prune(inputs(x), tp::Budget::count(2))) == std::vector<Index>{0, 2});
  // A zero token has sigma 0: less similar than a token at cosine 0.5, more than one at -0.98.
  Matrix z(4, 2);
  z << 2, 0, 0, 0, 0.5f, 0.8660254f, -0.5f, 0.1f;
  CHECK(to_vector(pruner.prune(inputs(z), tp::Budget::count(3))) == std::vector<Index>{0, 1, 3});
}

TEST_CASE("dart: fp16/bf16 inputs and strided views", "[dart]") {
  const Matrix v = random_matrix(60, 24, 21), u = random_matrix(7, 24, 22);
  tp::Dart pruner;
  auto run = [&](const tp::TokenMatrix& vv, const tp::TokenMatrix& uu) {
    const auto kept = to_vector(pruner.prune(inputs(vv, uu), tp::Budget::count(17)));
    return std::make_tuple(kept, to_vector(pruner.pivots()), to_vector(pruner.text_pivots()), bits_of(pruner.scores()),
                           bits_of(pruner.text_scores()));
  };
  SECTION("16-bit inputs equal the fp32 run on their widened values (mixed types too)") {
    const tp::RowMatrix<Eigen::half> vh = v.cast<Eigen::half>(), uh = u.cast<Eigen::half>();
    const tp::RowMatrix<Eigen::bfloat16> vb = v.cast<Eigen::bfloat16>(), ub = u.cast<Eigen::bfloat16>();
    const Matrix vhw = vh.cast<float>(), uhw = uh.cast<float>(), vbw = vb.cast<float>(), ubw = ub.cast<float>();
    CHECK(run(vh, uh) == run(vhw, uhw));
    CHECK(run(vb, ub) == run(vbw, ubw));
    CHECK(run(vh, ub) == run(vhw, ubw));
  }
  SECTION("row strides larger than dim") {
    Matrix wide_v = Matrix::Constant(60, 31, 1e30f), wide_u = Matrix::Constant(7, 40, -1e30f);
    wide_v.leftCols(24) = v;
    wide_u.rightCols(24) = u;
    CHECK(run(tp::TokenMatrix(wide_v.data(), 60, 24, 31), tp::TokenMatrix(wide_u.data() + 16, 7, 24, 40)) == run(v, u));
  }
}

TEST_CASE("dart: bitwise identical at every ISA level and with any executor", "[dart]") {
  const Matrix v = tp::testing::image_like(333, 300, 31), u = random_matrix(9, 300, 32);
  IsaGuard guard;
  std::vector<Index> kept0;
  std::vector<std::uint32_t> scores0;
  bool first = true;
  for (tp::Isa isa : tp::testing::supported_levels()) {
    INFO("level " << tp::isa_name(isa));
    tp::set_isa(isa);
    for (bool sequential : {false, true}) {
      tp::Dart pruner;
      if (sequential) pruner.set_executor(tp::Executor::sequential());
      const auto kept = to_vector(pruner.prune(inputs(v, u), tp::Budget::count(64)));
      if (first) {
        kept0 = kept;
        scores0 = bits_of(pruner.scores());
        first = false;
        continue;
      }
      CHECK(kept == kept0);
      CHECK(bits_of(pruner.scores()) == scores0);
    }
  }
}

TEST_CASE("dart: reserve keeps the buffers in place", "[dart]") {
  tp::Dart pruner;
  pruner.reserve(200, 32, 16);
  const Matrix big = random_matrix(200, 32, 1), small = random_matrix(40, 8, 2);
  const Matrix ub = random_matrix(16, 32, 3), us = random_matrix(3, 8, 4);
  const auto kept = pruner.prune(inputs(big, ub), tp::Budget::count(30));
  const Index* kept_data = kept.data();
  const float* scores = pruner.scores().data();
  const Index* pivots = pruner.pivots().data();
  for (int pass = 0; pass < 3; ++pass) {
    const auto again = pass % 2 ? pruner.prune(inputs(big, ub), tp::Budget::count(200))
                                : pruner.prune(inputs(small, us), tp::Budget::count(11));
    CHECK(again.data() == kept_data);
    CHECK(pruner.scores().data() == scores);
    CHECK(pruner.pivots().data() == pivots);
  }
  CHECK_THROWS_AS(pruner.reserve(-1, 3), tp::Error);
  CHECK_THROWS_AS(pruner.reserve(3, -1), tp::Error);
  CHECK_THROWS_AS(pruner.reserve(3, 3, -1), tp::Error);
}

TEST_CASE("dart: errors name the argument, and the pruner stays usable", "[dart]") {
  const Matrix v = hand_v(), u = hand_u();
  auto config_error = [](tp::DartConfig config) -> std::string {
    try {
      tp::Dart pruner(config);
    } catch (const tp::Error& e) {
      return e.argument();
    }
    return "no error";
  };
  CHECK(config_error({-1, 4}) == "pivot_image");
  CHECK(config_error({4, -2}) == "pivot_text");
  CHECK(config_error({0, 0}) == "pivot_image+pivot_text");
  CHECK(config_error({0, 3}) == "no error");

  tp::Dart pruner(tp::DartConfig{1, 1});
  auto argument_of = [&](tp::Dart& p, const tp::PruneInputs& in, tp::Budget budget) -> std::string {
    try {
      p.prune(in, budget);
    } catch (const tp::Error& e) {
      return e.argument();
    }
    return "no error";
  };
  CHECK(argument_of(pruner, tp::PruneInputs{}, tp::Budget::count(1)) == "features");
  tp::PruneInputs text_only;
  text_only.text_embeds = u;
  CHECK(argument_of(pruner, text_only, tp::Budget::count(1)) == "features");  // text alone is not enough
  CHECK(argument_of(pruner, inputs(v, u), tp::Budget::count(9)) == "keep");
  const Matrix u_wrong(2, 4);
  CHECK(argument_of(pruner, inputs(v, u_wrong), tp::Budget::count(3)) == "text_embeds.dim");
  Matrix bad_v = v;
  bad_v(6, 1) = std::numeric_limits<float>::infinity();
  CHECK(argument_of(pruner, inputs(bad_v, u), tp::Budget::count(3)) == "features[6,1]");
  CHECK(argument_of(pruner, inputs(bad_v, u), tp::Budget::count(0)) == "features[6,1]");  // even with k = 0
  Matrix bad_u = u;
  bad_u(1, 2) = std::numeric_limits<float>::quiet_NaN();
  CHECK(argument_of(pruner, inputs(v, bad_u), tp::Budget::count(3)) == "text_embeds[1,2]");
  const tp::RowMatrix<Eigen::bfloat16> bad_ub = bad_u.cast<Eigen::bfloat16>();
  CHECK(argument_of(pruner, inputs(v, bad_ub), tp::Budget::count(3)) == "text_embeds[1,2]");
  tp::PruneInputs disagree = inputs(v, u);
  const std::vector<float> relevance(3, 1.0f);
  disagree.relevance = relevance;
  CHECK(argument_of(pruner, disagree, tp::Budget::count(3)) == "relevance.size");
  // No pivot at all: pivot_image = 0 and no text rows.
  tp::Dart text_pivots_only(tp::DartConfig{0, 2});
  CHECK(argument_of(text_pivots_only, inputs(v), tp::Budget::count(3)) == "text_embeds");
  CHECK(argument_of(text_pivots_only, inputs(v, Matrix(0, 3)), tp::Budget::count(3)) == "text_embeds");
  CHECK(argument_of(text_pivots_only, inputs(v), tp::Budget::count(0)) == "no error");  // nothing to keep
  CHECK(text_pivots_only.prune(inputs(v, u), tp::Budget::count(3)).size() == 3);
  // Usable afterwards.
  CHECK(to_vector(pruner.prune(inputs(v, u), tp::Budget::count(5))) == std::vector<Index>{0, 1, 2, 4, 6});
}
