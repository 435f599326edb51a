#pragma once
#include <tokenprune/core/abi.hpp>
// G-Prune (Jiang et al., 2025): tokens are graph nodes linked by cosine similarity; each starts with its
// feature norm as "information", which flows along the edges for a few iterations; the tokens holding the most
// information per neighbour are kept. SPEC section 2.2 is the exact definition implemented here.
//
// Tokens with identical unit vectors (padding, repeated frames) are merged into one graph node with a
// multiplicity before anything else: the same graph, computed once per distinct token.
//
// Cost: one Gram (n^2 d / 2 multiply-adds, see kernels/gram.hpp) plus O(n^2) for the edge weights, then
// neighbour statistics and propagation over the stored weights (O(iterations * stored bytes)); matrix powers are
// never formed.
// Memory, bounded by `max_graph_bytes` whatever the density: up to `max_dense_tokens` distinct tokens (and n^2
// floats within the budget) the weights are kept as a dense n x n matrix (propagated as compressed rows when
// there are at most 64 edges per token, else as whole dense rows). Beyond that, the tiled path (kernels/graph.hpp,
// TiledGraph): one row panel of the Gram at a time (kTile = 288 rows x n floats), the lower triangle stored in
// 288 x 288 tiles, each empty, compressed (16-bit columns, 6 bytes an edge) or dense (4 bytes an entry), while the
// budget lasts; the row panels that do not fit are recomputed from the packed features at every propagation step
// (one more Gram of those panels per iteration). Every path gives bitwise the same scores.
//
// Thread safety: one instance per thread; prune() mutates the instance's workspace. Instances share nothing.
// With OpenMP enabled by the engine's build (-fopenmp), prune() spreads the Gram over OpenMP threads; the
// answer is identical for every thread count.

#include <tokenprune/core/concept.hpp>
#include <tokenprune/kernels/dedup.hpp>
#include <tokenprune/kernels/graph.hpp>
#include <tokenprune/kernels/gram.hpp>
#include <tokenprune/kernels/similarity.hpp>
#include <tokenprune/kernels/topk.hpp>

#include <limits>
#include <optional>
#include <span>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

struct GPruneConfig {
  double threshold = 0.5;     // tau in (0, 1]: cosine similarity at or above which two tokens are linked
  double temperature = 0.03;  // T > 0: softmax temperature over a token's neighbours
  int iterations = 5;         // m >= 0: propagation steps
  // Largest n for the dense path (n^2 floats: 256 MiB at 8192); larger graphs take the tiled path.
  index_t max_dense_tokens = 8192;
  // Memory budget of the graph in bytes: the dense n x n floats, or on the tiled path the row panel of the Gram
  // (288 x n floats, the least any graph needs, so a smaller budget acts as that much) plus the stored tiles.
  // Past it, row panels are recomputed instead of stored; the scores do not change. reserve() sizes it (the
  // address space is reserved, pages are only touched as tiles are stored). The rest of the workspace is
  // 8 n d bytes (unit rows and their packed copy) plus O(n). The default leaves a process that holds 32k tokens of
  // d 256 under 1 GB whatever the density.
  std::size_t max_graph_bytes = std::size_t{768} << 20;

  void validate() const {
    if (!(threshold > 0.0 && threshold <= 1.0)) fail("threshold", threshold, "must be in (0, 1]");
    if (!(temperature > 0.0 && std::isfinite(temperature) && std::isfinite(1.0f / static_cast<float>(temperature))))
      fail("temperature", temperature, "must be a finite number > 0 (and 1/temperature finite in fp32)");
    if (iterations < 0) fail("iterations", iterations, "must be >= 0");
    if (max_dense_tokens < 0) fail("max_dense_tokens", max_dense_tokens, "must be >= 0");
  }
};

class GPrune {
 public:
  explicit GPrune(GPruneConfig config = {}) : config_(config) { config_.validate(); }

  [[nodiscard]] const GPruneConfig& config() const noexcept { return config_; }

  // Where the Gram tiles and row loops run: by default OpenMP threads (when compiled with OpenMP) or the calling
  // thread; an engine passes its own pool (see core/executor.hpp). Answers are the same with any executor. Call
  // before reserve(), which starts the OpenMP team for the default executor only.
  void set_executor(const Executor& executor) { gram_.set_executor(executor); }
  [[nodiscard]] const Executor& executor() const noexcept { return gram_.executor(); }

  [[nodiscard]] index_t kept_count(const TokenShape& shape, Budget budget) const { return budget.resolve(shape.n_tokens); }

  // After this, prune() on up to max_tokens tokens of up to dim features allocates nothing, on every path (dense,
  // tiled, tiled with recomputed panels). A reserve() within the bounds of earlier ones keeps the spans returned
  // by prune() valid.
  void reserve(index_t max_tokens, index_t dim) {
    if (max_tokens < 0) fail("max_tokens", max_tokens, "must be >= 0");
    if (dim < 0) fail("dim", dim, "must be >= 0");
    const auto n = static_cast<std::size_t>(max_tokens);
    unit_.reserve(n * static_cast<std::size_t>(dim));
    // Each call picks dense or sparse storage by its own node count, so both are sized: the dense square of the
    // largest graph that takes the dense path, and the sparse path's row panel.
    const index_t dense_tokens = largest_dense(max_tokens);
    const auto largest = static_cast<std::size_t>(dense_tokens);
    weights_.reserve(std::max(largest * largest, static_cast<std::size_t>(kernels::kTile) * n));
    tile_edges_.reserve(static_cast<std::size_t>(tile_columns(dense_tokens)) * largest);
    graph_.reserve(largest, edge_budget(dense_tokens));
    tiled_.reserve(max_tokens, config_.max_graph_bytes);
    gram_.reserve(max_tokens, dim);
    stats_.reserve(n);
    for (auto* v : {&norms_, &node_norms_, &scores_}) v->reserve(n);
    for (auto* v : {&mass_, &share_}) v->reserve(n);
    for (auto* v : {&node_of_, &first_, &multiplicity_, &degrees_, &order_, &kept_}) v->reserve(n);
    hash_.reserve(n);
  }

  // Keeps the tokens of inputs.features (other inputs are ignored) with the highest propagated information.
  std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) {
    require_features(inputs.features);
    const index_t n = inputs.n_tokens();  // also checks that the other inputs agree
    return prune_tokens(inputs.features, std::nullopt, n, budget);
  }

  // prune() of the tokens rows[0], rows[1], ... of `features` (selection and scores indexed by position in
  // `rows`), read in place: Segmented hands over LLaVA-NeXT's grid, whose rows lie between newline tokens, this
  // way instead of gathering them into a copy first. Errors name the row of `features`.
  static constexpr bool reads_feature_rows() noexcept { return true; }
  std::span<const index_t> prune_feature_rows(const TokenMatrix& features, std::span<const index_t> rows,
                                              Budget budget) {
    require_features(features);
    for (const index_t r : rows)
      if (r < 0 || r >= features.n_tokens()) fail("rows", r, "row index outside [0, features.n_tokens)");
    return prune_tokens(features, rows, static_cast<index_t>(rows.size()), budget);
  }

  // score_j = v_j / deg_j of the last prune().
  [[nodiscard]] std::span<const float> scores() const noexcept { return scores_; }
  // Neighbour counts (self included; n for a zero token) of the last prune().
  [[nodiscard]] std::span<const index_t> degrees() const noexcept { return degrees_; }
  // Edges (j <= i) of the last prune()'s graph when it was not held as whole dense rows: the tiled path, or the
  // dense path of a graph with at most 64 edges per token (compressed rows); else 0.
  [[nodiscard]] std::size_t sparse_edges() const noexcept { return graph_.edges() + tiled_edges_; }
  // How the last prune() on the tiled path stored its graph (all zero after the dense path).
  [[nodiscard]] const kernels::GraphStorage& graph_storage() const noexcept { return storage_; }

 private:
  static void require_features(const TokenMatrix& features) {
    if (features.empty()) fail("features", "missing", "G-Prune needs the token features [n_tokens, dim]");
  }

  // prune() and prune_feature_rows(): token i is row rows[i] of x, or row i without `rows`.
  std::span<const index_t> prune_tokens(const TokenMatrix& x, std::optional<std::span<const index_t>> rows,
                                        index_t n, Budget budget) {
    const index_t k = budget.resolve(n);
    const index_t dim = x.dim();
    const auto un = static_cast<std::size_t>(n);
    grow(unit_, un * static_cast<std::size_t>(dim));  // grow only: resizing down and up again zero-fills
    for (auto* v : {&norms_, &node_norms_, &scores_}) v->resize(un);
    for (auto* v : {&mass_, &share_}) v->resize(un);
    for (auto* v : {&node_of_, &first_, &multiplicity_, &degrees_, &order_}) v->resize(un);
    hash_.resize(un);
    kept_.resize(static_cast<std::size_t>(k));

    RowMap<float> unit(unit_.data(), n, dim, Eigen::OuterStride<>(dim));
    const kernels::KernelTable& level = kernels::active_kernels();
    // One pass over the features: each panel of rows is normalized, hashed and packed for the Gram while in cache.
    const ConstRowMap<float> tokens(unit_.data(), n, dim, Eigen::OuterStride<>(dim));
    gram_.packed_for(n, dim);
    auto hash_and_pack = [&](index_t i0, index_t i1) {
      for (index_t i = i0; i < i1; ++i) hash_[static_cast<std::size_t>(i)] = level.row_hash(unit_.data() + i * dim, dim);
      gram_.pack_panel(tokens, i0 / kernels::kPanel, level);
    };
    visit_dtype(x.dtype(), [&]<class T>(T) {
      kernels::normalize_rows(x.as<T>(), unit, norms_, "features", executor(), kernels::kPanel, hash_and_pack, rows);
    });
    const index_t nodes = merge_identical_tokens(n, dim);
    const bool packed = nodes == n;  // no duplicates: the nodes are the tokens, packed above
    const ConstRowMap<float> node_units(unit_.data(), nodes, dim, Eigen::OuterStride<>(dim));
    const auto node_multiplicity = std::span<const index_t>(multiplicity_).first(static_cast<std::size_t>(nodes));

    const kernels::EdgeRule rule{static_cast<float>(config_.threshold), static_cast<float>(config_.temperature)};
    // Neighbour statistics, then propagation, over whole rows of E however they are stored.
    auto flow = [&](auto rows) {
      stats_.compute(nodes, n, rows, node_multiplicity, level, executor());
      if (config_.iterations > 0)
        kernels::propagate(nodes, n, rows, stats_.rowsum, node_multiplicity, config_.iterations, mass_, share_,
                           level, executor());
    };
    auto sparse_row = [&](index_t i, auto visit) { graph_.row(i, visit); };
    tiled_edges_ = 0;
    storage_ = kernels::GraphStorage{};
    if (dense_fits(nodes)) {
      // Dense: the whole lower triangle of weights at once. Image graphs are sparse (a few percent of pairs are
      // edges): as compressed rows, statistics and propagation cost O(edges) instead of O(n^2). Denser graphs
      // keep whole dense rows (the triangle mirrored). Both give bitwise equal results.
      const auto ld = nodes;
      grow(weights_, static_cast<std::size_t>(nodes * nodes));
      // Each tile counts its rows' edges as it makes them (tile column q, row i at q nodes + i: tiles of one row
      // run on different threads), so no second pass over the triangle counts them.
      tile_edges_.resize(static_cast<std::size_t>(tile_columns(nodes) * nodes));
      gram_.lower_gram(
          node_units, ld, true, [&](index_t i0) { return weights_.data() + i0 * ld; },
          [&](float* tile, index_t i0, index_t j0, index_t h, index_t w, index_t stride) {
            rule.apply(tile, i0, j0, h, w, stride, node_norms_, level,
                       tile_edges_.data() + (j0 / kernels::kTile) * nodes + i0);
          },
          [](index_t, index_t) {}, packed);
      const std::size_t edges = sum_tile_edges(nodes);  // row i's lower edges now at tile_edges_[i]
      if (edges <= edge_budget(nodes)) {
        graph_.reset();
        graph_.append_panel(weights_.data(), 0, nodes, ld, tile_edges_.data());
        graph_.complete();
        flow(sparse_row);
      } else {
        graph_.reset();  // no compressed rows this call (sparse_edges() reads 0)
        mirror_lower(nodes);
        flow([&](index_t i, auto visit) { visit(nullptr, weights_.data() + i * ld, nodes); });
      }
    } else {
      // Tiled: one row panel of the Gram at a time, the lower triangle stored in tiles within the budget.
      graph_.reset();
      grow(weights_, static_cast<std::size_t>(kernels::kTile * nodes));
      flow_tiled(node_units, n, packed, rule, level);
    }
    // score_j = v_j / deg_j; after no iteration at all, v_j is the token's own norm.
    for (std::size_t j = 0; j < un; ++j) {
      const auto node = static_cast<std::size_t>(node_of_[j]);
      const double value = config_.iterations > 0 ? mass_[node] : static_cast<double>(norms_[j]);
      degrees_[j] = stats_.degree[node];
      scores_[j] = static_cast<float>(value / static_cast<double>(degrees_[j]));
      if (!std::isfinite(scores_[j]))
        fail("features", "norms near the fp32 limit", "the propagated information overflows fp32");
    }
    kernels::top_k_ascending(std::span<const float>(scores_), k, order_, std::span<index_t>(kept_));
    return kept_;
  }

  // Buffers whose contents each call overwrites only grow: a LLaVA-NeXT call alternates graphs of 576 and 2304
  // tokens, and resizing 576^2 back up to 2304^2 floats zero-filled 21 MB per call.
  static void grow(std::vector<float>& buffer, std::size_t size) {
    if (buffer.size() < size) buffer.resize(size);
  }

  // Distinct tokens up to which the dense n x n path runs: max_dense_tokens, and n^2 floats within the budget.
  [[nodiscard]] bool dense_fits(index_t nodes) const {
    const auto un = static_cast<std::size_t>(nodes);
    return nodes <= config_.max_dense_tokens && un * un <= config_.max_graph_bytes / sizeof(float);
  }
  [[nodiscard]] index_t largest_dense(index_t max_tokens) const {
    const std::size_t floats = config_.max_graph_bytes / sizeof(float);
    auto side = static_cast<std::size_t>(std::sqrt(static_cast<double>(floats)));
    while (side > 0 && side * side > floats) --side;
    while ((side + 1) * (side + 1) <= floats) ++side;
    return std::min({max_tokens, config_.max_dense_tokens, static_cast<index_t>(std::min<std::size_t>(side, 1u << 30))});
  }
  // Bytes left for stored tiles after the Gram's row panel.
  [[nodiscard]] std::size_t tile_budget(index_t nodes) const {
    const std::size_t panel = sizeof(float) * static_cast<std::size_t>(kernels::kTile) * static_cast<std::size_t>(nodes);
    return config_.max_graph_bytes > panel ? config_.max_graph_bytes - panel : 0;
  }

  // The tiled path (kernels/graph.hpp, TiledGraph): statistics while the Gram is built, then `iterations` passes,
  // each over the stored panels and the recomputed ones in panel order.
  void flow_tiled(const ConstRowMap<float>& node_units, index_t n, bool packed, const kernels::EdgeRule& rule,
                  const kernels::KernelTable& level) {
    const index_t nodes = node_units.rows(), dim = node_units.cols();
    const auto count = static_cast<std::size_t>(nodes);
    stats_.multiplicity.assign(multiplicity_.begin(), multiplicity_.begin() + nodes);
    const double* m = stats_.multiplicity.data();
    float* panel = weights_.data();
    tiled_.begin(nodes, tile_budget(nodes), executor());
    gram_.lower_gram(
        node_units, nodes, false, [&](index_t) { return panel; },
        [&](float* tile, index_t i0, index_t j0, index_t h, index_t w, index_t stride) {
          rule.apply(tile, i0, j0, h, w, stride, node_norms_, level, tiled_.row_counts(j0));
          tiled_.built_tile(tile, i0, j0, h, w, stride, m);
        },
        [&](index_t i0, index_t i1) { tiled_.built_panel(panel, i0, i1, nodes, m); }, packed);
    stats_.rowsum.resize(count);
    stats_.degree.resize(count);
    tiled_.finish_stats(stats_.rowsum, stats_.degree, n);
    storage_ = tiled_.storage();
    tiled_edges_ = storage_.edges;
    const double* share = share_.data();
    for (int step = 0; step < config_.iterations; ++step) {
      if (step > 0)  // per-token values back to node totals
        for (std::size_t i = 0; i < count; ++i) mass_[i] *= static_cast<double>(multiplicity_[i]);
      const double uniform = kernels::shares(std::span<const double>(mass_).first(count),
                                             std::span<const double>(stats_.rowsum).first(count),
                                             std::span<double>(share_).first(count)) /
                             static_cast<double>(n);
      tiled_.start_pass();
      tiled_.stored_pass(share);
      for (index_t p = storage_.stored_panels; p < kernels::TiledGraph::panels_of(nodes); ++p) {
        gram_.lower_gram_panel(nodes, dim, p, panel, nodes,
                               [&](float* tile, index_t i0, index_t j0, index_t h, index_t w, index_t stride) {
                                 rule.apply(tile, i0, j0, h, w, stride, node_norms_, level);
                                 tiled_.recomputed_tile(tile, i0, j0, h, w, stride, share);
                               });
        tiled_.recomputed_panel(panel, p * kernels::kTile, std::min(nodes, (p + 1) * kernels::kTile), nodes, share);
      }
      for (index_t i = 0; i < nodes; ++i) mass_[static_cast<std::size_t>(i)] = uniform + tiled_.row_total(i);
    }
  }

  static index_t tile_columns(index_t nodes) { return (nodes + kernels::kTile - 1) / kernels::kTile; }
  // Row i's tile counts summed into tile_edges_[i] (row i lies in tiles 0 .. i / kTile); returns their total.
  std::size_t sum_tile_edges(index_t nodes) {
    std::size_t edges = 0;
    for (index_t i = 0; i < nodes; ++i) {
      std::uint32_t row = 0;
      for (index_t q = 0; q <= i / kernels::kTile; ++q) row += tile_edges_[static_cast<std::size_t>(q * nodes + i)];
      tile_edges_[static_cast<std::size_t>(i)] = row;
      edges += row;
    }
    return edges;
  }
  // Edges the compressed rows hold without allocating (reserve() sizes them): 64 per token on average.
  static std::size_t edge_budget(index_t nodes) { return 64 * static_cast<std::size_t>(nodes); }

  // Fills the upper triangle of the dense weights from the lower one, in 16 x 16 blocks that keep both sides
  // within a few cache lines.
  void mirror_lower(index_t nodes) {
    constexpr index_t kBlock = 16;
    float* w = weights_.data();
    for (index_t a0 = 0; a0 < nodes; a0 += kBlock)
      for (index_t b0 = 0; b0 <= a0; b0 += kBlock)
        for (index_t b = b0; b < std::min(b0 + kBlock, nodes); ++b)
          for (index_t a = std::max(a0, b + 1); a < std::min(a0 + kBlock, nodes); ++a) w[b * nodes + a] = w[a * nodes + b];
  }

  // Tokens with identical unit vectors become one graph node (see kernels/dedup.hpp). Compacts the nodes' unit
  // rows to the front of unit_ (in place: node g's first token is at row >= g) and sets their multiplicity,
  // total mass (sum of norms) and norm. Returns the number of nodes.
  index_t merge_identical_tokens(index_t n, index_t dim) {
    const ConstRowMap<float> unit(unit_.data(), n, dim, Eigen::OuterStride<>(dim));
    const index_t nodes = kernels::group_identical_rows(unit, node_of_, first_, order_, hash_, executor(), /*hashed=*/true);
    std::fill(multiplicity_.begin(), multiplicity_.begin() + nodes, index_t{0});
    std::fill(mass_.begin(), mass_.begin() + nodes, 0.0);
    for (index_t i = 0; i < n; ++i) {
      const auto node = static_cast<std::size_t>(node_of_[static_cast<std::size_t>(i)]);
      ++multiplicity_[node];
      mass_[node] += static_cast<double>(norms_[static_cast<std::size_t>(i)]);
    }
    for (index_t g = 0; g < nodes; ++g) {
      const index_t token = first_[static_cast<std::size_t>(g)];
      node_norms_[static_cast<std::size_t>(g)] = norms_[static_cast<std::size_t>(token)];
      if (token != g) std::copy_n(unit_.data() + token * dim, dim, unit_.data() + g * dim);
    }
    return nodes;
  }

  GPruneConfig config_;
  kernels::GramWorkspace gram_;
  kernels::NeighbourStats stats_;
  kernels::SparseGraph graph_;
  kernels::TiledGraph tiled_;
  kernels::GraphStorage storage_;
  std::size_t tiled_edges_ = 0;
  std::vector<float> unit_, weights_, norms_, node_norms_, scores_;
  std::vector<double> mass_, share_;  // propagated information v (per node) and v / rowsum
  std::vector<index_t> node_of_, first_, multiplicity_, degrees_, order_, kept_;
  std::vector<std::uint64_t> hash_;
  std::vector<std::uint32_t> tile_edges_;  // the dense path's edges per (tile column, row), then per row
};

static_assert(TokenPruner<GPrune>);

}  // namespace tokenprune
