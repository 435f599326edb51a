#pragma once
// Lower triangle of the Gram matrix G = U U^T: a symmetric rank-k update (SYRK), n^2 d / 2 multiply-adds, the
// floor of G-Prune's cost.
//
// Eigen's public rankUpdate() heap-allocates its packing buffers on every call. Here the same kernel
// (Eigen 3.4's general_matrix_matrix_triangular_product) runs with buffers owned by the workspace, so a prune()
// after reserve() allocates nothing. The blocking sizes are computed from the actual (n, d) of each call, never
// from the reserved capacity, so the accumulation order - and every rounding - depends on the input alone.

#include <tokenprune/core/types.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <vector>

static_assert(EIGEN_VERSION_AT_LEAST(3, 4, 0) && !EIGEN_VERSION_AT_LEAST(3, 5, 0),
              "tokenprune drives Eigen 3.4's SYRK kernel directly; check kernels/gram.hpp against this Eigen");

namespace tokenprune::kernels {

class GramWorkspace {
 public:
  // Grows the packing buffers for Grams of up to max_tokens x max_tokens over dim columns.
  void reserve(index_t max_tokens, index_t dim) {
    const Blocking probe(max_tokens, dim, nullptr, nullptr);
    pack_lhs_.reserve(probe.lhs_size() + kPad);
    pack_rhs_.reserve(probe.rhs_size(max_tokens) + kPad);
  }

  // Writes the lower triangle (diagonal included) of unit * unit^T into gram; the strict upper part is untouched.
  void lower_gram(const ConstRowMap<float>& unit, RowMap<float> gram) {
    const index_t n = unit.rows();
    const index_t d = unit.cols();
    for (index_t i = 0; i < n; ++i) gram.row(i).head(i + 1).setZero();  // the kernel accumulates into its result
    if (n == 0 || d == 0) return;
    Blocking sizes(n, d, nullptr, nullptr);
    // resize() within the reserved capacity does not allocate; a call beyond reserve() grows once.
    pack_lhs_.resize(std::max(pack_lhs_.size(), sizes.lhs_size() + kPad));
    pack_rhs_.resize(std::max(pack_rhs_.size(), sizes.rhs_size(n) + kPad));
    Blocking blocking(n, d, pack_lhs_.data(), pack_rhs_.data());
    Eigen::internal::general_matrix_matrix_triangular_product<
        Eigen::Index, float, Eigen::RowMajor, false, float, Eigen::ColMajor, false, Eigen::RowMajor, 1,
        Eigen::Lower>::run(n, d, unit.data(), unit.outerStride(), unit.data(), unit.outerStride(), gram.data(), 1,
                           gram.outerStride(), 1.0f, blocking);
  }

 private:
  static constexpr std::size_t kPad = 64;  // Eigen's packing may touch a few elements past the panel

  // Eigen's blocking descriptor, pointed at our buffers. Same sizes as Eigen computes for rankUpdate().
  class Blocking : public Eigen::internal::level3_blocking<float, float> {
   public:
    Blocking(index_t size, index_t depth, float* lhs, float* rhs) {
      this->m_blockA = lhs;
      this->m_blockB = rhs;
      this->m_mc = size;
      this->m_nc = size;
      this->m_kc = depth;
      Eigen::Index nc = size;  // rankUpdate() keeps nc = size (no L3 blocking)
      Eigen::internal::computeProductBlockingSizes<float, float, 1, Eigen::Index>(this->m_kc, this->m_mc, nc, 1);
    }
    [[nodiscard]] std::size_t lhs_size() const { return static_cast<std::size_t>(this->m_kc * this->m_mc); }
    [[nodiscard]] std::size_t rhs_size(index_t size) const { return static_cast<std::size_t>(this->m_kc * size); }
  };

  // Eigen's kernels use aligned packet loads on packed panels: EIGEN_MAX_ALIGN_BYTES-aligned storage.
  std::vector<float, Eigen::aligned_allocator<float>> pack_lhs_, pack_rhs_;
};

}  // namespace tokenprune::kernels
