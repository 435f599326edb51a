#pragma once
#include <tokenprune/core/abi.hpp>
// LLaVA-NeXT "anyres" image sequence, as G-Prune's authors prune it:
//   [base_tokens tokens of the global view] + for each of R rows: [C high-resolution tokens, 1 newline token]
// Two graphs: the base view keeps floor(r * base_tokens), the grid keeps floor(r * R * C); newline tokens are
// not nodes and are always kept. Build it once per image shape; assign() reuses the storage (no allocation
// once the largest shape has been seen).

#include <tokenprune/layouts/segments.hpp>

#include <array>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

class LlavaNextLayout {
 public:
  static constexpr index_t kBaseTokens = 576;  // 24 x 24 CLIP-ViT-L/336 view

  LlavaNextLayout() = default;
  LlavaNextLayout(index_t grid_rows, index_t grid_cols, double ratio, index_t base_tokens = kBaseTokens) {
    assign(grid_rows, grid_cols, ratio, base_tokens);
  }

  // Segments point into this object's own index storage: copying would alias it, moving keeps it valid.
  LlavaNextLayout(const LlavaNextLayout&) = delete;
  LlavaNextLayout& operator=(const LlavaNextLayout&) = delete;
  LlavaNextLayout(LlavaNextLayout&&) noexcept = default;
  LlavaNextLayout& operator=(LlavaNextLayout&&) noexcept = default;

  void assign(index_t grid_rows, index_t grid_cols, double ratio, index_t base_tokens = kBaseTokens) {
    if (grid_rows < 0) fail("grid_rows", grid_rows, "must be >= 0");
    if (grid_cols < 0) fail("grid_cols", grid_cols, "must be >= 0");
    if (base_tokens < 0) fail("base_tokens", base_tokens, "must be >= 0");
    const Budget budget = Budget::ratio(ratio);
    base_.resize(static_cast<std::size_t>(base_tokens));
    for (index_t i = 0; i < base_tokens; ++i) base_[static_cast<std::size_t>(i)] = i;
    grid_.clear();
    newlines_.clear();
    index_t t = base_tokens;
    for (index_t r = 0; r < grid_rows; ++r) {
      for (index_t c = 0; c < grid_cols; ++c) grid_.push_back(t++);
      newlines_.push_back(t++);
    }
    segments_[0] = Segment{base_, budget, Grid{}};
    segments_[1] = Segment{grid_, budget, Grid{grid_rows, grid_cols}};
    n_tokens_ = t;
  }

  [[nodiscard]] index_t n_tokens() const noexcept { return n_tokens_; }
  [[nodiscard]] SegmentLayout layout() const { return SegmentLayout{n_tokens_, segments_, newlines_}; }
  operator SegmentLayout() const { return layout(); }  // NOLINT(google-explicit-constructor)

 private:
  std::vector<index_t> base_, grid_, newlines_;
  std::array<Segment, 2> segments_{Segment{{}, Budget::count(0)}, Segment{{}, Budget::count(0)}};
  index_t n_tokens_ = 0;
};

}  // namespace tokenprune
