#pragma once
#include <tokenprune/core/abi.hpp>
// Zero-copy views over engine buffers. A view never owns memory and never converts: a column-major or
// non-contiguous-row argument does not compile (or is rejected at run time when the layout is only known then),
// because a silent copy of a [2880, 4096] buffer on every request is exactly what an engine must not pay.

#include <tokenprune/core/error.hpp>
#include <tokenprune/core/types.hpp>

#include <type_traits>

namespace tokenprune::inline TOKENPRUNE_ABI {

namespace detail {
// An Eigen object whose rows are contiguous in memory and whose scalar is a supported element type.
template <class Derived>
concept RowMajorBuffer = Element<typename Derived::Scalar> && bool(Derived::IsRowMajor) &&
                         bool(int(Derived::Flags) & Eigen::DirectAccessBit);
template <class Derived>
concept EigenDense = std::is_base_of_v<Eigen::DenseBase<Derived>, Derived>;

inline void check_extent(const char* argument, index_t value, index_t minimum, const char* reason) {
  if (value < minimum) fail(argument, value, reason);
}
}  // namespace detail

// Token matrix [n_tokens, dim], row-major, row stride >= dim (in elements), fp32/fp16/bf16.
class TokenMatrix {
 public:
  TokenMatrix() = default;

  template <Element T>
  TokenMatrix(const T* data, index_t n_tokens, index_t dim, index_t row_stride)
      : data_(data), dtype_(dtype_of<T>), present_(true), rows_(n_tokens), cols_(dim), row_stride_(row_stride) {
    detail::check_extent("n_tokens", n_tokens, 0, "must be >= 0");
    detail::check_extent("dim", dim, 0, "must be >= 0");
    if (row_stride < dim) fail("row_stride", row_stride, "must be >= dim (elements between row starts)");
    if (data == nullptr && n_tokens > 0 && dim > 0) fail("data", "null", "a non-empty token matrix needs data");
  }
  template <Element T>
  TokenMatrix(const T* data, index_t n_tokens, index_t dim) : TokenMatrix(data, n_tokens, dim, dim) {}

  // Any row-major Eigen matrix, Map or row block with contiguous rows.
  template <class Derived>
    requires detail::RowMajorBuffer<Derived>
  TokenMatrix(const Eigen::DenseBase<Derived>& m)  // NOLINT(google-explicit-constructor): a view, like Ref
      : TokenMatrix(m.derived().data(), m.rows(), m.cols(), m.derived().outerStride()) {
    if (m.derived().innerStride() != 1)
      fail("features.inner_stride", m.derived().innerStride(), "must be 1: elements of a token must be contiguous");
  }
  // Column-major (or non-direct-access) Eigen arguments are refused at compile time: viewing them as tokens
  // would need a transposed copy. Use a RowMajor matrix or Map over the engine's buffer.
  template <class Derived>
    requires(!detail::RowMajorBuffer<Derived>)
  TokenMatrix(const Eigen::DenseBase<Derived>& m) = delete;

  [[nodiscard]] const void* data() const noexcept { return data_; }
  [[nodiscard]] DType dtype() const noexcept { return dtype_; }
  [[nodiscard]] index_t n_tokens() const noexcept { return rows_; }
  [[nodiscard]] index_t dim() const noexcept { return cols_; }
  [[nodiscard]] index_t row_stride() const noexcept { return row_stride_; }
  // True for a default-constructed view (input not given); a view of zero tokens is not empty.
  [[nodiscard]] bool empty() const noexcept { return !present_; }

  template <Element T>
  [[nodiscard]] ConstRowMap<T> as() const {
    if (dtype_of<T> != dtype_) fail("features.dtype", dtype_name(dtype_), "does not match the requested element type");
    return ConstRowMap<T>(static_cast<const T*>(data_), rows_, cols_, Eigen::OuterStride<>(row_stride_));
  }
  // Rows [first, first + count): still a view.
  [[nodiscard]] TokenMatrix rows(index_t first, index_t count) const {
    if (first < 0 || count < 0 || first + count > rows_) fail("rows.first", first, "row range outside the matrix");
    TokenMatrix out = *this;
    out.data_ = static_cast<const char*>(data_) + first * row_stride_ * dtype_size(dtype_);
    out.rows_ = count;
    return out;
  }
  // Columns [first, first + count) of every row: still a view (e.g. one segment of a [heads, n] attention row).
  [[nodiscard]] TokenMatrix columns(index_t first, index_t count) const {
    if (first < 0 || count < 0 || first + count > cols_) fail("columns.first", first, "column range outside the matrix");
    TokenMatrix out = *this;
    out.data_ = static_cast<const char*>(data_) + first * dtype_size(dtype_);
    out.cols_ = count;
    return out;
  }

 private:
  const void* data_ = nullptr;
  DType dtype_ = DType::f32;
  bool present_ = false;
  index_t rows_ = 0, cols_ = 0, row_stride_ = 0;
};

// Attention maps [heads, n, n] of one image: rows are queries, columns are keys; key elements contiguous,
// query rows `row_stride` apart, heads `head_stride` apart (all in elements). The CLS-free patch block of a
// [heads, n+1, n+1] map is `maps.block(1, n)`, without a copy.
class AttentionMaps {
 public:
  AttentionMaps() = default;

  template <Element T>
  AttentionMaps(const T* data, index_t heads, index_t n, index_t head_stride, index_t row_stride)
      : data_(data), dtype_(dtype_of<T>), present_(true), heads_(heads), n_(n), head_stride_(head_stride),
        row_stride_(row_stride) {
    detail::check_extent("heads", heads, 1, "must be >= 1");
    detail::check_extent("n_tokens", n, 0, "must be >= 0");
    if (row_stride < n) fail("attention.row_stride", row_stride, "must be >= n_tokens");
    if (n > 0 && head_stride < (n - 1) * row_stride + n)
      fail("attention.head_stride", head_stride, "heads overlap: must be >= (n - 1) * row_stride + n");
    if (data == nullptr && n > 0) fail("attention", "null", "non-empty attention maps need data");
  }
  // Dense [heads, n, n].
  template <Element T>
  AttentionMaps(const T* data, index_t heads, index_t n) : AttentionMaps(data, heads, n, n * n, n) {}

  // The [first, first + count) x [first, first + count) block of every head: e.g. block(1, n - 1) drops CLS.
  [[nodiscard]] AttentionMaps block(index_t first, index_t count) const {
    if (first < 0 || count < 0 || first + count > n_) fail("attention.block", first, "block outside the maps");
    AttentionMaps out = *this;
    out.data_ = static_cast<const char*>(data_) + (first * row_stride_ + first) * dtype_size(dtype_);
    out.n_ = count;
    return out;
  }

  [[nodiscard]] const void* data() const noexcept { return data_; }
  [[nodiscard]] DType dtype() const noexcept { return dtype_; }
  [[nodiscard]] index_t heads() const noexcept { return heads_; }
  [[nodiscard]] index_t n_tokens() const noexcept { return n_; }
  [[nodiscard]] index_t head_stride() const noexcept { return head_stride_; }
  [[nodiscard]] index_t row_stride() const noexcept { return row_stride_; }
  // True for a default-constructed view (input not given); a view of zero tokens is not empty.
  [[nodiscard]] bool empty() const noexcept { return !present_; }

  // Head h as an [n, n] row-major view.
  template <Element T>
  [[nodiscard]] ConstRowMap<T> head(index_t h) const {
    if (dtype_of<T> != dtype_) fail("attention.dtype", dtype_name(dtype_), "does not match the requested element type");
    return ConstRowMap<T>(static_cast<const T*>(data_) + h * head_stride_, n_, n_, Eigen::OuterStride<>(row_stride_));
  }

 private:
  const void* data_ = nullptr;
  DType dtype_ = DType::f32;
  bool present_ = false;
  index_t heads_ = 0, n_ = 0, head_stride_ = 0, row_stride_ = 0;
};

// Per-head matrices [heads, n, dim] (an attention layer's queries or keys): element (h, i, c) at
// data[h * head_stride + i * row_stride + c]. Covers [heads, n, dim] buffers (head_stride = n * row_stride) and
// the fused [n, heads * dim] layout (head_stride = dim, row_stride = heads * dim) alike.
class HeadMatrices {
 public:
  HeadMatrices() = default;

  template <Element T>
  HeadMatrices(const T* data, index_t heads, index_t n, index_t dim, index_t head_stride, index_t row_stride)
      : data_(data), dtype_(dtype_of<T>), present_(true), heads_(heads), n_(n), dim_(dim), head_stride_(head_stride),
        row_stride_(row_stride) {
    detail::check_extent("heads", heads, 1, "must be >= 1");
    detail::check_extent("n_tokens", n, 0, "must be >= 0");
    detail::check_extent("head_dim", dim, 1, "must be >= 1");
    if (row_stride < dim) fail("row_stride", row_stride, "must be >= head_dim");
    if (head_stride < 0) fail("head_stride", head_stride, "must be >= 0");
    if (data == nullptr && n > 0) fail("data", "null", "non-empty per-head matrices need data");
  }
  // Dense [heads, n, dim].
  template <Element T>
  HeadMatrices(const T* data, index_t heads, index_t n, index_t dim) : HeadMatrices(data, heads, n, dim, n * dim, dim) {}

  [[nodiscard]] DType dtype() const noexcept { return dtype_; }
  [[nodiscard]] index_t heads() const noexcept { return heads_; }
  [[nodiscard]] index_t n_tokens() const noexcept { return n_; }
  [[nodiscard]] index_t dim() const noexcept { return dim_; }
  [[nodiscard]] bool empty() const noexcept { return !present_; }

  // Head h as a token matrix [n, dim].
  [[nodiscard]] TokenMatrix head(index_t h) const {
    return visit_dtype(dtype_, [&]<class T>(T) {
      return TokenMatrix(static_cast<const T*>(data_) + h * head_stride_, n_, dim_, row_stride_);
    });
  }

 private:
  const void* data_ = nullptr;
  DType dtype_ = DType::f32;
  bool present_ = false;
  index_t heads_ = 0, n_ = 0, dim_ = 0, head_stride_ = 0, row_stride_ = 0;
};

}  // namespace tokenprune
