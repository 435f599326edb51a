// EVS (methods/evs.md): the hand-checkable case and its kept counts, vLLM's pruning-rate rounding, an independent
// float64 re-implementation, the file's properties (frame 0 whole, frozen frames first to go, scale invariance,
// independence from another video), exact scores, 16-bit and strided inputs, ISA levels, segments and errors.

#include "catch.hpp"
#include "isa_levels.hpp"

#include <tokenprune/pruners/evs.hpp>
#include <tokenprune/tokenprune.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace tp = tokenprune;

namespace {

using Index = tp::index_t;

std::vector<Index> to_vector(std::span<const Index> s) { return {s.begin(), s.end()}; }
std::vector<float> to_floats(std::span<const float> s) { return {s.begin(), s.end()}; }

std::vector<Index> range(Index first, Index count) {
  std::vector<Index> v(static_cast<std::size_t>(count));
  std::iota(v.begin(), v.end(), first);
  return v;
}

// A video as a dense [T H W, d] matrix with a slowly drifting, noisy content.
tp::RowMatrix<float> random_video(const tp::VideoGrid& g, Index d, unsigned seed, float change = 0.3f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  tp::RowMatrix<float> x(g.size(), d);
  for (Index p = 0; p < g.frame_size(); ++p)
    for (Index c = 0; c < d; ++c) x(p, c) = normal(rng);
  for (Index t = 1; t < g.frames; ++t)
    for (Index p = 0; p < g.frame_size(); ++p) {
      const float strength = change * uniform(rng) * uniform(rng) * 4.0f;  // widely varying activity
      for (Index c = 0; c < d; ++c)
        x(t * g.frame_size() + p, c) = x((t - 1) * g.frame_size() + p, c) + strength * normal(rng);
    }
  return x;
}

tp::PruneInputs video_inputs(const tp::TokenMatrix& features, tp::VideoGrid video) {
  tp::PruneInputs in;
  in.features = features;
  in.video = video;
  return in;
}

// ---------------------------------------------------------------------------------------------------------
// Independent float64 reference, straight from the definition (torch's form: normalize each side by
// max(|x|, eps), then the dot product), ranked by a stable descending sort.
// ---------------------------------------------------------------------------------------------------------
std::vector<double> reference_scores(const tp::RowMatrix<float>& x, const tp::VideoGrid& g) {
  const Index hw = g.frame_size();
  std::vector<double> s(static_cast<std::size_t>(x.rows()));
  for (Index i = 0; i < x.rows(); ++i) {
    if (i < hw) {
      s[static_cast<std::size_t>(i)] = 255.0;
      continue;
    }
    double na = 0.0, nb = 0.0;
    for (Index c = 0; c < x.cols(); ++c) {
      na += static_cast<double>(x(i, c)) * x(i, c);
      nb += static_cast<double>(x(i - hw, c)) * x(i - hw, c);
    }
    const double scale_a = std::max(std::sqrt(na), 1e-8), scale_b = std::max(std::sqrt(nb), 1e-8);
    double cos = 0.0;
    for (Index c = 0; c < x.cols(); ++c) cos += (x(i, c) / scale_a) * (x(i - hw, c) / scale_b);
    s[static_cast<std::size_t>(i)] = 1.0 - cos;
  }
  return s;
}

std::vector<Index> reference_keep(const std::vector<double>& s, Index k) {
  std::vector<Index> order(s.size());
  std::iota(order.begin(), order.end(), Index{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](Index a, Index b) { return s[static_cast<std::size_t>(a)] > s[static_cast<std::size_t>(b)]; });
  order.resize(static_cast<std::size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

// The file's hand-checkable video (T = 3, H = W = 2, d = 4).
tp::RowMatrix<float> hand_case() {
  tp::RowMatrix<float> x(12, 4);
  x << 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0,  //
      1, 0, 0, 0, 0, 1, 1, 0, -1, -1, 0, 0, 0, 0, 2, 0.5f,  //
      0, 0, 0, 1, 0, 1, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0;
  return x;
}

template <class F>
std::string error_argument(F&& f) {
  try {
    f();
  } catch (const tp::Error& e) {
    return e.argument();
  }
  return "<no error>";
}

using tokenprune::testing::IsaGuard;

}  // namespace

TEST_CASE("evs: the file's hand-checkable case", "[evs]") {
  const tp::RowMatrix<float> x = hand_case();
  tp::Evs evs;
  const tp::Budget budget = tp::Evs::pruning_rate(0.5);
  const tp::VideoGrid video{3, 2, 2};
  CHECK(evs.kept_count(tp::TokenShape{12, {}, video}, budget) == 6);
  const auto kept = to_vector(evs.prune(video_inputs(x, video), budget));
  CHECK(kept == std::vector<Index>{0, 1, 2, 3, 6, 8});

  const auto s = to_floats(evs.scores());
  REQUIRE(s.size() == 12);
  for (int i = 0; i < 4; ++i) CHECK(s[static_cast<std::size_t>(i)] == 255.0f);
  CHECK(s[4] == 0.0f);  // exact repeats
  CHECK(s[9] == 0.0f);
  CHECK(s[10] == 0.0f);
  CHECK(s[6] == 2.0f);  // reversed
  CHECK(s[8] == 1.0f);  // orthogonal
  CHECK(s[11] == 1.0f);  // zero vector
  CHECK(s[5] == Approx(1.0 - 1.0 / std::sqrt(2.0)).epsilon(1e-6));
  CHECK(s[5] == Approx(0.2928932).margin(1e-7));
  CHECK(s[7] == Approx(1.0 - 2.0 / std::sqrt(4.25)).epsilon(1e-6));
  CHECK(s[7] == Approx(0.0298575).margin(1e-7));
  CHECK(to_vector(evs.kept_per_frame()) == std::vector<Index>{4, 1, 1});

  // The same answer from the equivalent count; more tokens take the next ranks (11 after 8: the tie at 1).
  CHECK(to_vector(evs.prune(video_inputs(x, video), tp::Budget::count(6))) == std::vector<Index>{0, 1, 2, 3, 6, 8});
  CHECK(to_vector(evs.prune(video_inputs(x, video), tp::Budget::count(7))) == std::vector<Index>{0, 1, 2, 3, 6, 8, 11});
  CHECK(to_vector(evs.prune(video_inputs(x, video), tp::Budget::count(8))) ==
        std::vector<Index>{0, 1, 2, 3, 5, 6, 8, 11});
}

TEST_CASE("evs: kept counts from the pruning rate, a ratio and a count", "[evs]") {
  const tp::Evs evs;
  auto from_q = [&](Index t, Index h, Index w, double q) {
    return evs.kept_count(tp::TokenShape{t * h * w, {}, {t, h, w}}, tp::Evs::pruning_rate(q));
  };
  // The file's list.
  CHECK(from_q(3, 2, 2, 0.5) == 6);
  CHECK(from_q(1, 4, 4, 0.5) == 16);
  CHECK(from_q(4, 2, 2, 0.9) == 4);
  CHECK(from_q(20, 5, 10, 0.9) == 99);
  CHECK(from_q(10, 10, 10, 0.8) == 199);
  CHECK(from_q(16, 5, 6, 0.9) == 47);
  CHECK(from_q(16, 24, 24, 0.9) == 921);
  // vLLM's int(n * (1 - q)), for many n and q, against the same double arithmetic written out here.
  for (Index t : {1, 2, 3, 7, 16})
    for (Index hw : {1, 4, 30, 144})
      for (double q : {0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75, 0.8, 0.9, 0.95, 0.99}) {
        const Index n = t * hw;
        const auto expected = std::max(hw, static_cast<Index>(static_cast<double>(n) * (1.0 - q)));
        CHECK(evs.kept_count(tp::TokenShape{n, {}, {t, hw, 1}}, tp::Evs::pruning_rate(q)) == expected);
      }
  // q = 0 keeps everything; an image (T = 1) keeps everything.
  CHECK(from_q(5, 3, 4, 0.0) == 60);
  CHECK(from_q(1, 7, 9, 0.95) == 63);
  // A ratio: floor(r n) with the one-frame floor; differs from the pruning rate by one for n = 1000.
  const tp::TokenShape shape{1000, {}, {10, 10, 10}};
  CHECK(evs.kept_count(shape, tp::Budget::ratio(0.1)) == 100);
  CHECK(evs.kept_count(tp::TokenShape{1000, {}, {20, 5, 10}}, tp::Evs::pruning_rate(0.9)) == 99);
  CHECK(evs.kept_count(shape, tp::Budget::ratio(0.01)) == 100);  // floor: one frame
  CHECK(evs.kept_count(shape, tp::Budget::ratio(0.0)) == 100);
  CHECK(evs.kept_count(shape, tp::Budget::ratio(1.0)) == 1000);
  // A count: exactly k, no floor, and without the video grid too.
  CHECK(evs.kept_count(shape, tp::Budget::count(3)) == 3);
  CHECK(evs.kept_count(shape, tp::Budget::count(0)) == 0);
  CHECK(evs.kept_count(tp::TokenShape{1000}, tp::Budget::count(17)) == 17);
}

TEST_CASE("evs: a count below one frame keeps the first tokens of frame 0 in raster order", "[evs]") {
  const tp::VideoGrid g{4, 3, 5};
  const tp::RowMatrix<float> x = random_video(g, 16, 3);
  tp::Evs evs;
  for (Index k : {0, 1, 7, 15}) CHECK(to_vector(evs.prune(video_inputs(x, g), tp::Budget::count(k))) == range(0, k));
  CHECK(to_vector(evs.prune(video_inputs(x, g), tp::Budget::count(60))) == range(0, 60));
}

TEST_CASE("evs: agrees with an independent float64 re-implementation", "[evs]") {
  const std::vector<tp::VideoGrid> grids = {{2, 3, 3}, {5, 4, 6}, {8, 6, 6}, {16, 5, 6}, {3, 12, 12}, {1, 4, 4}};
  unsigned seed = 100;
  for (const tp::VideoGrid& g : grids)
    for (Index d : {1, 7, 33, 96}) {
      const tp::RowMatrix<float> x = random_video(g, d, ++seed);
      const std::vector<double> s = reference_scores(x, g);
      tp::Evs evs;
      for (double q : {0.0, 0.25, 0.5, 0.75, 0.9}) {
        const tp::Budget budget = tp::Evs::pruning_rate(q);
        const Index k = std::max(g.frame_size(), static_cast<Index>(static_cast<double>(g.size()) * (1.0 - q)));
        REQUIRE(evs.kept_count(tp::TokenShape{g.size(), {}, g}, budget) == k);
        INFO("grid " << g.frames << "x" << g.rows << "x" << g.cols << " d " << d << " q " << q);
        CHECK(to_vector(evs.prune(video_inputs(x, g), budget)) == reference_keep(s, k));
        const auto mine = evs.scores();
        for (std::size_t i = 0; i < s.size(); ++i) REQUIRE(mine[i] == Approx(s[i]).margin(2e-6));
      }
    }
}

TEST_CASE("evs: frame 0 is always kept whole", "[evs]") {
  const tp::VideoGrid g{6, 4, 5};
  // Frame 0 is the least changing frame by content: still kept.
  tp::RowMatrix<float> x = random_video(g, 24, 7, 2.0f);
  tp::Evs evs;
  for (double q : {0.0, 0.3, 0.6, 0.83, 0.9, 0.99}) {
    const auto kept = to_vector(evs.prune(video_inputs(x, g), tp::Evs::pruning_rate(q)));
    REQUIRE(kept.size() >= 20);
    CHECK(std::vector<Index>(kept.begin(), kept.begin() + 20) == range(0, 20));
    CHECK(evs.kept_per_frame()[0] == 20);
    Index total = 0;
    for (Index c : evs.kept_per_frame()) total += c;
    CHECK(total == static_cast<Index>(kept.size()));
  }
  // T (1 - q) <= 1 keeps exactly the first frame.
  CHECK(to_vector(evs.prune(video_inputs(x, g), tp::Evs::pruning_rate(0.9))) == range(0, 20));
}

TEST_CASE("evs: a frozen frame scores exactly 0 and goes first", "[evs]") {
  const tp::VideoGrid g{6, 5, 4};
  const Index hw = g.frame_size();
  for (auto frozen : {Index{1}, Index{3}, Index{5}}) {
    tp::RowMatrix<float> x = random_video(g, 40, 11 + static_cast<unsigned>(frozen));
    x.middleRows(frozen * hw, hw) = x.middleRows((frozen - 1) * hw, hw);  // an exact repeat of the frame before
    tp::Evs evs;
    const auto kept = to_vector(evs.prune(video_inputs(x, g), tp::Budget::count(g.size() - hw)));
    for (Index p = 0; p < hw; ++p) CHECK(evs.scores()[static_cast<std::size_t>(frozen * hw + p)] == 0.0f);
    std::vector<Index> expected;
    for (Index i = 0; i < g.size(); ++i)
      if (i / hw != frozen) expected.push_back(i);
    CHECK(kept == expected);
    // A budget that splits the frozen frame keeps its lower indices (the file's tie rule for s = 0).
    const auto split = to_vector(evs.prune(video_inputs(x, g), tp::Budget::count(g.size() - hw + 3)));
    std::vector<Index> with_three = expected;
    for (Index p = 0; p < 3; ++p) with_three.push_back(frozen * hw + p);
    std::sort(with_three.begin(), with_three.end());
    CHECK(split == with_three);
  }
}

TEST_CASE("evs: exact values: repeats 0, zero vectors and orthogonal pairs 1, tiny norms clamped", "[evs]") {
  const tp::VideoGrid g{3, 1, 64};
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> exponent(-20.0f, 30.0f);  // norms >= eps (below it the clamp applies)
  const Index d = 37;
  tp::RowMatrix<float> x(g.size(), d);
  for (Index p = 0; p < 64; ++p) {
    const float scale = std::exp2(exponent(rng)) * (1.0f + 0.37f * static_cast<float>(p % 5));
    for (Index c = 0; c < d; ++c) x(p, c) = scale * normal(rng);
  }
  x.middleRows(64, 64) = x.middleRows(0, 64);  // frame 1 repeats frame 0: vectors of every magnitude
  for (Index p = 0; p < 64; ++p) {
    if (p % 3 == 0) x.row(128 + p).setZero();                         // zero vector after a nonzero one
    if (p % 3 == 1) { x.row(128 + p).setZero(); x(128 + p, 0) = 1.0f; }  // orthogonal unless frame 1 has c0 = 0
    if (p % 3 == 2) x.row(128 + p) = x.row(64 + p);
  }
  // Make the orthogonal case really orthogonal: frame 1 gets a zero first component there (frame 0 too).
  for (Index p = 1; p < 64; p += 3) {
    x(p, 0) = 0.0f;
    x(64 + p, 0) = 0.0f;
  }
  tp::Evs evs;
  (void)evs.prune(video_inputs(x, g), tp::Budget::count(10));
  const auto s = evs.scores();
  for (Index p = 0; p < 64; ++p) {
    CHECK(s[static_cast<std::size_t>(64 + p)] == 0.0f);
    CHECK(s[static_cast<std::size_t>(128 + p)] == (p % 3 == 2 ? 0.0f : 1.0f));
  }

  // Norms below eps: cos = a.b / (eps eps), not 1 (the per-norm clamp).
  tp::RowMatrix<float> tiny(2, 2);
  tiny << 1e-9f, 0.0f, 1e-9f, 0.0f;
  (void)evs.prune(video_inputs(tiny, {2, 1, 1}), tp::Budget::count(1));
  const double a = static_cast<double>(1e-9f);
  CHECK(evs.scores()[1] == Approx(1.0 - a * a / (1e-8 * 1e-8)).epsilon(1e-6));
  // One side below eps: a.b / (|a| eps).
  tiny << 1e-9f, 0.0f, 3.0f, 0.0f;
  (void)evs.prune(video_inputs(tiny, {2, 1, 1}), tp::Budget::count(1));
  CHECK(evs.scores()[1] == Approx(1.0 - 3.0 * a / (3.0 * 1e-8)).epsilon(1e-6));
}

TEST_CASE("evs: scaling a token does not change its score", "[evs]") {
  const tp::VideoGrid g{5, 4, 4};
  const tp::RowMatrix<float> x = random_video(g, 29, 21);
  tp::Evs evs;
  const auto kept = to_vector(evs.prune(video_inputs(x, g), tp::Evs::pruning_rate(0.6)));
  const auto s = to_floats(evs.scores());
  tp::RowMatrix<float> scaled = x;
  std::mt19937 rng(2);
  std::uniform_int_distribution<int> power(-20, 20);
  for (Index i = 0; i < g.size(); ++i) scaled.row(i) *= std::ldexp(1.0f, power(rng));
  CHECK(to_vector(evs.prune(video_inputs(scaled, g), tp::Evs::pruning_rate(0.6))) == kept);
  CHECK(to_floats(evs.scores()) == s);  // powers of two: bit for bit
  std::uniform_real_distribution<float> factor(0.01f, 100.0f);
  for (Index i = 0; i < g.size(); ++i) scaled.row(i) = x.row(i) * factor(rng);
  CHECK(to_vector(evs.prune(video_inputs(scaled, g), tp::Evs::pruning_rate(0.6))) == kept);
  for (std::size_t i = 0; i < s.size(); ++i) CHECK(evs.scores()[i] == Approx(s[i]).margin(1e-6));
}

TEST_CASE("evs: two videos as segments: each one as if alone", "[evs]") {
  const tp::VideoGrid g1{4, 3, 4}, g2{6, 2, 5};
  const Index d = 20, n1 = g1.size(), n2 = g2.size();
  const tp::RowMatrix<float> v1 = random_video(g1, d, 31), v2 = random_video(g2, d, 32);
  tp::RowMatrix<float> both(n1 + n2, d);
  both.topRows(n1) = v1;
  both.bottomRows(n2) = v2;

  tp::Evs alone;
  const tp::Budget b1 = tp::Budget::count(tp::Evs{}.kept_count(tp::TokenShape{n1, {}, g1}, tp::Evs::pruning_rate(0.5)));
  const tp::Budget b2 = tp::Budget::count(tp::Evs{}.kept_count(tp::TokenShape{n2, {}, g2}, tp::Evs::pruning_rate(0.7)));
  const auto keep1 = to_vector(alone.prune(video_inputs(v1, g1), b1));
  const auto scores1 = to_floats(alone.scores());
  const auto keep2 = to_vector(alone.prune(video_inputs(v2, g2), b2));

  const std::vector<Index> t1 = range(0, n1), t2 = range(n1, n2);
  const std::vector<tp::Segment> segments = {{t1, b1, {}, g1}, {t2, b2, {}, g2}};
  const tp::SegmentLayout layout{n1 + n2, segments, {}};
  tp::Segmented<tp::Evs> segmented;
  segmented.reserve(n1 + n2, d);
  tp::PruneInputs in;
  in.features = both;
  std::vector<Index> expected = keep1;
  for (Index i : keep2) expected.push_back(n1 + i);
  CHECK(segmented.kept_count(layout) == static_cast<Index>(expected.size()));
  CHECK(to_vector(segmented.prune(in, layout)) == expected);
  for (Index i = 0; i < n1; ++i) CHECK(segmented.scores()[static_cast<std::size_t>(i)] == scores1[static_cast<std::size_t>(i)]);

  // Changing the second video does not change the first one's selection or scores.
  tp::RowMatrix<float> other = both;
  other.bottomRows(n2) = random_video(g2, d, 99, 3.0f);
  in.features = other;
  const auto changed = to_vector(segmented.prune(in, layout));
  CHECK(std::vector<Index>(changed.begin(), changed.begin() + static_cast<std::ptrdiff_t>(keep1.size())) == keep1);
  for (Index i = 0; i < n1; ++i) CHECK(segmented.scores()[static_cast<std::size_t>(i)] == scores1[static_cast<std::size_t>(i)]);
}

TEST_CASE("evs: fp16 and bf16 features give the fp32 answer on the widened values", "[evs]") {
  const tp::VideoGrid g{8, 6, 6};
  const Index d = 45;
  const tp::RowMatrix<float> x = random_video(g, d, 41);
  tp::RowMatrix<Eigen::half> h = x.cast<Eigen::half>();
  tp::RowMatrix<Eigen::bfloat16> b = x.cast<Eigen::bfloat16>();
  // Exact repeats in 16-bit storage too: frame 4 repeats frame 3.
  h.middleRows(4 * 36, 36) = h.middleRows(3 * 36, 36);
  b.middleRows(4 * 36, 36) = b.middleRows(3 * 36, 36);
  const tp::RowMatrix<float> hw = h.cast<float>(), bw = b.cast<float>();
  tp::Evs evs, reference;
  for (double q : {0.3, 0.75}) {
    const tp::Budget budget = tp::Evs::pruning_rate(q);
    CHECK(to_vector(evs.prune(video_inputs(h, g), budget)) == to_vector(reference.prune(video_inputs(hw, g), budget)));
    CHECK(to_floats(evs.scores()) == to_floats(reference.scores()));
    for (Index p = 0; p < 36; ++p) CHECK(evs.scores()[static_cast<std::size_t>(4 * 36 + p)] == 0.0f);
    CHECK(to_vector(evs.prune(video_inputs(b, g), budget)) == to_vector(reference.prune(video_inputs(bw, g), budget)));
    CHECK(to_floats(evs.scores()) == to_floats(reference.scores()));
    for (Index p = 0; p < 36; ++p) CHECK(evs.scores()[static_cast<std::size_t>(4 * 36 + p)] == 0.0f);
  }
}

TEST_CASE("evs: strided views", "[evs]") {
  const tp::VideoGrid g{4, 5, 3};
  const Index d = 19, stride = 27;
  const tp::RowMatrix<float> x = random_video(g, d, 51);
  tp::RowMatrix<float> wide = tp::RowMatrix<float>::Constant(g.size(), stride, std::numeric_limits<float>::quiet_NaN());
  wide.leftCols(d) = x;
  const tp::RowMatrix<Eigen::half> wide_h = wide.cast<Eigen::half>();
  tp::Evs evs, dense;
  const tp::Budget budget = tp::Evs::pruning_rate(0.55);
  const tp::TokenMatrix view(wide.data(), g.size(), d, stride);
  CHECK(to_vector(evs.prune(video_inputs(view, g), budget)) == to_vector(dense.prune(video_inputs(x, g), budget)));
  CHECK(to_floats(evs.scores()) == to_floats(dense.scores()));
  const tp::RowMatrix<float> xh = x.cast<Eigen::half>().cast<float>();
  const tp::TokenMatrix view_h(wide_h.data(), g.size(), d, stride);
  CHECK(to_vector(evs.prune(video_inputs(view_h, g), budget)) == to_vector(dense.prune(video_inputs(xh, g), budget)));
  CHECK(to_floats(evs.scores()) == to_floats(dense.scores()));
  // Eigen row block of a larger matrix.
  CHECK(to_vector(evs.prune(video_inputs(wide.leftCols(d), g), budget)) ==
        to_vector(dense.prune(video_inputs(x, g), budget)));
}

TEST_CASE("evs: bitwise-identical scores at every ISA level", "[evs]") {
  IsaGuard guard;
  const tp::VideoGrid g{6, 7, 5};
  const Index d = 70;
  const tp::RowMatrix<float> x = random_video(g, d, 61);
  const tp::RowMatrix<Eigen::half> h = x.cast<Eigen::half>();
  const tp::RowMatrix<Eigen::bfloat16> b = x.cast<Eigen::bfloat16>();
  std::vector<float> first[3];
  std::vector<Index> first_kept[3];
  bool have = false;
  for (tp::Isa isa : tp::kAllIsas) {
    if (!tp::isa_supported(isa)) continue;
    tp::set_isa(isa);
    tp::Evs evs;
    const tp::Budget budget = tp::Evs::pruning_rate(0.6);
    const tp::TokenMatrix views[3] = {tp::TokenMatrix(x), tp::TokenMatrix(h), tp::TokenMatrix(b)};
    for (int v = 0; v < 3; ++v) {
      const auto kept = to_vector(evs.prune(video_inputs(views[v], g), budget));
      const auto s = to_floats(evs.scores());
      if (!have) {
        first[v] = s;
        first_kept[v] = kept;
      } else {
        INFO("level " << tp::isa_name(isa) << " view " << v);
        CHECK(s == first[v]);
        CHECK(kept == first_kept[v]);
      }
    }
    have = true;
  }
  CHECK(have);
}

TEST_CASE("evs: reserve, then prune() keeps its buffers", "[evs]") {
  const tp::VideoGrid g{5, 6, 6};
  const Index d = 32;
  const tp::RowMatrix<float> x = random_video(g, d, 71);
  const tp::RowMatrix<Eigen::half> h = x.cast<Eigen::half>();
  tp::Evs evs;
  evs.reserve(g.size(), d);
  const auto kept = evs.prune(video_inputs(h, g), tp::Budget::count(g.size()));
  const auto* kept_data = kept.data();
  const auto* scores_data = evs.scores().data();
  const auto* frames_data = evs.kept_per_frame().data();
  const tp::VideoGrid smaller{2, 6, 6};
  (void)evs.prune(video_inputs(h.topRows(smaller.size()), smaller), tp::Budget::count(3));
  (void)evs.prune(video_inputs(x, g), tp::Evs::pruning_rate(0.5));
  const auto again = evs.prune(video_inputs(h, g), tp::Budget::count(g.size()));
  CHECK(again.data() == kept_data);
  CHECK(evs.scores().data() == scores_data);
  CHECK(evs.kept_per_frame().data() == frames_data);
  CHECK(to_vector(again) == range(0, g.size()));
  CHECK_THROWS_AS(evs.reserve(-1, 3), tp::Error);
  CHECK(error_argument([&] { evs.reserve(4, -1); }) == "dim");
}

TEST_CASE("evs: errors name the argument, and the pruner stays usable", "[evs]") {
  const tp::VideoGrid g{3, 2, 2};
  tp::RowMatrix<float> x = hand_case();
  tp::Evs evs;
  const tp::Budget half = tp::Evs::pruning_rate(0.5);
  const std::vector<Index> good{0, 1, 2, 3, 6, 8};

  // pruning_rate outside [0, 1).
  for (double q : {1.0, 1.5, -0.1, -0.0 - 1e-300, std::numeric_limits<double>::quiet_NaN(),
                   std::numeric_limits<double>::infinity()})
    CHECK(error_argument([&] { (void)tp::Evs::pruning_rate(q); }) == "pruning_rate");
  CHECK_NOTHROW(tp::Evs::pruning_rate(0.0));
  CHECK_NOTHROW(tp::Evs::pruning_rate(0.999999));

  // Missing inputs.
  tp::PruneInputs no_video;
  no_video.features = x;
  CHECK(error_argument([&] { (void)evs.prune(no_video, half); }) == "video");
  CHECK(error_argument([&] { (void)evs.prune(no_video, tp::Budget::count(2)); }) == "video");
  tp::PruneInputs no_features;
  no_features.video = g;
  CHECK(error_argument([&] { (void)evs.prune(no_features, half); }) == "features");
  CHECK(error_argument([&] { (void)evs.kept_count(tp::TokenShape{12}, half); }) == "video");

  // Disagreeing shapes and bad grids.
  CHECK(error_argument([&] { (void)evs.prune(video_inputs(x, {3, 2, 3}), half); }).find("video") == 0);
  CHECK(error_argument([&] { (void)evs.prune(video_inputs(x, {4, 3, 2}), half); }).find("video") == 0);
  CHECK(error_argument([&] { (void)evs.prune(video_inputs(x, {0, 2, 6}), half); }) == "video.frames");
  CHECK(error_argument([&] { (void)evs.prune(video_inputs(x, {12, -1, -1}), half); }) == "video.rows");
  CHECK(error_argument([&] { (void)evs.kept_count(tp::TokenShape{12, {}, {3, 2, 3}}, half); }).find("video") == 0);
  CHECK(error_argument([&] { (void)evs.kept_count(tp::TokenShape{12, {}, {3, 0, 4}}, half); }) == "video.rows");
  CHECK(error_argument([&] { (void)evs.kept_count(tp::TokenShape{12, {}, {3, 4, 0}}, half); }) == "video.cols");

  // Out-of-range budget.
  CHECK(error_argument([&] { (void)evs.prune(video_inputs(x, g), tp::Budget::count(13)); }) == "keep");
  CHECK(error_argument([&] { (void)evs.kept_count(tp::TokenShape{12, {}, g}, tp::Budget::count(13)); }) == "keep");

  // NaN / Inf: the first offending element in flat order is named, whichever position is scanned first.
  x(8, 2) = std::numeric_limits<float>::quiet_NaN();
  CHECK(error_argument([&] { (void)evs.prune(video_inputs(x, g), half); }) == "features[8,2]");
  x(3, 1) = std::numeric_limits<float>::infinity();
  CHECK(error_argument([&] { (void)evs.prune(video_inputs(x, g), half); }) == "features[3,1]");
  x(0, 3) = -std::numeric_limits<float>::infinity();
  CHECK(error_argument([&] { (void)evs.prune(video_inputs(x, g), half); }) == "features[0,3]");
  tp::RowMatrix<Eigen::half> h = hand_case().cast<Eigen::half>();
  h(11, 0) = Eigen::half(std::numeric_limits<float>::infinity());
  CHECK(error_argument([&] { (void)evs.prune(video_inputs(h, g), half); }) == "features[11,0]");
  tp::RowMatrix<Eigen::bfloat16> b = hand_case().cast<Eigen::bfloat16>();
  b(5, 3) = Eigen::bfloat16(std::numeric_limits<float>::quiet_NaN());
  CHECK(error_argument([&] { (void)evs.prune(video_inputs(b, g), half); }) == "features[5,3]");
  // Large finite values are not mistaken for Inf.
  tp::RowMatrix<float> big = hand_case() * 1e38f;
  CHECK(to_vector(evs.prune(video_inputs(big, g), half)) == good);

  // Usable after every error.
  CHECK(to_vector(evs.prune(video_inputs(hand_case(), g), half)) == good);
  CHECK(evs.scores()[6] == 2.0f);
}
