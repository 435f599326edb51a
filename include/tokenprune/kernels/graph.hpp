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

struct EdgeRule {
  float threshold = 0.5f;     // tau: j is a neighbour of i when s_ij >= tau
  float temperature = 0.03f;  // T: softmax over neighbours of s_ij / T

  // Cosines -> weights e_ij in place on one tile of the lower triangle (rows i0.., columns j0..; on a diagonal
  // tile only j <= i). A non-zero token is its own neighbour with s_ii = 1 exactly (rounding must not drop it
  // when tau = 1); a zero token (norm 0) has no neighbour, not even itself.
  void apply(float* tile, index_t i0, index_t j0, index_t h, index_t w, index_t ld, std::span<const float> norms) const {
    const float max_logit = 1.0f / temperature;
    for (index_t a = 0; a < h; ++a) {
      const index_t i = i0 + a;
      const index_t width = i0 == j0 ? a + 1 : w;
      if (i0 == j0) tile[a * ld + a] = norms[static_cast<std::size_t>(i)] > 0.0f ? 1.0f : 0.0f;
      Eigen::Map<Eigen::ArrayXf> s(tile + a * ld, width);
      s = (s >= threshold).select((s / temperature - max_logit).exp(), 0.0f);
    }
  }
};

// rowsum_i = sum_j e_ij and degree_i = #{j : e_ij > 0} of the symmetric E given by its lower triangle, each
// row accumulated in ascending j (row part, then column part), in double. Rows without neighbours get degree n.
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
  void add_row(index_t i, const Cols& cols, const float* e, index_t count) {
    double total = 0.0;
    index_t edges = 0;
    for (index_t t = 0; t < count; ++t) {
      const float value = e[t];
      if (value > 0.0f) {
        const auto j = static_cast<std::size_t>(cols(t));
        total += value;
        ++edges;
        if (static_cast<index_t>(j) != i) {
          column_part[j] += value;
          ++degree[j];
        }
      }
    }
    rowsum[static_cast<std::size_t>(i)] += total;
    degree[static_cast<std::size_t>(i)] += edges;
  }
  void finish(index_t n) {
    for (std::size_t j = 0; j < static_cast<std::size_t>(n); ++j) {
      rowsum[j] += column_part[j];
      if (degree[j] == 0) degree[j] = n;  // a zero token's row is uniform over all n tokens
    }
  }
};

// Share of each token's mass per unit weight: share_i = v_i / rowsum_i; returns the mass of rows without
// neighbours, which P spreads uniformly.
inline double shares(std::span<const float> v, std::span<const double> rowsum, std::span<float> share) {
  double uniform_mass = 0.0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (rowsum[i] > 0.0) {
      share[i] = static_cast<float>(v[i] / rowsum[i]);
    } else {
      share[i] = 0.0f;
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
inline float multiply_add(float a, float b, float c) noexcept {
#if defined(FP_FAST_FMAF)
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
float accumulate_row(index_t i, const Cols& cols, const float* e, index_t count, const float* share, float* v) {
  const float share_i = share[i];
  float partial[4] = {0.0f, 0.0f, 0.0f, 0.0f};
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

// v <- v P, `iterations` times. `rows(i, visit)` calls visit(columns, weights, count) with row i's stored lower
// entries (ascending columns <= i).
template <class Rows>
void propagate(index_t n, Rows rows, std::span<const double> rowsum, int iterations, std::span<float> v,
               std::span<float> share) {
  for (int step = 0; step < iterations; ++step) {
    const double uniform_mass = shares(v, rowsum, share);
    std::fill(v.begin(), v.end(), static_cast<float>(uniform_mass / static_cast<double>(n)));
    for (index_t i = 0; i < n; ++i)
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

  void statistics(NeighbourStats& stats) const {
    const index_t n = rows();
    stats.reset(n);
    for (index_t i = 0; i < n; ++i)
      row(i, [&](const auto& cols, const float* e, index_t count) { stats.add_row(i, cols, e, count); });
    stats.finish(n);
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
