#pragma once
#include <tokenprune/core/abi.hpp>
// VisionZip (Yang et al., CVPR 2025; dvlab-research/VisionZip@3151f6d, visionzip/clip_encoder.py): keep the
// [CLS] token and the D - 1 patches that the [CLS] query attends to most ("dominant"), and merge the remaining
// patches into C new "contextual" tokens. Normative definition: shared/methods/visionzip.md.
//
// Reads, for one image / one crop ([CLS] at row 0, patch p at row p + 1; n patches):
//   inputs.cls_attention  [heads, n]: the [CLS] query row over the patch keys (cls_query_row(maps) views it)
//   inputs.keys           [1 + n, key_heads * dk]: the same layer's keys; the key_heads column blocks are averaged
//   inputs.hidden_states  [1 + n, d]: the layer output that is kept and merged
// All three are required (fp32, fp16 or bf16, any row stride), even for C = 0; every element of each is checked
// for NaN/Inf (also the unused [CLS] key row) before anything is written.
//
// Budget: the TOTAL number of output rows K = D + C (a count, or a ratio: K = floor(r * n) in double, n = patches,
// the [CLS] not counted; a count is not capped at n: K = n + 1 is every row). C = config.contextual when >= 0,
// else C = max(1, floor(5K / 32)) (needs K >= 2; reproduces the authors' 54/10, 108/20, 162/30). D = K - C.
// Valid: 1 <= D <= n + 1 and 0 <= C <= m = n - (D - 1).
//
// Output: prune() returns the D kept rows of hidden_states, ascending, 0 (the [CLS]) first; the C contextual tokens
// (fp32 [C, d], target order) are in merged(), their target rows in targets(). The engine's output matrix is
// [X[keep]; merged()]. The overload with merged_out writes them straight into the engine's buffer instead.
//
// Definition (visionzip.md steps 1-8): s_p = sum over heads of the [CLS] row (scores(), fp32 of the double sum,
// heads in order: kernels/cls_row.hpp); the D - 1 largest s_p are kept (ties: lower index); Q = the other patches,
// ascending; step = max(1, floor(m / C)), targets t_k = Q[k * step]; every other j in Q joins the target of largest
// cosine u_j . u_t (ties: the lowest k), u = K / ||K|| with the fp32 norm of kernels/similarity.hpp (norm in
// double, fixed order) and no epsilon (a row whose fp32 norm is 0 has u = 0); c_k = X[t_k] + mean of its members
// (a target without members passes unchanged).
// Arithmetic: key means and merge sums in double, in a fixed order (members ascending), rounded once to fp32;
// cosines are double sums of products of fp32 values (each product exact, so contraction cannot change a bit).
// The same bits at every ISA level and thread count.
//
// Cost: H n (scores) + (1 + n) key_heads dk (keys) + (1 + n) d (check) + (m - C) C dk (assignment) + m d (merge).
// Memory after reserve(): O(n (dk + key width)) floats plus C d floats for merged(); prune() allocates nothing.
//
// Not supported: layouts/segments.hpp (the [CLS] row is per image: prune each image or crop with its own call;
// LLaVA-NeXT's per-crop reordering is layout, done by the caller from the per-crop results).
//
// Thread safety: one instance per thread; prune() mutates the instance's workspace. Instances share nothing.

#include <tokenprune/core/concept.hpp>
#include <tokenprune/kernels/cls_row.hpp>
#include <tokenprune/kernels/convert.hpp>
#include <tokenprune/kernels/similarity.hpp>
#include <tokenprune/kernels/topk.hpp>

#include <algorithm>
#include <cmath>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

struct VisionZipConfig {
  // C, the number of contextual (merged) tokens; -1: from the budget, C = max(1, floor(5K / 32)).
  index_t contextual = -1;
  // Keys given as [1 + n, key_heads * dk] (an engine's fused per-head keys): averaged over the column blocks.
  index_t key_heads = 1;

  void validate() const {
    if (contextual < -1) fail("contextual", contextual, "must be >= 0, or -1 to derive it from the budget");
    if (key_heads < 1) fail("key_heads", key_heads, "must be >= 1");
  }
};

// The split of a total budget K = dominant + contextual.
struct VisionZipSplit {
  index_t dominant = 0;    // D: kept rows, the [CLS] included
  index_t contextual = 0;  // C: merged tokens
};

class VisionZip {
 public:
  explicit VisionZip(VisionZipConfig config = {}) : config_(config) { config_.validate(); }

  [[nodiscard]] const VisionZipConfig& config() const noexcept { return config_; }

  // Where the key normalization runs (see core/executor.hpp); answers are the same with any executor.
  void set_executor(const Executor& executor) { executor_ = executor; }
  [[nodiscard]] const Executor& executor() const noexcept { return executor_; }

  // D and C for n = shape.n_tokens patches; throws on an invalid budget (naming "keep" or "contextual").
  [[nodiscard]] VisionZipSplit split(const TokenShape& shape, Budget budget) const {
    config_.validate();
    const index_t n = shape.n_tokens;
    if (n < 0) fail("n_tokens", n, "must be >= 0");
    const index_t total = budget.is_ratio()
                              ? static_cast<index_t>(std::floor(budget.ratio_value() * static_cast<double>(n)))
                              : budget.keep();
    VisionZipSplit s;
    if (config_.contextual >= 0) {
      s.contextual = config_.contextual;
    } else {
      if (total < 2) fail("keep", total, "must be >= 2 when contextual is derived from the budget (C = max(1, floor(5K/32)))");
      s.contextual = std::max<index_t>(1, 5 * total / 32);
    }
    s.dominant = total - s.contextual;
    if (s.dominant < 1 || s.dominant > n + 1) {
      std::ostringstream why;
      why << "dominant D = keep - contextual = " << total << " - " << s.contextual << " = " << s.dominant
          << " must be in [1, n_tokens + 1] = [1, " << n + 1 << "]";
      fail("keep", total, why.str());
    }
    const index_t m = n - (s.dominant - 1);
    if (s.contextual > m) {
      std::ostringstream why;
      why << "must be <= m = n_tokens - (dominant - 1) = " << n << " - " << s.dominant - 1 << " = " << m
          << " (the patches left after the dominant ones)";
      fail("contextual", s.contextual, why.str());
    }
    return s;
  }

  // D: the rows prune() returns ([CLS] + D - 1 patches).
  [[nodiscard]] index_t kept_count(const TokenShape& shape, Budget budget) const { return split(shape, budget).dominant; }
  // C: the contextual tokens prune() builds (output rows = kept_count + merged_count).
  [[nodiscard]] index_t merged_count(const TokenShape& shape, Budget budget) const {
    return split(shape, budget).contextual;
  }

  // max_tokens: the most patches n; dim: the most hidden-state columns d; max_key_dim: the most key columns
  // (key_heads * dk; -1: dim). Calls within these bounds allocate nothing, and a reserve() within the bounds of
  // earlier ones keeps the spans returned by prune() valid.
  void reserve(index_t max_tokens, index_t dim, index_t max_key_dim = -1) {
    if (max_tokens < 0) fail("max_tokens", max_tokens, "must be >= 0");
    if (dim < 0) fail("dim", dim, "must be >= 0");
    if (max_key_dim < -1) fail("max_key_dim", max_key_dim, "must be >= 0, or -1 for dim");
    const index_t key_dim = max_key_dim < 0 ? dim : max_key_dim;
    const auto n = static_cast<std::size_t>(max_tokens);
    const auto rows = n + 1;
    sums_.reserve(n);
    scores_.reserve(n);
    order_.reserve(n);
    top_.reserve(n);
    kept_.reserve(rows);
    remaining_.reserve(n);
    targets_.reserve(n);
    assignment_.reserve(n);
    member_start_.reserve(n + 1);
    members_.reserve(n);
    norms_.reserve(rows);
    unit_.reserve(rows * static_cast<std::size_t>(key_dim));
    if (config_.key_heads > 1) mean_keys_.reserve(rows * static_cast<std::size_t>(key_dim / config_.key_heads));
    row_.reserve(static_cast<std::size_t>(std::max({max_tokens, dim, key_dim, index_t{1}})));
    accumulator_.reserve(static_cast<std::size_t>(std::max(dim, key_dim)));  // merged sums and key means
    merged_.reserve(n * static_cast<std::size_t>(dim));
    executor_.warm_up();
  }

  // The D kept rows of hidden_states, ascending ([CLS] = 0 first); the contextual tokens go to merged().
  std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) {
    merged_rows_ = 0;
    const Prepared p = prepare(inputs, budget);
    merged_.resize(static_cast<std::size_t>(p.split.contextual * p.dim));
    merge(inputs.hidden_states, merged_.data(), p.dim, p.dim);
    merged_rows_ = p.split.contextual;
    merged_dim_ = p.dim;
    return {kept_.data(), kept_.size()};
  }

  // The same, with the C contextual tokens written to merged_out (row k at merged_out + k * merged_row_stride, d
  // floats each) instead of merged(), which is then empty. Everything is validated before anything is written.
  std::span<const index_t> prune(const PruneInputs& inputs, Budget budget, float* merged_out, index_t merged_row_stride) {
    merged_rows_ = 0;
    const Prepared p = prepare(inputs, budget, merged_row_stride);
    if (merged_out == nullptr && p.split.contextual > 0 && p.dim > 0)
      fail("merged_out", "null", "the contextual tokens need a buffer of contextual x merged_row_stride floats");
    merge(inputs.hidden_states, merged_out, merged_row_stride, p.dim);
    merged_dim_ = p.dim;
    return {kept_.data(), kept_.size()};
  }

  // The dominant score of each patch (length n) of the last prune(): the [CLS] row summed over heads (the
  // reference's sum, not a mean; same ranking), the double sum rounded to fp32. The ranked values.
  [[nodiscard]] std::span<const float> scores() const noexcept { return scores_; }
  // The C contextual tokens of the last prune(inputs, budget), [C, d] fp32, in target order (0 rows after the
  // merged_out overload).
  [[nodiscard]] ConstRowMap<float> merged() const noexcept {
    return ConstRowMap<float>(merged_.data(), merged_rows_, merged_dim_, Eigen::OuterStride<>(std::max<index_t>(merged_dim_, 1)));
  }
  // The target rows of hidden_states (ascending; merged row k is built on targets()[k]).
  [[nodiscard]] std::span<const index_t> targets() const noexcept { return targets_; }
  // Per patch p (length n): -1 for a dominant patch, else k, the contextual token p + 1 went into (a target: its own k).
  [[nodiscard]] std::span<const index_t> assignment() const noexcept { return assignment_; }

 private:
  struct Prepared {
    VisionZipSplit split;
    index_t n = 0, dim = 0;
  };

  // Everything but the merged rows: validation, scores, keep, targets, assignment. Throws before any output.
  Prepared prepare(const PruneInputs& inputs, Budget budget, index_t merged_row_stride = -1) {
    config_.validate();
    if (inputs.cls_attention.empty())
      fail("cls_attention", "missing", "VisionZip needs the [CLS] query row over the patch keys ([heads, n])");
    if (inputs.keys.empty()) fail("keys", "missing", "VisionZip needs the layer's keys ([1 + n, key_heads * dk])");
    if (inputs.hidden_states.empty())
      fail("hidden_states", "missing", "VisionZip needs the hidden states to keep and merge ([1 + n, d])");
    const index_t n = inputs.n_tokens();  // the three agree
    const VisionZipSplit s = split(TokenShape{n}, budget);
    const index_t heads = inputs.cls_attention.n_tokens();
    if (heads < 1) fail("cls_attention.heads", heads, "must be >= 1");
    const index_t width = inputs.keys.dim(), key_heads = config_.key_heads;
    if (width < 1) fail("keys.dim", width, "must be >= 1");
    if (width % key_heads != 0) {
      std::ostringstream why;
      why << "must divide keys.dim = " << width << " (keys are [1 + n, key_heads * dk])";
      fail("key_heads", key_heads, why.str());
    }
    const index_t dk = width / key_heads, d = inputs.hidden_states.dim();
    if (d < 1) fail("hidden_states.dim", d, "must be >= 1");
    if (merged_row_stride != -1 && merged_row_stride < d) {
      std::ostringstream why;
      why << "must be >= hidden_states.dim = " << d;
      fail("merged_row_stride", merged_row_stride, why.str());
    }

    const auto un = static_cast<std::size_t>(n), rows = un + 1;
    // 1. Dominant scores (checks cls_attention).
    sums_.resize(un);
    scores_.resize(un);
    kernels::cls_row_sums(inputs.cls_attention, sums_, "cls_attention");
    for (std::size_t p = 0; p < un; ++p) scores_[p] = static_cast<float>(sums_[p]);
    // 5. Unit keys (checks keys), then a check of the hidden states: no error can come after this point.
    norms_.resize(rows);
    unit_.resize(rows * static_cast<std::size_t>(dk));
    row_.resize(std::max<std::size_t>({un, static_cast<std::size_t>(width), static_cast<std::size_t>(d), 1}));
    unit_keys(inputs.keys, n, dk);
    visit_dtype(inputs.hidden_states.dtype(), [&]<class T>(T) {
      const ConstRowMap<T> x = inputs.hidden_states.as<T>();
      for (index_t i = 0; i <= n; ++i) {
        if constexpr (std::same_as<T, float>) {  // checked in place; a copy only to name a bad element
          if (kernels::all_finite(x.row(i).data(), x.cols())) continue;
        }
        kernels::load_row(x, i, row_.data(), "hidden_states");
      }
    });

    // 2. Dominant patches: the D - 1 best scores; keep = {0} U {p + 1}, ascending.
    const index_t dominant_patches = s.dominant - 1, m = n - dominant_patches, c = s.contextual;
    order_.resize(un);
    top_.resize(static_cast<std::size_t>(dominant_patches));
    kernels::top_k_ascending(std::span<const float>(scores_), dominant_patches, order_, std::span<index_t>(top_));
    kept_.resize(static_cast<std::size_t>(s.dominant));
    kept_[0] = 0;
    for (index_t i = 0; i < dominant_patches; ++i) kept_[static_cast<std::size_t>(i + 1)] = top_[static_cast<std::size_t>(i)] + 1;
    // 3. Q: the other patches' rows, ascending.
    assignment_.assign(un, index_t{0});
    for (index_t p : top_) assignment_[static_cast<std::size_t>(p)] = -1;
    remaining_.resize(static_cast<std::size_t>(m));
    {
      std::size_t q = 0;
      for (index_t p = 0; p < n; ++p)
        if (assignment_[static_cast<std::size_t>(p)] == 0) remaining_[q++] = p + 1;
    }
    // 4. Targets Q[k * step].
    targets_.resize(static_cast<std::size_t>(c));
    member_start_.assign(static_cast<std::size_t>(c + 1), index_t{0});
    members_.resize(0);
    if (c > 0) {
      const index_t step = std::max<index_t>(1, m / c);
      for (index_t k = 0; k < c; ++k) {
        const index_t t = remaining_[static_cast<std::size_t>(k * step)];
        targets_[static_cast<std::size_t>(k)] = t;
        assignment_[static_cast<std::size_t>(t - 1)] = k;
      }
      // 6. Each non-target j in Q to the target of largest cosine, the lowest k on ties.
      std::size_t next_target = 0;
      for (index_t j : remaining_) {
        if (next_target < targets_.size() && targets_[next_target] == j) {
          ++next_target;
          continue;
        }
        const float* uj = unit_.data() + static_cast<std::size_t>(j * dk);
        index_t best = 0;
        double best_cosine = 0.0;
        for (index_t k = 0; k < c; ++k) {
          const float* ut = unit_.data() + static_cast<std::size_t>(targets_[static_cast<std::size_t>(k)] * dk);
          double cosine = 0.0;
          // Products of two fp32 values are exact in double, so fusing them (-ffp-contract) changes no bit.
          for (index_t e = 0; e < dk; ++e) cosine += static_cast<double>(uj[e]) * static_cast<double>(ut[e]);
          if (k == 0 || cosine > best_cosine) {
            best = k;
            best_cosine = cosine;
          }
        }
        assignment_[static_cast<std::size_t>(j - 1)] = best;
        ++member_start_[static_cast<std::size_t>(best + 1)];
      }
      // Members grouped by target, ascending within each (counting sort over Q's ascending order).
      for (index_t k = 0; k < c; ++k) member_start_[static_cast<std::size_t>(k + 1)] += member_start_[static_cast<std::size_t>(k)];
      members_.resize(static_cast<std::size_t>(member_start_[static_cast<std::size_t>(c)]));
      std::copy_n(member_start_.begin(), c, order_.begin());  // fill positions (order_ is free again)
      next_target = 0;
      for (index_t j : remaining_) {
        if (next_target < targets_.size() && targets_[next_target] == j) {
          ++next_target;
          continue;
        }
        const index_t k = assignment_[static_cast<std::size_t>(j - 1)];
        members_[static_cast<std::size_t>(order_[static_cast<std::size_t>(k)]++)] = j;
      }
    }
    accumulator_.resize(static_cast<std::size_t>(d));
    return Prepared{s, n, d};
  }

  // u_i = K_i / ||K_i|| (fp32 division by the fp32 norm; u = 0 where that norm is 0) for rows 0..n into unit_.
  void unit_keys(const TokenMatrix& keys, index_t n, index_t dk) {
    const index_t key_heads = config_.key_heads, rows = n + 1;
    const RowMap<float> unit(unit_.data(), rows, dk, Eigen::OuterStride<>(dk));
    const std::span<float> norms(norms_.data(), static_cast<std::size_t>(rows));
    if (key_heads == 1) {
      visit_dtype(keys.dtype(), [&]<class T>(T) { kernels::normalize_rows<T>(keys.as<T>(), unit, norms, "keys", executor_); });
    } else {
      // K[i] = the mean of the key_heads column blocks, in double (blocks in order), rounded once to fp32.
      mean_keys_.resize(static_cast<std::size_t>(rows * dk));
      visit_dtype(keys.dtype(), [&]<class T>(T) {
        const ConstRowMap<T> x = keys.as<T>();
        accumulator_.resize(std::max(accumulator_.size(), static_cast<std::size_t>(dk)));
        for (index_t i = 0; i < rows; ++i) {
          kernels::load_row(x, i, row_.data(), "keys");
          float* mean = mean_keys_.data() + static_cast<std::size_t>(i * dk);
          std::fill_n(accumulator_.begin(), dk, 0.0);
          kernels::accumulate(row_.data(), key_heads, dk, dk, accumulator_.data());  // the heads in order
          for (index_t e = 0; e < dk; ++e)
            mean[e] = static_cast<float>(accumulator_[static_cast<std::size_t>(e)] / static_cast<double>(key_heads));
        }
      });
      const ConstRowMap<float> mean(mean_keys_.data(), rows, dk, Eigen::OuterStride<>(dk));
      kernels::normalize_rows<float>(mean, unit, norms, "keys", executor_);
    }
    // normalize_rows divides by max(norm, 1e-12); the method has no epsilon: redo the rare rows below it.
    for (index_t i = 0; i < rows; ++i) {
      const float norm = norms[static_cast<std::size_t>(i)];
      if (!(norm < static_cast<float>(kernels::kNormFloor))) continue;
      float* u = unit_.data() + static_cast<std::size_t>(i * dk);
      if (norm == 0.0f) {
        std::fill(u, u + dk, 0.0f);
        continue;
      }
      visit_dtype(keys.dtype(), [&]<class T>(T) {
        const float* source = mean_keys_.data() + static_cast<std::size_t>(i * dk);
        if (key_heads == 1) {
          kernels::load_row(keys.as<T>(), i, row_.data(), "keys");
          source = row_.data();
        }
        kernels::active_kernels().divide_row(source, u, dk, norm);
      });
    }
  }

  // 7. c_k = X[t_k] + (sum of members) / max(1, |S_k|), sums in double (members ascending), into out (row stride).
  void merge(const TokenMatrix& hidden, float* out, index_t stride, index_t d) {
    const auto c = static_cast<index_t>(targets_.size());
    visit_dtype(hidden.dtype(), [&]<class T>(T) {
      const ConstRowMap<T> x = hidden.as<T>();
      auto read = [&](index_t i) -> const float* {  // row i as fp32 (checked finite in prepare())
        if constexpr (std::same_as<T, float>) {
          return x.row(i).data();
        } else {
          kernels::widen(x.row(i).data(), row_.data(), d);
          return row_.data();
        }
      };
      for (index_t k = 0; k < c; ++k) {
        std::fill(accumulator_.begin(), accumulator_.end(), 0.0);
        const index_t first = member_start_[static_cast<std::size_t>(k)], last = member_start_[static_cast<std::size_t>(k + 1)];
        for (index_t q = first; q < last; ++q)  // element-wise, members in order: the same bits at every level
          kernels::accumulate(x.row(members_[static_cast<std::size_t>(q)]).data(), d, accumulator_.data());
        const auto count = static_cast<double>(std::max<index_t>(1, last - first));
        const float* xt = read(targets_[static_cast<std::size_t>(k)]);
        float* row = out + k * stride;
        for (index_t e = 0; e < d; ++e)
          row[e] = static_cast<float>(static_cast<double>(xt[e]) + accumulator_[static_cast<std::size_t>(e)] / count);
      }
    });
  }

  VisionZipConfig config_;
  Executor executor_;
  std::vector<double> sums_, accumulator_;
  std::vector<float> scores_, norms_, unit_, mean_keys_, row_, merged_;
  std::vector<index_t> order_, top_, kept_, remaining_, targets_, assignment_, member_start_, members_;
  index_t merged_rows_ = 0, merged_dim_ = 0;
};

static_assert(TokenPruner<VisionZip>);

}  // namespace tokenprune
