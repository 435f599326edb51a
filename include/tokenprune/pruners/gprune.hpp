#pragma once
// G-Prune (Jiang et al., 2025): tokens are graph nodes linked by cosine similarity; each starts with its
// feature norm as "information", which flows along the edges for a few iterations; the tokens holding the most
// information per neighbour are kept. SPEC section 2.2 is the exact definition implemented here.
//
// Thread safety: one instance per thread; prune() mutates the instance's workspace. Instances share nothing.

#include <tokenprune/core/concept.hpp>
#include <tokenprune/kernels/gram.hpp>
#include <tokenprune/kernels/graph.hpp>
#include <tokenprune/kernels/similarity.hpp>
#include <tokenprune/kernels/topk.hpp>

#include <span>
#include <vector>

namespace tokenprune {

struct GPruneConfig {
  double threshold = 0.5;     // tau in (0, 1]: cosine similarity at or above which two tokens are linked
  double temperature = 0.03;  // T > 0: softmax temperature over a token's neighbours
  int iterations = 5;         // m >= 0: propagation steps

  void validate() const {
    if (!(threshold > 0.0 && threshold <= 1.0)) fail("threshold", threshold, "must be in (0, 1]");
    if (!(temperature > 0.0 && std::isfinite(temperature))) fail("temperature", temperature, "must be a finite number > 0");
    if (iterations < 0) fail("iterations", iterations, "must be >= 0");
  }
};

class GPrune {
 public:
  explicit GPrune(GPruneConfig config = {}) : config_(config) { config_.validate(); }

  [[nodiscard]] const GPruneConfig& config() const noexcept { return config_; }

  [[nodiscard]] index_t kept_count(const TokenShape& shape, Budget budget) const { return budget.resolve(shape.n_tokens); }

  void reserve(index_t max_tokens, index_t dim) {
    if (max_tokens < 0) fail("max_tokens", max_tokens, "must be >= 0");
    if (dim < 0) fail("dim", dim, "must be >= 0");
    const auto n = static_cast<std::size_t>(max_tokens);
    unit_.reserve(n * static_cast<std::size_t>(dim));
    weights_.reserve(n * n);
    gram_.reserve(max_tokens, dim);
    for (auto* v : {&norms_, &scores_, &share_, &column_sum_, &column_degree_}) v->reserve(n);
    rowsum_.reserve(n);
    degree_.reserve(n);
    order_.reserve(n);
    kept_.reserve(n);
  }

  // Keeps the tokens of inputs.features (other inputs are ignored) with the highest propagated information.
  std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) {
    const TokenMatrix& x = inputs.features;
    if (x.empty()) fail("features", "missing", "G-Prune needs the token features [n_tokens, dim]");
    const index_t n = inputs.n_tokens();  // also checks that the other inputs agree
    const index_t k = budget.resolve(n);
    resize(n, x.dim());

    RowMap<float> unit(unit_.data(), n, x.dim(), Eigen::OuterStride<>(x.dim()));
    visit_dtype(x.dtype(), [&]<class T>(T) { kernels::normalize_rows(x.as<T>(), unit, norms_, "features"); });

    // The Gram's lower triangle becomes the lower triangle of the symmetric weights E, in place.
    RowMap<float> weights(weights_.data(), n, n, Eigen::OuterStride<>(n));
    gram_.lower_gram(ConstRowMap<float>(unit_.data(), n, x.dim(), Eigen::OuterStride<>(x.dim())), weights);
    const kernels::GraphParams params{static_cast<float>(config_.threshold), static_cast<float>(config_.temperature)};
    kernels::weights_from_gram(weights, norms_, params, rowsum_, degree_, column_sum_, column_degree_);

    std::copy(norms_.begin(), norms_.end(), scores_.begin());  // v starts at w = ||x||
    kernels::propagate(ConstRowMap<float>(weights_.data(), n, n, Eigen::OuterStride<>(n)), rowsum_, config_.iterations, scores_, share_);
    for (index_t j = 0; j < n; ++j) scores_[static_cast<std::size_t>(j)] /= static_cast<float>(degree_[static_cast<std::size_t>(j)]);

    kernels::top_k_ascending(std::span<const float>(scores_), k, order_, std::span<index_t>(kept_.data(), k));
    return {kept_.data(), static_cast<std::size_t>(k)};
  }

  // score_j = v_j / deg_j of the last prune().
  [[nodiscard]] std::span<const float> scores() const noexcept { return scores_; }
  // Neighbour counts (self included; n for a zero token) of the last prune().
  [[nodiscard]] std::span<const index_t> degrees() const noexcept { return degree_; }

 private:
  // resize() within the reserved capacity never allocates.
  void resize(index_t n, index_t dim) {
    const auto un = static_cast<std::size_t>(n);
    unit_.resize(un * static_cast<std::size_t>(dim));
    weights_.resize(un * un);
    for (auto* v : {&norms_, &scores_, &share_, &column_sum_, &column_degree_}) v->resize(un);
    rowsum_.resize(un);
    degree_.resize(un);
    order_.resize(un);
    kept_.resize(un);
  }

  GPruneConfig config_;
  kernels::GramWorkspace gram_;
  std::vector<float> unit_, weights_, norms_, scores_, share_, column_sum_, column_degree_;
  std::vector<double> rowsum_;
  std::vector<index_t> degree_, order_, kept_;
};

static_assert(TokenPruner<GPrune>);

}  // namespace tokenprune
