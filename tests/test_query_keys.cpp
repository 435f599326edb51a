// FoPru from an attention layer's queries and keys (fused-attention engines) against FoPru from the maps those
// queries and keys produce. The maps are built here independently: double-precision logits, softmax over all
// keys including CLS, then the CLS row and column dropped, then rounded to fp32 like an engine's buffer.

#include "catch.hpp"

#include <tokenprune/tokenprune.hpp>

#include <cmath>
#include <random>
#include <vector>

using namespace tokenprune;

namespace {

struct Layer {
  index_t heads, total, dim;
  std::vector<float> q, k;
};

Layer random_layer(index_t heads, index_t total, index_t dim, unsigned seed) {
  Layer layer{heads, total, dim, std::vector<float>(static_cast<std::size_t>(heads * total * dim)), {}};
  layer.k.resize(layer.q.size());
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (float& x : layer.q) x = normal(rng);
  for (float& x : layer.k) x = normal(rng);
  // A sink key per head, as vision encoders have: strong attention to one token.
  for (index_t h = 0; h < heads; ++h)
    for (index_t c = 0; c < dim; ++c) layer.k[static_cast<std::size_t>((h * total + 3) * dim + c)] *= 3.0f;
  return layer;
}

std::vector<float> maps_of(const Layer& layer, bool softmax) {
  const index_t t = layer.total, dh = layer.dim;
  std::vector<float> maps(static_cast<std::size_t>(layer.heads * t * t));
  std::vector<double> row(static_cast<std::size_t>(t));
  for (index_t h = 0; h < layer.heads; ++h)
    for (index_t i = 0; i < t; ++i) {
      double largest = -INFINITY;
      for (index_t j = 0; j < t; ++j) {
        double dot = 0.0;
        for (index_t c = 0; c < dh; ++c)
          dot += double(layer.q[static_cast<std::size_t>((h * t + i) * dh + c)]) * layer.k[static_cast<std::size_t>((h * t + j) * dh + c)];
        row[static_cast<std::size_t>(j)] = dot / std::sqrt(double(dh));
        largest = std::max(largest, row[static_cast<std::size_t>(j)]);
      }
      double total = 0.0;
      if (softmax) {
        for (double& x : row) total += (x = std::exp(x - largest));
        for (double& x : row) x /= total;
      }
      for (index_t j = 0; j < t; ++j) maps[static_cast<std::size_t>((h * t + i) * t + j)] = static_cast<float>(row[static_cast<std::size_t>(j)]);
    }
  return maps;
}

}  // namespace

TEST_CASE("query keys: same selection and significance as the maps they stand for", "[fopru][query_keys]") {
  const bool softmax = GENERATE(true, false);
  const auto axis = GENERATE(FoPruAxis::automatic, FoPruAxis::received, FoPruAxis::given);
  const auto strategy = GENERATE(FoPruStrategy::rank, FoPruStrategy::row);
  const Layer layer = random_layer(4, 1 + 12 * 12, 32, 7);
  const index_t n = layer.total - 1;
  const std::vector<float> maps = maps_of(layer, softmax);

  FoPru from_maps({.strategy = strategy, .axis = axis}), from_query_keys({.strategy = strategy, .axis = axis});
  from_query_keys.reserve(n, layer.dim);
  PruneInputs a;
  a.attention = AttentionMaps(maps.data(), layer.heads, layer.total).block(1, n);
  a.grid = {12, 12};
  PruneInputs b;
  b.query_keys = QueryKeys{HeadMatrices(layer.q.data(), layer.heads, layer.total, layer.dim),
                           HeadMatrices(layer.k.data(), layer.heads, layer.total, layer.dim), 0.0, softmax, 1};
  b.grid = {12, 12};
  const auto kept_a = from_maps.prune(a, Budget::count(50));
  const std::vector<index_t> expected(kept_a.begin(), kept_a.end());
  const auto kept_b = from_query_keys.prune(b, Budget::count(50));
  CHECK(std::vector<index_t>(kept_b.begin(), kept_b.end()) == expected);
  CHECK(from_maps.chosen_axis() == from_query_keys.chosen_axis());
  // Significance: softmax means are ~1/n; raw-logit means are near zero, so compare against their spread.
  double spread = 0.0;
  for (float s : from_maps.scores()) spread = std::max(spread, double(std::abs(s)));
  for (index_t j = 0; j < n; ++j)
    CHECK(std::abs(double(from_maps.scores()[j]) - from_query_keys.scores()[j]) <= 1e-5 * spread);
}

TEST_CASE("query keys: fused [n, heads * dim] layout equals the [heads, n, dim] layout", "[fopru][query_keys]") {
  const Layer layer = random_layer(3, 50, 16, 11);
  std::vector<float> fused_q(layer.q.size()), fused_k(layer.k.size());
  for (index_t h = 0; h < layer.heads; ++h)
    for (index_t i = 0; i < layer.total; ++i)
      for (index_t c = 0; c < layer.dim; ++c) {
        const auto from = static_cast<std::size_t>((h * layer.total + i) * layer.dim + c);
        const auto to = static_cast<std::size_t>(i * layer.heads * layer.dim + h * layer.dim + c);
        fused_q[to] = layer.q[from];
        fused_k[to] = layer.k[from];
      }
  const index_t hd = layer.heads * layer.dim;
  FoPru a, b;
  PruneInputs x, y;
  x.query_keys = QueryKeys{HeadMatrices(layer.q.data(), layer.heads, layer.total, layer.dim),
                           HeadMatrices(layer.k.data(), layer.heads, layer.total, layer.dim), 0.0, true, 1};
  y.query_keys = QueryKeys{HeadMatrices(fused_q.data(), layer.heads, layer.total, layer.dim, layer.dim, hd),
                           HeadMatrices(fused_k.data(), layer.heads, layer.total, layer.dim, layer.dim, hd), 0.0, true, 1};
  const auto kx = a.prune(x, Budget::count(10));
  const std::vector<index_t> expected(kx.begin(), kx.end());
  const auto ky = b.prune(y, Budget::count(10));
  CHECK(std::vector<index_t>(ky.begin(), ky.end()) == expected);
  for (index_t j = 0; j < layer.total - 1; ++j) CHECK(a.scores()[j] == b.scores()[j]);
}

TEST_CASE("query keys: invalid inputs are rejected by name", "[fopru][query_keys][errors]") {
  Layer layer = random_layer(2, 10, 8, 1);
  FoPru pruner;
  PruneInputs in;
  in.query_keys = QueryKeys{HeadMatrices(layer.q.data(), 2, 9, 8), HeadMatrices(layer.k.data(), 2, 10, 8), 0.0, true, 1};
  try {
    pruner.prune(in, Budget::count(1));
    FAIL("mismatched token counts were accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("queries.n_tokens") != std::string::npos);
  }
  layer.k[17] = NAN;
  in.query_keys.queries = HeadMatrices(layer.q.data(), 2, 10, 8);
  in.query_keys.keys = HeadMatrices(layer.k.data(), 2, 10, 8);
  try {
    pruner.prune(in, Budget::count(1));
    FAIL("NaN in keys was accepted");
  } catch (const Error& e) {
    CHECK(e.argument() == "query_keys.keys[0,2,1]");  // [head, token, column]
  }
  layer.k[17] = 0.5f;
  layer.q[80 + 3 * 8 + 5] = INFINITY;  // head 1, token 3, column 5
  try {
    pruner.prune(in, Budget::count(1));
    FAIL("Inf in queries was accepted");
  } catch (const Error& e) {
    CHECK(e.argument() == "query_keys.queries[1,3,5]");
  }
}
