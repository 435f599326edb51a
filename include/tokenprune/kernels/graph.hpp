#pragma once
#include <tokenprune/core/abi.hpp>
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

#include <tokenprune/core/error.hpp>
#include <tokenprune/core/types.hpp>
#include <tokenprune/kernels/gram.hpp>
#include <tokenprune/kernels/levels.hpp>
#include <tokenprune/kernels/parallel.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>


namespace tokenprune::inline TOKENPRUNE_ABI::kernels {

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
  // With `counts`, counts[a] = the edges (weights > 0) of row a of the tile.
  void apply(float* tile, index_t i0, index_t j0, index_t h, index_t w, index_t ld, std::span<const float> norms,
             const KernelTable& kernels, std::uint32_t* counts = nullptr) const {
    const float max_logit = 1.0f / temperature;
    for (index_t a = 0; a < h; ++a) {
      const index_t i = i0 + a;
      const index_t width = i0 == j0 ? a + 1 : w;
      if (i0 == j0) tile[a * ld + a] = self_similarity(norms[static_cast<std::size_t>(i)]);
      const std::uint32_t edges = kernels.edge_weights(tile + a * ld, width, threshold, temperature, max_logit);
      if (counts != nullptr) counts[a] = edges;
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
  // Appends rows i0..i1-1 of a panel (row i0 + a at panel + a * ld, columns 0..i), whose weights > 0 number
  // row_edges[a] (EdgeRule::apply's counts). A sparse graph's rows are mostly +0: runs of 16 weights whose bits
  // OR to zero (all +0) are skipped with one integer test, which the compiler vectorizes, instead of a branch
  // per weight.
  void append_panel(const float* panel, index_t i0, index_t i1, index_t ld, const std::uint32_t* row_edges) {
    constexpr index_t kRun = 16;
    std::size_t end = lower_column_.size();
    for (index_t a = 0; a < i1 - i0; ++a) end += row_edges[a];
    lower_column_.resize(end);  // within reserve()'s capacity when the edges are within the budget
    lower_weight_.resize(end);
    std::int32_t* column = lower_column_.data();
    float* weight = lower_weight_.data();
    std::size_t c = static_cast<std::size_t>(lower_start_.back());
    for (index_t i = i0; i < i1; ++i) {
      const float* row = panel + (i - i0) * ld;
      const std::size_t row_end = c + row_edges[i - i0];
      auto keep = [&](index_t j) {
        if (row[j] > 0.0f && c < row_end) {  // c < row_end: never past the row's counted edges
          column[c] = static_cast<std::int32_t>(j);
          weight[c++] = row[j];
        }
      };
      index_t j = 0;
      for (; j + kRun <= i + 1 && c < row_end; j += kRun) {
        std::uint32_t bits[kRun];
        std::memcpy(bits, row + j, sizeof bits);
        std::uint32_t any = 0;
        for (index_t t = 0; t < kRun; ++t) any |= bits[t];
        if (any != 0)
          for (index_t t = 0; t < kRun; ++t) keep(j + t);
      }
      for (; j <= i && c < row_end; ++j) keep(j);
      if (c != row_end) fail("features", "edge count", "internal: a row's weights > 0 disagree with its count");
      lower_start_.push_back(static_cast<index_t>(c));
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

// ===================================================================================== tiled lower triangle
// Video-scale graphs (tens of thousands of nodes, any density) are kept as the lower triangle only, cut into the
// Gram's kTile x kTile tiles, each stored as it is cheapest (empty, compressed rows with 16-bit tile-local
// columns, or dense), or not stored at all: past the memory budget a row panel is recomputed from the packed
// features at every pass instead.
//
// No whole row is ever formed, yet every row dot is kernels.row_dot's, bit for bit: row_dot sums e_ij x_j over
// ascending j in four lanes (lane j mod 4, one fma chain each, then (l0 + l1) + (l2 + l3)). Walk the triangle
// panel by panel, ascending: panel P first adds its own entries (j <= i) to the lanes of its rows ("direct", in
// ascending j), then each of its entries e_ij with j < i to the lanes of row j ("transposed": row j's columns
// beyond j arrive in ascending i, because earlier panels came first). So each lane of each row receives exactly
// row_dot's chain, only spread over time: the lanes (4 doubles a row) are kept between panels and reduced last.
// Within a panel, the direct part of each row is one task (rows in blocks) and the transposed part of each tile
// another (a tile's columns belong to no other tile of the panel), so any thread count gives the same bits. Tile
// starts are multiples of kTile, hence of 4: tile-local lane numbers are the global ones.
//
// A zero weight adds exactly nothing to a lane (fma(0, x, l) = l for finite x >= 0), so dense and compressed
// tiles, stored and recomputed panels, and the dense n x n path all agree.

namespace tiles {

static_assert(kTile % 4 == 0 && kTile <= 65536, "tile-local columns are 16-bit and lanes are column mod 4");

inline constexpr index_t kRowsPerTask = 16;

// The kernels of one tile pass, once per instruction-set level. Lanes: acc + 4 r holds the 4 lanes of row r.
// direct: rows [0, rows) of e (row stride ld), columns [0, cols): lanes of each row += e_rt x_t (lane t mod 4);
//   deg (if not null) += sum_t [e_rt > 0] x_t.
// transposed: the same block seen from its columns: lanes of column c += e_rc x_r (lane r mod 4, ascending r);
//   deg[c] (if not null) += sum_r [e_rc > 0] x_r.
// Compressed tiles: start[r] .. start[r + 1] are row r's entries (weights w > 0, 16-bit columns col, ascending);
// the transposed form skips the self entry of a diagonal tile (counted once, as a direct entry).
struct TileKernels {
  void (*direct)(const float* e, index_t ld, index_t rows, index_t cols, const double* x, double* acc, double* deg);
  void (*transposed)(const float* e, index_t ld, index_t rows, index_t cols, const double* x, double* acc, double* deg);
  void (*direct_sparse)(const std::uint32_t* start, const float* w, const std::uint16_t* col, index_t r0, index_t r1,
                        const double* x, double* acc, double* deg);
  void (*transposed_sparse)(const std::uint32_t* start, const float* w, const std::uint16_t* col, index_t rows,
                            bool diagonal, const double* x, double* acc, double* deg);
  // The row's entries > 0 and their columns; returns their number.
  std::uint32_t (*compress)(const float* row, index_t w, float* weights, std::uint16_t* col);
};

// Scalar forms (every level compiles them; they also finish the vector kernels' edges). Ranges of rows and
// columns so that a vector kernel can hand over its remainders in the same per-lane order.
#define TOKENPRUNE_TILE_SCALAR_KERNELS                                                                              \
  inline void direct_range(const float* e, index_t ld, index_t r0, index_t r1, index_t c0, index_t c1,             \
                           const double* x, double* acc, double* deg) {                                             \
    for (index_t r = r0; r < r1; ++r) {                                                                             \
      const float* row = e + r * ld;                                                                                \
      double* a = acc + 4 * r;                                                                                      \
      double count = 0.0;                                                                                           \
      for (index_t t = c0; t < c1; ++t) {                                                                           \
        a[t & 3] = std::fma(static_cast<double>(row[t]), x[t], a[t & 3]);                                           \
        count += row[t] > 0.0f ? x[t] : 0.0;                                                                        \
      }                                                                                                             \
      if (deg != nullptr) deg[r] += count;                                                                          \
    }                                                                                                               \
  }                                                                                                                 \
  inline void transposed_range(const float* e, index_t ld, index_t r0, index_t r1, index_t c0, index_t c1,         \
                               const double* x, double* acc, double* deg) {                                         \
    for (index_t r = r0; r < r1; ++r) {                                                                             \
      const float* row = e + r * ld;                                                                                \
      const double xr = x[r];                                                                                       \
      const index_t lane = r & 3;                                                                                   \
      for (index_t c = c0; c < c1; ++c) {                                                                           \
        acc[4 * c + lane] = std::fma(static_cast<double>(row[c]), xr, acc[4 * c + lane]);                           \
        if (deg != nullptr && row[c] > 0.0f) deg[c] += xr;                                                          \
      }                                                                                                             \
    }                                                                                                               \
  }                                                                                                                 \
  inline void direct_sparse(const std::uint32_t* start, const float* w, const std::uint16_t* col, index_t r0,      \
                            index_t r1, const double* x, double* acc, double* deg) {                                \
    for (index_t r = r0; r < r1; ++r) {                                                                             \
      if (start[r] == start[r + 1]) continue;                                                                       \
      double lanes[4] = {acc[4 * r], acc[4 * r + 1], acc[4 * r + 2], acc[4 * r + 3]};                               \
      for (std::uint32_t t = start[r]; t < start[r + 1]; ++t) {                                                     \
        const unsigned c = col[t];                                                                                  \
        lanes[c & 3] = std::fma(static_cast<double>(w[t]), x[c], lanes[c & 3]);                                     \
      }                                                                                                             \
      for (int l = 0; l < 4; ++l) acc[4 * r + l] = lanes[l];                                                        \
      if (deg != nullptr) /* every stored entry is an edge */                                                       \
        for (std::uint32_t t = start[r]; t < start[r + 1]; ++t) deg[r] += x[col[t]];                                \
    }                                                                                                               \
  }                                                                                                                 \
  inline void transposed_sparse(const std::uint32_t* start, const float* w, const std::uint16_t* col, index_t rows, \
                                bool diagonal, const double* x, double* acc, double* deg) {                         \
    for (index_t r = 0; r < rows; ++r) {                                                                            \
      const double xr = x[r];                                                                                       \
      const index_t lane = r & 3;                                                                                   \
      std::uint32_t end = start[r + 1];                                                                             \
      if (diagonal && end > start[r] && col[end - 1] == r) --end; /* the self entry is direct only */             \
      for (std::uint32_t t = start[r]; t < end; ++t) {                                                              \
        const std::size_t slot = 4 * static_cast<std::size_t>(col[t]) + static_cast<std::size_t>(lane);           \
        acc[slot] = std::fma(static_cast<double>(w[t]), xr, acc[slot]);                                             \
      }                                                                                                             \
      if (deg != nullptr)                                                                                           \
        for (std::uint32_t t = start[r]; t < end; ++t) deg[col[t]] += xr;                                           \
    }                                                                                                               \
  }                                                                                                                 \
  inline std::uint32_t compress_range(const float* row, index_t c0, index_t c1, float* weights, std::uint16_t* col,  \
                                      std::uint32_t k) {                                                            \
    for (index_t c = c0; c < c1; ++c)                                                                               \
      if (row[c] > 0.0f) {                                                                                          \
        weights[k] = row[c];                                                                                        \
        col[k++] = static_cast<std::uint16_t>(c);                                                                   \
      }                                                                                                             \
    return k;                                                                                                       \
  }

namespace tiles_portable {
TOKENPRUNE_TILE_SCALAR_KERNELS
inline void direct(const float* e, index_t ld, index_t rows, index_t cols, const double* x, double* acc, double* deg) {
  direct_range(e, ld, 0, rows, 0, cols, x, acc, deg);
}
inline void transposed(const float* e, index_t ld, index_t rows, index_t cols, const double* x, double* acc,
                       double* deg) {
  transposed_range(e, ld, 0, rows, 0, cols, x, acc, deg);
}
inline std::uint32_t compress(const float* row, index_t w, float* weights, std::uint16_t* col) {
  return compress_range(row, 0, w, weights, col, 0);
}
inline const TileKernels& table() {
  static constexpr TileKernels kernels{&direct, &transposed, &direct_sparse, &transposed_sparse, &compress};
  return kernels;
}
}  // namespace tiles_portable

#if TOKENPRUNE_X86_DISPATCH
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,popcnt,bmi"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,popcnt,bmi")
#endif
// AVX2 (also used on AVX-512 machines: these passes are memory-bound). Same operations as the scalar forms.
namespace tiles_avx2 {
TOKENPRUNE_TILE_SCALAR_KERNELS

inline void transpose4(__m256d& a, __m256d& b, __m256d& c, __m256d& d) {
  const __m256d t0 = _mm256_unpacklo_pd(a, b), t1 = _mm256_unpackhi_pd(a, b);
  const __m256d t2 = _mm256_unpacklo_pd(c, d), t3 = _mm256_unpackhi_pd(c, d);
  a = _mm256_permute2f128_pd(t0, t2, 0x20);
  b = _mm256_permute2f128_pd(t1, t3, 0x20);
  c = _mm256_permute2f128_pd(t0, t2, 0x31);
  d = _mm256_permute2f128_pd(t1, t3, 0x31);
}
inline double sum4(__m256d v) {  // integer-valued counts: exact in any order
  alignas(32) double l[4];
  _mm256_store_pd(l, v);
  return (l[0] + l[1]) + (l[2] + l[3]);
}

// Four rows at a time, each row's lanes one ymm (the four lanes of row_dot exactly); the column tail is scalar.
template <bool kCount>
inline void direct_impl(const float* e, index_t ld, index_t rows, index_t cols, const double* x, double* acc,
                        double* deg) {
  const index_t cols4 = cols & ~index_t{3};
  const __m256d zero = _mm256_setzero_pd();
  index_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* e0 = e + r * ld;
    const float* e1 = e0 + ld;
    const float* e2 = e1 + ld;
    const float* e3 = e2 + ld;
    __m256d a0 = _mm256_loadu_pd(acc + 4 * r), a1 = _mm256_loadu_pd(acc + 4 * r + 4);
    __m256d a2 = _mm256_loadu_pd(acc + 4 * r + 8), a3 = _mm256_loadu_pd(acc + 4 * r + 12);
    __m256d d0 = zero, d1 = zero, d2 = zero, d3 = zero;
    for (index_t t = 0; t < cols4; t += 4) {
      const __m256d xv = _mm256_loadu_pd(x + t);
      const __m256d v0 = _mm256_cvtps_pd(_mm_loadu_ps(e0 + t)), v1 = _mm256_cvtps_pd(_mm_loadu_ps(e1 + t));
      const __m256d v2 = _mm256_cvtps_pd(_mm_loadu_ps(e2 + t)), v3 = _mm256_cvtps_pd(_mm_loadu_ps(e3 + t));
      a0 = _mm256_fmadd_pd(v0, xv, a0);
      a1 = _mm256_fmadd_pd(v1, xv, a1);
      a2 = _mm256_fmadd_pd(v2, xv, a2);
      a3 = _mm256_fmadd_pd(v3, xv, a3);
      if constexpr (kCount) {
        d0 = _mm256_add_pd(d0, _mm256_and_pd(_mm256_cmp_pd(v0, zero, _CMP_GT_OQ), xv));
        d1 = _mm256_add_pd(d1, _mm256_and_pd(_mm256_cmp_pd(v1, zero, _CMP_GT_OQ), xv));
        d2 = _mm256_add_pd(d2, _mm256_and_pd(_mm256_cmp_pd(v2, zero, _CMP_GT_OQ), xv));
        d3 = _mm256_add_pd(d3, _mm256_and_pd(_mm256_cmp_pd(v3, zero, _CMP_GT_OQ), xv));
      }
    }
    _mm256_storeu_pd(acc + 4 * r, a0);
    _mm256_storeu_pd(acc + 4 * r + 4, a1);
    _mm256_storeu_pd(acc + 4 * r + 8, a2);
    _mm256_storeu_pd(acc + 4 * r + 12, a3);
    if constexpr (kCount) {
      deg[r] += sum4(d0);
      deg[r + 1] += sum4(d1);
      deg[r + 2] += sum4(d2);
      deg[r + 3] += sum4(d3);
    }
  }
  for (; r < rows; ++r) {
    const float* e0 = e + r * ld;
    __m256d a0 = _mm256_loadu_pd(acc + 4 * r), d0 = zero;
    for (index_t t = 0; t < cols4; t += 4) {
      const __m256d xv = _mm256_loadu_pd(x + t);
      const __m256d v0 = _mm256_cvtps_pd(_mm_loadu_ps(e0 + t));
      a0 = _mm256_fmadd_pd(v0, xv, a0);
      if constexpr (kCount) d0 = _mm256_add_pd(d0, _mm256_and_pd(_mm256_cmp_pd(v0, zero, _CMP_GT_OQ), xv));
    }
    _mm256_storeu_pd(acc + 4 * r, a0);
    if constexpr (kCount) deg[r] += sum4(d0);
  }
  direct_range(e, ld, 0, rows, cols4, cols, x, acc, kCount ? deg : nullptr);
}

// Eight columns at a time with their lanes transposed into registers (A[l][g]: lane l of columns c + 4g ..
// c + 4g + 3), four rows per step (row r + l feeds lane l): one load, one conversion and one fma per 4 entries.
template <bool kCount>
inline void transposed_impl(const float* e, index_t ld, index_t rows, index_t cols, const double* x, double* acc,
                            double* deg) {
  const index_t rows4 = rows & ~index_t{3}, cols8 = cols & ~index_t{7};
  const __m256d zero = _mm256_setzero_pd();
  for (index_t c = 0; c < cols8; c += 8) {
    __m256d a[4][2], d[4][2];
    for (int g = 0; g < 2; ++g) {
      double* base = acc + 4 * (c + 4 * g);
      a[0][g] = _mm256_loadu_pd(base);
      a[1][g] = _mm256_loadu_pd(base + 4);
      a[2][g] = _mm256_loadu_pd(base + 8);
      a[3][g] = _mm256_loadu_pd(base + 12);
      transpose4(a[0][g], a[1][g], a[2][g], a[3][g]);
      for (int l = 0; l < 4; ++l) d[l][g] = zero;
    }
    for (index_t r = 0; r < rows4; r += 4) {
      for (int l = 0; l < 4; ++l) {
        const float* row = e + (r + l) * ld + c;
        const __m256d xb = _mm256_broadcast_sd(x + r + l);
        const __m256d v0 = _mm256_cvtps_pd(_mm_loadu_ps(row)), v1 = _mm256_cvtps_pd(_mm_loadu_ps(row + 4));
        a[l][0] = _mm256_fmadd_pd(v0, xb, a[l][0]);
        a[l][1] = _mm256_fmadd_pd(v1, xb, a[l][1]);
        if constexpr (kCount) {
          d[l][0] = _mm256_add_pd(d[l][0], _mm256_and_pd(_mm256_cmp_pd(v0, zero, _CMP_GT_OQ), xb));
          d[l][1] = _mm256_add_pd(d[l][1], _mm256_and_pd(_mm256_cmp_pd(v1, zero, _CMP_GT_OQ), xb));
        }
      }
    }
    for (int g = 0; g < 2; ++g) {
      transpose4(a[0][g], a[1][g], a[2][g], a[3][g]);
      double* base = acc + 4 * (c + 4 * g);
      _mm256_storeu_pd(base, a[0][g]);
      _mm256_storeu_pd(base + 4, a[1][g]);
      _mm256_storeu_pd(base + 8, a[2][g]);
      _mm256_storeu_pd(base + 12, a[3][g]);
      if constexpr (kCount) {
        const __m256d total = _mm256_add_pd(_mm256_add_pd(d[0][g], d[1][g]), _mm256_add_pd(d[2][g], d[3][g]));
        _mm256_storeu_pd(deg + c + 4 * g, _mm256_add_pd(_mm256_loadu_pd(deg + c + 4 * g), total));
      }
    }
  }
  transposed_range(e, ld, rows4, rows, 0, cols8, x, acc, kCount ? deg : nullptr);
  transposed_range(e, ld, 0, rows, cols8, cols, x, acc, kCount ? deg : nullptr);
}

inline void direct(const float* e, index_t ld, index_t rows, index_t cols, const double* x, double* acc, double* deg) {
  if (deg != nullptr) {
    direct_impl<true>(e, ld, rows, cols, x, acc, deg);
  } else {
    direct_impl<false>(e, ld, rows, cols, x, acc, deg);
  }
}
inline void transposed(const float* e, index_t ld, index_t rows, index_t cols, const double* x, double* acc,
                       double* deg) {
  if (deg != nullptr) {
    transposed_impl<true>(e, ld, rows, cols, x, acc, deg);
  } else {
    transposed_impl<false>(e, ld, rows, cols, x, acc, deg);
  }
}
// Masks of 8 entries > 0 (data movement only).
inline std::uint32_t compress(const float* row, index_t w, float* weights, std::uint16_t* col) {
  const index_t w8 = w & ~index_t{7};
  const __m256 zero = _mm256_setzero_ps();
  std::uint32_t k = 0;
  for (index_t c = 0; c < w8; c += 8) {
    auto mask = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(row + c), zero, _CMP_GT_OQ)));
    if (mask == 0xFFu) {  // a full group (dense regions): no bit loop
      _mm256_storeu_ps(weights + k, _mm256_loadu_ps(row + c));
      for (int b = 0; b < 8; ++b) col[k + static_cast<std::uint32_t>(b)] = static_cast<std::uint16_t>(c + b);
      k += 8;
      continue;
    }
    while (mask != 0) {
      const int b = __builtin_ctz(mask);
      mask &= mask - 1;
      weights[k] = row[c + b];
      col[k++] = static_cast<std::uint16_t>(c + b);
    }
  }
  return compress_range(row, w8, w, weights, col, k);
}
inline const TileKernels& table() {
  static constexpr TileKernels kernels{&direct, &transposed, &direct_sparse, &transposed_sparse, &compress};
  return kernels;
}
}  // namespace tiles_avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,popcnt,bmi"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,popcnt,bmi")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 on its own _mm256_undefined_* in the intrinsics
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
// AVX-512: the AVX2 passes, and compression with masks (a stored tile is compressed while it is in cache, so
// this one is not memory-bound). Register compression and masked stores: nothing is written past an entry.
namespace tiles_avx512 {
inline std::uint32_t compress(const float* row, index_t w, float* weights, std::uint16_t* col) {
  const index_t w16 = w & ~index_t{15};
  const __m512 zero = _mm512_setzero_ps();
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  std::uint32_t k = 0;
  for (index_t c = 0; c < w16; c += 16) {
    const __m512 v = _mm512_loadu_ps(row + c);
    const __mmask16 mask = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
    if (mask == 0) continue;
    const auto count = static_cast<unsigned>(__builtin_popcount(mask));
    const auto first = static_cast<__mmask16>((1u << count) - 1u);
    _mm512_mask_storeu_ps(weights + k, first, _mm512_maskz_compress_ps(mask, v));
    const __m512i columns = _mm512_maskz_compress_epi32(mask, _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int>(c))));
    _mm256_mask_storeu_epi16(col + k, first, _mm512_cvtepi32_epi16(columns));
    k += count;
  }
  return tiles_avx2::compress_range(row, w16, w, weights, col, k);
}
inline const TileKernels& table() {
  static constexpr TileKernels kernels{&tiles_avx2::direct, &tiles_avx2::transposed, &tiles_avx2::direct_sparse,
                                       &tiles_avx2::transposed_sparse, &compress};
  return kernels;
}
}  // namespace tiles_avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
#endif  // TOKENPRUNE_X86_DISPATCH
#undef TOKENPRUNE_TILE_SCALAR_KERNELS

inline const TileKernels& tile_kernels(Isa isa) {
#if TOKENPRUNE_X86_DISPATCH
  if (isa == Isa::avx512) return tiles_avx512::table();
  if (isa != Isa::portable) return tiles_avx2::table();
#else
  (void)isa;
#endif
  return tiles_portable::table();
}

}  // namespace tiles

// What the last tiled build stored.
struct GraphStorage {
  index_t panels = 0;         // row panels of kTile rows
  index_t stored_panels = 0;  // the others are recomputed at every propagation step
  index_t reserved_panels = 0;  // of the stored ones: stored as their tiles were computed (they fit at worst)
  index_t empty_tiles = 0, sparse_tiles = 0, dense_tiles = 0;  // tiles of the stored panels
  std::size_t bytes = 0;      // stored bytes (tiles and their row starts)
  std::size_t edges = 0;      // edges j <= i of the whole graph (stored or not)
};

// The lower triangle of E in tiles, within a byte budget (see the section comment above). Use: begin(), then
// the Gram of the whole triangle panel by panel with the edge rule writing each finished tile's row counts to
// row_counts(j0), built_tile() on the tile (on its thread) and built_panel() after each panel; finish_stats();
// then per propagation step start_pass(), stored_pass(), for each later panel (Gram of that panel again)
// recomputed_tile() and recomputed_panel(), and row_total().
//
// A panel that the budget left can hold even with every tile dense ("reserved") is stored by the threads that
// computed its tiles, while each tile is still in cache, and its statistics wait: one pass over the stored tiles
// adds them (flush_stats(), before the first panel that is not reserved, or at the end). The lanes then receive
// the same chains in the same order as when each panel adds its own at once, which the other panels still do
// (their tiles' transposed parts in built_tile(), their direct parts from the panel buffer in built_panel()).
class TiledGraph {
 public:
  static index_t panels_of(index_t nodes) { return (nodes + kTile - 1) / kTile; }

  // Bytes that storing row panel p of a graph of `nodes` nodes can take at most (each off-diagonal tile at most
  // dense, the diagonal one compressed and full), and the whole graph.
  static std::size_t worst_panel_bytes(index_t nodes, index_t p) {
    const auto h = static_cast<std::size_t>(std::min(kTile, nodes - p * kTile));
    return static_cast<std::size_t>(p) * 4 * h * static_cast<std::size_t>(kTile) + sparse_bytes(h, h * (h + 1) / 2);
  }
  static std::size_t worst_bytes(index_t nodes) {
    std::size_t bytes = 0;
    for (index_t p = 0; p < panels_of(nodes); ++p) bytes += worst_panel_bytes(nodes, p);
    return bytes;
  }

  // After this, graphs of up to max_nodes nodes storing up to max_bytes allocate nothing.
  void reserve(index_t max_nodes, std::size_t max_bytes) {
    const auto panels = static_cast<std::size_t>(panels_of(max_nodes));
    tiles_.reserve(panels * (panels + 1) / 2);
    counts_.reserve(panels * static_cast<std::size_t>(kTile));
    acc_.reserve(4 * static_cast<std::size_t>(max_nodes));
    deg_.reserve(static_cast<std::size_t>(max_nodes));
    ensure_arena(std::min(max_bytes, worst_bytes(max_nodes)));
  }

  void begin(index_t nodes, std::size_t max_bytes, const Executor& executor) {
    nodes_ = nodes;
    executor_ = &executor;
    kernels_ = &tiles::tile_kernels(active_isa());
    const auto panels = static_cast<std::size_t>(panels_of(nodes));
    limit_ = std::min(max_bytes, worst_bytes(nodes));
    ensure_arena(limit_);
    used_ = 0;
    tiles_.resize(panels * (panels + 1) / 2);
    counts_.resize(panels * static_cast<std::size_t>(kTile));
    acc_.assign(4 * static_cast<std::size_t>(nodes), 0.0);
    deg_.assign(static_cast<std::size_t>(nodes), 0.0);
    storage_ = GraphStorage{};
    storage_.panels = static_cast<index_t>(panels);
    stats_deferred_ = false;
    reserved_ = fits_worst_panel(0);
  }

  // Where the edge rule writes the edge count of each row of tile (p, j0 / kTile) of the panel being built.
  [[nodiscard]] std::uint32_t* row_counts(index_t j0) { return counts_.data() + j0; }

  // A finished tile of the build (rows i0.., columns j0.., after the edge rule and its row counts), on the
  // thread that computed it. In a panel that is not reserved, an off-diagonal tile without an edge is skipped: its
  // entries would add +0 to lanes and degrees that are never -0, which changes no bit (sparse video graphs: most
  // tiles).
  void built_tile(float* tile, index_t i0, index_t j0, index_t h, index_t w, index_t ld, const double* multiplicity) {
    if (reserved_) {
      store_tile(tile, i0 / kTile, j0 / kTile, h, ld);
      return;
    }
    const std::uint32_t* counts = counts_.data() + j0;
    if (i0 == j0 || std::any_of(counts, counts + h, [](std::uint32_t c) { return c != 0; }))
      finish_tile(tile, i0, j0, h, w, ld, multiplicity, true);
  }

  // After each panel of the build (rows [i0, i1), `ld` floats a row, columns 0 .. i1 - 1). A reserved panel is
  // already stored; any other adds its neighbour statistics now and is stored if it fits in what is left of the
  // budget.
  void built_panel(float* panel, index_t i0, index_t i1, index_t ld, const double* multiplicity) {
    const index_t p = i0 / kTile, h = i1 - i0;
    const std::size_t first = tile_index(p, 0);
    multiplicity_ = multiplicity;
    if (reserved_) {
      for (index_t q = 0; q <= p; ++q) {
        const Tile& tile = tiles_[first + static_cast<std::size_t>(q)];
        storage_.edges += tile.edges;
        count_kind(tile);
      }
      ++storage_.stored_panels;
      ++storage_.reserved_panels;
      stats_deferred_ = true;
      storage_.bytes = used_;
      reserved_ = fits_worst_panel(p + 1);
      if (!reserved_ && p + 1 < storage_.panels) flush_stats();
      return;
    }
    std::size_t bytes = 0;
    for (index_t q = 0; q <= p; ++q) {
      Tile& tile = tiles_[first + static_cast<std::size_t>(q)];
      classify(tile, p, q, h);
      storage_.edges += tile.edges;
      tile.offset = used_ + bytes;
      bytes += tile_bytes(tile, h, q);
    }
    // Stored panels are a prefix (the first panel that does not fit and all later ones are recomputed), so that a
    // pass over them is one parallel loop (stored_pass()).
    const bool store = storage_.stored_panels == p && used_ + bytes <= limit_;
    if (store) {
      ++storage_.stored_panels;
      for (index_t q = 0; q <= p; ++q) {
        Tile& tile = tiles_[first + static_cast<std::size_t>(q)];
        count_kind(tile);
        if (tile.kind == Kind::sparse) fill_row_starts(tile, q, h);
      }
      used_ += bytes;
      storage_.bytes = used_;
    }
    const index_t blocks = (h + tiles::kRowsPerTask - 1) / tiles::kRowsPerTask;
    executor_->for_each(blocks, [&](index_t b, int) {
      const index_t r0 = b * tiles::kRowsPerTask, r1 = std::min(h, r0 + tiles::kRowsPerTask);
      // Tile by tile in column order, empty ones skipped (kTile is a multiple of 4: each column keeps its lane).
      for (index_t q = 0; q <= p; ++q) {
        if (q < p && tiles_[first + static_cast<std::size_t>(q)].kind == Kind::empty) continue;
        const index_t c0 = q * kTile;
        kernels_->direct(panel + r0 * ld + c0, ld, r1 - r0, std::min(kTile, i1 - c0), multiplicity + c0,
                         lanes(i0 + r0), deg_.data() + i0 + r0);
      }
      if (store)
        for (index_t q = 0; q <= p; ++q)
          write_rows(tiles_[first + static_cast<std::size_t>(q)], panel + q * kTile, ld, p, q, r0, r1, h);
    });
    finish_diagonal(panel, i0, h, ld, multiplicity, true);
  }

  // rowsum_i = sum_j m_j e_ij and degree_i (n_tokens for a node without neighbours), as NeighbourStats.
  void finish_stats(std::span<double> rowsum, std::span<index_t> degree, index_t n_tokens) {
    if (stats_deferred_) flush_stats();
    for (index_t i = 0; i < nodes_; ++i) {
      rowsum[static_cast<std::size_t>(i)] = row_total(i);
      const auto neighbours = static_cast<index_t>(deg_[static_cast<std::size_t>(i)]);
      degree[static_cast<std::size_t>(i)] = neighbours > 0 ? neighbours : n_tokens;
    }
  }

  void start_pass() { std::fill(acc_.begin(), acc_.end(), 0.0); }
  [[nodiscard]] bool stored(index_t p) const { return p < storage_.stored_panels; }

  // One propagation pass over all stored panels (the first S) with x (share of each node). The lanes of column
  // block R (the rows of panel R) receive, in this order, the direct part of panel R and the transposed parts of
  // tiles (R, R), (R + 1, R), ..., (S - 1, R): no other block's work touches them, so each R is one task (of
  // S + 1 tile visits: balanced) and the whole pass one parallel loop. The recomputed panels follow, in order.
  // With deg, also the degrees (x the multiplicities).
  void stored_pass(const double* x, double* deg = nullptr) {
    const index_t panels = storage_.stored_panels;
    executor_->for_each(panels, [&](index_t r, int) {
      const index_t i0 = r * kTile, h = std::min(kTile, nodes_ - i0);
      double* row_deg = deg != nullptr ? deg + i0 : nullptr;
      for (index_t q = 0; q <= r; ++q) {
        const Tile& tile = tiles_[tile_index(r, q)];
        const index_t w = std::min(kTile, nodes_ - q * kTile);
        if (tile.kind == Kind::sparse) {
          kernels_->direct_sparse(row_starts(tile), sparse_weights(tile, h), sparse_columns(tile, h), 0, h,
                                  x + q * kTile, lanes(i0), row_deg);
        } else if (tile.kind == Kind::dense) {
          kernels_->direct(dense_weights(tile), w, h, w, x + q * kTile, lanes(i0), row_deg);
        }
      }
      for (index_t p = r; p < panels; ++p) {
        const Tile& tile = tiles_[tile_index(p, r)];
        const index_t rows = std::min(kTile, nodes_ - p * kTile), w = h;
        if (tile.kind == Kind::sparse) {
          kernels_->transposed_sparse(row_starts(tile), sparse_weights(tile, rows), sparse_columns(tile, rows), rows,
                                      p == r, x + p * kTile, lanes(i0), row_deg);
        } else if (tile.kind == Kind::dense) {
          kernels_->transposed(dense_weights(tile), w, rows, w, x + p * kTile, lanes(i0), row_deg);
        }
      }
    });
  }

  // A recomputed tile of a panel that is not stored (after the edge rule, on its thread), then the panel.
  void recomputed_tile(float* tile, index_t i0, index_t j0, index_t h, index_t w, index_t ld, const double* x) {
    finish_tile(tile, i0, j0, h, w, ld, x, false);
  }
  void recomputed_panel(float* panel, index_t i0, index_t i1, index_t ld, const double* x) {
    const index_t h = i1 - i0;
    const index_t blocks = (h + tiles::kRowsPerTask - 1) / tiles::kRowsPerTask;
    executor_->for_each(blocks, [&](index_t b, int) {
      const index_t r0 = b * tiles::kRowsPerTask, r1 = std::min(h, r0 + tiles::kRowsPerTask);
      kernels_->direct(panel + r0 * ld, ld, r1 - r0, i1, x, lanes(i0 + r0), nullptr);
    });
    finish_diagonal(panel, i0, h, ld, x, false);
  }

  // Row i's dot of the last pass, reduced as row_dot reduces its lanes.
  [[nodiscard]] double row_total(index_t i) const {
    const double* a = acc_.data() + 4 * i;
    return (a[0] + a[1]) + (a[2] + a[3]);
  }
  [[nodiscard]] const GraphStorage& storage() const noexcept { return storage_; }

 private:
  enum class Kind : std::uint8_t { empty, sparse, dense };
  struct Tile {
    std::size_t offset = 0;  // bytes into the arena
    std::uint32_t edges = 0;
    Kind kind = Kind::empty;
  };

  // A compressed tile: row starts (h + 1), weights, 16-bit columns, padded to 4 bytes.
  static std::size_t sparse_bytes(std::size_t h, std::size_t edges) {
    return 4 * (h + 1) + 4 * edges + (2 * edges + 3) / 4 * 4;
  }
  static std::size_t tile_index(index_t p, index_t q) {
    return static_cast<std::size_t>(p) * static_cast<std::size_t>(p + 1) / 2 + static_cast<std::size_t>(q);
  }
  void ensure_arena(std::size_t bytes) {
    const std::size_t words = (bytes + 3) / 4;
    if (words > arena_words_) {
      arena_.reset(new std::uint32_t[words]);  // default-initialized: no page is touched before it is used
      arena_words_ = words;
    }
  }
  [[nodiscard]] std::uint32_t* row_starts(const Tile& tile) const { return arena_.get() + tile.offset / 4; }
  [[nodiscard]] float* sparse_weights(const Tile& tile, index_t h) const {
    return reinterpret_cast<float*>(row_starts(tile) + h + 1);
  }
  [[nodiscard]] std::uint16_t* sparse_columns(const Tile& tile, index_t h) const {
    return reinterpret_cast<std::uint16_t*>(sparse_weights(tile, h) + tile.edges);
  }
  [[nodiscard]] float* dense_weights(const Tile& tile) const { return reinterpret_cast<float*>(row_starts(tile)); }
  double* lanes(index_t row) { return acc_.data() + 4 * row; }

  // Whether panel p is stored whatever its tiles hold: every earlier panel was, and what the budget left takes
  // the panel with every off-diagonal tile dense.
  [[nodiscard]] bool fits_worst_panel(index_t p) const {
    return p < storage_.panels && storage_.stored_panels == p && used_ + worst_panel_bytes(nodes_, p) <= limit_;
  }
  // A tile's edges (from the row counts) and the cheapest storage of them; a diagonal tile is always compressed.
  void classify(Tile& tile, index_t p, index_t q, index_t h) const {
    const std::uint32_t* counts = counts_.data() + q * kTile;
    std::size_t edges = 0;
    for (index_t a = 0; a < h; ++a) edges += counts[a];
    const index_t w = std::min(kTile, nodes_ - q * kTile);
    const std::size_t dense = 4 * static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
    tile.edges = static_cast<std::uint32_t>(edges);
    tile.kind = edges == 0 ? Kind::empty : (q == p || sparse_bytes(static_cast<std::size_t>(h), edges) <= dense) ? Kind::sparse : Kind::dense;
  }
  [[nodiscard]] std::size_t tile_bytes(const Tile& tile, index_t h, index_t q) const {
    const index_t w = std::min(kTile, nodes_ - q * kTile);
    return tile.kind == Kind::empty    ? 0
           : tile.kind == Kind::sparse ? sparse_bytes(static_cast<std::size_t>(h), tile.edges)
                                       : 4 * static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
  }
  void count_kind(const Tile& tile) {
    storage_.empty_tiles += tile.kind == Kind::empty;
    storage_.sparse_tiles += tile.kind == Kind::sparse;
    storage_.dense_tiles += tile.kind == Kind::dense;
  }
  void fill_row_starts(const Tile& tile, index_t q, index_t h) const {
    const std::uint32_t* counts = counts_.data() + q * kTile;
    std::uint32_t* start = row_starts(tile);
    start[0] = 0;
    for (index_t a = 0; a < h; ++a) start[a + 1] = start[a] + counts[a];
  }
  // Tile (p, q) of a reserved panel into the arena, on the thread that computed it (its place is taken with an
  // atomic add: where a tile lies depends on the threads' timing, what it holds does not). A diagonal tile's
  // entries above the diagonal are not part of it.
  void store_tile(const float* tile, index_t p, index_t q, index_t h, index_t ld) {
    Tile& slot = tiles_[tile_index(p, q)];
    classify(slot, p, q, h);
    const std::size_t bytes = tile_bytes(slot, h, q);
    if (bytes == 0) return;
    slot.offset = std::atomic_ref<std::size_t>(used_).fetch_add(bytes, std::memory_order_relaxed);
    if (slot.kind == Kind::sparse) fill_row_starts(slot, q, h);
    write_rows(slot, tile, ld, p, q, 0, h, h);
  }
  // The statistics of the stored panels whose own were deferred (all stored panels so far: they are a prefix).
  void flush_stats() {
    stored_pass(multiplicity_, deg_.data());
    stats_deferred_ = false;
  }

  // Rows [r0, r1) of tile (p, q), whose row a is at src + a * ld, into the tile's storage (row starts already
  // set). A diagonal tile's row a ends at column a: what lies above the diagonal is not part of it.
  void write_rows(const Tile& tile, const float* src, index_t ld, index_t p, index_t q, index_t r0, index_t r1,
                  index_t h) const {
    const index_t w = std::min(kTile, nodes_ - q * kTile);
    if (tile.kind == Kind::dense) {
      for (index_t a = r0; a < r1; ++a) std::memcpy(dense_weights(tile) + a * w, src + a * ld, 4 * static_cast<std::size_t>(w));
      return;
    }
    if (tile.kind != Kind::sparse) return;
    const std::uint32_t* start = row_starts(tile);
    float* weights = sparse_weights(tile, h);
    std::uint16_t* columns = sparse_columns(tile, h);
    for (index_t a = r0; a < r1; ++a)
      kernels_->compress(src + a * ld, p == q ? a + 1 : w, weights + start[a], columns + start[a]);
  }

  // Every finished tile: zeros above the diagonal (the Gram may leave cosines there), then the transposed part
  // of an off-diagonal tile at once, while it is in cache (its columns' rows have had their direct part).
  void finish_tile(float* tile, index_t i0, index_t j0, index_t h, index_t w, index_t ld, const double* x, bool count) {
    if (i0 == j0) {
      for (index_t a = 0; a < h; ++a) std::fill(tile + a * ld + a + 1, tile + a * ld + w, 0.0f);
      return;
    }
    kernels_->transposed(tile, ld, h, w, x + i0, lanes(j0), count ? deg_.data() + j0 : nullptr);
  }
  // The diagonal tile's transposed part, after the panel's direct part (which counted the self entries).
  void finish_diagonal(float* panel, index_t i0, index_t h, index_t ld, const double* x, bool count) {
    float* tile = panel + i0;
    for (index_t a = 0; a < h; ++a) tile[a * ld + a] = 0.0f;
    kernels_->transposed(tile, ld, h, h, x + i0, lanes(i0), count ? deg_.data() + i0 : nullptr);
  }

  index_t nodes_ = 0;
  const Executor* executor_ = nullptr;
  const tiles::TileKernels* kernels_ = nullptr;
  std::unique_ptr<std::uint32_t[]> arena_;
  std::size_t arena_words_ = 0, limit_ = 0;
  alignas(std::atomic_ref<std::size_t>::required_alignment) std::size_t used_ = 0;  // arena bytes taken
  const double* multiplicity_ = nullptr;  // of the build, for flush_stats()
  bool stats_deferred_ = false;  // stored panels whose statistics are not added yet
  bool reserved_ = false;  // the panel being built is reserved
  std::vector<Tile> tiles_;
  std::vector<std::uint32_t> counts_;
  std::vector<double> acc_, deg_;
  GraphStorage storage_;
};

}  // namespace tokenprune::kernels
