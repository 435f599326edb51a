// [CLS]-attention / FasterVLM (methods/cls-attention.md): the hand-checkable cases (scores, selections, the tie
// rule), an independent float64 re-implementation on random maps, the three input forms (full maps, [H, 1 + n]
// rows, [CLS] last), strided views, 16-bit maps, bitwise-identical scores at every ISA level, errors and reuse.

#include "catch.hpp"

#include <tokenprune/tokenprune.hpp>
#include <tokenprune/pruners/cls_attention.hpp>

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

std::vector<Index> to_vector(std::span<const Index> s) { return {s.begin(), s.end()}; }
std::vector<float> to_floats(std::span<const float> s) { return {s.begin(), s.end()}; }

// Dense maps [heads, 1 + n, 1 + n] with [CLS] at index 0; every entry not set is `fill`.
struct Maps {
  Index heads = 0, n = 0;  // n patches
  std::vector<float> values;
  Maps(Index h, Index patches, float fill) : heads(h), n(patches), values(static_cast<std::size_t>(h * (1 + patches) * (1 + patches)), fill) {}
  float& at(Index h, Index i, Index j) { return values[static_cast<std::size_t>((h * (1 + n) + i) * (1 + n) + j)]; }
  [[nodiscard]] tp::AttentionMaps view() const { return tp::AttentionMaps(values.data(), heads, 1 + n); }
};

Maps hand_maps(const std::vector<std::vector<float>>& cls_rows) {
  const auto heads = static_cast<Index>(cls_rows.size());
  const auto n = static_cast<Index>(cls_rows[0].size()) - 1;
  Maps m(heads, n, 0.2f);
  for (Index h = 0; h < heads; ++h)
    for (Index j = 0; j <= n; ++j) m.at(h, 0, j) = cls_rows[static_cast<std::size_t>(h)][static_cast<std::size_t>(j)];
  return m;
}

std::vector<Index> prune_maps(tp::ClsAttention& pruner, const Maps& m, Index k) {
  tp::PruneInputs inputs;
  inputs.cls_attention = tp::cls_query_row(m.view());
  return to_vector(pruner.prune(inputs, tp::Budget::count(k)));
}

// Random softmax maps; with `dup`, some patch keys repeat others exactly (tied scores).
Maps random_maps(Index heads, Index n, std::uint32_t seed, double scale = 2.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  Maps m(heads, n, 0.0f);
  for (Index h = 0; h < heads; ++h)
    for (Index i = 0; i <= n; ++i) {
      std::vector<double> row(static_cast<std::size_t>(1 + n));
      for (auto& v : row) v = scale * normal(rng);
      const double top = *std::max_element(row.begin(), row.end());
      double total = 0.0;
      for (auto& v : row) total += (v = std::exp(v - top));
      for (Index j = 0; j <= n; ++j) m.at(h, i, j) = static_cast<float>(row[static_cast<std::size_t>(j)] / total);
    }
  return m;
}

// The definition in float64, straight from the file: score_j = mean_h A[h, 0, 1 + j]; top k, ties to the lower
// index, ascending. Independent of the library (full sort by a comparator of its own).
std::vector<double> oracle_scores(const Maps& m) {
  std::vector<double> s(static_cast<std::size_t>(m.n), 0.0);
  for (Index j = 0; j < m.n; ++j) {
    double total = 0.0;
    for (Index h = 0; h < m.heads; ++h) total += m.values[static_cast<std::size_t>(h * (1 + m.n) * (1 + m.n) + 1 + j)];
    s[static_cast<std::size_t>(j)] = total / static_cast<double>(m.heads);
  }
  return s;
}
std::vector<Index> oracle_keep(const std::vector<double>& s, Index k) {
  std::vector<Index> order(s.size());
  std::iota(order.begin(), order.end(), Index{0});
  std::sort(order.begin(), order.end(), [&](Index a, Index b) {
    return s[static_cast<std::size_t>(a)] > s[static_cast<std::size_t>(b)] ||
           (s[static_cast<std::size_t>(a)] == s[static_cast<std::size_t>(b)] && a < b);
  });
  order.resize(static_cast<std::size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
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

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("cls-attention: the file's hand-checkable case", "[cls_attention]") {
  const Maps m = hand_maps({{0.40f, 0.05f, 0.30f, 0.15f, 0.10f}, {0.20f, 0.25f, 0.05f, 0.35f, 0.15f}});
  tp::ClsAttention pruner;
  CHECK(prune_maps(pruner, m, 1) == std::vector<Index>{2});
  const std::vector<double> expected{0.15, 0.175, 0.25, 0.125};
  REQUIRE(pruner.scores().size() == 4);
  for (std::size_t j = 0; j < 4; ++j) CHECK(pruner.scores()[j] == Approx(expected[j]).epsilon(1e-6));
  CHECK(prune_maps(pruner, m, 2) == std::vector<Index>{1, 2});
  CHECK(prune_maps(pruner, m, 3) == std::vector<Index>{0, 1, 2});
  CHECK(prune_maps(pruner, m, 0).empty());
  CHECK(prune_maps(pruner, m, 4) == std::vector<Index>{0, 1, 2, 3});
  CHECK(pruner.kept_count(tp::TokenShape{4}, tp::Budget::count(3)) == 3);
}

TEST_CASE("cls-attention: the tie rule with binary-exact values", "[cls_attention]") {
  const Maps m = hand_maps({{0.25f, 0.125f, 0.25f, 0.25f, 0.125f}, {0.5f, 0.125f, 0.0f, 0.125f, 0.25f}});
  tp::ClsAttention pruner;
  CHECK(prune_maps(pruner, m, 1) == std::vector<Index>{2});
  CHECK(to_floats(pruner.scores()) == std::vector<float>{0.125f, 0.125f, 0.1875f, 0.1875f});
  CHECK(prune_maps(pruner, m, 2) == std::vector<Index>{2, 3});
  CHECK(prune_maps(pruner, m, 3) == std::vector<Index>{0, 2, 3});
}

TEST_CASE("cls-attention: matches a float64 re-implementation on random maps", "[cls_attention]") {
  tp::ClsAttention pruner;
  std::uint32_t seed = 11;
  for (Index heads : {1, 2, 3, 16})
    for (Index n : {1, 7, 64, 577}) {
      const Maps m = random_maps(heads, n, seed++, heads == 16 ? 4.0 : 2.0);
      const std::vector<double> s = oracle_scores(m);
      for (Index k : {Index{0}, Index{1}, n / 3, n / 2, n - 1, n}) {
        if (k < 0) continue;
        INFO("heads " << heads << " n " << n << " k " << k);
        const std::vector<Index> kept = prune_maps(pruner, m, k);
        CHECK(kept == oracle_keep(s, k));
        for (Index j = 0; j < n; ++j)
          CHECK(pruner.scores()[static_cast<std::size_t>(j)] == static_cast<float>(s[static_cast<std::size_t>(j)]));
      }
    }
}

TEST_CASE("cls-attention: ratio budget is floor(r * n)", "[cls_attention]") {
  const Maps m = random_maps(2, 10, 5);
  tp::ClsAttention pruner;
  tp::PruneInputs inputs;
  inputs.cls_attention = tp::cls_query_row(m.view());
  CHECK(pruner.prune(inputs, tp::Budget::ratio(0.39)).size() == 3);
  CHECK(pruner.kept_count(tp::TokenShape{576}, tp::Budget::ratio(0.1)) == 57);
  CHECK(to_vector(pruner.prune(inputs, tp::Budget::ratio(0.5))) == oracle_keep(oracle_scores(m), 5));
}

TEST_CASE("cls-attention: selfheavy heads: no per-head renormalization", "[cls_attention]") {
  // Head 0 puts 90% of its [CLS] mass on [CLS] itself. Renormalizing its patch row by 1 - A[0,0,0] would make
  // patch 0 win; the plain mean makes patch 1 win.
  const Maps m = hand_maps({{0.90f, 0.08f, 0.02f}, {0.0f, 0.1f, 0.9f}});
  tp::ClsAttention pruner;
  CHECK(prune_maps(pruner, m, 1) == std::vector<Index>{1});
}

TEST_CASE("cls-attention: row arrays, [CLS] last and strided views read the same values", "[cls_attention]") {
  const Index heads = 3, n = 20;
  const Maps m = random_maps(heads, n, 77);
  tp::ClsAttention pruner;
  const std::vector<Index> expected = prune_maps(pruner, m, 6);
  const std::vector<float> expected_scores = to_floats(pruner.scores());

  // [H, 1 + n] row array, [CLS] key first.
  std::vector<float> rows(static_cast<std::size_t>(heads * (1 + n)));
  for (Index h = 0; h < heads; ++h)
    for (Index j = 0; j <= n; ++j)
      rows[static_cast<std::size_t>(h * (1 + n) + j)] = m.values[static_cast<std::size_t>(h * (1 + n) * (1 + n) + j)];
  tp::PruneInputs inputs;
  inputs.cls_attention = tp::TokenMatrix(rows.data() + 1, heads, n, 1 + n);
  CHECK(to_vector(pruner.prune(inputs, tp::Budget::count(6))) == expected);
  CHECK(same_bits(to_floats(pruner.scores()), expected_scores));

  // Maps with [CLS] last: token order (patches..., CLS).
  Maps last(heads, n, 0.0f);
  for (Index h = 0; h < heads; ++h)
    for (Index i = 0; i <= n; ++i)
      for (Index j = 0; j <= n; ++j) {
        const Index from_i = i == n ? 0 : i + 1, from_j = j == n ? 0 : j + 1;
        last.at(h, i, j) = m.values[static_cast<std::size_t>((h * (1 + n) + from_i) * (1 + n) + from_j)];
      }
  inputs.cls_attention = tp::cls_query_row(last.view(), n);
  CHECK(to_vector(pruner.prune(inputs, tp::Budget::count(6))) == expected);
  CHECK(same_bits(to_floats(pruner.scores()), expected_scores));

  // Padded rows (stride 40 > 21) and heads interleaved with unrelated data.
  std::vector<float> padded(static_cast<std::size_t>(heads * 40), std::numeric_limits<float>::quiet_NaN());
  for (Index h = 0; h < heads; ++h)
    for (Index j = 0; j <= n; ++j) padded[static_cast<std::size_t>(h * 40 + j)] = rows[static_cast<std::size_t>(h * (1 + n) + j)];
  inputs.cls_attention = tp::TokenMatrix(padded.data() + 1, heads, n, 40);
  CHECK(to_vector(pruner.prune(inputs, tp::Budget::count(6))) == expected);
  CHECK(same_bits(to_floats(pruner.scores()), expected_scores));
}

TEST_CASE("cls-attention: fp16 and bf16 maps are widened exactly", "[cls_attention]") {
  const Index heads = 4, n = 50;
  const Maps m = random_maps(heads, n, 31);
  auto run16 = [&]<class T>(T) {
    std::vector<T> low(m.values.size());
    Maps widened = m;
    for (std::size_t i = 0; i < low.size(); ++i) {
      low[i] = static_cast<T>(m.values[i]);
      widened.values[i] = static_cast<float>(low[i]);
    }
    tp::ClsAttention pruner;
    const std::vector<Index> expected = prune_maps(pruner, widened, 12);
    const std::vector<float> expected_scores = to_floats(pruner.scores());
    CHECK(expected == oracle_keep(oracle_scores(widened), 12));
    tp::PruneInputs inputs;
    inputs.cls_attention = tp::cls_query_row(tp::AttentionMaps(low.data(), heads, 1 + n));
    CHECK(to_vector(pruner.prune(inputs, tp::Budget::count(12))) == expected);
    CHECK(same_bits(to_floats(pruner.scores()), expected_scores));
  };
  run16(Eigen::half{});
  run16(Eigen::bfloat16{});
}

TEST_CASE("cls-attention: the shared kernel gives head sums and means", "[cls_attention][kernels]") {
  const std::vector<float> rows{1.0f, 2.0f, 3.0f, 0.5f, 0.25f, 0.125f};
  const tp::TokenMatrix cls(rows.data(), 2, 3);
  std::vector<double> sums(3);
  std::vector<float> mean(3);
  tp::kernels::cls_row_head_mean(cls, sums, mean);
  CHECK(sums == std::vector<double>{1.5, 2.25, 3.125});
  CHECK(mean == std::vector<float>{0.75f, 1.125f, 1.5625f});
}

TEST_CASE("cls-attention: scores are bitwise identical at every ISA level", "[cls_attention][levels]") {
  const tp::Isa saved = tp::active_isa();
  const Maps m = random_maps(16, 576, 4242, 4.0);
  std::vector<float> first;
  std::vector<Index> first_kept;
  for (tp::Isa isa : tp::kAllIsas) {
    if (!tp::isa_supported(isa)) continue;
    tp::set_isa(isa);
    tp::ClsAttention pruner;
    const std::vector<Index> kept = prune_maps(pruner, m, 64);
    if (first.empty()) {
      first = to_floats(pruner.scores());
      first_kept = kept;
    } else {
      CHECK(same_bits(to_floats(pruner.scores()), first));
      CHECK(kept == first_kept);
    }
  }
  tp::set_isa(saved);
  CHECK(first_kept == oracle_keep(oracle_scores(m), 64));
}

TEST_CASE("cls-attention: errors name the argument, and the pruner stays usable", "[cls_attention][errors]") {
  Maps m = random_maps(2, 8, 3);
  tp::ClsAttention pruner;
  const std::vector<Index> good = prune_maps(pruner, m, 3);

  tp::PruneInputs none;
  none.features = tp::TokenMatrix(m.values.data(), 8, 2);
  CHECK(error_of([&] { (void)pruner.prune(none, tp::Budget::count(1)); }).argument() == "cls_attention");

  CHECK(error_of([&] { (void)prune_maps(pruner, m, 9); }).argument() == "keep");
  CHECK(error_of([&] { (void)pruner.kept_count(tp::TokenShape{8}, tp::Budget::count(9)); }).argument() == "keep");
  CHECK(error_of([] { (void)tp::Budget::ratio(1.5); }).argument() == "ratio");
  CHECK(error_of([&] { pruner.reserve(-1, 0); }).argument() == "max_tokens");

  // A features input of another token count disagrees with the [CLS] row.
  std::vector<float> features(7 * 2, 1.0f);
  tp::PruneInputs mismatch;
  mismatch.features = tp::TokenMatrix(features.data(), 7, 2);
  mismatch.cls_attention = tp::cls_query_row(m.view());
  CHECK(error_of([&] { (void)pruner.prune(mismatch, tp::Budget::count(1)); }).argument() == "cls_attention.cols");

  // No heads at all.
  tp::PruneInputs zero_heads;
  zero_heads.cls_attention = tp::TokenMatrix(m.values.data(), 0, 8);
  CHECK(error_of([&] { (void)pruner.prune(zero_heads, tp::Budget::count(1)); }).argument() == "cls_attention.heads");

  // NaN / Inf name the element as [head, patch] of the [CLS] row (patch j = key 1 + j). A NaN outside the row
  // (another query, or the [CLS] key) is not read.
  m.at(0, 3, 3) = std::numeric_limits<float>::quiet_NaN();
  m.at(1, 0, 0) = std::numeric_limits<float>::infinity();
  CHECK(prune_maps(pruner, m, 3) == good);
  m.at(1, 0, 4) = std::numeric_limits<float>::quiet_NaN();
  const tp::Error nan = error_of([&] { (void)prune_maps(pruner, m, 3); });
  CHECK(nan.argument() == "cls_attention[1,3]");
  CHECK(nan.value() == "nan");
  m.at(0, 0, 8) = -std::numeric_limits<float>::infinity();
  CHECK(error_of([&] { (void)prune_maps(pruner, m, 3); }).argument() == "cls_attention[0,7]");
  std::vector<Eigen::half> low(m.values.size());
  for (std::size_t i = 0; i < low.size(); ++i) low[i] = static_cast<Eigen::half>(m.values[i]);
  tp::PruneInputs half_inputs;
  half_inputs.cls_attention = tp::cls_query_row(tp::AttentionMaps(low.data(), 2, 9));
  CHECK(error_of([&] { (void)pruner.prune(half_inputs, tp::Budget::count(3)); }).argument() == "cls_attention[0,7]");

  // Usable afterwards, same answer.
  m.at(1, 0, 4) = random_maps(2, 8, 3).at(1, 0, 4);
  m.at(0, 0, 8) = random_maps(2, 8, 3).at(0, 0, 8);
  CHECK(prune_maps(pruner, m, 3) == good);
}

TEST_CASE("cls-attention: reserve keeps the workspace in place", "[cls_attention]") {
  tp::ClsAttention pruner;
  pruner.reserve(600, 0);
  const Maps big = random_maps(16, 576, 8);
  (void)prune_maps(pruner, big, 64);
  const float* scores = pruner.scores().data();
  const Index* kept = pruner.kept().data();
  for (Index n : {Index{16}, Index{576}, Index{100}}) {
    (void)prune_maps(pruner, random_maps(2, n, static_cast<std::uint32_t>(n)), n / 4);
    CHECK(pruner.scores().data() == scores);
    CHECK(pruner.kept().data() == kept);
  }
}
