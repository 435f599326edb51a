#pragma once
#include <tokenprune/core/abi.hpp>
// DART, embedding-level variant with an exact count (Wen et al., "Stop Looking for Important Tokens in Multimodal
// Language Models: Duplication Matters More", EMNLP 2025; reference github.com/ZichenWen1/DART,
// DART.get_retained_image_token). The normative definition is the section "Normative definition (embedding level,
// exact count)" of shared/methods/dart.md:
//   1. L1 norms l_i = sum_j |v_ij| of the visual tokens, lambda_j = sum_c |u_jc| of the text tokens;
//   2. image pivots I: the min(p_img, k) visual tokens of largest l, in rank order (descending, ties to the lower
//      index); text pivots J: the min(p_txt, m) text tokens of largest lambda, in rank order;
//   3. R = I, pool C = the other visual tokens;
//   4. for each pivot pi_j of I then J (P = |I| + |J|): rem = k - |R|, stop when rem = 0 or C is empty; move the
//      q_j = ceil(rem / (P - j)) pool tokens least cosine-similar to pi_j (ties to the lower index) from C to R;
//   5. R ascending: exactly k tokens.
//
// Reads inputs.features (V [n, d], the projector output) and inputs.text_embeds (U [m, d], the LLM input
// embeddings of the text tokens that may be pivots; absent or 0 rows: m = 0). fp32, fp16 or bf16, any row stride.
//
// Arithmetic (fp32, bitwise identical at every ISA level):
// - l_i and lambda_j are summed in double in a fixed order (8 lanes by column index mod 8, added pairwise), then
//   rounded to fp32; pivots are ranked on those fp32 values, so two norms equal in fp32 tie (lower index first),
//   exactly as scores() shows them.
// - The cosine is "normalize, then dot": unit rows from kernels::normalize_rows (x / max(||x||, 1e-12), fp32 division
//   by the fp32 norm), all pivot-token dot products in one GramWorkspace::product (the fixed-order fp32 FMA chain of
//   the level kernels), then the definition's eps = 1e-8 norm floor applied as the factor
//   max(w, 1e-12) / max(w, 1e-8) per side (exactly 1 for every norm w >= 1e-8, so only tiny tokens are affected).
//   Mathematically this is pi.v / (max(||pi||, 1e-8) max(||v||, 1e-8)).
//
// Differences from the reference (see the method file): embeddings instead of layer-1 hidden states and keys;
// pivots in rank order (image, then text) instead of CPython set order; quotas ceil(rem / (P - j)) so the count
// is exactly k (the reference keeps p_img + P floor(B / P)); ties to the lower index (torch.topk: unspecified).
// Differences from TensorRT-Edge-LLM's DartPruner: the cosine denominator floors each norm, not their product.
//
// Cost: O(n d + m d) for the norms and the unit rows (V's L1 norms are summed while normalize_rows has each block
// in cache), P n d multiply-adds for the similarities (P <= p_img + p_txt, 8 by default; the product packs the unit
// rows once), O(P n) for the selections. About 5.5 ms of one core at n = 576, d = 4096 (AVX-512 level), memory
// bound. Memory: n x d unit floats (plus their packed copy), P x n similarities.
//
// Thread safety: one instance per thread; prune() mutates the instance's workspace. Instances share nothing.

#include <tokenprune/core/concept.hpp>
#include <tokenprune/kernels/convert.hpp>
#include <tokenprune/kernels/gram.hpp>
#include <tokenprune/kernels/similarity.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <sstream>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

struct DartConfig {
  int pivot_image = 4;  // p_img >= 0: image pivots (the visual tokens of largest L1 norm)
  int pivot_text = 4;   // p_txt >= 0: text pivots (the text tokens of largest L1 norm)

  void validate() const {
    if (pivot_image < 0) fail("pivot_image", pivot_image, "must be >= 0");
    if (pivot_text < 0) fail("pivot_text", pivot_text, "must be >= 0");
    if (pivot_image == 0 && pivot_text == 0)
      fail("pivot_image+pivot_text", 0, "must be >= 1: DART needs at least one pivot");
  }
};

class Dart {
 public:
  explicit Dart(DartConfig config = {}) : config_(config) { config_.validate(); }

  [[nodiscard]] const DartConfig& config() const noexcept { return config_; }

  // Where the unit-row normalization runs (see core/executor.hpp; default: OpenMP threads when compiled with
  // OpenMP, else the calling thread). Answers are the same with any executor. Call before reserve().
  void set_executor(const Executor& executor) noexcept { executor_ = executor; }
  [[nodiscard]] const Executor& executor() const noexcept { return executor_; }

  [[nodiscard]] index_t kept_count(const TokenShape& shape, Budget budget) const { return budget.resolve(shape.n_tokens); }

  // After this, prune() on up to max_tokens visual tokens and up to max_text_tokens text tokens of up to dim
  // features allocates nothing. A reserve() within the bounds of earlier ones keeps the returned spans valid.
  void reserve(index_t max_tokens, index_t dim, index_t max_text_tokens = 2048) {
    if (max_tokens < 0) fail("max_tokens", max_tokens, "must be >= 0");
    if (dim < 0) fail("dim", dim, "must be >= 0");
    if (max_text_tokens < 0) fail("max_text_tokens", max_text_tokens, "must be >= 0");
    const auto n = static_cast<std::size_t>(max_tokens), d = static_cast<std::size_t>(dim);
    const auto pivots = static_cast<std::size_t>(config_.pivot_image) + static_cast<std::size_t>(config_.pivot_text);
    unit_.reserve(n * d);
    row_.reserve(d);
    pivot_unit_.reserve(pivots * d);
    pivot_norms_.reserve(pivots);
    similarity_.reserve(pivots * n);
    gram_.reserve_product(static_cast<index_t>(pivots), max_tokens, dim);
    for (auto* v : {&norms_, &scores_}) v->reserve(n);
    text_l1_.reserve(static_cast<std::size_t>(max_text_tokens));
    order_.reserve(std::max(n, static_cast<std::size_t>(max_text_tokens)));
    candidates_.reserve(n);
    kept_.reserve(n);
    in_pool_.reserve(n);
    pivots_.reserve(static_cast<std::size_t>(config_.pivot_image));
    text_pivots_.reserve(static_cast<std::size_t>(config_.pivot_text));
    executor_.warm_up();
  }

  std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) {
    const TokenMatrix& v = inputs.features;
    if (v.empty()) fail("features", "missing", "DART needs the visual token embeddings [n_tokens, dim]");
    const index_t n = inputs.n_tokens();  // also checks that the other inputs agree
    const index_t k = budget.resolve(n);
    const index_t d = v.dim();
    const TokenMatrix& u = inputs.text_embeds;
    const index_t m = u.empty() ? 0 : u.n_tokens();
    if (m > 0 && u.dim() != d) {
      std::ostringstream reason;
      reason << "must equal features.dim = " << d << " (text and visual embeddings share the LLM's space)";
      fail("text_embeds.dim", u.dim(), reason.str());
    }
    const auto un = static_cast<std::size_t>(n), um = static_cast<std::size_t>(m);
    pivots_.clear();
    text_pivots_.clear();
    kept_.clear();
    scores_.resize(un);
    text_l1_.resize(um);
    row_.resize(static_cast<std::size_t>(d));

    // 1. L1 norms. V's are summed while normalize_rows has each block of rows in cache (it also rejects NaN/Inf,
    // naming the element); then U's (NaN/Inf checked there).
    grow(unit_, un * static_cast<std::size_t>(d));
    norms_.resize(un);
    RowMap<float> unit(unit_.data(), n, d, Eigen::OuterStride<>(d));
    visit_dtype(v.dtype(), [&]<class T>(T) {
      const ConstRowMap<T> rows = v.as<T>();
      kernels::normalize_rows(rows, unit, norms_, "features", executor_, kernels::kPanel, [&](index_t i0, index_t i1) {
        for (index_t i = i0; i < i1; ++i) scores_[static_cast<std::size_t>(i)] = l1_norm(rows.row(i).data(), d);
      });
    });
    check_l1(scores_, "features");
    for (index_t j = 0; j < m; ++j)
      visit_dtype(u.dtype(), [&]<class T>(T) {
        const ConstRowMap<T> rows = u.as<T>();
        kernels::load_row(rows, j, row_.data(), "text_embeds");
        text_l1_[static_cast<std::size_t>(j)] = l1_norm(row_.data(), d);
      });
    check_l1(text_l1_, "text_embeds");
    const auto p_img = std::min<index_t>(config_.pivot_image, k);
    const auto p_txt = std::min<index_t>(config_.pivot_text, m);
    if (k > 0 && p_img + p_txt == 0)
      fail("text_embeds", u.empty() ? "missing" : "0 rows",
           "pivot_image = 0 needs text pivots: give text_embeds with at least one row, or pivot_image >= 1");
    if (k == 0) return kept_;

    // 2. Pivots in rank order: fp32 norm descending, ties to the lower index.
    rank(scores_, p_img, pivots_);
    rank(text_l1_, p_txt, text_pivots_);
    const index_t pivot_count = p_img + p_txt;

    // Unit rows of the pivots, then every pivot-token similarity in one product.
    const auto up = static_cast<std::size_t>(pivot_count);
    pivot_unit_.resize(up * static_cast<std::size_t>(d));
    pivot_norms_.resize(up);
    for (index_t p = 0; p < p_img; ++p) {
      const index_t token = pivots_[static_cast<std::size_t>(p)];
      std::copy_n(unit_.data() + token * d, d, pivot_unit_.data() + p * d);
      pivot_norms_[static_cast<std::size_t>(p)] = norms_[static_cast<std::size_t>(token)];
    }
    for (index_t p = 0; p < p_txt; ++p) {
      const index_t token = text_pivots_[static_cast<std::size_t>(p)];
      const index_t slot = p_img + p;
      visit_dtype(u.dtype(), [&]<class T>(T) {
        const ConstRowMap<T> all = u.as<T>();
        const ConstRowMap<T> one(all.data() + token * u.row_stride(), 1, d, Eigen::OuterStride<>(u.row_stride()));
        kernels::normalize_rows(one, RowMap<float>(pivot_unit_.data() + slot * d, 1, d, Eigen::OuterStride<>(d)),
                                std::span<float>(pivot_norms_).subspan(static_cast<std::size_t>(slot), 1),
                                "text_embeds", Executor::sequential());
      });
    }
    grow(similarity_, up * un);
    gram_.product(ConstRowMap<float>(pivot_unit_.data(), pivot_count, d, Eigen::OuterStride<>(d)),
                  ConstRowMap<float>(unit_.data(), n, d, Eigen::OuterStride<>(d)), similarity_.data(), n);

    // 3. R = I, C = the rest.
    in_pool_.assign(un, std::uint8_t{1});
    for (index_t token : pivots_) {
      in_pool_[static_cast<std::size_t>(token)] = 0;
      kept_.push_back(token);
    }
    // 4. Each pivot in turn takes its quota of the least similar pool tokens.
    for (index_t j = 0; j < pivot_count; ++j) {
      const index_t rem = k - static_cast<index_t>(kept_.size());
      candidates_.clear();
      for (index_t c = 0; c < n; ++c)
        if (in_pool_[static_cast<std::size_t>(c)]) candidates_.push_back(c);
      if (rem == 0 || candidates_.empty()) break;
      const index_t quota = (rem + (pivot_count - j) - 1) / (pivot_count - j);
      float* sigma = similarity_.data() + j * n;
      const float own = floor_factor(pivot_norms_[static_cast<std::size_t>(j)]);
      for (index_t c : candidates_) {
        const float scaled = sigma[c] * own;  // factors are exactly 1 for norms >= 1e-8
        sigma[c] = scaled * floor_factor(norms_[static_cast<std::size_t>(c)]);
      }
      auto less_similar = [sigma](index_t a, index_t b) { return sigma[a] < sigma[b] || (sigma[a] == sigma[b] && a < b); };
      const auto take = std::min<index_t>(quota, static_cast<index_t>(candidates_.size()));
      std::nth_element(candidates_.begin(), candidates_.begin() + (take - 1), candidates_.end(), less_similar);
      for (index_t t = 0; t < take; ++t) {
        const index_t c = candidates_[static_cast<std::size_t>(t)];
        in_pool_[static_cast<std::size_t>(c)] = 0;
        kept_.push_back(c);
      }
    }
    // 5. Ascending.
    std::sort(kept_.begin(), kept_.end());
    return kept_;
  }

  // The L1 norms l_i of the visual tokens (double sums rounded to fp32: the values the image pivots are ranked by)
  // of the last prune(). Length n.
  [[nodiscard]] std::span<const float> scores() const noexcept { return scores_; }
  // The image pivots (visual token indices) of the last prune(), in rank order: min(pivot_image, k) of them.
  [[nodiscard]] std::span<const index_t> pivots() const noexcept { return pivots_; }
  // The text pivots (row indices into text_embeds) of the last prune(), in rank order: min(pivot_text, m) of them
  // (empty when k = 0).
  [[nodiscard]] std::span<const index_t> text_pivots() const noexcept { return text_pivots_; }
  // The L1 norms lambda_j of the text tokens of the last prune(). Length m.
  [[nodiscard]] std::span<const float> text_scores() const noexcept { return text_l1_; }

 private:
  static void grow(std::vector<float>& buffer, std::size_t size) {
    if (buffer.size() < size) buffer.resize(size);
  }

  // max(w, 1e-12) / max(w, 1e-8): turns the unit rows' 1e-12 norm floor into the definition's 1e-8 floor.
  static float floor_factor(float w) noexcept {
    constexpr float kUnitFloor = static_cast<float>(kernels::kNormFloor), kEps = 1e-8f;
    return std::max(w, kUnitFloor) / std::max(w, kEps);
  }

  // fp32(sum_j |x_j|), summed in double in a fixed order (8 lanes by index mod 8, added pairwise); 16-bit
  // elements are widened one by one (exact). Non-finite input gives a non-finite sum (reported by the caller).
  template <class T>
  static float l1_norm(const T* x, index_t d) noexcept {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    index_t j = 0;
    for (; j + 8 <= d; j += 8)
      for (int l = 0; l < 8; ++l) lane[l] += std::fabs(static_cast<double>(static_cast<float>(x[j + l])));
    for (int l = 0; j < d; ++j, ++l) lane[l] += std::fabs(static_cast<double>(static_cast<float>(x[j])));
    return static_cast<float>(((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7])));
  }

  // Every element was checked finite before; an L1 norm beyond the fp32 range is an error too.
  static void check_l1(const std::vector<float>& l1, const char* argument) {
    for (std::size_t i = 0; i < l1.size(); ++i)
      if (!std::isfinite(l1[i])) {
        std::ostringstream where;
        where << argument << "[" << i << "]";
        fail(where.str(), l1[i], "the token's L1 norm overflows fp32");
      }
  }

  // The `count` indices of largest `values` in rank order (descending, ties to the lower index).
  void rank(const std::vector<float>& values, index_t count, std::vector<index_t>& out) {
    const auto size = static_cast<index_t>(values.size());
    order_.resize(static_cast<std::size_t>(size));
    std::iota(order_.begin(), order_.end(), index_t{0});
    std::partial_sort(order_.begin(), order_.begin() + count, order_.end(), [&values](index_t a, index_t b) {
      const float va = values[static_cast<std::size_t>(a)], vb = values[static_cast<std::size_t>(b)];
      return va > vb || (va == vb && a < b);
    });
    out.assign(order_.begin(), order_.begin() + count);
  }

  DartConfig config_;
  Executor executor_;
  kernels::GramWorkspace gram_;
  std::vector<float> unit_, norms_, scores_, text_l1_, row_, pivot_unit_, pivot_norms_, similarity_;
  std::vector<index_t> order_, candidates_, kept_, pivots_, text_pivots_;
  std::vector<std::uint8_t> in_pool_;
};

static_assert(TokenPruner<Dart>);

}  // namespace tokenprune
