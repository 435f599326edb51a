#pragma once
// Attention reductions for FoPru: one streaming pass over [heads, n, n] maps that accumulates both the column
// sums (attention each key receives) and the row sums (attention each query gives), in double so that ties in
// the data stay ties and the variance comparison of the two means is not decided by rounding.

#include <tokenprune/core/inputs.hpp>
#include <tokenprune/core/views.hpp>
#include <tokenprune/kernels/convert.hpp>
#include <tokenprune/kernels/gram.hpp>

#include <algorithm>
#include <span>
#include <string>
#include <vector>

namespace tokenprune::kernels {

// Accumulates rows of fp32 attention (one query row at a time, heads one after another) into the received
// (column) and given (row) sums, in double: raw-logit maps have means near zero, where fp32 partial sums would
// cancel away the digits that rank tokens. Each value is widened once and added twice: to its column's sum and
// to one of 16 row lanes. The arithmetic does not depend on the SIMD width the compiler targets: element j
// goes to lane j mod 16 (an Eigen fixed-size array: the same per-lane operations in zmm, ymm or xmm
// registers), the lanes are reduced in a fixed pairwise order, and a column sum adds the rows in order. Both FoPru input
// paths (maps, queries and keys) feed rows through this in the same order, so equal rows give bitwise equal
// significance. One row per step is also the fastest order measured: it reads the maps as one sequential
// stream, while interleaving several rows (fewer column updates) ran 1.5 to 2.5 times slower.
class AttentionAccumulator {
 public:
  static constexpr index_t kLanes = 16;

  // Starts a pass over n tokens: the sums go to received[0, n) and given[0, n).
  void begin(std::span<double> received, std::span<double> given) {
    received_ = received;
    given_ = given;
    std::fill(received_.begin(), received_.end(), 0.0);
    std::fill(given_.begin(), given_.end(), 0.0);
  }

  // Adds query row i (n fp32 values). `where(j)` names element j for the error on a non-finite value.
  template <class Where>
  void add_row(index_t i, const float* row, Where where) {
    using Lanes = Eigen::Array<double, kLanes, 1>;
    using Values = Eigen::Array<float, kLanes, 1>;
    const auto n = static_cast<index_t>(received_.size());
    Lanes lanes = Lanes::Zero();
    double* received = received_.data();
    const index_t full = n - n % kLanes;
    for (index_t j = 0; j < full; j += kLanes) {
      const Lanes value = Eigen::Map<const Values>(row + j).template cast<double>();
      lanes += value;
      Eigen::Map<Lanes>(received + j) += value;
    }
    for (index_t j = full; j < n; ++j) {
      const double value = row[j];
      lanes[j - full] += value;
      received[j] += value;
    }
    // Lanes reduced by halving (lane l plus lane l + half): a few vector adds instead of a 16-add dependency
    // chain per row, which profiled at a fifth of the pass.
    const Eigen::Array<double, 8, 1> eight = lanes.template head<8>() + lanes.template tail<8>();
    const Eigen::Array<double, 4, 1> four = eight.template head<4>() + eight.template tail<4>();
    const double total = (four[0] + four[2]) + (four[1] + four[3]);
    if (!std::isfinite(total)) reject(row, n, where);  // a NaN or Inf anywhere in the row reaches the total
    given_[static_cast<std::size_t>(i)] += total;
  }

 private:
  template <class Where>
  [[noreturn]] static void reject(const float* row, index_t n, Where where) {
    for (index_t j = 0; j < n; ++j)
      if (!std::isfinite(row[j])) fail(where(j), row[j], "NaN and Inf are rejected before any work");
    fail(where(0), "row sum", "is not finite");
  }

  std::span<double> received_, given_;
};

// received[j] = sum over heads and queries of A[h][i][j]; given[i] = sum over heads and keys of A[h][i][j].
// Divide both by heads * n for the means. `row_buffer` is scratch of n floats (for 16-bit maps).
template <Element T>
void attention_sums(const AttentionMaps& maps, AttentionAccumulator& sums, std::span<double> received,
                    std::span<double> given, std::span<float> row_buffer) {
  const index_t n = maps.n_tokens();
  sums.begin(received.first(static_cast<std::size_t>(n)), given.first(static_cast<std::size_t>(n)));
  for (index_t h = 0; h < maps.heads(); ++h) {
    const ConstRowMap<T> head = maps.head<T>(h);
    for (index_t i = 0; i < n; ++i) {
      const float* row = nullptr;
      if constexpr (std::same_as<T, float>) {
        row = head.row(i).data();  // fp32 maps are read in place
      } else {
        widen(head.row(i).data(), row_buffer.data(), n);
        row = row_buffer.data();
      }
      sums.add_row(i, row, [h, i](index_t j) {
        std::ostringstream where;
        where << "attention[" << h << "," << i << "," << j << "]";
        return where.str();
      });
    }
  }
}

// Sample variance (n - 1 denominator, as torch.var) of values; 0 for fewer than two values.
inline double variance(std::span<const double> values) {
  const auto n = values.size();
  if (n < 2) return 0.0;
  double mean = 0.0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(n);
  double sum_sq = 0.0;
  for (double v : values) sum_sq += (v - mean) * (v - mean);
  return sum_sq / static_cast<double>(n - 1);
}

// The same sums as attention_sums(), from an attention layer's queries and keys, without an [heads, n, n]
// buffer: for softmax maps, query blocks of kTile rows are multiplied with the keys, turned into probabilities
// (softmax over all keys, CLS included) and added row by row; for raw logits, the closed form
// sum_i q_i . k_j = (sum_i q_i) . k_j needs no product at all.
class QueryKeyReducer {
 public:
  void reserve(index_t max_tokens, index_t head_dim) {
    const auto n = static_cast<std::size_t>(max_tokens), dh = static_cast<std::size_t>(head_dim);
    products_.reserve(std::max(max_tokens, kTile), head_dim);
    keys_.reserve(n * dh);
    queries_.reserve(static_cast<std::size_t>(kTile) * dh);
    logits_.reserve(static_cast<std::size_t>(kTile) * n);
    key_sum_.reserve(dh);
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
    if (qk.softmax) accumulator.begin(received.first(static_cast<std::size_t>(n)), given.first(static_cast<std::size_t>(n)));
    keys_.resize(static_cast<std::size_t>(total * dh));
    RowMap<float> keys(keys_.data(), total, dh, Eigen::OuterStride<>(dh));
    for (index_t h = 0; h < k.heads(); ++h) {
      const TokenMatrix key_view = k.head(h);
      visit_dtype(k.dtype(), [&]<class T>(T) {
        for (index_t j = 0; j < total; ++j) load_row(key_view.as<T>(), j, keys.row(j).data(), "query_keys.keys");
      });
      if (qk.softmax) {
        softmax_head(q.head(h), keys, scale, skip, accumulator);
      } else {
        logit_head(q.head(h), keys, scale, skip, row_total, column_total);
      }
    }
  }

 private:
  void softmax_head(const TokenMatrix& query_view, const RowMap<float>& keys, float scale, index_t skip,
                    AttentionAccumulator& accumulator) {
    const index_t total = keys.rows(), dh = keys.cols();
    const ConstRowMap<float> key_rows(keys.data(), total, dh, Eigen::OuterStride<>(dh));
    for (index_t i0 = skip; i0 < total; i0 += kTile) {
      const index_t rows = std::min(kTile, total - i0);
      queries_.resize(static_cast<std::size_t>(rows * dh));
      logits_.resize(static_cast<std::size_t>(rows * total));
      visit_dtype(query_view.dtype(), [&]<class T>(T) {
        for (index_t r = 0; r < rows; ++r)
          load_row(query_view.as<T>(), i0 + r, queries_.data() + r * dh, "query_keys.queries");
      });
      products_.product(ConstRowMap<float>(queries_.data(), rows, dh, Eigen::OuterStride<>(dh)), key_rows,
                        logits_.data(), total);
      for (index_t r = 0; r < rows; ++r) {
        Eigen::Map<Eigen::ArrayXf> p(logits_.data() + r * total, total);
        p *= scale;
        p = (p - p.maxCoeff()).exp();
        p /= p.sum();
      }
      for (index_t r = 0; r < rows; ++r)
        accumulator.add_row(i0 + r - skip, logits_.data() + r * total + skip,
                            [](index_t) { return std::string("query_keys"); });
    }
  }

  // Raw logits: received_j += scale (sum_i q_i) . k_j and given_i += scale q_i . (sum_j k_j), over patch tokens.
  void logit_head(const TokenMatrix& query_view, const RowMap<float>& keys, float scale, index_t skip,
                  Eigen::Map<Eigen::VectorXd>& row_total, Eigen::Map<Eigen::VectorXd>& column_total) {
    const index_t total = keys.rows(), dh = keys.cols();
    key_sum_.assign(static_cast<std::size_t>(dh), 0.0);
    query_sum_.assign(static_cast<std::size_t>(dh), 0.0);
    Eigen::Map<Eigen::RowVectorXd> key_sum(key_sum_.data(), dh), query_sum(query_sum_.data(), dh);
    for (index_t j = skip; j < total; ++j) key_sum += keys.row(j).template cast<double>();
    queries_.resize(static_cast<std::size_t>(dh));
    Eigen::Map<Eigen::RowVectorXf> query(queries_.data(), dh);
    visit_dtype(query_view.dtype(), [&]<class T>(T) {
      for (index_t i = skip; i < total; ++i) {
        load_row(query_view.as<T>(), i, query.data(), "query_keys.queries");
        query_sum += query.template cast<double>();
        row_total[i - skip] += static_cast<double>(scale) * query.template cast<double>().dot(key_sum);
      }
    });
    for (index_t j = skip; j < total; ++j)
      column_total[j - skip] += static_cast<double>(scale) * keys.row(j).template cast<double>().dot(query_sum);
  }

  GramWorkspace products_;
  std::vector<float> keys_, queries_, logits_;
  std::vector<double> key_sum_, query_sum_;
};

}  // namespace tokenprune::kernels
