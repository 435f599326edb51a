#pragma once
#include <tokenprune/core/abi.hpp>
// What a pruner is given. Methods differ in what they read (G-Prune: features; FoPru: attention maps or a
// significance vector, and a patch grid for its row strategy; the [CLS]-attention methods the [CLS] query row;
// CDPruner image and text embeddings; EVS a video grid), so one struct carries all of it and each method checks
// for the parts it needs. Every member is a view: nothing is copied. Generic engine code fills what it has and
// calls any TokenPruner the same way.

#include <tokenprune/core/views.hpp>

#include <algorithm>
#include <span>

namespace tokenprune::inline TOKENPRUNE_ABI {

// The patch grid of an image: rows x cols tokens, row-major (token t sits in row t / cols).
struct Grid {
  index_t rows = 0;
  index_t cols = 0;
  [[nodiscard]] bool empty() const noexcept { return rows == 0 && cols == 0; }
  [[nodiscard]] index_t size() const noexcept { return rows * cols; }
};

// The tokens of one video: frames x rows x cols, frame-major, each frame row-major (token (t, h, w) sits at
// (t * rows + h) * cols + w). EVS compares each token with the same grid position of the previous frame.
struct VideoGrid {
  index_t frames = 0;
  index_t rows = 0;
  index_t cols = 0;
  [[nodiscard]] bool empty() const noexcept { return frames == 0 && rows == 0 && cols == 0; }
  [[nodiscard]] index_t frame_size() const noexcept { return rows * cols; }
  [[nodiscard]] index_t size() const noexcept { return frames * rows * cols; }
};

// What is known before any data exists: enough to compute kept_count().
struct TokenShape {
  index_t n_tokens = 0;
  Grid grid{};
  VideoGrid video{};
};

// An attention layer's queries and keys, for engines that never materialize the attention maps (fused
// attention). The first `skip_tokens` tokens (a CLS token) take part in the softmax over keys, like in the
// encoder, but are not pruning candidates; the maps this stands for are the [skip:, skip:] block.
struct QueryKeys {
  HeadMatrices queries{};  // [heads, skip_tokens + n_tokens, head_dim]
  HeadMatrices keys{};     // same shape
  double scale = 0.0;      // logits = scale * q . k; 0 selects 1 / sqrt(head_dim)
  bool softmax = true;     // maps are softmax probabilities (true) or the raw scaled logits (false)
  index_t skip_tokens = 0;

  [[nodiscard]] bool empty() const noexcept { return keys.empty(); }
  [[nodiscard]] index_t n_tokens() const noexcept { return keys.n_tokens() - skip_tokens; }
};

struct PruneInputs {
  TokenMatrix features{};                // [n_tokens, dim]: G-Prune
  AttentionMaps attention{};             // [heads, n_tokens, n_tokens]: FoPru
  QueryKeys query_keys{};                // FoPru without maps (fused attention engines)
  std::span<const float> significance{}; // [n_tokens]: FoPru, instead of attention
  Grid grid{};                           // patch grid: FoPru's row strategy
  // [heads, n_tokens]: the [CLS] query's attention to each patch, the [CLS] key dropped and not renormalized
  // (cls-attention, VisPruner, VisionZip). cls_query_row() views it inside maps that include [CLS].
  TokenMatrix cls_attention{};
  TokenMatrix hidden_states{};           // [1 + n_tokens, d]: encoder output, [CLS] at row 0 (VisionZip merges these)
  TokenMatrix keys{};                    // [1 + n_tokens, dk or heads*dk]: the same layer's keys (VisionZip's metric)
  TokenMatrix image_embeds{};            // [n_tokens, e]: CLIP image embeddings of the patches (CDPruner)
  TokenMatrix text_embeds{};             // [m, e]: text embeddings, not per token (CDPruner: CLIP; DART: LLM input)
  std::span<const float> relevance{};    // [n_tokens]: CDPruner's raw relevance, instead of the two embeddings
  VideoGrid video{};                     // frames x rows x cols of a video (EVS)

  // The token count implied by whichever inputs are present; they must agree.
  [[nodiscard]] index_t n_tokens() const {
    index_t n = -1;
    auto agree = [&n](const char* what, index_t m) {
      if (n >= 0 && m != n) fail(what, m, "token count disagrees with the other inputs");
      n = m;
    };
    if (!features.empty()) agree("features.n_tokens", features.n_tokens());
    if (!attention.empty()) agree("attention.n_tokens", attention.n_tokens());
    if (!query_keys.empty()) agree("query_keys.n_tokens", query_keys.n_tokens());
    if (significance.data() != nullptr) agree("significance.size", static_cast<index_t>(significance.size()));
    if (!cls_attention.empty()) agree("cls_attention.cols", cls_attention.dim());
    auto with_cls = [&](const char* what, const TokenMatrix& m) {
      if (m.n_tokens() < 1) fail(what, m.n_tokens(), "must be >= 1: row 0 is the [CLS] token");
      agree(what, m.n_tokens() - 1);
    };
    if (!hidden_states.empty()) with_cls("hidden_states.n_tokens-1", hidden_states);
    if (!keys.empty()) with_cls("keys.n_tokens-1", keys);
    if (!image_embeds.empty()) agree("image_embeds.n_tokens", image_embeds.n_tokens());
    if (relevance.data() != nullptr) agree("relevance.size", static_cast<index_t>(relevance.size()));
    if (!video.empty()) {
      if (video.frames <= 0) fail("video.frames", video.frames, "must be >= 1");
      if (video.rows <= 0) fail("video.rows", video.rows, "must be >= 1");
      if (video.cols <= 0) fail("video.cols", video.cols, "must be >= 1");
      agree("video.frames*video.rows*video.cols", video.size());
    }
    if (!grid.empty()) {
      if (grid.rows <= 0) fail("grid.rows", grid.rows, "must be >= 1");
      if (grid.cols <= 0) fail("grid.cols", grid.cols, "must be >= 1");
      agree("grid.rows*grid.cols", grid.size());
    }
    if (n < 0) fail("inputs", "empty", "no per-token input given (features, attention, significance, ...)");
    return n;
  }
  [[nodiscard]] TokenShape shape() const { return TokenShape{n_tokens(), grid, video}; }
};

// The [CLS] query row of maps [heads, 1 + n, 1 + n] that include the [CLS] token at `cls_index` (0: first, as in
// CLIP; or n: last), over the n patch keys: a [heads, n] view for PruneInputs::cls_attention, without a copy.
inline TokenMatrix cls_query_row(const AttentionMaps& maps, index_t cls_index = 0) {
  const index_t n = maps.n_tokens() - 1;
  if (n < 0) fail("attention.n_tokens", maps.n_tokens(), "must be >= 1: the maps include the [CLS] token");
  if (cls_index != 0 && cls_index != n)
    fail("cls_index", cls_index, "must be 0 or n_tokens - 1: the patch keys of the [CLS] row must be contiguous");
  return visit_dtype(maps.dtype(), [&]<class T>(T) {
    const T* row = static_cast<const T*>(maps.data()) + cls_index * maps.row_stride() + (cls_index == 0 ? 1 : 0);
    return TokenMatrix(row, maps.heads(), n, std::max(maps.head_stride(), n));
  });
}

}  // namespace tokenprune
