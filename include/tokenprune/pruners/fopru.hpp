#pragma once
#include <tokenprune/core/abi.hpp>
// FoPru (Jiang et al., 2024): token significance from the vision encoder's attention; keep the most significant
// tokens (rank strategy) or the most significant whole rows of the patch grid (row strategy). SPEC section 2.3.
//
// Inputs, first present wins: inputs.attention ([heads, n, n] maps, CLS removed, e.g. maps.block(1, n)),
// inputs.query_keys (the layer's queries and keys, for fused-attention engines: same significance without the
// maps), or inputs.significance (a precomputed vector); the row strategy also needs inputs.grid (when it is
// not given and n is a perfect square, the grid is taken as square, like the reference).
//
// Thread safety: one instance per thread; prune() mutates the instance's workspace. Instances share nothing.

#include <tokenprune/core/concept.hpp>
#include <tokenprune/kernels/attention.hpp>
#include <tokenprune/kernels/topk.hpp>

#include <cmath>
#include <span>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

enum class FoPruAxis {
  automatic,  // received if its variance is strictly larger than given's, else given (the reference's rule)
  received,   // column mean: the attention a token receives
  given,      // row mean: the attention a token gives
};
enum class FoPruStrategy { rank, row };

struct FoPruConfig {
  FoPruStrategy strategy = FoPruStrategy::rank;
  FoPruAxis axis = FoPruAxis::automatic;
};

class FoPru {
 public:
  explicit FoPru(FoPruConfig config = {}) : config_(config) {}

  [[nodiscard]] const FoPruConfig& config() const noexcept { return config_; }

  // Where the head groups of the maps pass run (see core/executor.hpp; default: OpenMP threads when compiled with
  // OpenMP, else the calling thread). Answers are the same with any executor. Call before reserve().
  void set_executor(const Executor& executor) { executor_ = executor; }
  [[nodiscard]] const Executor& executor() const noexcept { return executor_; }

  [[nodiscard]] index_t kept_count(const TokenShape& shape, Budget budget) const {
    const index_t k = budget.resolve(shape.n_tokens);
    if (config_.strategy == FoPruStrategy::rank) return k;
    return k / grid_for(shape).cols * grid_for(shape).cols;
  }

  // dim: the head dimension when significance comes from queries and keys (0: maps or significance only).
  // max_skip_tokens: the most leading tokens a queries/keys input skips (CLS, register tokens); the keys then hold
  // up to max_tokens + max_skip_tokens rows. Calls that stay within these bounds allocate nothing, and a reserve()
  // within the bounds of earlier ones keeps the spans returned by prune() valid.
  void reserve(index_t max_tokens, index_t dim, index_t max_skip_tokens = 1) {
    if (max_tokens < 0) fail("max_tokens", max_tokens, "must be >= 0");
    if (dim < 0) fail("dim", dim, "must be >= 0");
    if (max_skip_tokens < 0) fail("max_skip_tokens", max_skip_tokens, "must be >= 0");
    if (dim > 0) query_keys_.reserve(max_tokens + max_skip_tokens, dim);
    const auto n = static_cast<std::size_t>(max_tokens);
    for (auto* v : {&received_, &given_, &row_score_}) v->reserve(n);
    scores_.reserve(n);
    accumulator_.reserve(max_tokens);
    row_buffer_.reserve(static_cast<std::size_t>(kernels::padded(max_tokens, 16)));  // names a NaN in 16-bit maps
    executor_.warm_up();
    order_.reserve(n);
    kept_.reserve(n);
  }

  std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) {
    const index_t n = inputs.n_tokens();
    const bool from_maps = !inputs.attention.empty();
    const bool from_query_keys = !from_maps && !inputs.query_keys.empty();
    if (!from_maps && !from_query_keys && inputs.significance.data() == nullptr)
      fail("attention", "missing", "FoPru needs attention maps, queries and keys, or a significance vector");
    const TokenShape shape{n, inputs.grid};
    const index_t kept = kept_count(shape, budget);
    resize(n);

    std::span<const double> significance;
    if (from_maps || from_query_keys) {
      if (from_maps) {
        visit_dtype(inputs.attention.dtype(), [&]<class T>(T) {
          kernels::attention_sums<T>(inputs.attention, accumulator_, received_, given_, row_buffer_, executor_);
        });
      } else {
        query_keys_.sums(inputs.query_keys, accumulator_, received_, given_);
      }
      significance = choose_axis();
      const index_t heads = from_maps ? inputs.attention.heads() : inputs.query_keys.keys.heads();
      const double per_token = static_cast<double>(heads) * static_cast<double>(n);
      for (index_t j = 0; j < n; ++j) scores_[static_cast<std::size_t>(j)] = static_cast<float>(significance[static_cast<std::size_t>(j)] / per_token);
    } else {
      kernels::check_finite(inputs.significance, "significance");
      std::copy(inputs.significance.begin(), inputs.significance.end(), received_.begin());
      std::copy(inputs.significance.begin(), inputs.significance.end(), scores_.begin());
      significance = received_;
      chosen_ = FoPruAxis::received;
    }

    // Ranked on scores() itself (the fp32 means), so a caller sees exactly the values that were ranked: two
    // double sums that differ below fp32 resolution tie, and the tie goes to the lower index.
    const std::span<const float> ranked(scores_.data(), static_cast<std::size_t>(n));
    if (config_.strategy == FoPruStrategy::rank) {
      kernels::top_k_ascending(ranked, kept, order_, std::span<index_t>(kept_.data(), kept));
    } else {
      keep_rows(ranked, grid_for(shape), kept);
    }
    return {kept_.data(), static_cast<std::size_t>(kept)};
  }

  // Significance (mean attention on the chosen axis, or the given vector) of the last prune().
  [[nodiscard]] std::span<const float> scores() const noexcept { return scores_; }
  // The axis the last prune() used: received or given (never automatic).
  [[nodiscard]] FoPruAxis chosen_axis() const noexcept { return chosen_; }

 private:
  static Grid grid_for(const TokenShape& shape) {
    Grid grid = shape.grid;
    if (grid.empty()) {  // the reference's square grid
      const auto side = static_cast<index_t>(std::llround(std::sqrt(static_cast<double>(shape.n_tokens))));
      if (side * side != shape.n_tokens)
        fail("grid", "missing", "the row strategy needs the patch grid when n_tokens is not a perfect square");
      grid = {side, side};
    }
    if (grid.rows <= 0) fail("grid.rows", grid.rows, "must be >= 1");
    if (grid.cols <= 0) fail("grid.cols", grid.cols, "must be >= 1");
    if (grid.size() != shape.n_tokens) fail("grid.rows*grid.cols", grid.size(), "must equal n_tokens");
    return grid;
  }

  std::span<const double> choose_axis() {
    chosen_ = config_.axis;
    if (chosen_ == FoPruAxis::automatic)
      chosen_ = kernels::variance(received_) > kernels::variance(given_) ? FoPruAxis::received : FoPruAxis::given;
    return chosen_ == FoPruAxis::received ? std::span<const double>(received_) : std::span<const double>(given_);
  }

  // Keeps the floor(kept / cols) rows with the largest sums of scores (added in double, in column order), whole.
  void keep_rows(std::span<const float> significance, Grid grid, index_t kept) {
    const index_t rows_kept = kept / grid.cols;
    for (index_t r = 0; r < grid.rows; ++r) {
      double total = 0.0;
      for (index_t c = 0; c < grid.cols; ++c) total += static_cast<double>(significance[static_cast<std::size_t>(r * grid.cols + c)]);
      row_score_[static_cast<std::size_t>(r)] = total;
    }
    // The kept rows land in the tail of kept_ (ascending), then expand in place into ascending token indices.
    std::span<index_t> rows(kept_.data() + (static_cast<index_t>(kept_.size()) - rows_kept), rows_kept);
    kernels::top_k_ascending(std::span<const double>(row_score_.data(), grid.rows), rows_kept, order_, rows);
    index_t out = 0;
    for (index_t r : rows)
      for (index_t c = 0; c < grid.cols; ++c) kept_[static_cast<std::size_t>(out++)] = r * grid.cols + c;
  }

  void resize(index_t n) {
    const auto un = static_cast<std::size_t>(n);
    for (auto* v : {&received_, &given_, &row_score_}) v->resize(un);
    scores_.resize(un);
    row_buffer_.resize(static_cast<std::size_t>(kernels::padded(n, 16)));
    order_.resize(un);
    kept_.resize(un);
  }

  FoPruConfig config_;
  Executor executor_;
  FoPruAxis chosen_ = FoPruAxis::received;
  kernels::QueryKeyReducer query_keys_;
  kernels::AttentionAccumulator accumulator_;
  std::vector<double> received_, given_, row_score_;
  std::vector<float> scores_, row_buffer_;
  std::vector<index_t> order_, kept_;
};

static_assert(TokenPruner<FoPru>);

}  // namespace tokenprune
