#pragma once
#include <tokenprune/core/abi.hpp>
// DivPrune (Alvar et al., "DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models", CVPR 2025;
// reference vbdi/divprune@799e2d9, LLaVA/llava/model/llava_arch.py, LlavaMetaForCausalLM.DivPrune): greedy
// max-min diversity selection under the cosine distance. The normative definition is
// shared/methods/divprune.md; in short, with u_i = x_i / max(||x_i||, 1e-12) and D_ij = 1 - u_i . u_j:
//   s_1 = argmax_i min_{j != i} D_ij,  s_t = argmax over unpicked i of min over picked s of D_si,
// ties to the lower index, output sort(s_1..s_k).
//
// Reads inputs.features [n, d] (fp32, fp16 or bf16, any row stride); every other input is ignored.
//
// Cost: the first pick needs every token's nearest other token, i.e. all pairs, so the whole selection is one
// Gram (kernels/gram.hpp, n^2 d / 2 multiply-adds, spread over the executor) plus O(n^2) for the nearest-other
// distances plus O(k n) for the greedy (the running minimum m_i <- min(m_i, D_{s_t i}) is updated once per pick).
// Computing distances on the fly (O(k n d)) does not avoid the all-pairs first pick, so the Gram is both the
// cheaper and the only ISA-independent way here. Memory: n^2 floats for the lower triangle of the Gram
// (1.3 MB at n = 576, 33 MB at n = 2880) plus n x d floats of unit rows.
//
// fp32 semantics ("normalize, then Gram" as the reference): the unit rows come from kernels::normalize_rows (fp32
// division by the fp32 norm), every Gram entry is the fixed-order fp32 FMA chain of the level kernels, and
// D_ij = 1.0f - g_ij in fp32; argmax comparisons are on those fp32 D values. The answer, order(), gains() and
// scores() are therefore bitwise identical at every ISA level and for every executor.
//
// Where this differs from the reference (see the method file's quirks): the argmax runs over the unpicked tokens
// only (the reference can re-pick a token and return fewer than k distinct indices); the first pick uses
// min_{j != i} (the reference takes the second smallest of the column including the self-distance); ties go to the
// lower index; a zero token gets the 1e-12 norm floor (D = 1 to every other token) instead of NaN; the ratio
// budget is floor(r n) (the reference rounds). n = 1: the only token is s_1 and its gain is defined as 0 (it has
// no other token).
//
// Thread safety: one instance per thread; prune() mutates the instance's workspace. Instances share nothing.

#include <tokenprune/core/concept.hpp>
#include <tokenprune/kernels/gram.hpp>
#include <tokenprune/kernels/similarity.hpp>

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

// DivPrune has no hyperparameter: the distance is the cosine distance and only the budget is given.
struct DivPruneConfig {
  void validate() const {}
};

class DivPrune {
 public:
  explicit DivPrune(DivPruneConfig config = {}) : config_(config) { config_.validate(); }

  [[nodiscard]] const DivPruneConfig& config() const noexcept { return config_; }

  // Where the Gram tiles and the normalization run (see core/executor.hpp; default: OpenMP threads when compiled
  // with OpenMP, else the calling thread). Answers are the same with any executor. Call before reserve().
  void set_executor(const Executor& executor) { gram_.set_executor(executor); }
  [[nodiscard]] const Executor& executor() const noexcept { return gram_.executor(); }

  [[nodiscard]] index_t kept_count(const TokenShape& shape, Budget budget) const { return budget.resolve(shape.n_tokens); }

  // After this, prune() on up to max_tokens tokens of up to dim features allocates nothing. A reserve() within
  // the bounds of earlier ones keeps the spans returned by prune() and the accessors valid.
  void reserve(index_t max_tokens, index_t dim) {
    if (max_tokens < 0) fail("max_tokens", max_tokens, "must be >= 0");
    if (dim < 0) fail("dim", dim, "must be >= 0");
    const auto n = static_cast<std::size_t>(max_tokens);
    unit_.reserve(n * static_cast<std::size_t>(dim));
    gram_buffer_.reserve(n * n);
    gram_.reserve(max_tokens, dim);
    for (auto* v : {&norms_, &running_, &scores_, &gains_}) v->reserve(n);
    for (auto* v : {&order_, &kept_}) v->reserve(n);
    picked_.reserve(n);
  }

  // The sorted greedy max-min selection of k = budget.resolve(n) tokens of inputs.features.
  std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) {
    const TokenMatrix& x = inputs.features;
    if (x.empty()) fail("features", "missing", "DivPrune needs the token features [n_tokens, dim]");
    const index_t n = inputs.n_tokens();  // also checks that the other inputs agree
    const index_t k = budget.resolve(n);
    const index_t dim = x.dim();
    const auto un = static_cast<std::size_t>(n);
    grow(unit_, un * static_cast<std::size_t>(dim));
    for (auto* v : {&norms_, &running_, &scores_}) v->resize(un);
    picked_.resize(un);
    order_.resize(static_cast<std::size_t>(k));
    gains_.resize(static_cast<std::size_t>(k));
    kept_.resize(static_cast<std::size_t>(k));

    // Unit rows (rejects NaN/Inf naming the element, before any other work).
    RowMap<float> unit(unit_.data(), n, dim, Eigen::OuterStride<>(dim));
    visit_dtype(x.dtype(), [&]<class T>(T) {
      kernels::normalize_rows(x.as<T>(), unit, norms_, "features", executor(), kernels::kPanel);
    });
    if (n == 0) return kept_;

    // Lower triangle of the Gram: g(i, j), j <= i, at gram_buffer_[i n + j].
    grow(gram_buffer_, un * un);
    const ConstRowMap<float> units(unit_.data(), n, dim, Eigen::OuterStride<>(dim));
    float* g = gram_buffer_.data();
    gram_.lower_gram(
        units, n, true, [&](index_t i0) { return g + i0 * n; },
        [](float*, index_t, index_t, index_t, index_t, index_t) {}, [](index_t, index_t) {});

    // Nearest-other distance of every token: min_{j != i} D_ij = 1 - max_{j != i} g_ij (fp32 rounding is
    // monotone, so the minimum of the rounded distances is the rounded distance of the largest similarity).
    constexpr float kLowest = -std::numeric_limits<float>::infinity();
    std::fill(running_.begin(), running_.end(), kLowest);  // here: the largest similarity to another token
    for (index_t i = 1; i < n; ++i) {
      const float* row = g + i * n;
      float best = running_[static_cast<std::size_t>(i)];
      for (index_t j = 0; j < i; ++j) {
        const float s = row[j];
        if (s > best) best = s;
        if (s > running_[static_cast<std::size_t>(j)]) running_[static_cast<std::size_t>(j)] = s;
      }
      running_[static_cast<std::size_t>(i)] = best;
    }
    // scores_ holds the nearest-other distances for now (n = 1: defined as 0).
    for (std::size_t i = 0; i < un; ++i) scores_[i] = n == 1 ? 0.0f : 1.0f - running_[i];

    std::fill(picked_.begin(), picked_.end(), std::uint8_t{0});
    if (k > 0) {
      // First pick: the most isolated token.
      index_t pick = 0;
      for (index_t i = 1; i < n; ++i)
        if (scores_[static_cast<std::size_t>(i)] > scores_[static_cast<std::size_t>(pick)]) pick = i;
      float gain = scores_[static_cast<std::size_t>(pick)];
      std::fill(running_.begin(), running_.end(), std::numeric_limits<float>::infinity());
      for (index_t t = 0; t < k; ++t) {
        order_[static_cast<std::size_t>(t)] = pick;
        gains_[static_cast<std::size_t>(t)] = gain;
        picked_[static_cast<std::size_t>(pick)] = 1;
        // m_i <- min(m_i, D_{pick, i}) over the unpicked tokens, and the next pick in the same sweep.
        index_t next = -1;
        float next_gain = kLowest;
        auto visit = [&](index_t i, float similarity) {
          if (picked_[static_cast<std::size_t>(i)]) return;
          float& m = running_[static_cast<std::size_t>(i)];
          const float distance = 1.0f - similarity;
          if (distance < m) m = distance;
          if (m > next_gain) {  // strict: the lower index keeps a tie
            next_gain = m;
            next = i;
          }
        };
        const float* row = g + pick * n;
        for (index_t i = 0; i < pick; ++i) visit(i, row[i]);
        for (index_t i = pick + 1; i < n; ++i) visit(i, g[i * n + pick]);
        pick = next;
        gain = next_gain;
      }
      // Scores: a picked token's gain; an unpicked token's distance to its nearest picked token.
      for (std::size_t i = 0; i < un; ++i)
        if (!picked_[i]) scores_[i] = running_[i];
      for (index_t t = 0; t < k; ++t)
        scores_[static_cast<std::size_t>(order_[static_cast<std::size_t>(t)])] = gains_[static_cast<std::size_t>(t)];
    }
    std::copy(order_.begin(), order_.end(), kept_.begin());
    std::sort(kept_.begin(), kept_.end());
    return kept_;
  }

  // Per token, of the last prune(): for a picked token its gain; for an unpicked token the gain it would have
  // as the next pick, i.e. its cosine distance to the nearest picked token (with k = 0: its nearest-other
  // distance, the first pick's criterion). Length n.
  [[nodiscard]] std::span<const float> scores() const noexcept { return scores_; }
  // The pick order s_1..s_k of the last prune() (length k; its first k' entries are the selection for k').
  [[nodiscard]] std::span<const index_t> order() const noexcept { return order_; }
  // The gain of each pick, aligned with order(): g_1 = nearest-other distance of s_1, g_t = m_{s_t} (length k).
  [[nodiscard]] std::span<const float> gains() const noexcept { return gains_; }

 private:
  static void grow(std::vector<float>& buffer, std::size_t size) {
    if (buffer.size() < size) buffer.resize(size);
  }

  DivPruneConfig config_;
  kernels::GramWorkspace gram_;
  std::vector<float> unit_, gram_buffer_, norms_, running_, scores_, gains_;
  std::vector<index_t> order_, kept_;
  std::vector<std::uint8_t> picked_;
};

static_assert(TokenPruner<DivPrune>);

}  // namespace tokenprune
