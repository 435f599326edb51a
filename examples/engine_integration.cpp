// How an engine calls tokenprune: views over its own buffers (fp16, padded rows, attention with a CLS token),
// one generic pruning step for every method, and compaction of the kept tokens. Exit code 0 = success.

#include "prune_and_compact.hpp"

#include <cmath>
#include <random>
#include <vector>

namespace tp = tokenprune;

int main() {
  constexpr tp::index_t side = 6, n = side * side, dim = 64, row_stride = 80, heads = 4;

  // The encoder's buffers: a batch of two images in fp16 with rows padded to 80 elements, and one layer's
  // attention over [CLS + n] tokens. Pruning reads them in place.
  std::vector<Eigen::half> batch(2 * n * row_stride);
  std::vector<float> attention(heads * (n + 1) * (n + 1));
  std::mt19937 rng(42);
  auto encode = [&] {  // stand-in for the vision encoder: seeded random activations
    std::normal_distribution<float> normal;
    for (auto& x : batch) x = Eigen::half(normal(rng));
    for (auto& a : attention) a = std::exp(normal(rng));
    tp::PruneInputs in;
    in.features = tp::TokenMatrix(batch.data() + n * row_stride, n, dim, row_stride);  // the second image
    // FoPru scores patches only: drop the CLS query row and key column without copying.
    in.attention = tp::AttentionMaps(attention.data(), heads, n + 1).block(1, n);
    in.grid = {side, side};
    return in;
  };

  const tp::TokenShape shape{n, {side, side}};
  tp::GPrune gprune;                                  // graph propagation over the features
  tp::FoPru fopru({.strategy = tp::FoPruStrategy::row});  // whole grid rows by attention received/given
  bool ok = example::prune_and_compact<Eigen::half>("g-prune", gprune, shape, dim, tp::Budget::ratio(0.25), 5, encode);
  // ratio 0.4 of 36 is 14 tokens: the row strategy keeps whole rows, 2 x 6 = 12, and says so up front.
  ok &= example::prune_and_compact<Eigen::half>("fopru-row", fopru, shape, dim, tp::Budget::ratio(0.4), 5, encode);
  return ok ? 0 : 1;
}
