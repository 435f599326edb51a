#pragma once
// What a pruner is given. Methods differ in what they read (G-Prune: features; FoPru: attention maps or a
// significance vector, and a patch grid for its row strategy), so one struct carries all of it and each method
// checks for the parts it needs. Generic engine code fills what it has and calls any TokenPruner the same way.

#include <tokenprune/core/views.hpp>

#include <span>

namespace tokenprune {

// The patch grid of an image: rows x cols tokens, row-major (token t sits in row t / cols).
struct Grid {
  index_t rows = 0;
  index_t cols = 0;
  [[nodiscard]] bool empty() const noexcept { return rows == 0 && cols == 0; }
  [[nodiscard]] index_t size() const noexcept { return rows * cols; }
};

// What is known before any data exists: enough to compute kept_count().
struct TokenShape {
  index_t n_tokens = 0;
  Grid grid{};
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
    if (!grid.empty()) {
      if (grid.rows <= 0) fail("grid.rows", grid.rows, "must be >= 1");
      if (grid.cols <= 0) fail("grid.cols", grid.cols, "must be >= 1");
      agree("grid.rows*grid.cols", grid.size());
    }
    if (n < 0) fail("inputs", "empty", "no features, attention, significance or grid given");
    return n;
  }
  [[nodiscard]] TokenShape shape() const { return TokenShape{n_tokens(), grid}; }
};

}  // namespace tokenprune
