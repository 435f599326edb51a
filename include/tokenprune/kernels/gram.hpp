#pragma once
#include <tokenprune/core/abi.hpp>
// The Gram matrix G = U U^T of unit-norm tokens, lower triangle only: n^2 d / 2 multiply-adds, the floor of
// G-Prune's cost.
//
// Our own micro-kernels (kernels/level_body.inl), one per instruction-set level, picked at run time
// (core/isa.hpp): Eigen picks its SIMD at compile time, so in a portable binary its products run on SSE2.
// Every entry is the fp32 FMA chain over the feature index in order, so the level, the tile geometry, the depth
// blocking and the thread count never change a bit.
//
// U is packed once into panels of kPanel rows (depth-major, see level_body.inl), shared read-only by all tiles.
// The lower triangle is cut into square tiles of kTile; each tile is one task of the executor (OpenMP threads, an
// engine's pool, or the calling thread). Tiles are produced row panel by row panel (rows [i0, i0 + kTile),
// columns [0, i0 + kTile)), and a callback sees each finished panel. That lets the caller either keep the whole
// lower triangle (dense path) or consume a panel and reuse its memory (sparse path, bounded memory at video scale).

#include <tokenprune/core/executor.hpp>
#include <tokenprune/core/types.hpp>
#include <tokenprune/kernels/levels.hpp>
#include <tokenprune/kernels/parallel.hpp>

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI::kernels {

inline constexpr index_t kTile = 6 * kPanel;  // 288: LLaVA's 576 and 2304 tokens are whole tiles
static_assert(kTile % kPanel == 0);

// Floats of the packed panels of a rows x d operand.
inline std::size_t packed_size(index_t rows, index_t d) {
  return static_cast<std::size_t>((rows + kPanel - 1) / kPanel * kPanel) * static_cast<std::size_t>(d);
}

// A 64-byte aligned float buffer that grows only (reserve() sizes it).
class PackedBuffer {
 public:
  void ensure(std::size_t floats) {
    if (storage_.size() < floats + kAlignFloats) storage_.resize(floats + kAlignFloats);
  }
  [[nodiscard]] float* data() noexcept {
    const auto address = reinterpret_cast<std::uintptr_t>(storage_.data());
    return storage_.data() + ((64 - address % 64) % 64) / sizeof(float);
  }

 private:
  static constexpr std::size_t kAlignFloats = 16;
  std::vector<float> storage_;
};

class GramWorkspace {
 public:
  // The executor that runs the tiles (default: OpenMP threads, or the calling thread). Set before reserve().
  void set_executor(const Executor& executor) noexcept { executor_ = executor; }
  [[nodiscard]] const Executor& executor() const noexcept { return executor_; }

  // Packing buffers for Grams of up to max_tokens rows of dim columns.
  void reserve(index_t max_tokens, index_t dim) {
    lhs_.ensure(packed_size(max_tokens, dim));
    executor_.warm_up();  // the OpenMP team starts here, not in prune()
  }
  // Packing buffers for product() of up to max_rows x dim by max_cols x dim.
  void reserve_product(index_t max_rows, index_t max_cols, index_t dim) {
    lhs_.ensure(packed_size(max_rows, dim));
    rhs_.ensure(packed_size(max_cols, dim));
  }

  // Computes the lower triangle of unit * unit^T, panel by panel. `rows_of(i0)` returns where row i0 of the
  // panel starting at i0 is stored (row-major, `ld` floats per row; rows i0 .. i0 + kTile - 1 follow). Within each
  // panel, `on_tile(tile_rows, i0, j0)` post-processes every finished tile (rows i0.., columns j0..; on a
  // diagonal tile only entries j <= i are valid) on the thread that computed it; then `on_panel(i0, i1)` runs
  // once, sequentially, for the finished panel. With `whole_triangle`, all panels are computed in one parallel
  // sweep before the on_panel calls (the caller keeps every panel in place, so no memory is reused).
  // With `prepacked`, the caller has already packed `unit` (pack_panel() for every panel, after packed_for()).
  template <class RowsOf, class OnTile, class OnPanel>
  void lower_gram(const ConstRowMap<float>& unit, index_t ld, bool whole_triangle, RowsOf rows_of, OnTile on_tile,
                  OnPanel on_panel, bool prepacked = false) {
    const index_t n = unit.rows();
    const index_t d = unit.cols();
    if (n == 0) return;
    const KernelTable& kernels = active_kernels();
    if (!prepacked) pack(unit, lhs_);
    const float* packed = lhs_.data();
    const index_t panels = (n + kTile - 1) / kTile;
    auto run_tile = [&](index_t p, index_t q) {
      const index_t i0 = p * kTile, j0 = q * kTile;
      const index_t h = std::min(kTile, n - i0), w = std::min(kTile, n - j0);
      float* out = rows_of(i0) + j0;
      kernels.gram_tile(packed, packed, d, i0, h, j0, w, out, ld, p == q);
      on_tile(out, i0, j0, h, w, ld);
    };
    if (whole_triangle) {
      const index_t tiles = panels * (panels + 1) / 2;
      executor_.for_each(tiles, [&](index_t t, int) {
        // Tile t of the lower triangle in row order: panel p holds tiles p(p+1)/2 .. p(p+1)/2 + p.
        index_t p = 0;
        while ((p + 1) * (p + 2) / 2 <= t) ++p;
        run_tile(p, t - p * (p + 1) / 2);
      });
      for (index_t p = 0; p < panels; ++p) on_panel(p * kTile, std::min(n, (p + 1) * kTile));
    } else {
      for (index_t p = 0; p < panels; ++p) {
        executor_.for_each(p + 1, [&](index_t q, int) { run_tile(p, q); });
        on_panel(p * kTile, std::min(n, (p + 1) * kTile));
      }
    }
  }

  // Tiles (p, 0..p) of the lower triangle again (row panel p: rows [p kTile, p kTile + kTile)), into `out` (row
  // p kTile of the panel at out, `ld` floats a row), with on_tile as in lower_gram. Reuses the operand that the
  // last lower_gram() packed (the same `unit`); the entries are bitwise those of lower_gram.
  template <class OnTile>
  void lower_gram_panel(index_t n, index_t d, index_t p, float* out, index_t ld, OnTile on_tile) {
    const KernelTable& kernels = active_kernels();
    const float* packed = lhs_.data();
    const index_t i0 = p * kTile, h = std::min(kTile, n - i0);
    executor_.for_each(p + 1, [&](index_t q, int) {
      const index_t j0 = q * kTile, w = std::min(kTile, n - j0);
      kernels.gram_tile(packed, packed, d, i0, h, j0, w, out + j0, ld, p == q);
      on_tile(out + j0, i0, j0, h, w, ld);
    });
  }

  // Sizes the Gram's packed operand for rows x d; then pack_panel(unit, p) packs rows [p kPanel, p kPanel + kPanel)
  // of `unit` (any thread, distinct panels in parallel) for a later lower_gram(..., prepacked = true).
  void packed_for(index_t rows, index_t d) { lhs_.ensure(packed_size(rows, d)); }
  void pack_panel(const ConstRowMap<float>& unit, index_t panel, const KernelTable& kernels) {
    pack_into(lhs_, unit, panel, kernels);
  }

  // Rows of the Gram on demand, for methods that need only some rows of U U^T (CDPruner's greedy needs the row of
  // each pick): pack_operand(unit) packs U once (as lower_gram does); operand_rows(unit, rows, ...) then writes
  // out[q * ld + j] = u_rows[q] . u_j for every j < n, bitwise the entry lower_gram gives (i, j) or (j, i): the chain
  // multiplies the same two factors at every depth, and fma(a, b, c) == fma(b, a, c). Up to kPanel rows a call;
  // reserve_rows() sizes the buffer they are gathered into. With first_panel, `unit` is the part of a larger
  // packed operand (packed_for() and pack_panel()) that starts at its panel first_panel.
  void reserve_rows(index_t dim) { rhs_.ensure(packed_size(kPanel, dim)); }
  void pack_operand(const ConstRowMap<float>& unit) { pack(unit, lhs_); }
  void operand_rows(const ConstRowMap<float>& unit, std::span<const index_t> rows, float* out, index_t ld,
                    index_t first_panel = 0) {
    const auto count = static_cast<index_t>(rows.size());
    const index_t n = unit.rows(), d = unit.cols();
    if (count > kPanel) fail("rows", count, "at most kPanel (48) rows a call");
    if (count == 0 || n == 0) return;
    rhs_.ensure(packed_size(kPanel, d));  // without reserve_rows(): grows here (and allocates)
    const KernelTable& kernels = active_kernels();
    const float* packed = lhs_.data();
    float* gathered = rhs_.data();
    // The listed rows into one panel (element (q, k) at k kPanel + q), read from the row-major unit rows; the
    // rows of the last micro-tile beyond `count` are zeros (computed, then discarded).
    const index_t padded = std::min<index_t>(kPanel, (count + kernels.micro_rows - 1) / kernels.micro_rows * kernels.micro_rows);
    for (index_t q = 0; q < padded; ++q) {
      if (q < count) {
        const index_t r = rows[static_cast<std::size_t>(q)];
        if (r < 0 || r >= n) fail("rows", r, "must be a row of the packed operand");
        const float* from = unit.data() + r * unit.outerStride();
        for (index_t k = 0; k < d; ++k) gathered[k * kPanel + q] = from[k];
      } else {
        for (index_t k = 0; k < d; ++k) gathered[k * kPanel + q] = 0.0f;
      }
    }
    // Column blocks of one panel, each a contiguous stream of the packed U: 576 tokens make 12 tasks.
    constexpr index_t kBlock = kPanel;
    const index_t blocks = (n + kBlock - 1) / kBlock;
    auto block = [&](index_t b, int) {
      const index_t j0 = b * kBlock, w = std::min(kBlock, n - j0);
      kernels.gram_tile(gathered, packed, d, 0, count, first_panel * kPanel + j0, w, out + j0, ld, false);
    };
    if (count * n * d >= 64 * kParallelWork) {
      executor_.for_each(blocks, block);
    } else {
      for (index_t b = 0; b < blocks; ++b) block(b, 0);
    }
  }

  // out (a.rows() x b.rows(), row-major, stride ld) = a b^T, on the calling thread, entries as in lower_gram.
  void product(const ConstRowMap<float>& a, const ConstRowMap<float>& b, float* out, index_t ld) {
    const KernelTable& kernels = active_kernels();
    pack(a, lhs_, /*parallel=*/false);
    pack(b, rhs_, /*parallel=*/false);
    for (index_t i0 = 0; i0 < a.rows(); i0 += kTile)
      for (index_t j0 = 0; j0 < b.rows(); j0 += kTile)
        kernels.gram_tile(lhs_.data(), rhs_.data(), a.cols(), i0, std::min(kTile, a.rows() - i0), j0,
                          std::min(kTile, b.rows() - j0), out + i0 * ld + j0, ld, false);
  }

 private:
  void pack(const ConstRowMap<float>& x, PackedBuffer& buffer, bool parallel = true) {
    const index_t rows = x.rows(), d = x.cols();
    buffer.ensure(packed_size(rows, d));  // without reserve(): grows here (and allocates)
    const index_t panels = (rows + kPanel - 1) / kPanel;
    const KernelTable& kernels = active_kernels();
    auto one = [&](index_t p) { pack_into(buffer, x, p, kernels); };
    if (parallel) {
      for_each_row(executor_, panels, kPanel * d, one);
    } else {
      for (index_t p = 0; p < panels; ++p) one(p);
    }
  }

  static void pack_into(PackedBuffer& buffer, const ConstRowMap<float>& x, index_t panel, const KernelTable& kernels) {
    kernels.pack_panel(x.data(), x.outerStride(), x.rows(), x.cols(), panel, buffer.data());
  }

  Executor executor_;
  PackedBuffer lhs_, rhs_;
};

}  // namespace tokenprune::kernels
