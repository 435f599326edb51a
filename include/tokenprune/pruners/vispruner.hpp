#pragma once
#include <tokenprune/core/abi.hpp>
// VisPruner (Zhang et al., "Beyond Text-Visual Attention: Exploiting Visual Cues for Effective Token Pruning in
// VLMs", ICCV 2025; code Theia-4869/VisPruner@aefa01a, llava/model/llava_arch.py encode_images).
// methods/vispruner.md.
//
// Reads inputs.cls_attention ([heads, n]: the [CLS] query row over the patch keys; cls_query_row(maps) views it
// inside [heads, 1 + n, 1 + n] maps) and inputs.features ([n, d] patch tokens before the projector, no [CLS]
// row). fp32, fp16 or bf16, any row stride; read in place (16-bit features are widened into the workspace).
//
// 1. s_j = head mean of the [CLS] row (kernels/cls_row.hpp; fp32 from double sums), scores() = s.
// 2. pi = all patches by s descending, ties to the lower index. I = pi[0, T_imp) with T_imp = floor(T * rho)
//    (important(), ascending); the residual list L = pi[T_imp, n) in that order.
// 3. While T_div = T - T_imp > 0 and q = min(dedup_step, |L| - T_div) > 0: split L by position into a (even) and
//    b (odd), score(a_i) = max_j u_a_i . u_b_j (cosines of the unit features, a zero row has u = 0), sort a by
//    score descending (ties: earlier position), drop the first min(q, |a|), L = rest of a (sorted) ++ b.
// 4. Keep I and L, ascending: exactly T tokens (kept_count = T for every input).
//
// Cost: O(n d) normalization, one cosine Gram of the unit features (n^2 d / 2 fp32 FMAs with our ISA-independent
// micro-kernels, kernels/gram.hpp; only when the loop runs), then O(|a| |b|) table look-ups per pass, about
// (n - T) / dedup_step passes. Workspace: n x n floats for the Gram, n x d for the unit rows.
//
// Defined here otherwise than in the reference (methods/vispruner.md): ties go to the lower index (step 2) and
// to the earlier position in a (step 3; torch.argsort is not stable); a zero feature row has u = 0 (NaN in the
// reference); passes where the reference's gather assumes |a| = floor(|L| / 2) (odd |L|, or q > |L| / 2), where
// it raises or drops one token too many, follow the definition and always keep T tokens; fp32 throughout (the
// authors ran fp16). On real images many cosine orders are closer than fp32 rounding, so two correct fp32
// implementations may keep different sets; every entry here is a fixed-order fp32 FMA chain, so this one gives
// the same bits at every ISA level and thread count.
//
// Thread safety: one instance per thread; prune() mutates the instance's workspace. Instances share nothing.

#include <tokenprune/core/concept.hpp>
#include <tokenprune/core/executor.hpp>
#include <tokenprune/kernels/cls_row.hpp>
#include <tokenprune/kernels/convert.hpp>
#include <tokenprune/kernels/gram.hpp>
#include <tokenprune/kernels/similarity.hpp>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

struct VisPrunerConfig {
  double important_ratio = 0.5;  // rho: share of the budget taken by [CLS] attention, in [0, 1]
  int dedup_step = 8;            // tokens removed per duplicate-removal pass, >= 1

  void validate() const {
    if (!(important_ratio >= 0.0 && important_ratio <= 1.0))
      fail("important_ratio", important_ratio, "must be a number in [0, 1]");
    if (dedup_step < 1) fail("dedup_step", dedup_step, "must be >= 1");
  }
};

class VisPruner {
 public:
  explicit VisPruner(VisPrunerConfig config = {}) : config_(config) { config_.validate(); }

  [[nodiscard]] const VisPrunerConfig& config() const noexcept { return config_; }

  // Where the normalization and the Gram tiles run (default: OpenMP threads when compiled with OpenMP, else the
  // calling thread). Answers are the same with any executor. Call before reserve().
  void set_executor(const Executor& executor) {
    executor_ = executor;
    gram_.set_executor(executor);
  }
  [[nodiscard]] const Executor& executor() const noexcept { return executor_; }

  // T = the budget's count (or floor(r * n)), for every input.
  [[nodiscard]] index_t kept_count(const TokenShape& shape, Budget budget) const { return budget.resolve(shape.n_tokens); }
  // T_imp = floor(T * important_ratio) in double (the reference's int(T * r)); the diverse part is T - T_imp.
  [[nodiscard]] index_t important_count(index_t keep) const {
    return static_cast<index_t>(std::floor(static_cast<double>(keep) * config_.important_ratio));
  }

  // max_tokens: the most patches n; dim: the most feature columns d. Afterwards prune() within these bounds
  // allocates nothing.
  void reserve(index_t max_tokens, index_t dim) {
    if (max_tokens < 0) fail("max_tokens", max_tokens, "must be >= 0");
    if (dim < 0) fail("dim", dim, "must be >= 0");
    const auto n = static_cast<std::size_t>(max_tokens);
    sums_.reserve(n);
    scores_.reserve(n);
    norms_.reserve(n);
    a_score_.reserve(n);
    for (auto* v : {&order_, &list_, &a_, &b_, &perm_, &important_, &kept_}) v->reserve(n);
    unit_.reserve(n * static_cast<std::size_t>(dim));
    gram_matrix_.reserve(n * n);
    gram_.reserve(max_tokens, dim);
    executor_.warm_up();
  }

  std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) {
    if (inputs.cls_attention.empty())
      fail("cls_attention", "missing", "VisPruner needs the [CLS] query row (cls_query_row(maps) makes it)");
    if (inputs.features.empty()) fail("features", "missing", "VisPruner needs the patch features [n, d]");
    const index_t n = inputs.n_tokens();  // cls_attention.cols and features.n_tokens must agree
    const index_t keep = kept_count(TokenShape{n, inputs.grid, inputs.video}, budget);
    const index_t n_important = important_count(keep);
    const index_t n_diverse = keep - n_important;
    const index_t d = inputs.features.dim();
    resize(n, d);

    // Every input is validated before the selection work.
    kernels::cls_row_head_mean(inputs.cls_attention, sums_, scores_, "cls_attention");
    RowMap<float> unit(unit_.data(), n, d, Eigen::OuterStride<>(d));
    visit_dtype(inputs.features.dtype(), [&]<class T>(T) {
      const ConstRowMap<T> x = inputs.features.as<T>();
      kernels::normalize_rows<T>(x, unit, norms_, "features", executor_);
      // normalize_rows divides by max(||x||, 1e-12) (G-Prune's epsilon); the definition has none: a non-zero row
      // with a smaller norm is still a unit vector (a zero row stays 0).
      for (index_t i = 0; i < n; ++i) {
        const float norm = norms_[static_cast<std::size_t>(i)];
        if (norm > 0.0f && static_cast<double>(norm) < kernels::kNormFloor) {
          float* row = unit.row(i).data();
          kernels::load_row<T>(x, i, row, "features");
          kernels::active_kernels().divide_row(row, row, d, norm);  // in place: each vector is read, then written
        }
      }
    });

    // pi: all patches by s descending, ties to the lower index (a total order: std::sort is deterministic).
    std::iota(order_.begin(), order_.end(), index_t{0});
    const float* s = scores_.data();
    std::sort(order_.begin(), order_.end(), [s](index_t x, index_t y) { return s[x] > s[y] || (s[x] == s[y] && x < y); });
    important_.assign(order_.begin(), order_.begin() + n_important);
    std::sort(important_.begin(), important_.end());

    index_t size = n - n_important;  // |L|
    std::copy(order_.begin() + n_important, order_.end(), list_.begin());
    passes_ = 0;
    if (n_diverse > 0 && size - n_diverse > 0) {
      compute_gram(unit, n);
      const float* g = gram_matrix_.data();
      while (true) {
        const index_t q = std::min<index_t>(config_.dedup_step, size - n_diverse);
        if (q <= 0) break;
        const index_t na = (size + 1) / 2, nb = size / 2;
        for (index_t i = 0; i < na; ++i) a_[static_cast<std::size_t>(i)] = list_[static_cast<std::size_t>(2 * i)];
        for (index_t i = 0; i < nb; ++i) b_[static_cast<std::size_t>(i)] = list_[static_cast<std::size_t>(2 * i + 1)];
        for (index_t i = 0; i < na; ++i) {  // nb >= 1 here: size > n_diverse >= 1
          const float* row = g + a_[static_cast<std::size_t>(i)] * n;
          float best = row[b_[0]];
          for (index_t j = 1; j < nb; ++j) best = std::max(best, row[b_[static_cast<std::size_t>(j)]]);
          a_score_[static_cast<std::size_t>(i)] = best;
          perm_[static_cast<std::size_t>(i)] = i;
        }
        const float* score = a_score_.data();
        std::sort(perm_.begin(), perm_.begin() + na,
                  [score](index_t x, index_t y) { return score[x] > score[y] || (score[x] == score[y] && x < y); });
        const index_t drop = std::min(q, na);
        index_t out = 0;
        for (index_t t = drop; t < na; ++t) list_[static_cast<std::size_t>(out++)] = a_[static_cast<std::size_t>(perm_[static_cast<std::size_t>(t)])];
        for (index_t j = 0; j < nb; ++j) list_[static_cast<std::size_t>(out++)] = b_[static_cast<std::size_t>(j)];
        size = out;
        ++passes_;
      }
    }

    // I plus (when T_div > 0) L, ascending; |L| = T_div here.
    std::copy(important_.begin(), important_.end(), kept_.begin());
    if (n_diverse > 0) std::copy_n(list_.begin(), n_diverse, kept_.begin() + n_important);
    std::sort(kept_.begin(), kept_.begin() + keep);
    kept_size_ = keep;
    return kept();
  }

  // The importance s_j (head-mean [CLS] attention, length n) of the last prune().
  [[nodiscard]] std::span<const float> scores() const noexcept { return scores_; }
  // The important part I of the last selection (top T_imp by s), ascending.
  [[nodiscard]] std::span<const index_t> important() const noexcept { return important_; }
  // The selection of the last prune() (the span prune() returned).
  [[nodiscard]] std::span<const index_t> kept() const noexcept {
    return {kept_.data(), static_cast<std::size_t>(kept_size_)};
  }
  // Duplicate-removal passes the last prune() made.
  [[nodiscard]] index_t dedup_passes() const noexcept { return passes_; }

 private:
  // The full symmetric cosine table g[i * n + j] = u_i . u_j (lower triangle by the Gram kernel, mirrored).
  void compute_gram(const RowMap<float>& unit, index_t n) {
    const ConstRowMap<float> u(unit.data(), unit.rows(), unit.cols(), Eigen::OuterStride<>(unit.cols()));
    gram_matrix_.resize(static_cast<std::size_t>(n * n));
    float* g = gram_matrix_.data();
    gram_.lower_gram(
        u, n, true, [g, n](index_t i0) { return g + i0 * n; },
        [](float*, index_t, index_t, index_t, index_t, index_t) {}, [](index_t, index_t) {});
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < i; ++j) g[j * n + i] = g[i * n + j];
  }

  void resize(index_t n, index_t d) {
    const auto un = static_cast<std::size_t>(n);
    kept_size_ = 0;
    passes_ = 0;
    important_.clear();
    sums_.resize(un);
    scores_.resize(un);
    norms_.resize(un);
    a_score_.resize(un);
    for (auto* v : {&order_, &list_, &a_, &b_, &perm_, &kept_}) v->resize(un);
    unit_.resize(un * static_cast<std::size_t>(d));
  }

  VisPrunerConfig config_;
  Executor executor_;
  kernels::GramWorkspace gram_;
  std::vector<double> sums_;
  std::vector<float> scores_, norms_, a_score_, unit_, gram_matrix_;
  std::vector<index_t> order_, list_, a_, b_, perm_, important_, kept_;
  index_t kept_size_ = 0, passes_ = 0;
};

static_assert(TokenPruner<VisPruner>);

}  // namespace tokenprune
