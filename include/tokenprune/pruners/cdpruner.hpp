#pragma once
#include <tokenprune/core/abi.hpp>
// CDPruner (Zhang et al., NeurIPS 2025, "Beyond Attention or Similarity: Maximizing Conditional Diversity for
// Token Pruning in MLLMs"; reference github.com/Theia-4869/CDPruner @ 9541616, llava/model/llava_arch.py):
// a determinantal point process over the tokens whose kernel L = diag(w) S diag(w) couples the cosine
// similarity S of the features with the relevance w of each token to the instruction; the kept set is the greedy
// MAP of that DPP. methods/cdpruner.md is the exact definition implemented here.
//
// Reads: inputs.features [n, d] (the similarity kernel: LLaVA's projector output) and either
// inputs.image_embeds [n, e] with inputs.text_embeds [m, e] (relevance a_i = -(1/m) sum_k cos(e_i, t_k)) or
// inputs.relevance (n floats: the raw a; used only when image_embeds are absent). fp32, fp16 and bf16 views
// are read in place.
//
// Layouts: flat (crops = 1: one segment) or crops (n = crops * P; relevance, min-max and weights over all n
// tokens of the image, the DPP and its budget of k = budget.resolve(P) tokens independently in every crop of P
// tokens; indices are global). kept_count = crops * k.
//
// Numerics: the cosine kernel is the fp32 Gram of the unit rows (kernels/gram.hpp: every entry the fp32 FMA chain
// over the feature index, S_ii = 1 exactly); the relevance (double dots of the fp32 values), min-max, weights and
// the greedy (Chen et al. 2018's incremental Cholesky form) run in double, every multiply-add an explicit fma
// in a fixed order: the same bits at every ISA level and any thread count. theta's exp() is the C library's.
//
// Quirks defined by the method file (not by the reference): D = max a - min a == 0 gives r = 1 everywhere; a zero
// row of X, E or T is an error; rule 7 (a token whose residual fraction g_i / L_ii is <= 1e-4 is no candidate;
// when none is left, the remaining picks are the unpicked tokens by descending w, ties to the lower index); ties
// in gain go to the lower index.
//
// Cost per segment of P tokens with budget k: the greedy needs only the row of S of each pick. With 4 k <= P
// (LLaVA's 64 of 576, 32 per crop) the rows are computed as picks need them, 8 at a time (the pick's and the
// likeliest next picks'): 1.1 to 1.8 k rows of P d multiply-adds (measured), against P^2 d / 2 for the lower triangle,
// which larger budgets take (parallel over tiles). O(k^2 P) for the greedy. Both give the same bits.
// Memory: n d floats (unit rows), P^2 floats (the rows or the triangle of one segment), k P doubles (the Cholesky
// rows).
//
// Thread safety: one instance per thread; prune() mutates the instance's workspace. Instances share nothing.

#include <tokenprune/core/concept.hpp>
#include <tokenprune/kernels/convert.hpp>
#include <tokenprune/kernels/gram.hpp>
#include <tokenprune/kernels/similarity.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

struct CDPrunerConfig {
  // Relevance emphasis in [0, 1): w = exp(alpha r), alpha = theta / (2 (1 - theta)). Absent (the default, what
  // the authors ran): w = r.
  std::optional<double> theta;
  // The crops layout: n = crops * P tokens, B = crops segments of P, the budget per crop. 1 = flat.
  index_t crops = 1;

  void validate() const {
    if (theta && !(*theta >= 0.0 && *theta < 1.0)) fail("theta", *theta, "must be in [0, 1) (or absent)");
    if (crops < 1) fail("crops", crops, "must be >= 1");
  }
};

class CDPruner {
 public:
  explicit CDPruner(CDPrunerConfig config = {}) : config_(config) { config_.validate(); }

  [[nodiscard]] const CDPrunerConfig& config() const noexcept { return config_; }

  // Where the Gram tiles and the row normalization run (see core/executor.hpp). Answers are the same with any
  // executor. Call before reserve().
  void set_executor(const Executor& executor) { gram_.set_executor(executor); }
  [[nodiscard]] const Executor& executor() const noexcept { return gram_.executor(); }

  // crops * budget.resolve(n / crops); n not a multiple of crops is an error naming "crops".
  [[nodiscard]] index_t kept_count(const TokenShape& shape, Budget budget) const {
    return config_.crops * budget.resolve(segment_size(shape.n_tokens));
  }

  // After this, prune() on up to max_tokens tokens of up to dim features, up to embed_dim embedding columns
  // (-1: dim) and max_text_tokens text embeddings (or a relevance vector), keeping up to max_keep tokens per
  // segment (-1: up to the segment size), allocates nothing. A reserve() within the bounds of earlier ones keeps the spans valid.
  void reserve(index_t max_tokens, index_t dim, index_t embed_dim = -1, index_t max_text_tokens = 8,
               index_t max_keep = -1) {
    if (max_tokens < 0) fail("max_tokens", max_tokens, "must be >= 0");
    if (dim < 0) fail("dim", dim, "must be >= 0");
    if (embed_dim < -1) fail("embed_dim", embed_dim, "must be >= 0 (or -1: the same as dim)");
    if (embed_dim < 0) embed_dim = dim;
    if (max_text_tokens < 0) fail("max_text_tokens", max_text_tokens, "must be >= 0");
    if (max_keep < -1) fail("max_keep", max_keep, "must be >= 0 (or -1: the segment size)");
    const auto n = static_cast<std::size_t>(max_tokens);
    const auto keep = max_keep < 0 ? n : std::min(n, static_cast<std::size_t>(max_keep));
    unit_.reserve(n * static_cast<std::size_t>(dim));
    gram_.reserve(max_tokens, dim);
    gram_.reserve_rows(dim);
    slot_.reserve(n);
    batch_.reserve(kRowBatch);
    gram_buffer_.reserve(n * n);
    cholesky_.reserve(keep * n);
    for (auto* v : {&relevance_, &weights_, &gain_}) v->reserve(n);
    for (auto* v : {&norms_, &scores_, &gains_, &srow_}) v->reserve(n);
    coef_.reserve(keep);
    for (auto* v : {&order_, &kept_, &rest_}) v->reserve(n);
    picked_.reserve(n);
    embed_row_.reserve(static_cast<std::size_t>(embed_dim));
    embed_wide_.reserve(static_cast<std::size_t>(embed_dim));
    text_.reserve(static_cast<std::size_t>(max_text_tokens * embed_dim));
    text_norms_.reserve(static_cast<std::size_t>(max_text_tokens));
  }

  // The greedy MAP of the conditional DPP in every segment, kept indices ascending (global).
  std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) {
    const TokenMatrix& x = inputs.features;
    if (x.empty()) fail("features", "missing", "CDPruner needs the token features [n_tokens, dim] (its similarity kernel)");
    const bool from_embeds = !inputs.image_embeds.empty();
    if (!from_embeds && inputs.relevance.data() == nullptr)
      fail("image_embeds", "missing", "CDPruner needs image_embeds and text_embeds, or a relevance vector");
    if (from_embeds && inputs.text_embeds.empty())
      fail("text_embeds", "missing", "image_embeds need the text embeddings [m, e] of the instruction");
    const index_t n = inputs.n_tokens();  // also checks that the per-token inputs agree
    const index_t segment = segment_size(n);
    const index_t k = budget.resolve(segment);
    const index_t segments = config_.crops;
    const index_t dim = x.dim();
    const auto un = static_cast<std::size_t>(n);

    // Everything is checked (NaN/Inf, zero rows, shapes) before the Gram.
    grow(unit_, un * static_cast<std::size_t>(dim));
    norms_.resize(un);
    relevance_.resize(un);
    weights_.resize(un);
    scores_.resize(un);
    RowMap<float> unit(unit_.data(), n, dim, Eigen::OuterStride<>(dim));
    // Small budgets take rows of S on demand (see pick_row) from U packed for the Gram kernel. Where every segment
    // starts on a panel, the rows are packed while still in cache from their normalization (one pass fewer).
    by_rows_ = k > 0 && kRowsPerBudget * k <= segment;
    packed_whole_ = by_rows_ && (segments == 1 || segment % kernels::kPanel == 0);
    const ConstRowMap<float> units(unit_.data(), n, dim, Eigen::OuterStride<>(dim));
    const kernels::KernelTable& level = kernels::active_kernels();
    if (packed_whole_) gram_.packed_for(n, dim);
    auto pack = [&](index_t i0, index_t) {
      if (packed_whole_) gram_.pack_panel(units, i0 / kernels::kPanel, level);
    };
    visit_dtype(x.dtype(), [&]<class T>(T) {
      kernels::normalize_rows(x.as<T>(), unit, norms_, "features", executor(), kernels::kPanel, pack);
    });
    check_nonzero(norms_, "features");
    if (from_embeds) {
      embed_relevance(inputs.image_embeds, inputs.text_embeds, n);
    } else {
      kernels::check_finite(inputs.relevance, "relevance");
      for (std::size_t i = 0; i < un; ++i) relevance_[i] = static_cast<double>(inputs.relevance[i]);
    }
    normalize_relevance(n);

    const auto total = static_cast<std::size_t>(segments * k);
    order_.resize(total);
    gains_.resize(total);
    kept_.resize(total);
    const auto us = static_cast<std::size_t>(segment);
    gain_.resize(us);
    picked_.resize(us);
    rest_.resize(us);
    grow(cholesky_, static_cast<std::size_t>(k) * us);
    if (k > 0) grow(gram_buffer_, us * us);
    for (index_t b = 0; b < segments; ++b) greedy(b * segment, segment, k, static_cast<std::size_t>(b * k), dim);
    return kept_;
  }

  // r of the last prune(): the min-max normalized relevance (step 2), one per token, from 1e-6 / D to 1 + 1e-6 / D
  // (1 everywhere when all a are equal).
  [[nodiscard]] std::span<const float> scores() const noexcept { return scores_; }
  // The picks of the last prune() in pick order, global indices, segment after segment (k per segment).
  [[nodiscard]] std::span<const index_t> order() const noexcept { return order_; }
  // The gain g_j of each pick of order() when it was picked (w_j^2 times its residual fraction), rounded to fp32.
  // Picks made by rule 7 (exhaustion) carry their residual gain at that point (at most 1e-4 w_j^2, maybe <= 0).
  [[nodiscard]] std::span<const float> gains() const noexcept { return gains_; }

 private:
  static constexpr double kMinResidual = 1e-4;  // rule 7: g_i / L_ii at or below this is in the span
  static constexpr double kMinMaxEpsilon = 1e-6;
  static constexpr std::size_t kRowBatch = 8;      // rows of S computed together (one pass over the packed U)
  static constexpr index_t kRowsPerBudget = 4;     // rows of S on demand when budget * this <= segment size

  static void grow(std::vector<float>& buffer, std::size_t size) {
    if (buffer.size() < size) buffer.resize(size);
  }
  static void grow(std::vector<double>& buffer, std::size_t size) {
    if (buffer.size() < size) buffer.resize(size);
  }

  [[nodiscard]] index_t segment_size(index_t n) const {
    if (n < 0) fail("n_tokens", n, "must be >= 0");
    if (n % config_.crops != 0) {
      std::ostringstream reason;
      reason << "the token count " << n << " is not a multiple of crops";
      fail("crops", config_.crops, reason.str());
    }
    return n / config_.crops;
  }

  static void check_nonzero(std::span<const float> norms, const char* argument) {
    for (std::size_t i = 0; i < norms.size(); ++i)
      if (norms[i] == 0.0f) {
        std::ostringstream where;
        where << argument << "[" << i << "]";
        fail(where.str(), 0.0, "a zero row has no direction (the reference's normalization gives NaN)");
      }
  }

  // a_i = -(1/m) sum_k cos(e_i, t_k), in double from the fp32 values.
  void embed_relevance(const TokenMatrix& image, const TokenMatrix& text, index_t n) {
    const index_t e = image.dim(), m = text.n_tokens();
    if (m < 1) fail("text_embeds.n_tokens", m, "must be >= 1 (one embedding per 77-token chunk of the instruction)");
    if (text.dim() != e) fail("text_embeds.dim", text.dim(), "must equal image_embeds.dim");
    const kernels::KernelTable& level = kernels::active_kernels();
    const auto ue = static_cast<std::size_t>(e);
    embed_row_.resize(ue);
    embed_wide_.resize(ue);
    text_.resize(static_cast<std::size_t>(m) * ue);
    text_norms_.resize(static_cast<std::size_t>(m));
    visit_dtype(text.dtype(), [&]<class T>(T) {
      const ConstRowMap<T> t = text.as<T>();
      for (index_t r = 0; r < m; ++r) {
        kernels::load_row(t, r, embed_row_.data(), "text_embeds");
        const double norm = std::sqrt(level.squared_norm(embed_row_.data(), e));
        if (norm == 0.0) fail("text_embeds[" + std::to_string(r) + "]", 0.0, "a zero row has no direction");
        text_norms_[static_cast<std::size_t>(r)] = norm;
        std::copy(embed_row_.begin(), embed_row_.end(), text_.begin() + static_cast<std::ptrdiff_t>(r * e));
      }
    });
    visit_dtype(image.dtype(), [&]<class T>(T) {
      const ConstRowMap<T> im = image.as<T>();
      for (index_t i = 0; i < n; ++i) {
        kernels::load_row(im, i, embed_row_.data(), "image_embeds");
        const double norm = std::sqrt(level.squared_norm(embed_row_.data(), e));
        if (norm == 0.0) fail("image_embeds[" + std::to_string(i) + "]", 0.0, "a zero row has no direction");
        std::copy(embed_row_.begin(), embed_row_.end(), embed_wide_.begin());
        double sum = 0.0;
        for (index_t r = 0; r < m; ++r) {
          const double dot = level.dot(embed_wide_.data(), text_.data() + r * e, e);
          const double scale = norm * text_norms_[static_cast<std::size_t>(r)];
          sum += dot / scale;
        }
        relevance_[static_cast<std::size_t>(i)] = -sum / static_cast<double>(m);
      }
    });
  }

  // Steps 2 and 3 over the whole image: r (the scores) and w.
  void normalize_relevance(index_t n) {
    if (n == 0) return;
    const auto [lo, hi] = std::minmax_element(relevance_.begin(), relevance_.begin() + n);
    const double low = *lo, range = *hi - *lo;
    std::optional<double> alpha;
    if (config_.theta) alpha = *config_.theta / (2.0 * (1.0 - *config_.theta));
    for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
      const double r = range == 0.0 ? 1.0 : (relevance_[i] - low + kMinMaxEpsilon) / range;
      scores_[i] = static_cast<float>(r);
      if (alpha) {
        const double exponent = *alpha * r;
        weights_[i] = std::exp(exponent);
      } else {
        weights_[i] = r;
      }
    }
  }

  // Steps 4 to 6 on tokens [first, first + size) with budget k; writes k picks at out.
  void greedy(index_t first, index_t size, index_t k, std::size_t out, index_t dim) {
    if (k == 0) return;
    const auto us = static_cast<std::size_t>(size);
    const ConstRowMap<float> units(unit_.data() + first * dim, size, dim, Eigen::OuterStride<>(dim));
    // Small budgets take rows of S as the picks need them (see pick_row); larger ones the lower triangle, s(i, j)
    // for j <= i at gram_buffer_[i * size + j]. The entries are the same bits either way.
    if (by_rows_) {
      if (packed_whole_) {
        first_panel_ = first / kernels::kPanel;
      } else {
        gram_.pack_operand(units);
        first_panel_ = 0;
      }
      slot_.assign(us, -1);
      rows_done_ = 0;
    } else {
      gram_.lower_gram(
          units, size, true, [&](index_t i0) { return gram_buffer_.data() + i0 * size; },
          [](float*, index_t, index_t, index_t, index_t, index_t) {}, [](index_t, index_t) {});
    }
    const double* w = weights_.data() + first;
    const kernels::KernelTable& level = kernels::active_kernels();
    if (!by_rows_) srow_.resize(us);  // triangle_row's contiguous row
    coef_.resize(static_cast<std::size_t>(k));
    for (std::size_t i = 0; i < us; ++i) {
      const double wi = w[i];
      gain_[i] = wi * wi;
      picked_[i] = 0;
    }
    double* row = nullptr;
    index_t t = 0;
    for (; t < k; ++t) {
      // a. the candidate with the largest gain (strictly: ties to the lower index)
      std::size_t j = us;
      double best = 0.0;
      for (std::size_t i = 0; i < us; ++i) {
        if (picked_[i]) continue;
        const double lii = w[i] * w[i];
        const double floor = kMinResidual * lii;
        if (!(gain_[i] > floor)) continue;
        if (j == us || gain_[i] > best) {
          j = i;
          best = gain_[i];
        }
      }
      if (j == us) break;  // rule 7
      record(out + static_cast<std::size_t>(t), first, j, best);
      picked_[j] = 1;
      // b. c_t = (L_{j,:} - sum_{s<t} c_s[j] c_s) / sqrt(g_j); g <- g - c_t^2, per element in this fixed order
      // (kernels/level_double.inl, cdpruner_row): L_ji = (w_j s_ji) w_i, then fma(-c_s[j], c_s[i], .) for
      // s = 0 .. t-1, then / sqrt(g_j), then g_i = fma(-c_t[i], c_t[i], g_i). Row j of S is made contiguous
      // first (the triangle's row j below the diagonal, its column j above, s_jj = 1), or taken from pick_row.
      row = cholesky_.data() + static_cast<std::size_t>(t) * us;
      const float* sj = by_rows_ ? pick_row(units, j, w) : triangle_row(j, us);
      for (index_t p = 0; p < t; ++p) coef_[static_cast<std::size_t>(p)] = -cholesky_[static_cast<std::size_t>(p) * us + j];
      level.cdpruner_row(sj, w, w[j], coef_.data(), cholesky_.data(), size, t, std::sqrt(best), row, gain_.data(), size);
    }
    if (t < k) {
      // Rule 7: the remaining picks are the unpicked tokens by descending w, ties to the lower index.
      std::size_t count = 0;
      for (std::size_t i = 0; i < us; ++i)
        if (!picked_[i]) rest_[count++] = static_cast<index_t>(i);
      const auto need = static_cast<std::size_t>(k - t);
      std::partial_sort(rest_.begin(), rest_.begin() + static_cast<std::ptrdiff_t>(need),
                        rest_.begin() + static_cast<std::ptrdiff_t>(count), [&](index_t a, index_t b) {
                          const double wa = w[a], wb = w[b];
                          return wa > wb || (wa == wb && a < b);
                        });
      for (std::size_t q = 0; q < need; ++q, ++t) {
        const auto i = static_cast<std::size_t>(rest_[q]);
        record(out + static_cast<std::size_t>(t), first, i, gain_[i]);
        picked_[i] = 1;
      }
    }
    const auto begin = kept_.begin() + static_cast<std::ptrdiff_t>(out);
    std::copy_n(order_.begin() + static_cast<std::ptrdiff_t>(out), k, begin);
    std::sort(begin, begin + k);
  }

  // Row j of the triangle made contiguous in srow_, s_jj = 1.
  const float* triangle_row(std::size_t j, std::size_t us) {
    const float* s = gram_buffer_.data();
    float* sj = srow_.data();
    std::copy_n(s + j * us, j, sj);
    sj[j] = 1.0f;
    for (std::size_t i = j + 1; i < us; ++i) sj[i] = s[i * us + j];
    return sj;
  }

  // Row j of S for the pick j. Rows are computed kRowBatch at a time: j's and those of the unpicked candidates
  // with the largest gains now (gains only fall, so the next picks are mostly among them; on the reference
  // fixtures 57 picks of 576 took 64 to 80 rows instead of the triangle's 288 rows' worth). Each batch is one pass
  // over the packed U. At worst every token's row is computed: the whole square, twice the triangle's work.
  const float* pick_row(const ConstRowMap<float>& units, std::size_t j, const double* w) {
    const std::size_t us = slot_.size();
    if (slot_[j] < 0) {
      batch_.assign(1, static_cast<index_t>(j));
      // The kRowBatch - 1 best other candidates without a row: gain descending, ties to the lower index.
      for (std::size_t i = 0; i < us; ++i) {
        if (i == j || picked_[i] || slot_[i] >= 0 || !(gain_[i] > kMinResidual * w[i] * w[i])) continue;
        auto better = [&](index_t other) { return gain_[i] > gain_[static_cast<std::size_t>(other)]; };
        if (batch_.size() < kRowBatch) {
          batch_.push_back(static_cast<index_t>(i));
        } else if (better(batch_.back())) {
          batch_.back() = static_cast<index_t>(i);
        } else {
          continue;
        }
        for (std::size_t q = batch_.size() - 1; q > 1 && better(batch_[q - 1]); --q) std::swap(batch_[q], batch_[q - 1]);
      }
      float* rows = gram_buffer_.data() + rows_done_ * us;
      gram_.operand_rows(units, batch_, rows, static_cast<index_t>(us), first_panel_);
      for (std::size_t q = 0; q < batch_.size(); ++q) {
        const auto i = static_cast<std::size_t>(batch_[q]);
        slot_[i] = static_cast<index_t>(rows_done_ + q);
        rows[q * us + i] = 1.0f;  // s_ii = 1 exactly
      }
      rows_done_ += batch_.size();
    }
    return gram_buffer_.data() + static_cast<std::size_t>(slot_[j]) * us;
  }

  void record(std::size_t slot, index_t first, std::size_t local, double gain) {
    order_[slot] = first + static_cast<index_t>(local);
    gains_[slot] = static_cast<float>(gain);
  }

  CDPrunerConfig config_;
  kernels::GramWorkspace gram_;
  std::vector<float> unit_, gram_buffer_, norms_, scores_, gains_, embed_row_, srow_;
  std::vector<double> relevance_, weights_, gain_, cholesky_, coef_, embed_wide_, text_, text_norms_;
  std::vector<index_t> order_, kept_, rest_, slot_, batch_;
  std::size_t rows_done_ = 0;
  bool by_rows_ = false, packed_whole_ = false;
  index_t first_panel_ = 0;
  std::vector<std::uint8_t> picked_;
};

static_assert(TokenPruner<CDPruner>);

}  // namespace tokenprune
