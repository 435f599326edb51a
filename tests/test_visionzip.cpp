// VisionZip (methods/visionzip.md): the file's hand example, the budget split, an independent float64
// re-implementation on random inputs, C = 0 and C = m, zero and tiny key rows, averaged key heads, fp16/bf16 and
// strided inputs, the engine-buffer overload, every error path, ISA levels, and the Segmented refusal.

#include "catch.hpp"
#include "isa_levels.hpp"

#include <tokenprune/tokenprune.hpp>
#include <tokenprune/pruners/visionzip.hpp>

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

// One image: [CLS] row [heads, n], keys [1 + n, kw], hidden states [1 + n, d], dense fp32.
struct Image {
  Index heads = 1, n = 0, kw = 0, d = 0;
  std::vector<float> cls, keys, hidden;
  [[nodiscard]] tp::PruneInputs inputs() const {
    tp::PruneInputs in;
    in.cls_attention = tp::TokenMatrix(cls.data(), heads, n);
    in.keys = tp::TokenMatrix(keys.data(), n + 1, kw);
    in.hidden_states = tp::TokenMatrix(hidden.data(), n + 1, d);
    return in;
  }
};

// The file's hand-checkable example: n = 8, one head, keys [9, 2], X[i] = [i, 10 - i].
Image hand_example() {
  Image im;
  im.heads = 1;
  im.n = 8;
  im.kw = 2;
  im.d = 2;
  im.cls = {0.02f, 0.30f, 0.05f, 0.08f, 0.01f, 0.25f, 0.04f, 0.03f};
  im.keys = {0, 1, 1, 0, 0.5f, 0.5f, 0.9f, 0.2f, 0.1f, 1, 0.2f, 1, 1, 1, 1, 0.1f, 0.6f, 0.8f};
  for (Index i = 0; i <= 8; ++i) {
    im.hidden.push_back(static_cast<float>(i));
    im.hidden.push_back(static_cast<float>(10 - i));
  }
  return im;
}

Image random_image(Index heads, Index n, Index kw, Index d, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  Image im;
  im.heads = heads;
  im.n = n;
  im.kw = kw;
  im.d = d;
  im.cls.resize(static_cast<std::size_t>(heads * n));
  for (auto& v : im.cls) v = uniform(rng) / static_cast<float>(n);
  im.keys.resize(static_cast<std::size_t>((n + 1) * kw));
  // Keys clustered around a few directions (like image regions), so assignments are not uniform.
  std::vector<std::vector<float>> centres(5, std::vector<float>(static_cast<std::size_t>(kw)));
  for (auto& c : centres)
    for (auto& v : c) v = normal(rng);
  for (Index i = 0; i <= n; ++i)
    for (Index e = 0; e < kw; ++e)
      im.keys[static_cast<std::size_t>(i * kw + e)] =
          centres[static_cast<std::size_t>(i % 5)][static_cast<std::size_t>(e)] + 0.5f * normal(rng);
  im.hidden.resize(static_cast<std::size_t>((n + 1) * d));
  for (auto& v : im.hidden) v = 3.0f * normal(rng);
  return im;
}

// ---------------------------------------------------------------------------------------------------------
// Independent float64 reference, written from the method file.
// ---------------------------------------------------------------------------------------------------------
struct Reference {
  std::vector<Index> keep, targets;
  std::vector<std::vector<double>> merged;
  double topk_gap = std::numeric_limits<double>::infinity();    // score gap at the top-k boundary
  double assign_gap = std::numeric_limits<double>::infinity();  // smallest best - second-best cosine (relative)
};

Reference reference(const Image& im, Index dominant, Index contextual, Index key_heads) {
  const Index n = im.n, dk = im.kw / key_heads;
  Reference r;
  std::vector<double> s(static_cast<std::size_t>(n), 0.0);
  for (Index p = 0; p < n; ++p)
    for (Index h = 0; h < im.heads; ++h) s[static_cast<std::size_t>(p)] += im.cls[static_cast<std::size_t>(h * n + p)];
  std::vector<Index> by_score(static_cast<std::size_t>(n));
  std::iota(by_score.begin(), by_score.end(), Index{0});
  std::stable_sort(by_score.begin(), by_score.end(), [&](Index a, Index b) { return s[a] > s[b]; });
  r.keep.push_back(0);
  for (Index i = 0; i < dominant - 1; ++i) r.keep.push_back(by_score[static_cast<std::size_t>(i)] + 1);
  if (dominant - 1 > 0 && dominant - 1 < n)
    r.topk_gap = s[by_score[dominant - 2]] - s[by_score[dominant - 1]];
  std::sort(r.keep.begin(), r.keep.end());
  std::vector<Index> q;
  for (Index row = 1; row <= n; ++row)
    if (!std::binary_search(r.keep.begin(), r.keep.end(), row)) q.push_back(row);
  const auto m = static_cast<Index>(q.size());
  if (contextual == 0) return r;
  const Index step = std::max<Index>(1, m / contextual);
  for (Index k = 0; k < contextual; ++k) r.targets.push_back(q[static_cast<std::size_t>(k * step)]);
  auto unit = [&](Index row) {
    std::vector<double> u(static_cast<std::size_t>(dk), 0.0);
    for (Index h = 0; h < key_heads; ++h)
      for (Index e = 0; e < dk; ++e) u[e] += im.keys[static_cast<std::size_t>(row * im.kw + h * dk + e)];
    double norm = 0;
    for (double& v : u) {
      v /= static_cast<double>(key_heads);
      norm += v * v;
    }
    norm = std::sqrt(norm);
    for (double& v : u) v = norm > 0 ? v / norm : 0.0;
    return u;
  };
  std::vector<std::vector<double>> sums(static_cast<std::size_t>(contextual), std::vector<double>(static_cast<std::size_t>(im.d), 0.0));
  std::vector<Index> counts(static_cast<std::size_t>(contextual), 0);
  for (Index j : q) {
    if (std::find(r.targets.begin(), r.targets.end(), j) != r.targets.end()) continue;
    const auto uj = unit(j);
    std::vector<double> cosines;
    for (Index t : r.targets) {
      const auto ut = unit(t);
      double c = 0;
      for (Index e = 0; e < dk; ++e) c += uj[e] * ut[e];
      cosines.push_back(c);
    }
    const auto best = static_cast<Index>(std::max_element(cosines.begin(), cosines.end()) - cosines.begin());
    if (cosines.size() > 1) {
      auto sorted = cosines;
      std::sort(sorted.rbegin(), sorted.rend());
      r.assign_gap = std::min(r.assign_gap, (sorted[0] - sorted[1]) / std::max({std::abs(sorted[0]), std::abs(sorted[1]), 0.01}));
    }
    ++counts[best];
    for (Index e = 0; e < im.d; ++e) sums[best][e] += im.hidden[static_cast<std::size_t>(j * im.d + e)];
  }
  for (Index k = 0; k < contextual; ++k) {
    std::vector<double> c(static_cast<std::size_t>(im.d));
    for (Index e = 0; e < im.d; ++e)
      c[e] = im.hidden[static_cast<std::size_t>(r.targets[k] * im.d + e)] +
             sums[k][e] / static_cast<double>(std::max<Index>(1, counts[k]));
    r.merged.push_back(c);
  }
  return r;
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

std::vector<float> merged_values(const tp::VisionZip& vz) {
  const auto m = vz.merged();
  std::vector<float> out;
  for (Index r = 0; r < m.rows(); ++r)
    for (Index c = 0; c < m.cols(); ++c) out.push_back(m(r, c));
  return out;
}

using tokenprune::testing::IsaGuard;

}  // namespace

TEST_CASE("visionzip: the method file's hand example", "[visionzip]") {
  const Image im = hand_example();
  tp::VisionZip vz(tp::VisionZipConfig{2, 1});
  const auto budget = tp::Budget::count(5);  // D + C = 3 + 2
  CHECK(vz.kept_count({8}, budget) == 3);
  CHECK(vz.merged_count({8}, budget) == 2);
  CHECK(to_vector(vz.prune(im.inputs(), budget)) == std::vector<Index>{0, 2, 6});
  CHECK(to_vector(vz.targets()) == std::vector<Index>{1, 5});
  // Patches 1 and 5 (rows 2, 6) are dominant; rows 3, 7 join target 1 (k = 0), rows 4, 8 target 5 (k = 1).
  CHECK(to_vector(vz.assignment()) == std::vector<Index>{0, -1, 0, 1, 1, -1, 0, 1});
  const auto merged = vz.merged();
  REQUIRE(merged.rows() == 2);
  REQUIRE(merged.cols() == 2);
  CHECK(merged(0, 0) == 6.0f);
  CHECK(merged(0, 1) == 14.0f);
  CHECK(merged(1, 0) == 11.0f);
  CHECK(merged(1, 1) == 9.0f);
  // scores(): the head sum of the [CLS] row (one head: the row itself).
  REQUIRE(vz.scores().size() == 8);
  for (std::size_t p = 0; p < 8; ++p) CHECK(vz.scores()[p] == im.cls[p]);
}

TEST_CASE("visionzip: the budget is the total output count, split 27:5 when contextual is -1", "[visionzip]") {
  tp::VisionZip vz;
  const tp::TokenShape shape{576};
  struct Split {
    Index total, dominant, contextual;
  };
  for (const Split s : {Split{64, 54, 10}, Split{128, 108, 20}, Split{192, 162, 30}, Split{160, 135, 25}, Split{2, 1, 1},
                        Split{8, 7, 1}, Split{577, 487, 90}}) {
    CAPTURE(s.total);
    CHECK(vz.kept_count(shape, tp::Budget::count(s.total)) == s.dominant);
    CHECK(vz.merged_count(shape, tp::Budget::count(s.total)) == s.contextual);
  }
  // A ratio counts patches only: K = floor(0.25 * 576) = 144, C = floor(720 / 32) = 22.
  CHECK(vz.kept_count(shape, tp::Budget::ratio(0.25)) == 122);
  CHECK(vz.merged_count(shape, tp::Budget::ratio(0.25)) == 22);
  // Explicit C: D = K - C; C = 0 with K = n + 1 keeps every row.
  tp::VisionZip explicit_c(tp::VisionZipConfig{0, 1});
  CHECK(explicit_c.kept_count(shape, tp::Budget::count(577)) == 577);
  CHECK(explicit_c.merged_count(shape, tp::Budget::count(577)) == 0);
  tp::VisionZip ten(tp::VisionZipConfig{10, 1});
  CHECK(ten.kept_count(shape, tp::Budget::count(64)) == 54);
}

TEST_CASE("visionzip: matches an independent float64 re-implementation on random inputs", "[visionzip]") {
  int compared = 0;
  for (std::uint32_t seed = 1; seed <= 24; ++seed) {
    const Index heads = 1 + seed % 4, n = 16 + 23 * (seed % 7), key_heads = 1 + seed % 3, dk = 4 + 4 * (seed % 4);
    const Index d = 8 + 8 * (seed % 5);
    const Image im = random_image(heads, n, key_heads * dk, d, seed);
    const Index total = 2 + static_cast<Index>(seed * 7) % (n - 1);
    tp::VisionZip vz(tp::VisionZipConfig{-1, key_heads});
    const Index dominant = vz.kept_count({n}, tp::Budget::count(total)), contextual = vz.merged_count({n}, tp::Budget::count(total));
    CHECK(dominant + contextual == total);
    const Reference ref = reference(im, dominant, contextual, key_heads);
    const auto keep = to_vector(vz.prune(im.inputs(), tp::Budget::count(total)));
    // The scores are the double head sums rounded once.
    for (Index p = 0; p < n; ++p) {
      double s = 0;
      for (Index h = 0; h < heads; ++h) s += im.cls[static_cast<std::size_t>(h * n + p)];
      CHECK(vz.scores()[static_cast<std::size_t>(p)] == static_cast<float>(s));
    }
    if (ref.topk_gap < 1e-6 || ref.assign_gap < 1e-5) continue;  // a decision below fp32 resolution
    ++compared;
    CAPTURE(seed, n, total, dominant, contextual);
    CHECK(keep == ref.keep);
    CHECK(to_vector(vz.targets()) == ref.targets);
    const auto merged = vz.merged();
    REQUIRE(merged.rows() == contextual);
    double max_abs = 0;
    for (float v : im.hidden) max_abs = std::max(max_abs, static_cast<double>(std::abs(v)));
    for (Index k = 0; k < contextual; ++k)
      for (Index e = 0; e < d; ++e) CHECK(std::abs(merged(k, e) - ref.merged[k][e]) <= 1e-6 * max_abs + 1e-6 * std::abs(ref.merged[k][e]));
  }
  CHECK(compared >= 20);
}

TEST_CASE("visionzip: C = 0 keeps the dominant rows only; C = m passes every remaining patch through", "[visionzip]") {
  const Image im = hand_example();
  tp::VisionZip none(tp::VisionZipConfig{0, 1});
  CHECK(to_vector(none.prune(im.inputs(), tp::Budget::count(3))) == std::vector<Index>{0, 2, 6});
  CHECK(none.targets().empty());
  CHECK(none.merged().rows() == 0);
  CHECK(to_vector(none.assignment()) == std::vector<Index>{0, -1, 0, 0, 0, -1, 0, 0});

  // D = 3 leaves m = 6: C = 6 makes every one a target with no member, so each merged row is X[t] itself.
  tp::VisionZip all(tp::VisionZipConfig{6, 1});
  CHECK(to_vector(all.prune(im.inputs(), tp::Budget::count(9))) == std::vector<Index>{0, 2, 6});
  CHECK(to_vector(all.targets()) == std::vector<Index>{1, 3, 4, 5, 7, 8});
  const auto merged = all.merged();
  REQUIRE(merged.rows() == 6);
  for (Index k = 0; k < 6; ++k) {
    const Index t = all.targets()[static_cast<std::size_t>(k)];
    CHECK(merged(k, 0) == static_cast<float>(t));
    CHECK(merged(k, 1) == static_cast<float>(10 - t));
  }

  // D = 1 (only the [CLS]) and C = 1: step = m, one target Q[0] = row 1 with every other patch as member.
  tp::VisionZip one(tp::VisionZipConfig{1, 1});
  CHECK(to_vector(one.prune(im.inputs(), tp::Budget::count(2))) == std::vector<Index>{0});
  CHECK(to_vector(one.targets()) == std::vector<Index>{1});
  // [1, 9] + mean of rows 2..8 = [1, 9] + [5, 5].
  CHECK(one.merged()(0, 0) == 6.0f);
  CHECK(one.merged()(0, 1) == 14.0f);

  // D = n + 1: every row kept, C = 0.
  tp::VisionZip every(tp::VisionZipConfig{0, 1});
  CHECK(to_vector(every.prune(im.inputs(), tp::Budget::count(9))) == std::vector<Index>{0, 1, 2, 3, 4, 5, 6, 7, 8});
}

TEST_CASE("visionzip: targets are spaced by position in Q, the last run is m mod C longer", "[visionzip]") {
  // n = 11, D = 1: Q = rows 1..11, m = 11, C = 3, step = 3: targets Q[0], Q[3], Q[6] = rows 1, 4, 7.
  Image im = random_image(1, 11, 4, 3, 7);
  tp::VisionZip vz(tp::VisionZipConfig{3, 1});
  vz.prune(im.inputs(), tp::Budget::count(4));
  CHECK(to_vector(vz.targets()) == std::vector<Index>{1, 4, 7});
}

TEST_CASE("visionzip: zero key rows have similarity 0 to every target; no epsilon for tiny keys", "[visionzip]") {
  Image im = hand_example();
  // Target 5 (k = 1) gets a zero key; row 8 a key opposite to target 1's: its cosines are -0.89 and 0, so it
  // joins target 5; rows 3, 4, 7 (positive cosine with [1, 0]) join target 1.
  im.keys[5 * 2 + 0] = 0.0f;
  im.keys[5 * 2 + 1] = 0.0f;
  im.keys[8 * 2 + 0] = -1.0f;
  im.keys[8 * 2 + 1] = 0.5f;
  tp::VisionZip vz(tp::VisionZipConfig{2, 1});
  CHECK(to_vector(vz.prune(im.inputs(), tp::Budget::count(5))) == std::vector<Index>{0, 2, 6});
  CHECK(to_vector(vz.assignment()) == std::vector<Index>{0, -1, 0, 0, 1, -1, 0, 1});
  CHECK(vz.merged()(0, 0) == static_cast<float>(1.0 + 14.0 / 3.0));
  CHECK(vz.merged()(0, 1) == static_cast<float>(9.0 + 16.0 / 3.0));
  CHECK(vz.merged()(1, 0) == 13.0f);
  CHECK(vz.merged()(1, 1) == 7.0f);

  // A zero key on a member: cosine 0 with both targets, a tie, so the lowest k.
  Image member = hand_example();
  member.keys[4 * 2 + 0] = 0.0f;  // row 4 belonged to target 5 (k = 1)
  member.keys[4 * 2 + 1] = 0.0f;
  vz.prune(member.inputs(), tp::Budget::count(5));
  CHECK(vz.assignment()[3] == 0);

  // Keys scaled by 1e-20 (norms far below any epsilon) give the hand example's answer: no epsilon.
  Image tiny = hand_example();
  for (float& v : tiny.keys) v *= 1e-20f;
  vz.prune(tiny.inputs(), tp::Budget::count(5));
  CHECK(to_vector(vz.assignment()) == std::vector<Index>{0, -1, 0, 1, 1, -1, 0, 1});
  CHECK(vz.merged()(0, 0) == 6.0f);
  CHECK(vz.merged()(1, 0) == 11.0f);
}

TEST_CASE("visionzip: key_heads averages the column blocks of fused keys", "[visionzip]") {
  const Image im = hand_example();
  // Blocks K + delta and K - delta (dyadic deltas: the double mean is exactly K).
  Image fused = im;
  fused.kw = 4;
  fused.keys.clear();
  const float deltas[] = {0.25f, -0.5f};
  for (Index i = 0; i <= 8; ++i) {
    for (int e = 0; e < 2; ++e) fused.keys.push_back(im.keys[static_cast<std::size_t>(i * 2 + e)] + deltas[e]);
    for (int e = 0; e < 2; ++e) fused.keys.push_back(im.keys[static_cast<std::size_t>(i * 2 + e)] - deltas[e]);
  }
  tp::VisionZip plain(tp::VisionZipConfig{2, 1}), two(tp::VisionZipConfig{2, 2});
  const auto a = to_vector(plain.prune(im.inputs(), tp::Budget::count(5)));
  const auto b = to_vector(two.prune(fused.inputs(), tp::Budget::count(5)));
  CHECK(a == b);
  CHECK(to_vector(plain.targets()) == to_vector(two.targets()));
  CHECK(to_vector(plain.assignment()) == to_vector(two.assignment()));
  CHECK(merged_values(plain) == merged_values(two));
}

TEST_CASE("visionzip: fp16 and bf16 inputs equal fp32 inputs of the same values", "[visionzip]") {
  const Image im = random_image(2, 64, 16, 24, 99);
  auto as_half = [](const std::vector<float>& v) {
    std::vector<Eigen::half> out;
    for (float x : v) out.emplace_back(x);
    return out;
  };
  auto as_bf16 = [](const std::vector<float>& v) {
    std::vector<Eigen::bfloat16> out;
    for (float x : v) out.emplace_back(x);
    return out;
  };
  auto widen = [](const auto& v) {
    std::vector<float> out;
    for (auto x : v) out.push_back(static_cast<float>(x));
    return out;
  };
  const auto cls16 = as_half(im.cls);
  const auto keys16 = as_bf16(im.keys);
  const auto hidden16 = as_half(im.hidden);
  Image rounded = im;
  rounded.cls = widen(cls16);
  rounded.keys = widen(keys16);
  rounded.hidden = widen(hidden16);

  tp::PruneInputs in;
  in.cls_attention = tp::TokenMatrix(cls16.data(), 2, 64);
  in.keys = tp::TokenMatrix(keys16.data(), 65, 16);
  in.hidden_states = tp::TokenMatrix(hidden16.data(), 65, 24);
  tp::VisionZip a, b;
  const auto budget = tp::Budget::count(20);
  const auto kept = to_vector(b.prune(rounded.inputs(), budget));
  CHECK(to_vector(a.prune(in, budget)) == kept);
  CHECK(to_vector(a.targets()) == to_vector(b.targets()));
  CHECK(merged_values(a) == merged_values(b));
  CHECK(std::vector<float>(a.scores().begin(), a.scores().end()) == std::vector<float>(b.scores().begin(), b.scores().end()));

  // fp16 hidden states only, the rest fp32.
  tp::PruneInputs mixed = rounded.inputs();
  mixed.hidden_states = tp::TokenMatrix(hidden16.data(), 65, 24);
  tp::VisionZip c;
  CHECK(to_vector(c.prune(mixed, budget)) == kept);
  CHECK(merged_values(c) == merged_values(b));
}

TEST_CASE("visionzip: strided views and the [CLS] row of full maps", "[visionzip]") {
  const Image im = random_image(3, 36, 8, 12, 5);
  const Index n = 36, pad = 5;
  // Full maps [3, 37, 37] with the [CLS] row holding im.cls at columns 1..n (other entries arbitrary).
  std::vector<float> maps(static_cast<std::size_t>(3 * 37 * 37), 0.5f);
  for (Index h = 0; h < 3; ++h)
    for (Index p = 0; p < n; ++p) maps[static_cast<std::size_t>(h * 37 * 37 + 1 + p)] = im.cls[static_cast<std::size_t>(h * n + p)];
  auto padded = [&](const std::vector<float>& v, Index cols) {
    std::vector<float> out;
    for (Index i = 0; i <= n; ++i) {
      for (Index c = 0; c < cols; ++c) out.push_back(v[static_cast<std::size_t>(i * cols + c)]);
      for (Index c = 0; c < pad; ++c) out.push_back(std::numeric_limits<float>::quiet_NaN());  // never read
    }
    return out;
  };
  const auto keys = padded(im.keys, 8), hidden = padded(im.hidden, 12);
  tp::PruneInputs in;
  in.cls_attention = tp::cls_query_row(tp::AttentionMaps(maps.data(), 3, 37), 0);
  in.keys = tp::TokenMatrix(keys.data(), n + 1, 8, 8 + pad);
  in.hidden_states = tp::TokenMatrix(hidden.data(), n + 1, 12, 12 + pad);
  tp::VisionZip a, b;
  CHECK(to_vector(a.prune(in, tp::Budget::count(12))) == to_vector(b.prune(im.inputs(), tp::Budget::count(12))));
  CHECK(to_vector(a.targets()) == to_vector(b.targets()));
  CHECK(merged_values(a) == merged_values(b));
}

TEST_CASE("visionzip: the engine-buffer overload writes the merged rows with the caller's stride", "[visionzip]") {
  const Image im = random_image(2, 49, 8, 10, 11);
  const Index stride = 13, c = 4;
  tp::VisionZip vz(tp::VisionZipConfig{c, 1}), internal(tp::VisionZipConfig{c, 1});
  const auto budget = tp::Budget::count(20);
  const auto expected_keep = to_vector(internal.prune(im.inputs(), budget));
  const auto expected = merged_values(internal);
  std::vector<float> buffer(static_cast<std::size_t>(c * stride), -7.0f);
  CHECK(to_vector(vz.prune(im.inputs(), budget, buffer.data(), stride)) == expected_keep);
  CHECK(to_vector(vz.targets()) == to_vector(internal.targets()));
  CHECK(vz.merged().rows() == 0);
  for (Index k = 0; k < c; ++k)
    for (Index e = 0; e < stride; ++e) {
      const float got = buffer[static_cast<std::size_t>(k * stride + e)];
      if (e < 10) {
        CHECK(got == expected[static_cast<std::size_t>(k * 10 + e)]);
      } else {
        CHECK(got == -7.0f);  // the padding is not touched
      }
    }

  // Nothing written on an error: a stride below d, a NaN in the last hidden row, too many contextual tokens.
  std::vector<float> clean(static_cast<std::size_t>(c * stride), -7.0f);
  CHECK(error_of([&] { vz.prune(im.inputs(), budget, clean.data(), 9); }).argument() == "merged_row_stride");
  Image bad = im;
  bad.hidden.back() = std::numeric_limits<float>::quiet_NaN();
  CHECK(error_of([&] { vz.prune(bad.inputs(), budget, clean.data(), stride); }).argument() == "hidden_states[49,9]");
  CHECK(error_of([&] { vz.prune(im.inputs(), tp::Budget::count(52), clean.data(), stride); }).argument() == "contextual");
  CHECK(error_of([&] { vz.prune(im.inputs(), budget, nullptr, stride); }).argument() == "merged_out");
  CHECK(std::all_of(clean.begin(), clean.end(), [](float v) { return v == -7.0f; }));
  // Still usable, same answer.
  CHECK(to_vector(vz.prune(im.inputs(), budget, clean.data(), stride)) == expected_keep);
  CHECK(clean == buffer);
}

TEST_CASE("visionzip: errors name the argument and value; the pruner stays usable", "[visionzip]") {
  const Image im = hand_example();
  tp::VisionZip vz(tp::VisionZipConfig{2, 1});
  const auto ok = tp::Budget::count(5);

  // Config.
  CHECK(error_of([] { tp::VisionZipConfig{-2, 1}.validate(); }).argument() == "contextual");
  CHECK(error_of([] { tp::VisionZipConfig{-1, 0}.validate(); }).argument() == "key_heads");
  CHECK(error_of([] { tp::VisionZip bad(tp::VisionZipConfig{-1, 0}); }).argument() == "key_heads");

  // Budget: C > m, D < 1, D > n + 1, K < 2 with a derived C.
  {
    const tp::Error e = error_of([&] { (void)tp::VisionZip(tp::VisionZipConfig{7, 1}).kept_count({8}, tp::Budget::count(10)); });
    CHECK(e.argument() == "contextual");  // D = 3, m = 6
    CHECK(e.value() == "7");
  }
  {
    const tp::Error e = error_of([&] { (void)vz.kept_count({8}, tp::Budget::count(2)); });
    CHECK(e.argument() == "keep");  // D = 0
    CHECK(e.value() == "2");
  }
  CHECK(error_of([&] { (void)tp::VisionZip(tp::VisionZipConfig{0, 1}).kept_count({8}, tp::Budget::count(10)); }).argument() == "keep");
  CHECK(error_of([&] { (void)tp::VisionZip().kept_count({8}, tp::Budget::count(1)); }).argument() == "keep");
  CHECK(error_of([&] { (void)tp::VisionZip().kept_count({8}, tp::Budget::ratio(0.1)); }).argument() == "keep");  // K = 0
  CHECK(error_of([&] { vz.prune(im.inputs(), tp::Budget::count(10)); }).argument() == "contextual");

  // Missing inputs.
  for (const char* missing : {"cls_attention", "keys", "hidden_states"}) {
    tp::PruneInputs in = im.inputs();
    if (std::string(missing) == "cls_attention") in.cls_attention = {};
    if (std::string(missing) == "keys") in.keys = {};
    if (std::string(missing) == "hidden_states") in.hidden_states = {};
    const tp::Error e = error_of([&] { vz.prune(in, ok); });
    CHECK(e.argument() == missing);
    CHECK(e.value() == "missing");
  }
  // Disagreeing shapes.
  {
    tp::PruneInputs in = im.inputs();
    in.keys = tp::TokenMatrix(im.keys.data(), 8, 2);
    CHECK(error_of([&] { vz.prune(in, ok); }).argument() == "keys.n_tokens-1");
    in = im.inputs();
    in.hidden_states = tp::TokenMatrix(im.hidden.data(), 0, 2);
    CHECK(error_of([&] { vz.prune(in, ok); }).argument() == "hidden_states.n_tokens-1");
    in = im.inputs();
    in.cls_attention = tp::TokenMatrix(im.cls.data(), 1, 7);  // 7 patches against 1 + 8 hidden rows
    CHECK(error_of([&] { vz.prune(in, ok); }).argument() == "hidden_states.n_tokens-1");
    in = im.inputs();
    in.cls_attention = tp::TokenMatrix(im.cls.data(), 0, 8);
    CHECK(error_of([&] { vz.prune(in, ok); }).argument() == "cls_attention.heads");
  }
  // key_heads must divide the key width.
  CHECK(error_of([&] { tp::VisionZip(tp::VisionZipConfig{2, 3}).prune(im.inputs(), ok); }).argument() == "key_heads");

  // NaN / Inf in each input, named by element (also the unused [CLS] key row).
  {
    Image bad = im;
    bad.cls[5] = std::numeric_limits<float>::quiet_NaN();
    CHECK(error_of([&] { vz.prune(bad.inputs(), ok); }).argument() == "cls_attention[0,5]");
    bad = im;
    bad.keys[3 * 2 + 1] = std::numeric_limits<float>::infinity();
    CHECK(error_of([&] { vz.prune(bad.inputs(), ok); }).argument() == "keys[3,1]");
    bad = im;
    bad.keys[0] = std::numeric_limits<float>::quiet_NaN();
    CHECK(error_of([&] { vz.prune(bad.inputs(), ok); }).argument() == "keys[0,0]");
    bad = im;
    bad.hidden[7 * 2] = -std::numeric_limits<float>::infinity();
    CHECK(error_of([&] { vz.prune(bad.inputs(), ok); }).argument() == "hidden_states[7,0]");
    // Averaged keys: the raw element is named.
    Image fused = im;
    fused.kw = 4;
    fused.keys.assign(36, 1.0f);
    fused.keys[2 * 4 + 3] = std::numeric_limits<float>::quiet_NaN();
    CHECK(error_of([&] { tp::VisionZip(tp::VisionZipConfig{2, 2}).prune(fused.inputs(), ok); }).argument() == "keys[2,3]");
  }

  // Usable after every error, with the hand example's answer.
  CHECK(to_vector(vz.prune(im.inputs(), ok)) == std::vector<Index>{0, 2, 6});
  CHECK(merged_values(vz) == std::vector<float>{6, 14, 11, 9});
}

TEST_CASE("visionzip: scores, kept sets and merged rows are bitwise identical at every ISA level", "[visionzip]") {
  IsaGuard guard;
  const Image im = random_image(4, 144, 64, 48, 21);
  std::vector<float> scores0, merged0;
  std::vector<Index> keep0, targets0;
  bool first = true;
  for (tp::Isa isa : tp::kAllIsas) {
    if (!tp::isa_supported(isa)) continue;
    tp::set_isa(isa);
    tp::VisionZip vz(tp::VisionZipConfig{-1, 4});
    const auto keep = to_vector(vz.prune(im.inputs(), tp::Budget::count(36)));
    const std::vector<float> scores(vz.scores().begin(), vz.scores().end());
    if (first) {
      keep0 = keep;
      targets0 = to_vector(vz.targets());
      scores0 = scores;
      merged0 = merged_values(vz);
      first = false;
      continue;
    }
    CHECK(keep == keep0);
    CHECK(to_vector(vz.targets()) == targets0);
    CHECK(scores == scores0);
    CHECK(merged_values(vz) == merged0);
  }
  CHECK(!first);
}

TEST_CASE("visionzip: reserve, then prunes of any size within it; spans stay valid across a smaller reserve", "[visionzip]") {
  tp::VisionZip vz(tp::VisionZipConfig{-1, 2});
  vz.reserve(200, 32, 16);
  const Image big = random_image(2, 196, 16, 32, 3), small = random_image(1, 16, 8, 8, 4);
  const auto keep = vz.prune(big.inputs(), tp::Budget::count(64));
  const auto copy = to_vector(keep);
  vz.reserve(100, 16, 8);
  CHECK(to_vector(keep) == copy);
  CHECK(vz.prune(small.inputs(), tp::Budget::count(6)).size() == 5);
  CHECK(vz.merged().rows() == 1);
  CHECK(vz.scores().size() == 16);
}

TEST_CASE("visionzip: the Segmented layout refuses [CLS]-row inputs (prune each image or crop on its own)", "[visionzip]") {
  const Image im = hand_example();
  tp::Segmented<tp::VisionZip> segmented(tp::VisionZip(tp::VisionZipConfig{2, 1}));
  std::vector<Index> tokens(8);
  std::iota(tokens.begin(), tokens.end(), Index{0});
  const tp::Segment segment{tokens, tp::Budget::count(5)};
  const tp::SegmentLayout layout{8, std::span<const tp::Segment>(&segment, 1), {}};
  const tp::Error e = error_of([&] { segmented.prune(im.inputs(), layout); });
  CHECK(e.argument() == "hidden_states");
  // Two crops, one prune() each: each answer depends on its own crop only.
  const Image other = random_image(1, 8, 2, 2, 17);
  tp::VisionZip vz(tp::VisionZipConfig{2, 1});
  vz.prune(other.inputs(), tp::Budget::count(5));
  CHECK(to_vector(vz.prune(im.inputs(), tp::Budget::count(5))) == std::vector<Index>{0, 2, 6});
  CHECK(merged_values(vz) == std::vector<float>{6, 14, 11, 9});
}
