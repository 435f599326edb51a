#pragma once
#include <tokenprune/core/abi.hpp>
// EVS, Efficient Video Sampling (NVIDIA; as merged in vLLM, vllm/multimodal/evs.py, compute_retained_tokens_count
// and compute_retention_mask): drop the video tokens that repeat the same grid position of the previous frame.
// Method file: methods/evs.md.
//
// Reads inputs.features ([n, d], fp32/fp16/bf16, any row stride) and inputs.video (frames T x rows H x cols W,
// n = T H W, frame-major, each frame row-major). Token (t, h, w) of frame t >= 1 scores s = 1 - cos(x[t,h,w],
// x[t-1,h,w]) with cos = a.b / (max(|a|, 1e-8) max(|b|, 1e-8)); every token of frame 0 scores 255. The K tokens
// with the largest s are kept (equal s: lower flat index first), returned ascending.
//
// Kept count (kept_count(), before any data): a count k keeps exactly k (any k in [0, n], no floor: k < H W keeps
// the first k tokens of frame 0); a ratio r keeps max(H W, floor(r n)) in double. vLLM's pruning rate q is
// Evs::pruning_rate(q) = the ratio 1 - q (rounded to double), which reproduces int(n * (1 - q)) bit for bit
// (n = 1000, q = 0.9 keeps 99).
//
// Exactness: dot, |a|^2 and |b|^2 are double sums of exact products (a float times a float is exact in double,
// so an fma and a multiply-add give the same bits) in one fixed order (lanes by element index mod 8, added
// pairwise), the same order for all three; the denominator is sqrt(|a|^2 |b|^2) when both norms are >= eps.
// So an element-wise repeat with |a| >= eps scores exactly 0 (sqrt(fl(x^2)) = x in binary floating point), a zero
// vector or an orthogonal pair exactly 1, and the scores are the same bits at every ISA level and with any
// -ffp-contract. Quirks defined otherwise than the reference (methods/evs.md): exact repeats score 0 rather than
// torch's fp32 noise of a few ulps, so a budget splitting a group of repeats keeps the lower indices.
//
// Cost: one streaming pass over the features (each row is read once from memory; the traversal goes through the
// frames 8 positions at a time, so the previous frame's rows are still in cache), O(d) per token, plus an O(n)
// top-k.
// No allocation in prune() after reserve(max_tokens, dim).
//
// Thread safety: one instance per thread; prune() mutates the instance's workspace. Instances share nothing.

#include <tokenprune/core/concept.hpp>
#include <tokenprune/kernels/convert.hpp>
#include <tokenprune/kernels/topk.hpp>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI {

// EVS has no hyperparameters: eps = 1e-8 and the first-frame score 255 are constants of the reference, and the
// budget (count, ratio or Evs::pruning_rate(q)) is given to prune().
struct EvsConfig {
  void validate() const {}
};

class Evs {
 public:
  static constexpr double kEps = 1e-8;              // per-norm clamp of the cosine (torch's cosine_similarity)
  static constexpr float kFirstFrameScore = 255.0f;  // the reference's score of every frame-0 token

  explicit Evs(EvsConfig config = {}) : config_(config) { config_.validate(); }

  [[nodiscard]] const EvsConfig& config() const noexcept { return config_; }

  // vLLM's --video-pruning-rate q (the fraction to drop), q in [0, 1): the ratio budget 1 - q (rounded to
  // double), so kept_count() is max(H W, int(n (1 - q))) exactly as vLLM sizes its placeholders.
  [[nodiscard]] static Budget pruning_rate(double q) {
    if (!(q >= 0.0 && q < 1.0)) fail("pruning_rate", q, "must be a number in [0, 1)");
    return Budget::ratio(1.0 - q);
  }

  // Exactly k for a count; max(rows * cols, floor(r n)) for a ratio. Needs shape.video for a ratio (the
  // one-frame floor); when shape.video is given it must match shape.n_tokens.
  [[nodiscard]] index_t kept_count(const TokenShape& shape, Budget budget) const {
    const index_t n = shape.n_tokens;
    if (!shape.video.empty()) check_video(shape.video, n);
    const index_t k = budget.resolve(n);
    if (!budget.is_ratio()) return k;
    if (shape.video.empty()) fail("video", "missing", "EVS needs the video grid (frames x rows x cols) for a ratio budget");
    return std::max(shape.video.frame_size(), k);
  }

  // Calls with at most max_tokens tokens of at most dim features allocate nothing afterwards.
  void reserve(index_t max_tokens, index_t dim) {
    if (max_tokens < 0) fail("max_tokens", max_tokens, "must be >= 0");
    if (dim < 0) fail("dim", dim, "must be >= 0");
    const auto n = static_cast<std::size_t>(max_tokens);
    scores_.reserve(n);
    order_.reserve(n);
    kept_.reserve(n);
    per_frame_.reserve(n);
    rows_.reserve(static_cast<std::size_t>(2 * kBlock * dim));
  }

  std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) {
    if (inputs.features.empty()) fail("features", "missing", "EVS needs the video's token features");
    if (inputs.video.empty()) fail("video", "missing", "EVS needs the video grid (frames x rows x cols)");
    const index_t n = inputs.n_tokens();  // checks that features and video agree
    const VideoGrid video = inputs.video;
    const index_t kept = kept_count(TokenShape{n, inputs.grid, video}, budget);
    const index_t d = inputs.features.dim();
    resize(n, video.frames, d);

    visit_dtype(inputs.features.dtype(), [&]<class T>(T) { score<T>(inputs.features.as<T>(), video); });

    const std::span<const float> ranked(scores_.data(), static_cast<std::size_t>(n));
    kernels::top_k_ascending(ranked, kept, order_, std::span<index_t>(kept_.data(), static_cast<std::size_t>(kept)));
    std::fill(per_frame_.begin(), per_frame_.end(), index_t{0});
    const index_t frame_size = video.frame_size();
    for (index_t i = 0; i < kept; ++i) ++per_frame_[static_cast<std::size_t>(kept_[static_cast<std::size_t>(i)] / frame_size)];
    return {kept_.data(), static_cast<std::size_t>(kept)};
  }

  // Per token of the last prune(): 255 for frame 0, else 1 - cos with the same position of the previous frame
  // (in [0, 2] up to rounding; exactly 0 for an element-wise repeat, exactly 1 next to a zero vector).
  [[nodiscard]] std::span<const float> scores() const noexcept { return scores_; }
  // Kept tokens per frame of the last prune() ([frames]; frame 0 holds min(K, rows * cols)): what an engine that
  // interleaves per-frame timestamp tokens needs.
  [[nodiscard]] std::span<const index_t> kept_per_frame() const noexcept { return per_frame_; }

 private:
  static void check_video(const VideoGrid& video, index_t n) {
    if (video.frames <= 0) fail("video.frames", video.frames, "must be >= 1");
    if (video.rows <= 0) fail("video.rows", video.rows, "must be >= 1");
    if (video.cols <= 0) fail("video.cols", video.cols, "must be >= 1");
    if (video.size() != n) fail("video.frames*video.rows*video.cols", video.size(), "must equal n_tokens");
  }

  // 1 - a.b / (max(|a|, eps) max(|b|, eps)) from the three sums.
  static float difference(double dot, double na, double nb) {
    const double norm_a = std::sqrt(na), norm_b = std::sqrt(nb);
    double denominator;
    if (norm_a >= kEps && norm_b >= kEps) {
      denominator = std::sqrt(na * nb);  // = na exactly when na == nb
    } else {
      denominator = std::max(norm_a, kEps) * std::max(norm_b, kEps);
    }
    return static_cast<float>(1.0 - dot / denominator);
  }

  // The first non-finite element in flat order (called only when some row's squared norm is not finite).
  template <class T>
  static void reject_non_finite(const ConstRowMap<T>& x) {
    for (index_t i = 0; i < x.rows(); ++i)
      for (index_t j = 0; j < x.cols(); ++j) {
        const float v = static_cast<float>(x(i, j));
        if (!std::isfinite(v)) kernels::detail::fail_non_finite("features", i, j, v);
      }
  }

  // Blocks of kBlock positions, frame by frame: rows (t, p0 .. p0 + kBlock - 1) are compared with the rows
  // (t - 1, same positions) read just before (still in L2). Each frame's block is kBlock consecutive rows, so the
  // reads stream (one row per frame at a time measured 4x the read floor: 16 streams 2.9 MB apart). Every score
  // depends only on its two rows: the order changes no bit.
  static constexpr index_t kBlock = 8;
  template <class T>
  void score(const ConstRowMap<T>& x, const VideoGrid& video) {
    const index_t d = x.cols(), frame_size = video.frame_size();
    const kernels::KernelTable& level = kernels::active_kernels();
    bool finite = true;
    for (index_t p0 = 0; p0 < frame_size; p0 += kBlock) {
      const index_t count = std::min(kBlock, frame_size - p0);
      const float* previous[kBlock] = {};
      double previous_norm[kBlock] = {};
      const float* rows[kBlock];
      double dots[kBlock], norms[kBlock];
      for (index_t t = 0; t < video.frames; ++t) {
        for (index_t q = 0; q < count; ++q) {
          const index_t i = t * frame_size + p0 + q;
          if constexpr (std::same_as<T, float>) {
            rows[q] = x.row(i).data();
          } else {
            float* buffer = rows_.data() + static_cast<std::size_t>(((t & 1) * kBlock + q) * d);
            kernels::widen(x.row(i).data(), buffer, d);
            rows[q] = buffer;
          }
        }
        // dot(row, previous) and |row|^2 in double: element j in lane j mod 8, each lane a sequential chain of
        // exact products, the lanes added pairwise (kernels/level_double.inl, evs_dot_norm). Frame 0: the norms.
        level.evs_dot_norm(rows, t == 0 ? nullptr : previous, count, d, dots, norms);
        for (index_t q = 0; q < count; ++q) {
          const index_t i = t * frame_size + p0 + q;
          // A float squared is finite in double and a sum of d of them stays far below DBL_MAX: the norm is
          // finite exactly when the row is.
          if (!std::isfinite(norms[q])) finite = false;
          scores_[static_cast<std::size_t>(i)] =
              t == 0 ? kFirstFrameScore : difference(dots[q], norms[q], previous_norm[q]);
          previous[q] = rows[q];
          previous_norm[q] = norms[q];
        }
      }
      if (!finite) reject_non_finite(x);
    }
  }

  void resize(index_t n, index_t frames, index_t d) {
    scores_.resize(static_cast<std::size_t>(n));
    order_.resize(static_cast<std::size_t>(n));
    kept_.resize(static_cast<std::size_t>(n));
    per_frame_.resize(static_cast<std::size_t>(frames));
    rows_.resize(static_cast<std::size_t>(2 * kBlock * d));
  }

  EvsConfig config_;
  std::vector<float> scores_, rows_;
  std::vector<index_t> order_, kept_, per_frame_;
};

static_assert(TokenPruner<Evs>);

}  // namespace tokenprune
