#pragma once
// The Gram matrix G = U U^T of unit-norm tokens, lower triangle only: n^2 d / 2 multiply-adds, the floor of
// G-Prune's cost.
//
// The lower triangle is cut into square tiles of a fixed size (kTile); each tile is one call of Eigen 3.4's
// packed GEMM kernel (the triangular kernel on the diagonal), run with packing buffers owned by this workspace,
// because Eigen's public products heap-allocate them on every call. Determinism: the tile geometry and the depth
// blocking kc depend on (n, d) only, so every entry is accumulated in the same order whichever thread computes
// its tile and however many threads there are. With OpenMP enabled by the engine (-fopenmp), tiles are spread
// over threads; without it, the loop is sequential. Either way the values are identical.
//
// Tiles are produced row panel by row panel (rows [i0, i0 + kTile), columns [0, i0 + kTile)), and a callback
// sees each finished panel. That lets the caller either keep the whole lower triangle (dense path) or consume a
// panel and reuse its memory (sparse path, bounded memory at video scale).

#include <tokenprune/core/executor.hpp>
#include <tokenprune/core/types.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <vector>


static_assert(EIGEN_VERSION_AT_LEAST(3, 4, 0) && !EIGEN_VERSION_AT_LEAST(3, 5, 0),
              "tokenprune drives Eigen 3.4's packed GEMM kernels directly; check kernels/gram.hpp against this Eigen");

namespace tokenprune::kernels {

inline constexpr index_t kTile = 256;

class GramWorkspace {
 public:
  // The executor that runs the tiles (default: OpenMP threads, or the calling thread). Set before reserve().
  void set_executor(const Executor& executor) noexcept { executor_ = executor; }
  [[nodiscard]] const Executor& executor() const noexcept { return executor_; }

  // Packing buffers for Grams of up to max_tokens tokens of dim columns, for every worker the executor may use now.
  void reserve(index_t max_tokens, index_t dim) {
    threads_ = std::max(threads_, executor_.workers());
    ensure(depth_block(max_tokens, dim));
    executor_.warm_up();  // the OpenMP team starts here, not in prune()
  }

  // Computes the lower triangle of unit * unit^T, panel by panel. `rows_of(i0)` returns where row i0 of the
  // panel starting at i0 is stored (row-major, `ld` floats per row; rows i0 .. i0 + kTile - 1 follow). Within each
  // panel, `on_tile(tile_rows, i0, j0)` post-processes every finished tile (rows i0.., columns j0..; on a
  // diagonal tile only entries j <= i are valid) on the thread that computed it; then `on_panel(i0, i1)` runs
  // once, sequentially, for the finished panel. With `whole_triangle`, all panels are computed in one parallel
  // sweep before the on_panel calls (the caller keeps every panel in place, so no memory is reused).
  template <class RowsOf, class OnTile, class OnPanel>
  void lower_gram(const ConstRowMap<float>& unit, index_t ld, bool whole_triangle, RowsOf rows_of, OnTile on_tile,
                  OnPanel on_panel) {
    const index_t n = unit.rows();
    const index_t d = unit.cols();
    if (n == 0) return;
    const index_t kc = depth_block(n, d);
    threads_ = std::max(threads_, executor_.workers());  // without reserve(): grows here (and allocates)
    ensure(kc);
    const index_t panels = (n + kTile - 1) / kTile;
    auto run_tile = [&](index_t p, index_t q, int thread) {
      const index_t i0 = p * kTile, j0 = q * kTile;
      const index_t h = std::min(kTile, n - i0), w = std::min(kTile, n - j0);
      float* out = rows_of(i0) + j0;
      for (index_t a = 0; a < h; ++a) std::fill_n(out + a * ld, p == q ? a + 1 : w, 0.0f);  // kernels accumulate
      const index_t lu = unit.outerStride();
      if (d > 0) tile_product(unit.data() + i0 * lu, lu, unit.data() + j0 * lu, lu, h, w, d, kc, out, ld, p == q, thread);
      on_tile(out, i0, j0, h, w, ld);
    };
    if (whole_triangle) {
      const index_t tiles = panels * (panels + 1) / 2;
      // worker < executor_.workers() <= threads_: one pair of packing buffers each.
      executor_.for_each(tiles, [&](index_t t, int thread) {
        // Tile t of the lower triangle in row order: panel p holds tiles p(p+1)/2 .. p(p+1)/2 + p.
        index_t p = 0;
        while ((p + 1) * (p + 2) / 2 <= t) ++p;
        run_tile(p, t - p * (p + 1) / 2, thread);
      });
      for (index_t p = 0; p < panels; ++p) on_panel(p * kTile, std::min(n, (p + 1) * kTile));
    } else {
      for (index_t p = 0; p < panels; ++p) {
        executor_.for_each(p + 1, [&](index_t q, int thread) { run_tile(p, q, thread); });
        on_panel(p * kTile, std::min(n, (p + 1) * kTile));
      }
    }
  }

  // out (a.rows() x b.rows(), row-major, stride ld) = a b^T, sequentially, with the same kernels and buffers.
  void product(const ConstRowMap<float>& a, const ConstRowMap<float>& b, float* out, index_t ld) {
    const index_t d = a.cols();
    const index_t kc = depth_block(std::max(a.rows(), b.rows()), d);
    ensure(kc);
    for (index_t i0 = 0; i0 < a.rows(); i0 += kTile)
      for (index_t j0 = 0; j0 < b.rows(); j0 += kTile) {
        const index_t h = std::min(kTile, a.rows() - i0), w = std::min(kTile, b.rows() - j0);
        float* tile = out + i0 * ld + j0;
        for (index_t r = 0; r < h; ++r) std::fill_n(tile + r * ld, w, 0.0f);
        if (d > 0)
          tile_product(a.data() + i0 * a.outerStride(), a.outerStride(), b.data() + j0 * b.outerStride(),
                       b.outerStride(), h, w, d, kc, tile, ld, false, 0);
      }
  }

 private:
  static constexpr std::size_t kPad = 64;  // Eigen's packing may touch a few elements past a panel

  // Eigen's blocking descriptor, pointed at one thread's buffers, with the depth block fixed by (n, d).
  struct Blocking : Eigen::internal::level3_blocking<float, float> {
    Blocking(index_t kc, float* lhs, float* rhs) {
      this->m_blockA = lhs;
      this->m_blockB = rhs;
      this->m_mc = kTile;
      this->m_nc = kTile;
      this->m_kc = kc;
    }
  };

  // The depth block Eigen would choose for the whole n x n x d product.
  static index_t depth_block(index_t n, index_t d) {
    Eigen::Index k = std::max<index_t>(d, 1), m = std::max<index_t>(n, 1), cols = m;
    Eigen::internal::computeProductBlockingSizes<float, float, 1, Eigen::Index>(k, m, cols, 1);
    return std::max<Eigen::Index>(k, 1);
  }

  void ensure(index_t kc) {
    const auto size = static_cast<std::size_t>(kc * kTile) + kPad;
    if (pack_.size() < static_cast<std::size_t>(2 * threads_)) pack_.resize(static_cast<std::size_t>(2 * threads_));
    for (auto& buffer : pack_)
      if (buffer.size() < size) buffer.resize(size);
  }

  // out (h x w, row-major, stride ld) += A B^T for A = h rows at `rows_i`, B = w rows at `rows_j` (d columns,
  // row strides la and lb), computed as its column-major transpose (w x h) = B A^T; with `diagonal` (A = B) only
  // the lower triangle (the transpose's upper one).
  void tile_product(const float* rows_i, index_t la, const float* rows_j, index_t lb, index_t h, index_t w, index_t d,
                    index_t kc, float* out, index_t ld, bool diagonal, int thread) {
    Blocking blocking(kc, pack_[static_cast<std::size_t>(2 * thread)].data(),
                      pack_[static_cast<std::size_t>(2 * thread + 1)].data());
    using namespace Eigen;
    if (diagonal) {
      internal::general_matrix_matrix_triangular_product<Index, float, RowMajor, false, float, ColMajor, false,
                                                         ColMajor, 1, Upper>::run(h, d, rows_i, la, rows_i, la, out,
                                                                                  1, ld, 1.0f, blocking);
    } else {
      internal::general_matrix_matrix_product<Index, float, RowMajor, false, float, ColMajor, false, ColMajor,
                                              1>::run(w, h, d, rows_j, lb, rows_i, la, out, 1, ld, 1.0f, blocking);
    }
  }

  Executor executor_;
  int threads_ = 1;
  // Two buffers per thread (packed lhs, packed rhs). Eigen's kernels use aligned packet loads on them.
  std::vector<std::vector<float, Eigen::aligned_allocator<float>>> pack_;
};

}  // namespace tokenprune::kernels
