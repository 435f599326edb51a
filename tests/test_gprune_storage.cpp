// G-Prune's graph storages (issue 9): the dense n x n path, the tiled lower triangle with every tile kind (empty,
// compressed, dense), row panels recomputed past the memory budget, and mixes of both, must give bitwise equal
// scores, degrees and selections, on every instruction-set level and with any executor. The inputs have
// n >= 4096 (15 row panels of 288 and a partial one), so each storage runs its own code on many tiles.
#include "catch.hpp"
#include "isa_levels.hpp"

#include <tokenprune/tokenprune.hpp>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace tp = tokenprune;

namespace {

using Index = tp::index_t;

// Blocks of tokens around a few directions, the blocks' order repeating, so the graph has dense tiles (inside a
// block), empty ones (between blocks of different directions) and mixed ones (at block edges, and because every
// 7th token is mostly noise). Also duplicates (merged nodes) and a zero token.
tp::RowMatrix<float> clustered(Index n, Index d, std::uint32_t seed, Index block = 700, int directions = 3) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> scale(0.5f, 2.0f);
  tp::RowMatrix<float> centre(directions, d);
  for (Index r = 0; r < directions; ++r)
    for (Index c = 0; c < d; ++c) centre(r, c) = normal(rng);
  tp::RowMatrix<float> x(n, d);
  for (Index i = 0; i < n; ++i) {
    const Index group = (i / block) % directions;
    const float noise = i % 7 == 3 ? 1.5f : 0.25f;
    const float amplitude = scale(rng);
    for (Index c = 0; c < d; ++c) x(i, c) = amplitude * (centre(group, c) + noise * normal(rng));
  }
  for (Index i = 11; i + 5 < n; i += 97) x.row(i + 5) = 3.0f * x.row(i);  // the same unit vector: one node
  x.row(n / 2).setZero();
  return x;
}

struct Outcome {
  std::vector<std::uint32_t> score_bits;
  std::vector<Index> degrees, kept;
  tp::kernels::GraphStorage storage;
  std::size_t edges = 0;
};

Outcome run(tp::GPrune& pruner, const tp::RowMatrix<float>& x, Index k) {
  tp::PruneInputs in;
  in.features = tp::TokenMatrix(x);
  const auto kept = pruner.prune(in, tp::Budget::count(k));
  Outcome o;
  o.kept.assign(kept.begin(), kept.end());
  o.degrees.assign(pruner.degrees().begin(), pruner.degrees().end());
  for (float s : pruner.scores()) {
    std::uint32_t bits;
    std::memcpy(&bits, &s, sizeof bits);
    o.score_bits.push_back(bits);
  }
  o.storage = pruner.graph_storage();
  o.edges = pruner.sparse_edges();
  return o;
}

std::size_t panel_bytes(Index n) { return sizeof(float) * static_cast<std::size_t>(tp::kernels::kTile * n); }

using tokenprune::testing::IsaGuard;

void check_same(const Outcome& a, const Outcome& b) {
  CHECK(a.kept == b.kept);
  CHECK(a.degrees == b.degrees);
  CHECK(a.score_bits == b.score_bits);
}

}  // namespace

TEST_CASE("gprune storage: dense, tiled, recomputed and mixed storage give bitwise equal scores", "[gprune][storage]") {
  const Index n = 4096 + 101, d = 24, k = n / 3;
  const double tau = GENERATE(0.5, 0.05);
  INFO("tau " << tau);
  const tp::RowMatrix<float> x = clustered(n, d, 7);
  IsaGuard guard;

  tp::GPrune dense(tp::GPruneConfig{.threshold = tau});
  const Outcome reference = run(dense, x, k);
  CHECK(reference.storage.panels == 0);  // the dense path

  // Tiled, everything stored: each tile kind occurs.
  tp::GPruneConfig tiled{.threshold = tau, .max_dense_tokens = 0, .max_graph_bytes = std::size_t{1} << 40};
  tp::GPrune all_stored(tiled);
  const Outcome stored = run(all_stored, x, k);
  const Index panels = (n + tp::kernels::kTile - 1) / tp::kernels::kTile;
  CHECK(stored.storage.panels == panels);
  CHECK(stored.storage.stored_panels == panels);
  CHECK(stored.storage.reserved_panels == panels);
  CHECK(stored.storage.dense_tiles > 0);
  CHECK(stored.storage.sparse_tiles > 0);
  if (tau == 0.5) CHECK(stored.storage.empty_tiles > 0);
  check_same(reference, stored);

  // Half the bytes: a prefix of the panels stored, the rest recomputed at every step.
  tiled.max_graph_bytes = panel_bytes(n) + stored.storage.bytes / 2;
  tp::GPrune half(tiled);
  const Outcome mixed = run(half, x, k);
  CHECK(mixed.storage.stored_panels > 0);
  CHECK(mixed.storage.stored_panels < panels);
  CHECK(mixed.storage.bytes <= stored.storage.bytes / 2);
  // The first panels fit even at their worst and are stored as their tiles are computed (statistics deferred);
  // at tau 0.5 the next one fits only as it is, and is stored after its statistics (each path its own code).
  CHECK(mixed.storage.reserved_panels > 0);
  if (tau == 0.5) CHECK(mixed.storage.reserved_panels < mixed.storage.stored_panels);
  check_same(reference, mixed);

  // No room at all: every panel recomputed.
  tiled.max_graph_bytes = 0;
  tp::GPrune none(tiled);
  const Outcome recomputed = run(none, x, k);
  CHECK(recomputed.storage.stored_panels == 0);
  CHECK(recomputed.storage.bytes == 0);
  CHECK(recomputed.storage.reserved_panels == 0);
  CHECK(recomputed.edges == stored.edges);
  check_same(reference, recomputed);

  // The dense path does not fit the budget either: a budget below n^2 floats moves the graph to the tiled path.
  tp::GPrune small_budget(tp::GPruneConfig{.threshold = tau, .max_graph_bytes = panel_bytes(n) + 1000});
  const Outcome moved = run(small_budget, x, k);
  CHECK(moved.storage.panels == panels);
  check_same(reference, moved);

  // Every level, and the calling thread only, on the stored and the recomputed path.
  for (tp::Isa isa : tp::kAllIsas) {
    if (!tp::isa_supported(isa)) continue;
    INFO("level " << tp::isa_name(isa));
    tp::set_isa(isa);
    for (const std::size_t budget : {std::size_t{1} << 40, panel_bytes(n) + stored.storage.bytes / 3, std::size_t{0}}) {
      INFO("budget " << budget);
      tp::GPrune pruner(tp::GPruneConfig{.threshold = tau, .max_dense_tokens = 0, .max_graph_bytes = budget});
      pruner.set_executor(tp::Executor::sequential());
      check_same(reference, run(pruner, x, k));
    }
  }
}

TEST_CASE("gprune storage: a sparse image-like graph (compressed rows on the dense path) and the tiled path agree",
          "[gprune][storage]") {
  // Few edges per token: the dense path propagates over compressed rows; the tiled path stores compressed tiles.
  const Index n = 4400, d = 32;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  tp::RowMatrix<float> x(n, d);
  Eigen::RowVectorXf walk(d);
  for (auto& v : walk) v = normal(rng);
  for (Index i = 0; i < n; ++i) {  // a stationary AR(1) walk: cosine ~ 0.9^distance
    for (auto& v : walk) v = 0.9f * v + 0.44f * normal(rng);
    x.row(i) = walk;
  }
  tp::GPrune dense;
  const Outcome reference = run(dense, x, 1000);
  CHECK(reference.edges > 0);  // compressed rows
  for (const std::size_t budget : {std::size_t{1} << 40, std::size_t{0}}) {
    tp::GPrune tiled(tp::GPruneConfig{.max_dense_tokens = 0, .max_graph_bytes = budget});
    const Outcome o = run(tiled, x, 1000);
    CHECK(o.edges == reference.edges);
    if (budget != 0) CHECK(o.storage.sparse_tiles == o.storage.panels * (o.storage.panels + 1) / 2 - o.storage.empty_tiles);
    check_same(reference, o);
  }
}

TEST_CASE("gprune storage: no iteration, one iteration, and reuse across sizes and budgets", "[gprune][storage]") {
  const tp::RowMatrix<float> big = clustered(1500, 16, 9, 300), small = clustered(700, 16, 10, 200);
  for (const int iterations : {0, 1, 3}) {
    INFO("iterations " << iterations);
    tp::GPrune dense(tp::GPruneConfig{.iterations = iterations});
    tp::GPrune everything(tp::GPruneConfig{.iterations = iterations, .max_dense_tokens = 0});
    const std::size_t bytes = run(everything, big, 400).storage.bytes;
    tp::GPrune tiled(tp::GPruneConfig{.iterations = iterations, .max_dense_tokens = 0,
                                      .max_graph_bytes = panel_bytes(1500) + bytes / 2});
    tiled.reserve(1500, 16);
    const Outcome a = run(dense, big, 400);
    const Outcome b = run(tiled, big, 400);
    check_same(a, b);
    CHECK(b.storage.stored_panels > 0);
    CHECK(b.storage.stored_panels < b.storage.panels);
    check_same(run(dense, small, 100), run(tiled, small, 100));  // a smaller graph in between
    check_same(a, run(tiled, big, 400));
  }
}
