#pragma once
// G-Prune's graph: edge weights from cosines, neighbour statistics, propagation.
//
// With the softmax shift fixed at the largest possible logit 1/T (cosines never exceed 1, and s_ii = 1 for every
// non-zero token), the unnormalized weights e_ij = exp(s_ij/T - 1/T) form a symmetric matrix E. So only the lower
// triangle is computed (and mirrored while still in cache), and the row-stochastic P = diag(1/rowsum) E is never
// formed: v P = E (v / rowsum) because E is symmetric. A row with no neighbour (a zero token) is uniform, 1/n.
// Every pass over E then works on whole rows, independently: each row is one dot product in a fixed order, so
// rows can go to any thread and dense and sparse storage give bitwise equal results.
// The logit is s_ij / T (a division, as in the reference) minus fl(1/T), the reference's row maximum.
//
// Two storages of the lower triangle of E: dense (n x n floats, fastest, for n up to a few thousand) and sparse
// (compressed rows holding only the edges, filled one row panel at a time, for video-scale n).

#include <tokenprune/core/types.hpp>
#include <tokenprune/kernels/levels.hpp>
#include <tokenprune/kernels/parallel.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>


namespace tokenprune::kernels {

inline float self_similarity(float norm) noexcept {
  const double scaled = static_cast<double>(norm) / 1e-12;
  return scaled >= 1.0 ? 1.0f : static_cast<float>(scaled * scaled);
}

struct EdgeRule {
  float threshold = 0.5f;     // tau: j is a neighbour of i when s_ij >= tau
  float temperature = 0.03f;  // T: softmax over neighbours of s_ij / T

  // Cosines -> weights e_ij in place on one tile of the lower triangle (rows i0.., columns j0..; on a diagonal
  // tile only j <= i). The diagonal is set from the definition, not from rounding: s_ii = |u_i|^2 with
  // u_i = x_i / max(w_i, 1e-12), i.e. exactly 1 for w_i >= 1e-12 (tau = 1 must keep the self-edge), (w_i/1e-12)^2
  // below that, and 0 for a zero token, which therefore has no neighbour at all.
  void apply(float* tile, index_t i0, index_t j0, index_t h, index_t w, index_t ld, std::span<const float> norms,
             const KernelTable& kernels) const {
    const float max_logit = 1.0f / temperature;
    for (index_t a = 0; a < h; ++a) {
      const index_t i = i0 + a;
      const index_t width = i0 == j0 ? a + 1 : w;
      if (i0 == j0) tile[a * ld + a] = self_similarity(norms[static_cast<std::size_t>(i)]);
      kernels.edge_weights(tile + a * ld, width, threshold, temperature, max_logit);
    }
  }
};

// Rows of E are visited as (cols, weights, count): cols == nullptr for a dense row (the t-th entry is column t),
// else the ascending column of each stored entry. kernels.row_dot sums over either in the same fixed order, so a
// dense row and the compressed row of the same graph give bitwise equal results (level_body.inl).

// rowsum_i = sum_j m_j e_ij and degree_i = sum_j m_j [e_ij > 0], where node j stands for m_j identical tokens
// (m_j = 1 without duplicates). Nodes without any neighbour get degree n_tokens (their row of P is uniform over
// all tokens). `rows(i, visit)` calls visit(columns, weights, count) with node i's whole row.
struct NeighbourStats {
  std::vector<double> rowsum, multiplicity;
  std::vector<index_t> degree;

  void reserve(std::size_t n) {
    rowsum.reserve(n);
    multiplicity.reserve(n);
    degree.reserve(n);
  }

  template <class Rows>
  void compute(index_t nodes, index_t n_tokens, Rows rows, std::span<const index_t> node_multiplicity,
               const KernelTable& kernels, const Executor& executor = {}) {
    const auto count = static_cast<std::size_t>(nodes);
    rowsum.resize(count);
    degree.resize(count);
    multiplicity.assign(node_multiplicity.begin(), node_multiplicity.begin() + nodes);
    for_each_row(executor, nodes, nodes, [&](index_t i) {
      rows(i, [&](const std::int32_t* cols, const float* e, index_t entries) {
        rowsum[static_cast<std::size_t>(i)] = kernels.row_dot(cols, e, entries, multiplicity.data());
        index_t neighbours = 0;  // integer sums: any order gives the same count
        for (index_t t = 0; t < entries; ++t)
          neighbours += e[t] > 0.0f ? node_multiplicity[static_cast<std::size_t>(cols ? cols[t] : t)] : 0;
        degree[static_cast<std::size_t>(i)] = neighbours > 0 ? neighbours : n_tokens;
      });
    });
  }
};

// Share of each node's mass per unit weight: share_i = v_i / rowsum_i; returns the mass of rows without
// neighbours, which P spreads uniformly.
inline double shares(std::span<const double> v, std::span<const double> rowsum, std::span<double> share) {
  double uniform_mass = 0.0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (rowsum[i] > 0.0) {
      share[i] = v[i] / rowsum[i];
    } else {
      share[i] = 0.0;
      uniform_mass += v[i];
    }
  }
  return uniform_mass;
}

// v <- v P, `iterations` (>= 1) times, in double, over nodes that stand for m_j identical tokens each. On entry
// v holds each node's total mass (the sum of its tokens' norms); on exit, the value of each single token of the
// node after the last step (all tokens of a node receive the same). `rows(i, visit)` as for NeighbourStats.
// Double precision keeps the fp32 scores of tokens that are equal in exact arithmetic equal.
template <class Rows>
void propagate(index_t nodes, index_t n_tokens, Rows rows, std::span<const double> rowsum,
               std::span<const index_t> multiplicity, int iterations, std::span<double> v, std::span<double> share,
               const KernelTable& kernels, const Executor& executor = {}) {
  const auto count = static_cast<std::size_t>(nodes);
  for (int step = 0; step < iterations; ++step) {
    if (step > 0)  // per-token values back to node totals
      for (std::size_t i = 0; i < count; ++i) v[i] *= static_cast<double>(multiplicity[i]);
    const double uniform = shares(v.first(count), rowsum.first(count), share.first(count)) / static_cast<double>(n_tokens);
    for_each_row(executor, nodes, nodes, [&](index_t i) {  // E is symmetric: (v P)_i = sum_j e_ij share_j
      rows(i, [&](const std::int32_t* cols, const float* e, index_t entries) {
        v[static_cast<std::size_t>(i)] = uniform + kernels.row_dot(cols, e, entries, share.data());
      });
    });
  }
}

// E as compressed rows of edges (e_ij > 0, ascending j). Filled with the lower triangle one row panel at a time,
// then complete() adds the mirrored upper entries, so that every row is whole.
class SparseGraph {
 public:
  void reserve(std::size_t n, std::size_t edges) {
    lower_start_.reserve(n + 1);
    lower_column_.reserve(edges);
    lower_weight_.reserve(edges);
    row_start_.reserve(n + 1);
    next_.reserve(n);
    column_.reserve(2 * edges);
    weight_.reserve(2 * edges);
  }
  void reset() {
    lower_start_.assign(1, 0);
    lower_column_.clear();
    lower_weight_.clear();
  }
  // Appends rows i0..i1-1 of a panel (row i0 + a at panel + a * ld, columns 0..i).
  void append_panel(const float* panel, index_t i0, index_t i1, index_t ld) {
    for (index_t i = i0; i < i1; ++i) {
      const float* row = panel + (i - i0) * ld;
      for (index_t j = 0; j <= i; ++j)
        if (row[j] > 0.0f) {
          lower_column_.push_back(static_cast<std::int32_t>(j));
          lower_weight_.push_back(row[j]);
        }
      lower_start_.push_back(static_cast<index_t>(lower_column_.size()));
    }
  }
  // Whole rows: row i = its lower entries (j <= i), then the mirrored e_ki of every later row k (ascending k).
  void complete() {
    const index_t n = static_cast<index_t>(lower_start_.size()) - 1;
    const auto un = static_cast<std::size_t>(n);
    next_.assign(un, 0);  // first the number of mirrored entries per row
    for (index_t k = 0; k < n; ++k)
      for (index_t t = lower_start_[static_cast<std::size_t>(k)]; t < lower_start_[static_cast<std::size_t>(k) + 1]; ++t)
        if (lower_column_[static_cast<std::size_t>(t)] != k) ++next_[static_cast<std::size_t>(lower_column_[static_cast<std::size_t>(t)])];
    row_start_.assign(un + 1, 0);
    for (std::size_t i = 0; i < un; ++i)
      row_start_[i + 1] = row_start_[i] + (lower_start_[i + 1] - lower_start_[i]) + next_[i];
    column_.resize(static_cast<std::size_t>(row_start_[un]));
    weight_.resize(column_.size());
    for (std::size_t i = 0; i < un; ++i) {
      const auto begin = static_cast<std::size_t>(lower_start_[i]), end = static_cast<std::size_t>(lower_start_[i + 1]);
      std::copy(lower_column_.begin() + begin, lower_column_.begin() + end, column_.begin() + row_start_[i]);
      std::copy(lower_weight_.begin() + begin, lower_weight_.begin() + end, weight_.begin() + row_start_[i]);
      next_[i] = row_start_[i] + static_cast<index_t>(end - begin);  // where row i's mirrored entries go
    }
    for (index_t k = 0; k < n; ++k)
      for (index_t t = lower_start_[static_cast<std::size_t>(k)]; t < lower_start_[static_cast<std::size_t>(k) + 1]; ++t) {
        const auto j = static_cast<std::size_t>(lower_column_[static_cast<std::size_t>(t)]);
        if (static_cast<index_t>(j) == k) continue;
        const auto slot = static_cast<std::size_t>(next_[j]++);
        column_[slot] = static_cast<std::int32_t>(k);
        weight_[slot] = lower_weight_[static_cast<std::size_t>(t)];
      }
  }
  [[nodiscard]] index_t rows() const { return static_cast<index_t>(row_start_.size()) - 1; }
  // Edges j <= i (each undirected edge once, self-edges included).
  [[nodiscard]] std::size_t edges() const { return lower_weight_.size(); }

  // Calls visit(columns, weights, count) with row i's edges.
  template <class Visit>
  void row(index_t i, Visit visit) const {
    const auto begin = row_start_[static_cast<std::size_t>(i)];
    visit(column_.data() + begin, weight_.data() + begin, row_start_[static_cast<std::size_t>(i) + 1] - begin);
  }

 private:
  std::vector<index_t> lower_start_{0};
  std::vector<std::int32_t> lower_column_;
  std::vector<float> lower_weight_;
  std::vector<index_t> row_start_{0}, next_;
  std::vector<std::int32_t> column_;
  std::vector<float> weight_;
};

}  // namespace tokenprune::kernels
