#pragma once
#include <tokenprune/core/abi.hpp>
// Segments: several independent prunings over one token sequence, plus tokens that are always kept.
// LLaVA-NeXT's anyres sequence (base view + high-resolution grid, newlines kept), several images in one request,
// or video frames are all a list of segments, each with its own budget. Works with any TokenPruner: each segment
// is handed to the pruner as if it were a whole image, so the selection of one never depends on the others.
//
// A segment that is a contiguous token range is passed as a view (no copy). A non-contiguous one (the grid
// tokens between LLaVA-NeXT's newlines) goes to a pruner that reads feature rows in place (FeatureRowPruner:
// G-Prune) as its row indices; for other pruners its feature rows or significance values are gathered into a
// workspace. Attention maps must be given per contiguous segment.
//
// Thread safety: one instance per thread, like the pruner it wraps.

#include <tokenprune/core/concept.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

struct Segment {
  std::span<const index_t> tokens;  // strictly ascending token indices of this segment
  Budget budget;                    // how many of them to keep
  Grid grid{};                      // the segment's patch grid, for pruners that use one
  VideoGrid video{};                // the segment's video grid (EVS: one video per segment)
};

struct SegmentLayout {
  index_t n_tokens = 0;                   // length of the whole sequence
  std::span<const Segment> segments;      // disjoint
  std::span<const index_t> always_keep;   // strictly ascending, disjoint from every segment
};

template <TokenPruner P>
class Segmented {
 public:
  explicit Segmented(P pruner = P{}) : pruner_(std::move(pruner)) {}

  [[nodiscard]] P& pruner() noexcept { return pruner_; }

  // Total kept: each segment's kept_count plus the always-kept tokens.
  [[nodiscard]] index_t kept_count(const SegmentLayout& layout) const {
    auto total = static_cast<index_t>(layout.always_keep.size());
    for (const Segment& s : layout.segments)
      total += pruner_.kept_count(TokenShape{static_cast<index_t>(s.tokens.size()), s.grid, s.video}, s.budget);
    return total;
  }

  void reserve(index_t max_tokens, index_t dim) {
    pruner_.reserve(max_tokens, dim);
    const auto n = static_cast<std::size_t>(max_tokens);
    if (!reads_feature_rows()) gathered_.reserve(n * static_cast<std::size_t>(std::max<index_t>(dim, 1)) * sizeof(float));
    significance_.reserve(n);
    scores_.reserve(n);
    owner_.reserve(n);
    kept_.reserve(n);
  }

  // Kept token indices of the whole sequence, strictly ascending; valid until the next prune().
  std::span<const index_t> prune(const PruneInputs& inputs, const SegmentLayout& layout) {
    const index_t n = inputs.n_tokens();
    if (layout.n_tokens != n) fail("layout.n_tokens", layout.n_tokens, "must equal the inputs' token count");
    check_layout(layout, n);
    kept_.resize(static_cast<std::size_t>(kept_count(layout)));
    // Tokens in no segment and not always kept are dropped: -Inf. Always-kept tokens: +Inf.
    scores_.assign(static_cast<std::size_t>(n), -std::numeric_limits<float>::infinity());
    for (index_t t : layout.always_keep) scores_[static_cast<std::size_t>(t)] = std::numeric_limits<float>::infinity();

    std::size_t out = 0;
    for (const Segment& segment : layout.segments) {
      const std::span<const index_t> local = prune_segment(inputs, segment);
      for (index_t i : local) kept_[out++] = segment.tokens[static_cast<std::size_t>(i)];
      const std::span<const float> local_scores = pruner_.scores();
      for (std::size_t i = 0; i < segment.tokens.size() && i < local_scores.size(); ++i)
        scores_[static_cast<std::size_t>(segment.tokens[i])] = local_scores[i];
    }
    for (index_t t : layout.always_keep) kept_[out++] = t;
    std::sort(kept_.begin(), kept_.end());
    return kept_;
  }

  // Per-token scores of the last prune(), each from its own segment's pruning; +Inf for always-kept tokens,
  // -Inf for tokens that belong to no segment (they are never kept).
  [[nodiscard]] std::span<const float> scores() const noexcept { return scores_; }

 private:
  // Strictly ascending, in range, and disjoint (owner_ marks which part claimed each token).
  void check_layout(const SegmentLayout& layout, index_t n) {
    owner_.assign(static_cast<std::size_t>(n), 0);
    auto claim = [&](std::span<const index_t> tokens, const char* what, unsigned char id) {
      index_t previous = -1;
      for (index_t t : tokens) {
        if (t < 0 || t >= n) fail(what, t, "token index outside [0, n_tokens)");
        if (t <= previous) fail(what, t, "token indices must be strictly ascending");
        if (owner_[static_cast<std::size_t>(t)] != 0) fail(what, t, "token belongs to two segments");
        owner_[static_cast<std::size_t>(t)] = id;
        previous = t;
      }
    };
    for (const Segment& s : layout.segments) claim(s.tokens, "segment.tokens", 1);
    claim(layout.always_keep, "always_keep", 2);
  }

  static bool is_contiguous(std::span<const index_t> tokens) {  // strictly ascending, so first..last without gaps
    return tokens.empty() || tokens.back() - tokens.front() + 1 == static_cast<index_t>(tokens.size());
  }

  [[nodiscard]] bool reads_feature_rows() const {
    if constexpr (FeatureRowPruner<P>) {
      return pruner_.reads_feature_rows();
    } else {
      return false;
    }
  }

  // One segment's selection, indices into segment.tokens. A pruner that reads feature rows in place gets a
  // scattered segment's rows where they lie; otherwise (and for a contiguous segment) the segment's inputs are
  // views, or gathered copies where the tokens are scattered.
  std::span<const index_t> prune_segment(const PruneInputs& inputs, const Segment& segment) {
    if constexpr (FeatureRowPruner<P>) {
      if (!is_contiguous(segment.tokens) && !inputs.features.empty() && pruner_.reads_feature_rows())
        return pruner_.prune_feature_rows(inputs.features, segment.tokens, segment.budget);
    }
    return pruner_.prune(segment_inputs(inputs, segment), segment.budget);
  }

  PruneInputs segment_inputs(const PruneInputs& inputs, const Segment& segment) {
    const auto m = static_cast<index_t>(segment.tokens.size());
    const index_t first = m > 0 ? segment.tokens.front() : 0;
    const bool contiguous = is_contiguous(segment.tokens);
    PruneInputs sub;
    sub.grid = segment.grid;
    if (!inputs.attention.empty()) {
      if (!contiguous) fail("segment.tokens", first, "attention maps need contiguous segments");
      sub.attention = inputs.attention.block(first, m);
    }
    if (inputs.significance.data() != nullptr) {
      if (contiguous) {
        sub.significance = inputs.significance.subspan(static_cast<std::size_t>(first), static_cast<std::size_t>(m));
      } else {
        significance_.resize(static_cast<std::size_t>(m));
        for (index_t i = 0; i < m; ++i) significance_[static_cast<std::size_t>(i)] = inputs.significance[static_cast<std::size_t>(segment.tokens[static_cast<std::size_t>(i)])];
        sub.significance = significance_;
      }
    }
    if (!inputs.features.empty()) sub.features = contiguous ? inputs.features.rows(first, m) : gather(inputs.features, segment.tokens);
    if (!inputs.cls_attention.empty()) {
      if (!contiguous) fail("segment.tokens", first, "the [CLS] attention row needs contiguous segments");
      sub.cls_attention = inputs.cls_attention.columns(first, m);
    }
    if (!inputs.image_embeds.empty()) {
      if (!contiguous) fail("segment.tokens", first, "image embeddings need contiguous segments");
      sub.image_embeds = inputs.image_embeds.rows(first, m);
    }
    if (inputs.relevance.data() != nullptr) {
      if (!contiguous) fail("segment.tokens", first, "a relevance vector needs contiguous segments");
      sub.relevance = inputs.relevance.subspan(static_cast<std::size_t>(first), static_cast<std::size_t>(m));
    }
    if (!inputs.hidden_states.empty() || !inputs.keys.empty())
      fail("hidden_states", "given", "inputs with a [CLS] row per image cannot be split into segments: prune each image");
    sub.text_embeds = inputs.text_embeds;  // shared by every segment (DART's text pivots)
    sub.video = segment.video;
    return sub;
  }

  // Copies the segment's feature rows, in their own element type, into one dense workspace matrix.
  TokenMatrix gather(const TokenMatrix& x, std::span<const index_t> tokens) {
    const auto row_bytes = static_cast<std::size_t>(x.dim() * dtype_size(x.dtype()));
    gathered_.resize(tokens.size() * row_bytes);
    const auto* base = static_cast<const std::byte*>(x.data());
    const auto stride_bytes = static_cast<std::size_t>(x.row_stride() * dtype_size(x.dtype()));
    for (std::size_t i = 0; i < tokens.size() && row_bytes > 0; ++i)  // dim 0: nothing to copy (and no buffer)
      std::memcpy(gathered_.data() + i * row_bytes, base + static_cast<std::size_t>(tokens[i]) * stride_bytes, row_bytes);
    const auto m = static_cast<index_t>(tokens.size());
    return visit_dtype(x.dtype(), [&]<class T>(T) {
      return TokenMatrix(reinterpret_cast<const T*>(gathered_.data()), m, x.dim(), x.dim());
    });
  }

  P pruner_;
  std::vector<std::byte> gathered_;
  std::vector<float> significance_, scores_;
  std::vector<unsigned char> owner_;
  std::vector<index_t> kept_;
};

}  // namespace tokenprune
