// A third-party pruner: keep the tokens with the largest L2 norm. Implementing the four members of
// tokenprune::TokenPruner is all it takes to run through generic engine code and through Segmented layouts
// (several images per request, each with its own budget). Exit code 0 = success.

#include "prune_and_compact.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace tp = tokenprune;

class LargestNorm {
 public:
  [[nodiscard]] tp::index_t kept_count(const tp::TokenShape& shape, tp::Budget budget) const {
    return budget.resolve(shape.n_tokens);
  }
  void reserve(tp::index_t max_tokens, tp::index_t /*dim*/) {
    const auto n = static_cast<std::size_t>(max_tokens);
    scores_.reserve(n);
    order_.reserve(n);
  }
  std::span<const tp::index_t> prune(const tp::PruneInputs& in, tp::Budget budget) {
    if (in.features.empty()) tp::fail("features", "missing", "LargestNorm needs the token features");
    const tp::index_t n = in.n_tokens(), k = budget.resolve(n);
    scores_.resize(static_cast<std::size_t>(n));
    tp::visit_dtype(in.features.dtype(), [&]<class T>(T) {  // fp32, fp16 or bf16, always scored in fp32
      const auto x = in.features.as<T>();
      for (tp::index_t i = 0; i < n; ++i) scores_[static_cast<std::size_t>(i)] = x.row(i).template cast<float>().norm();
    });
    for (float s : scores_)  // the library's rule: invalid input is an error, never silently ranked
      if (!std::isfinite(s)) tp::fail("features", s, "NaN or Inf in a token");
    // Score descending, then lower index: a total order, so the kept set never depends on the sort algorithm.
    order_.resize(static_cast<std::size_t>(n));
    std::iota(order_.begin(), order_.end(), tp::index_t{0});
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), [&](tp::index_t a, tp::index_t b) {
      return scores_[a] > scores_[b] || (scores_[a] == scores_[b] && a < b);
    });
    std::sort(order_.begin(), order_.begin() + k);  // the LLM sees kept tokens in their original order
    return {order_.data(), static_cast<std::size_t>(k)};
  }
  [[nodiscard]] std::span<const float> scores() const { return scores_; }

 private:
  std::vector<float> scores_;
  std::vector<tp::index_t> order_;
};
static_assert(tp::TokenPruner<LargestNorm>);

int main() {
  constexpr tp::index_t dim = 16;
  // A request with two images between text: [3 text][image A: 16][2 text][image B: 12][1 text] = 34 tokens.
  tp::RowMatrix<float> tokens(34, dim);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  auto encode = [&] {
    for (tp::index_t i = 0; i < tokens.size(); ++i) tokens.data()[i] = normal(rng);
    tp::PruneInputs in;
    in.features = tokens;
    return in;
  };

  // Through the same generic engine step as the library's own pruners.
  LargestNorm pruner;
  bool ok = example::prune_and_compact<float>("l2-norm", pruner, {34}, dim, tp::Budget::count(8), 0, encode);

  // Two images, each its own budget; the text tokens are always kept.
  std::vector<tp::index_t> image_a(16), image_b(12);
  std::iota(image_a.begin(), image_a.end(), 3);
  std::iota(image_b.begin(), image_b.end(), 21);
  const std::vector<tp::index_t> text{0, 1, 2, 19, 20, 33};
  const tp::Segment images[] = {{image_a, tp::Budget::ratio(0.25)}, {image_b, tp::Budget::count(5)}};
  const tp::SegmentLayout layout{34, images, text};
  tp::Segmented<LargestNorm> segmented;
  const tp::index_t promised = segmented.kept_count(layout);  // 4 + 5 + 6 text tokens
  const auto kept = segmented.prune(encode(), layout);
  std::printf("two images: kept %zu tokens (promised %lld)\n", kept.size(), static_cast<long long>(promised));
  ok &= static_cast<tp::index_t>(kept.size()) == promised && promised == 15;

  // Each image kept its own largest-norm tokens: no kept token of an image is smaller than a dropped one.
  for (const tp::Segment& image : images) {
    float smallest_kept = INFINITY, largest_dropped = 0.0f;
    for (tp::index_t t : image.tokens) {
      const float norm = tokens.row(t).norm();
      if (std::binary_search(kept.begin(), kept.end(), t)) smallest_kept = std::min(smallest_kept, norm);
      else largest_dropped = std::max(largest_dropped, norm);
    }
    ok &= smallest_kept >= largest_dropped;
  }
  return ok ? 0 : 1;
}
