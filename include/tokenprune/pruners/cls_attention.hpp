#pragma once
#include <tokenprune/core/abi.hpp>
// [CLS]-attention pruning (FasterVLM: Zhang et al., "[CLS] Attention is All You Need for Training-Free Visual
// Token Pruning: Make VLM Inference Faster", 2024; code Theia-4869/FasterVLM@f5d5f12). methods/cls-attention.md.
//
// Reads inputs.cls_attention: a [heads, n] view of the [CLS] query row over the n patch keys, the [CLS] key
// dropped (for maps [H, 1 + n, 1 + n] use cls_query_row(maps, cls_index); for a [H, 1 + n] row array
// TokenMatrix(data + 1, H, n, 1 + n)). fp32, fp16 or bf16, any row stride; read in place.
//
// score_j = (1 / H) sum_h A[h, 0, 1 + j] (kernels/cls_row.hpp: double sums in head order, rounded once to fp32),
// not renormalized; keep the k largest (ties to the lower index), output ascending over the patches ([CLS] is
// never a candidate). Ranked on scores() itself, so the caller sees exactly the values that were ranked.
// Cost: H * n reads plus an O(n) selection; no n x n pass.
//
// Defined here otherwise than in the reference: ties go to the lower index (torch.topk leaves them
// unspecified); the mean is fp32 from fp32/fp16/bf16 input (the authors ran fp16); budgets as ratios use
// k = floor(r * n) (the reference only takes counts; its README rounds to nearest).
//
// Thread safety: one instance per thread; prune() mutates the instance's workspace. Instances share nothing.

#include <tokenprune/core/concept.hpp>
#include <tokenprune/kernels/cls_row.hpp>
#include <tokenprune/kernels/topk.hpp>

#include <span>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

struct ClsAttentionConfig {
  void validate() const noexcept {}  // no parameters besides the budget
};

class ClsAttention {
 public:
  explicit ClsAttention(ClsAttentionConfig config = {}) : config_(config) { config_.validate(); }

  [[nodiscard]] const ClsAttentionConfig& config() const noexcept { return config_; }

  [[nodiscard]] index_t kept_count(const TokenShape& shape, Budget budget) const { return budget.resolve(shape.n_tokens); }

  // max_tokens: the most patches (n) a later prune() sees; dim is not used (the heads cost no workspace).
  void reserve(index_t max_tokens, index_t dim = 0) {
    if (max_tokens < 0) fail("max_tokens", max_tokens, "must be >= 0");
    if (dim < 0) fail("dim", dim, "must be >= 0");
    const auto n = static_cast<std::size_t>(max_tokens);
    sums_.reserve(n);
    scores_.reserve(n);
    order_.reserve(n);
    kept_.reserve(n);
  }

  std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) {
    if (inputs.cls_attention.empty())
      fail("cls_attention", "missing", "[CLS]-attention needs the [CLS] query row (cls_query_row(maps) makes it)");
    const index_t n = inputs.n_tokens();
    const index_t k = kept_count(TokenShape{n, inputs.grid, inputs.video}, budget);
    resize(n);
    kernels::cls_row_head_mean(inputs.cls_attention, sums_, scores_, "cls_attention");
    kernels::top_k_ascending(std::span<const float>(scores_), k, order_, std::span<index_t>(kept_.data(), static_cast<std::size_t>(k)));
    kept_size_ = k;
    return kept();
  }

  // The head-mean [CLS] attention of every patch (length n) of the last prune().
  [[nodiscard]] std::span<const float> scores() const noexcept { return scores_; }
  // The selection of the last prune() (the span prune() returned).
  [[nodiscard]] std::span<const index_t> kept() const noexcept {
    return {kept_.data(), static_cast<std::size_t>(kept_size_)};
  }

 private:
  void resize(index_t n) {
    const auto un = static_cast<std::size_t>(n);
    kept_size_ = 0;
    sums_.resize(un);
    scores_.resize(un);
    order_.resize(un);
    kept_.resize(un);
  }

  ClsAttentionConfig config_;
  std::vector<double> sums_;
  std::vector<float> scores_;
  std::vector<index_t> order_, kept_;
  index_t kept_size_ = 0;
};

static_assert(TokenPruner<ClsAttention>);

}  // namespace tokenprune
