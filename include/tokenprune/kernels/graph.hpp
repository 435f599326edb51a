#pragma once
// G-Prune's graph: edge weights from cosines, neighbour statistics, propagation.
//
// With the softmax shift fixed at the largest possible logit 1/T (cosines never exceed 1, and s_ii = 1 for every
// non-zero token), the unnormalized weights e_ij = exp(s_ij/T - 1/T) form a symmetric matrix E. So only the lower
// triangle is computed and stored, and the row-stochastic P = diag(1/rowsum) E is never formed:
// v P = E (v / rowsum) because E is symmetric. A row with no neighbour (a zero token) is uniform, 1/n.
// The logit is s_ij / T (a division, as in the reference) minus fl(1/T), the reference's row maximum.
//
// Two storages of the lower triangle of E: dense (n x n floats, fastest, for n up to a few thousand) and sparse
// (compressed rows holding only the edges, filled one row panel at a time, for video-scale n).

#include <tokenprune/core/types.hpp>

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
  void apply(float* tile, index_t i0, index_t j0, index_t h, index_t w, index_t ld, std::span<const float> norms) const {
    const float max_logit = 1.0f / temperature;
    for (index_t a = 0; a < h; ++a) {
      const index_t i = i0 + a;
      const index_t width = i0 == j0 ? a + 1 : w;
      if (i0 == j0) tile[a * ld + a] = self_similarity(norms[static_cast<std::size_t>(i)]);
      Eigen::Map<Eigen::ArrayXf> s(tile + a * ld, width);
      s = (s >= threshold).select((s / temperature - max_logit).exp(), 0.0f);
    }
  }
};

// rowsum_i = sum_j m_j e_ij and degree_i = sum_j m_j [e_ij > 0] of the symmetric E given by its lower triangle,
// where node j stands for m_j identical tokens (m_j = 1 without duplicates; multiplying by 1 is exact). Each
// row is accumulated in ascending j (row part, then column part), in double. Nodes without any neighbour get
// degree n_tokens (their row of P is uniform over all tokens).
struct NeighbourStats {
  std::vector<double> rowsum, column_part;
  std::vector<index_t> degree;

  void reserve(std::size_t n) {
    rowsum.reserve(n);
    column_part.reserve(n);
    degree.reserve(n);
  }
  void reset(index_t n) {
    rowsum.assign(static_cast<std::size_t>(n), 0.0);
    column_part.assign(static_cast<std::size_t>(n), 0.0);
    degree.assign(static_cast<std::size_t>(n), 0);
  }
  // Adds row i's stored entries (columns `cols`, ascending, values `e`; all j <= i).
  template <class Cols>
  void add_row(index_t i, const Cols& cols, const float* e, index_t count, std::span<const index_t> multiplicity) {
    const index_t m_i = multiplicity[static_cast<std::size_t>(i)];
    double total = 0.0;
    index_t edges = 0;
    for (index_t t = 0; t < count; ++t) {
      const float value = e[t];
      if (value > 0.0f) {
        const auto j = static_cast<std::size_t>(cols(t));
        const index_t m_j = multiplicity[j];
        total += static_cast<double>(value) * static_cast<double>(m_j);
        edges += m_j;
        if (static_cast<index_t>(j) != i) {
          column_part[j] += static_cast<double>(value) * static_cast<double>(m_i);
          degree[j] += m_i;
        }
      }
    }
    rowsum[static_cast<std::size_t>(i)] += total;
    degree[static_cast<std::size_t>(i)] += edges;
  }
  void finish(index_t nodes, index_t n_tokens) {
    for (std::size_t j = 0; j < static_cast<std::size_t>(nodes); ++j) {
      rowsum[j] += column_part[j];
      if (degree[j] == 0) degree[j] = n_tokens;  // a zero token's row is uniform over all tokens
    }
  }
};

// Share of each token's mass per unit weight: share_i = v_i / rowsum_i; returns the mass of rows without
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

// Column accessor of a dense row: the t-th stored entry is column t.
struct DenseColumns {
  index_t operator()(index_t t) const noexcept { return t; }
};

// a * b + c with one rounding where the target has a fused multiply-add, two where it has none. Spelled out
// because compilers contract a * b + c differently in differently vectorized loops, which would make the dense
// and the sparse path round differently.
inline double multiply_add(double a, double b, double c) noexcept {
#if defined(FP_FAST_FMA)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// One row's contribution to v <- v P: returns sum_j e_ij share_j (row i's own gain) and adds e_ij share_i to
// v_j for j < i (the mirrored entries). The summation order is fixed by the column index alone (four partial
// sums picked by j mod 4; a zero weight adds exactly nothing), so a dense row and the compressed row of the same
// graph give bitwise identical results. The dense form is the same arithmetic, unrolled so it vectorizes.
template <class Cols>
double accumulate_row(index_t i, const Cols& cols, const float* e, index_t count, const double* share, double* v) {
  const double share_i = share[i];
  double partial[4] = {0.0, 0.0, 0.0, 0.0};
  if constexpr (std::is_same_v<Cols, DenseColumns>) {
    const index_t below = i;  // entries 0 .. i-1 mirror into v; entry i is the diagonal
    index_t t = 0;
    for (; t + 4 <= below; t += 4)
      for (int lane = 0; lane < 4; ++lane) {
        partial[lane] = multiply_add(e[t + lane], share[t + lane], partial[lane]);
        v[t + lane] = multiply_add(e[t + lane], share_i, v[t + lane]);
      }
    for (; t < below; ++t) {
      partial[t & 3] = multiply_add(e[t], share[t], partial[t & 3]);
      v[t] = multiply_add(e[t], share_i, v[t]);
    }
    if (count > i) partial[i & 3] = multiply_add(e[i], share[i], partial[i & 3]);
  } else {
    for (index_t t = 0; t < count; ++t) {
      const index_t j = cols(t);
      partial[j & 3] = multiply_add(e[t], share[j], partial[j & 3]);
      if (j != i) v[j] = multiply_add(e[t], share_i, v[j]);
    }
  }
  return (partial[0] + partial[1]) + (partial[2] + partial[3]);
}

// v <- v P, `iterations` (>= 1) times, in double, over nodes that stand for m_j identical tokens each. On entry
// v holds each node's total mass (the sum of its tokens' norms); on exit, the value of each single token of the
// node after the last step (all tokens of a node receive the same). `rows(i, visit)` calls
// visit(columns, weights, count) with node i's stored lower entries (ascending columns <= i).
// Double precision keeps the fp32 scores of tokens that are equal in exact arithmetic equal.
template <class Rows>
void propagate(index_t nodes, index_t n_tokens, Rows rows, std::span<const double> rowsum,
               std::span<const index_t> multiplicity, int iterations, std::span<double> v, std::span<double> share) {
  for (int step = 0; step < iterations; ++step) {
    if (step > 0)  // per-token values back to node totals
      for (std::size_t i = 0; i < static_cast<std::size_t>(nodes); ++i) v[i] *= static_cast<double>(multiplicity[i]);
    const auto count = static_cast<std::size_t>(nodes);
    const double uniform_mass = shares(v.first(count), rowsum.first(count), share.first(count));
    std::fill(v.begin(), v.begin() + nodes, uniform_mass / static_cast<double>(n_tokens));
    for (index_t i = 0; i < nodes; ++i)
      rows(i, [&](const auto& cols, const float* e, index_t count) {
        v[static_cast<std::size_t>(i)] += accumulate_row(i, cols, e, count, share.data(), v.data());
      });
  }
}

// The lower triangle of E as compressed rows of edges (e_ij > 0, j <= i, ascending j).
class SparseLowerGraph {
 public:
  void reserve(std::size_t n, std::size_t edges) {
    row_start_.reserve(n + 1);
    column_.reserve(edges);
    weight_.reserve(edges);
  }
  void reset() {
    row_start_.assign(1, 0);
    column_.clear();
    weight_.clear();
  }
  // Appends rows i0..i1-1 of a panel (row i0 + a at panel + a * ld, columns 0..i).
  void append_panel(const float* panel, index_t i0, index_t i1, index_t ld) {
    for (index_t i = i0; i < i1; ++i) {
      const float* row = panel + (i - i0) * ld;
      for (index_t j = 0; j <= i; ++j)
        if (row[j] > 0.0f) {
          column_.push_back(static_cast<std::int32_t>(j));
          weight_.push_back(row[j]);
        }
      row_start_.push_back(static_cast<index_t>(column_.size()));
    }
  }
  [[nodiscard]] index_t rows() const { return static_cast<index_t>(row_start_.size()) - 1; }
  [[nodiscard]] std::size_t edges() const { return weight_.size(); }

  void statistics(NeighbourStats& stats, std::span<const index_t> multiplicity, index_t n_tokens) const {
    const index_t n = rows();
    stats.reset(n);
    for (index_t i = 0; i < n; ++i)
      row(i, [&](const auto& cols, const float* e, index_t count) { stats.add_row(i, cols, e, count, multiplicity); });
    stats.finish(n, n_tokens);
  }

  // Calls visit(columns, weights, count) with row i's edges.
  template <class Visit>
  void row(index_t i, Visit visit) const {
    const auto begin = row_start_[static_cast<std::size_t>(i)];
    const std::int32_t* cols = column_.data() + begin;
    visit([cols](index_t t) { return static_cast<index_t>(cols[t]); }, weight_.data() + begin,
          row_start_[static_cast<std::size_t>(i) + 1] - begin);
  }

 private:
  std::vector<index_t> row_start_{0};
  std::vector<std::int32_t> column_;
  std::vector<float> weight_;
};

}  // namespace tokenprune::kernels
