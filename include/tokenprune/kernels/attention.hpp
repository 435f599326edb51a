#pragma once
#include <tokenprune/core/abi.hpp>
// Attention reductions for FoPru: one streaming pass over [heads, n, n] maps that accumulates both the column
// sums (attention each key receives) and the row sums (attention each query gives), in double so that ties in
// the data stay ties and the variance comparison of the two means is not decided by rounding.

#include <tokenprune/core/inputs.hpp>
#include <tokenprune/core/views.hpp>
#include <tokenprune/kernels/convert.hpp>
#include <tokenprune/kernels/gram.hpp>
#include <tokenprune/kernels/parallel.hpp>

#include <algorithm>
#include <span>
#include <string>
#include <vector>

namespace tokenprune::inline TOKENPRUNE_ABI::kernels {

// Heads are summed in at most kHeadGroups contiguous groups, each into partial sums of its own, which are then
// added in group order. The groups depend on the head count only, so the groups can run on different threads
// and no thread count changes a result.
inline constexpr index_t kHeadGroups = 8;
inline index_t head_groups(index_t heads) { return std::min(heads, kHeadGroups); }
inline index_t group_first_head(index_t group, index_t heads) { return heads * group / head_groups(heads); }

// Per-worker and per-group scratch is laid out at this stride (elements of 8 or 4 bytes): rounded up to whole
// 64-byte lines plus one spare line, so that no two threads ever write the same cache line (measured: fp16 maps
// on 2 threads took 0.47 to 0.64 ms with adjacent widened rows, against 0.38 ms padded).
inline index_t padded(index_t n, index_t per_line) { return (n + per_line - 1) / per_line * per_line + per_line; }

// Accumulates rows of attention into the received (column) and given (row) sums, in double across blocks: raw-logit
// maps have means near zero, where one fp32 sum over all rows would cancel away the digits that rank tokens. Each
// value is added twice: to its column's sum and to a lane of its row's sum (kernels/level_body.inl,
// attention_rows: fp32 rows in fp32 within blocks of 16 rows and 64 row lanes, each block and the lanes then added
// in double; 16-bit rows in double throughout). The arithmetic does not depend on the instruction-set level: a
// column sum adds its group's rows one after another in order, element j of a row goes to a fixed lane, the lanes
// are reduced in a fixed pairwise order. Both FoPru input paths (maps, queries and keys) feed rows through this in
// the same order, so equal rows give bitwise equal significance. (16-bit maps: sums of up to 2^13 fp16 or
// bf16-with-small-range values are exact in double, so there the order does not even matter.)
class AttentionAccumulator {
 public:
  void reserve(index_t n) {
    partial_.reserve(with_spare_line<double>(2 * kHeadGroups * padded(n, 8)));
    fixed_.reserve(with_spare_line<std::int32_t>(kHeadGroups * padded(n, 16)));
    block_.reserve(with_spare_line<float>(kHeadGroups * padded(n, 16)));
  }

  // Starts a pass over n tokens and `heads` heads.
  void begin(index_t n, index_t heads) {
    n_ = n;
    stride_ = padded(n, 8);        // doubles
    narrow_stride_ = padded(n, 16);  // 4-byte elements: the same whole lines plus a spare line
    groups_ = head_groups(heads);
    partial_.assign(with_spare_line<double>(2 * groups_ * stride_), 0.0);
    // fp16 rows may take the exact fixed-point path when every double sum of the definition is exact too: at most
    // 8192 fp16 values per column sum (a group's heads times n) and per row (level_body.inl, attention_rows_half).
    const index_t group_heads = (heads + groups_ - 1) / std::max<index_t>(groups_, 1);
    fixed_ok_ = n <= 4064 && group_heads * n <= 8192;
    fixed_.assign(fixed_ok_ ? with_spare_line<std::int32_t>(groups_ * narrow_stride_) : 0, 0);
    block_.resize(with_spare_line<float>(groups_ * narrow_stride_));  // scratch: each block starts from its first row
  }

  // Adds query rows [i, i + count) (n values each, row stride `stride` elements) of a head in `group`; a head's
  // rows come in order, 0 to n - 1 (fp32 rows are summed in blocks of rows of a head). Different groups may be
  // added from different threads. Returns the offset in [0, count) of the first row that holds a
  // NaN or Inf (the caller reports it after any parallel loop), or -1.
  template <Element T>
  [[nodiscard]] index_t add_rows(index_t group, index_t i, const T* rows, index_t count, index_t stride,
                                 const KernelTable& kernels) {
    double* received = line_start(partial_.data()) + 2 * group * stride_;
    double* given = received + stride_;
    constexpr index_t kChunk = 256;  // rows per kernel call (the fp16 fixed-point path flushes every 62 rows)
    double totals[kChunk];
    for (index_t r0 = 0; r0 < count; r0 += kChunk) {
      const index_t m = std::min(kChunk, count - r0);
      const T* first = rows + r0 * stride;
      if constexpr (std::same_as<T, float>) {
        kernels.attention_rows(first, m, stride, n_, i + r0, n_, line_start(block_.data()) + group * narrow_stride_,
                               received, totals);
      } else if constexpr (std::same_as<T, Eigen::half>) {  // widened on the way, no row buffer
        kernels.attention_rows_half(reinterpret_cast<const std::uint16_t*>(first), m, stride, n_, received, totals,
                                    fixed_ok_ ? line_start(fixed_.data()) + group * narrow_stride_ : nullptr);
      } else {
        kernels.attention_rows_bf16(reinterpret_cast<const std::uint16_t*>(first), m, stride, n_, received, totals);
      }
      for (index_t r = 0; r < m; ++r) {
        given[i + r0 + r] += totals[r];
        if (!std::isfinite(totals[r])) return r0 + r;  // a NaN or Inf anywhere in the row reaches its total
      }
    }
    return -1;
  }
  template <Element T>
  [[nodiscard]] bool add_row(index_t group, index_t i, const T* row, const KernelTable& kernels) {
    return add_rows(group, i, row, 1, n_, kernels) < 0;
  }

  // received[j] and given[i]: the groups' partial sums, added in group order.
  void finish(std::span<double> received, std::span<double> given) const {
    const auto n = static_cast<std::size_t>(n_);
    std::fill_n(received.begin(), n, 0.0);
    std::fill_n(given.begin(), n, 0.0);
    for (index_t g = 0; g < groups_; ++g) {
      const double* part = line_start(partial_.data()) + 2 * g * stride_;
      for (std::size_t j = 0; j < n; ++j) received[j] += part[j];
      for (std::size_t j = 0; j < n; ++j) given[j] += part[static_cast<std::size_t>(stride_) + j];
    }
  }

  // Names the first NaN/Inf of a row that add_row() rejected.
  template <class Where>
  [[noreturn]] static void reject(const float* row, index_t n, Where where) {
    for (index_t j = 0; j < n; ++j)
      if (!std::isfinite(row[j])) fail(where(j), row[j], "NaN and Inf are rejected before any work");
    fail(where(0), "row sum", "is not finite");
  }

 private:
  // Each vector holds one spare line (with_spare_line), and its sums start at the first 64-byte boundary in it
  // (line_start): every group's sums start a cache line, so that their vector loads and stores never split
  // lines, whatever address the allocator returned.
  template <class T>
  static std::size_t with_spare_line(index_t count) {
    return static_cast<std::size_t>(count) + 64 / sizeof(T);
  }
  template <class T>
  static T* line_start(T* data) {
    const auto offset = reinterpret_cast<std::uintptr_t>(data) % 64;
    return data + (offset == 0 ? 0 : (64 - offset) / sizeof(T));
  }
  index_t n_ = 0, stride_ = 0, narrow_stride_ = 0, groups_ = 0;
  bool fixed_ok_ = false;
  std::vector<double> partial_;  // per group: n received sums, then n given sums, each at stride_
  std::vector<std::int32_t> fixed_;  // per group: n int32 column sums of the fp16 fixed-point path, at narrow_stride_
  std::vector<float> block_;  // per group: n fp32 column sums of the open block of fp32 rows, at narrow_stride_
};

// received[j] = sum over heads and queries of A[h][i][j]; given[i] = sum over heads and keys of A[h][i][j].
// Divide both by heads * n for the means. Head groups run on the executor's workers when the maps are large
// enough. 16-bit maps are widened on the way; `row_buffer` (n floats) only serves to name a NaN/Inf.
template <Element T>
void attention_sums(const AttentionMaps& maps, AttentionAccumulator& sums, std::span<double> received,
                    std::span<double> given, std::span<float> row_buffer, const Executor& executor = {}) {
  const index_t n = maps.n_tokens(), heads = maps.heads(), groups = head_groups(heads);
  sums.begin(n, heads);
  auto row_of = [&](index_t h, index_t i, float* buffer) -> const float* {
    if constexpr (std::same_as<T, float>) {
      return maps.head<T>(h).row(i).data();  // fp32 maps are read in place
    } else {
      widen(maps.head<T>(h).row(i).data(), buffer, n);
      return buffer;
    }
  };
  index_t first_bad[kHeadGroups];  // per group: h * n + i of its first row with a NaN/Inf, or -1
  std::fill_n(first_bad, kHeadGroups, index_t{-1});
  const KernelTable& kernels = active_kernels();
  auto group = [&](index_t g, int) {
    for (index_t h = group_first_head(g, heads); h < group_first_head(g + 1, heads); ++h) {
      const index_t bad = sums.add_rows(g, 0, maps.head<T>(h).data(), n, maps.row_stride(), kernels);
      if (bad >= 0) {
        first_bad[g] = h * n + bad;  // nothing may throw inside a parallel loop: reported below
        return;
      }
    }
  };
  if (groups > 1 && heads * n * n >= kParallelWork) {
    executor.for_each(groups, group);
  } else {
    for (index_t g = 0; g < groups; ++g) group(g, 0);
  }
  for (index_t g = 0; g < groups; ++g) {  // groups hold ascending heads: the first bad row overall
    if (first_bad[g] < 0) continue;
    const index_t h = first_bad[g] / n, i = first_bad[g] % n;
    AttentionAccumulator::reject(row_of(h, i, row_buffer.data()), n, [h, i](index_t j) {
      std::ostringstream where;
      where << "attention[" << h << "," << i << "," << j << "]";
      return where.str();
    });
  }
  sums.finish(received, given);
  for (index_t j = 0; j < n; ++j)  // finite values whose fp32 block sum overflows (|values| near 1e37)
    if (!std::isfinite(received[static_cast<std::size_t>(j)]))
      fail("attention", "column " + std::to_string(j), "sums beyond the fp32 range");
}

// Sample variance (n - 1 denominator, as torch.var) of values; 0 for fewer than two values.
inline double variance(std::span<const double> values) {
  const auto n = values.size();
  if (n < 2) return 0.0;
  double mean = 0.0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(n);
  double sum_sq = 0.0;
  for (double v : values) sum_sq = std::fma(v - mean, v - mean, sum_sq);  // explicit: no -ffp-contract choice
  return sum_sq / static_cast<double>(n - 1);
}

// The same sums as attention_sums(), from an attention layer's queries and keys, without an [heads, n, n]
// buffer: for softmax maps, query blocks of kTile rows are multiplied with the keys, turned into probabilities
// (softmax over all keys, CLS included) and added row by row; for raw logits, the closed form
// sum_i q_i . k_j = (sum_i q_i) . k_j needs no product at all.
class QueryKeyReducer {
 public:
  // max_tokens: all tokens of the keys, skipped ones included.
  void reserve(index_t max_tokens, index_t head_dim) {
    const auto n = static_cast<std::size_t>(max_tokens), dh = static_cast<std::size_t>(head_dim);
    products_.reserve_product(std::min(max_tokens, kTile), max_tokens, head_dim);
    keys_.reserve(n * dh);
    queries_.reserve(static_cast<std::size_t>(kTile) * dh);
    logits_.reserve(static_cast<std::size_t>(kTile) * n);
    key_sum_.reserve(dh);
    row_.reserve(dh);
    query_sum_.reserve(dh);
  }

  void sums(const QueryKeys& qk, AttentionAccumulator& accumulator, std::span<double> received,
            std::span<double> given) {
    const HeadMatrices& q = qk.queries;
    const HeadMatrices& k = qk.keys;
    if (q.empty()) fail("query_keys.queries", "missing", "queries are needed with keys");
    if (q.heads() != k.heads()) fail("query_keys.queries.heads", q.heads(), "must equal keys.heads");
    if (q.n_tokens() != k.n_tokens()) fail("query_keys.queries.n_tokens", q.n_tokens(), "must equal keys.n_tokens");
    if (q.dim() != k.dim()) fail("query_keys.queries.head_dim", q.dim(), "must equal keys.head_dim");
    if (qk.skip_tokens < 0 || qk.skip_tokens > k.n_tokens())
      fail("query_keys.skip_tokens", qk.skip_tokens, "must be in [0, n_tokens]");
    if (!(qk.scale >= 0.0 && std::isfinite(qk.scale))) fail("query_keys.scale", qk.scale, "must be finite and >= 0");
    const index_t total = k.n_tokens(), dh = k.dim(), skip = qk.skip_tokens, n = total - skip;
    const float scale = static_cast<float>(qk.scale > 0.0 ? qk.scale : 1.0 / std::sqrt(static_cast<double>(dh)));
    Eigen::Map<Eigen::VectorXd> column_total(received.data(), n);
    Eigen::Map<Eigen::VectorXd> row_total(given.data(), n);
    column_total.setZero();
    row_total.setZero();
    const index_t heads = k.heads();
    if (qk.softmax) accumulator.begin(n, heads);
    keys_.resize(static_cast<std::size_t>(total * dh));
    RowMap<float> keys(keys_.data(), total, dh, Eigen::OuterStride<>(dh));
    for (index_t g = 0; g < head_groups(heads); ++g) {  // the map path's head groups, so the sums match bitwise
      for (index_t h = group_first_head(g, heads); h < group_first_head(g + 1, heads); ++h) {
        const TokenMatrix key_view = k.head(h);
        visit_dtype(k.dtype(), [&]<class T>(T) {
          for (index_t j = 0; j < total; ++j) load_row(key_view.as<T>(), j, keys.row(j).data(), "query_keys.keys", h);
        });
        if (qk.softmax) {
          softmax_head(g, h, q.head(h), keys, scale, skip, accumulator);
        } else {
          logit_head(h, q.head(h), keys, scale, skip, row_total, column_total);
        }
      }
    }
    if (qk.softmax) accumulator.finish(received, given);
  }

 private:
  void softmax_head(index_t group, index_t head, const TokenMatrix& query_view, const RowMap<float>& keys, float scale,
                    index_t skip, AttentionAccumulator& accumulator) {
    const index_t total = keys.rows(), dh = keys.cols();
    const KernelTable& kernels = active_kernels();
    const ConstRowMap<float> key_rows(keys.data(), total, dh, Eigen::OuterStride<>(dh));
    for (index_t i0 = skip; i0 < total; i0 += kTile) {
      const index_t rows = std::min(kTile, total - i0);
      queries_.resize(static_cast<std::size_t>(rows * dh));
      logits_.resize(static_cast<std::size_t>(rows * total));
      visit_dtype(query_view.dtype(), [&]<class T>(T) {
        for (index_t r = 0; r < rows; ++r)
          load_row(query_view.as<T>(), i0 + r, queries_.data() + r * dh, "query_keys.queries", head);
      });
      products_.product(ConstRowMap<float>(queries_.data(), rows, dh, Eigen::OuterStride<>(dh)), key_rows,
                        logits_.data(), total);
      for (index_t r = 0; r < rows; ++r) kernels.softmax_row(logits_.data() + r * total, total, scale);
      for (index_t r = 0; r < rows; ++r)  // finite queries and keys give finite probabilities
        if (!accumulator.add_row(group, i0 + r - skip, logits_.data() + r * total + skip, kernels))
          fail("query_keys", "softmax row " + std::to_string(i0 + r), "is not finite");
    }
  }

  // Raw logits: received_j += scale (sum_i q_i) . k_j and given_i += scale q_i . (sum_j k_j), over patch tokens.
  void logit_head(index_t head, const TokenMatrix& query_view, const RowMap<float>& keys, float scale, index_t skip,
                  Eigen::Map<Eigen::VectorXd>& row_total, Eigen::Map<Eigen::VectorXd>& column_total) {
    const index_t total = keys.rows(), dh = keys.cols();
    const KernelTable& kernels = active_kernels();
    const auto udh = static_cast<std::size_t>(dh);
    key_sum_.assign(udh, 0.0);
    query_sum_.assign(udh, 0.0);
    row_.resize(udh);
    for (index_t j = skip; j < total; ++j)  // additions only: the same bits at any width
      for (std::size_t c = 0; c < udh; ++c) key_sum_[c] += static_cast<double>(keys(j, static_cast<index_t>(c)));
    queries_.resize(udh);
    const double s = scale;
    visit_dtype(query_view.dtype(), [&]<class T>(T) {
      for (index_t i = skip; i < total; ++i) {
        load_row(query_view.as<T>(), i, queries_.data(), "query_keys.queries", head);
        for (std::size_t c = 0; c < udh; ++c) {
          row_[c] = queries_[c];
          query_sum_[c] += row_[c];
        }
        row_total[i - skip] = std::fma(s, kernels.dot(row_.data(), key_sum_.data(), dh), row_total[i - skip]);
      }
    });
    for (index_t j = skip; j < total; ++j) {
      for (std::size_t c = 0; c < udh; ++c) row_[c] = keys(j, static_cast<index_t>(c));
      column_total[j - skip] = std::fma(s, kernels.dot(row_.data(), query_sum_.data(), dh), column_total[j - skip]);
    }
  }

  GramWorkspace products_;
  std::vector<float> keys_, queries_, logits_;
  std::vector<double> key_sum_, query_sum_, row_;
};

}  // namespace tokenprune::kernels
