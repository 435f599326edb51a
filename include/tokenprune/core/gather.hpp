#pragma once
#include <tokenprune/core/abi.hpp>
// After pruning, an engine compacts every per-token plane it keeps (the projected features, Qwen3-VL's DeepStack
// planes, ...) and decides the kept tokens' position ids. These helpers do both into caller memory.

#include <tokenprune/core/views.hpp>

#include <algorithm>
#include <cstring>
#include <span>

namespace tokenprune::inline TOKENPRUNE_ABI {

namespace detail {
inline void check_selection(std::span<const index_t> kept, index_t n_tokens) {
  index_t previous = -1;
  for (index_t t : kept) {
    if (t < 0 || t >= n_tokens) fail("kept", t, "token index outside [0, n_tokens)");
    if (t <= previous) fail("kept", t, "indices must be strictly ascending");
    previous = t;
  }
}
}  // namespace detail

// Copies rows `kept` of `src` to dst (kept.size() rows of src.dim() elements, dst_row_stride elements apart),
// in the source's own element type T. dst must not overlap src.
template <Element T>
void gather_rows(const TokenMatrix& src, std::span<const index_t> kept, T* dst, index_t dst_row_stride) {
  if (src.dtype() != dtype_of<T>) fail("dst", dtype_name(dtype_of<T>), "element type differs from the source's");
  if (dst_row_stride < src.dim()) fail("dst_row_stride", dst_row_stride, "must be >= dim");
  if (dst == nullptr && !kept.empty()) fail("dst", "null", "destination buffer missing");
  detail::check_selection(kept, src.n_tokens());
  const auto* base = static_cast<const T*>(src.data());
  const auto row_bytes = static_cast<std::size_t>(src.dim()) * sizeof(T);
  for (std::size_t i = 0; i < kept.size() && row_bytes > 0; ++i)  // dim 0: nothing to copy
    std::memcpy(dst + static_cast<index_t>(i) * dst_row_stride, base + kept[i] * src.row_stride(), row_bytes);
}

// 1-D positions, original: out[i] = position_ids[kept[i]] (the token keeps its place; RoPE distances unchanged).
// Returns one past the largest kept position (where the next text token may continue).
inline index_t original_positions(std::span<const index_t> kept, std::span<const index_t> position_ids,
                                  std::span<index_t> out) {
  if (out.size() < kept.size()) fail("out.size", out.size(), "must be >= kept.size()");
  detail::check_selection(kept, static_cast<index_t>(position_ids.size()));
  index_t next = 0;
  for (std::size_t i = 0; i < kept.size(); ++i) {
    out[i] = position_ids[static_cast<std::size_t>(kept[i])];
    next = std::max(next, out[i] + 1);
  }
  return next;
}

// 1-D positions, compacted: out[i] = start + i (the pruned sequence is numbered as if it were the whole one).
// Returns start + count.
inline index_t compacted_positions(index_t count, index_t start, std::span<index_t> out) {
  if (count < 0 || out.size() < static_cast<std::size_t>(count)) fail("count", count, "must be in [0, out.size()]");
  for (index_t i = 0; i < count; ++i) out[static_cast<std::size_t>(i)] = start + i;
  return start + count;
}

// M-RoPE positions (3, L) row-major: rows t, h, w; `positions` has row stride `stride` (>= L).
struct MropePositions {
  const index_t* data = nullptr;
  index_t length = 0;
  index_t stride = 0;
  [[nodiscard]] index_t at(int axis, index_t token) const { return data[axis * stride + token]; }
};

// Original M-RoPE positions of the kept tokens into out (3 rows of kept.size(), row stride out_stride).
// Returns one past the largest kept position over all axes (Qwen2-VL continues text from there).
inline index_t original_mrope_positions(std::span<const index_t> kept, MropePositions positions, index_t* out,
                                        index_t out_stride) {
  if (out_stride < static_cast<index_t>(kept.size())) fail("out_stride", out_stride, "must be >= kept.size()");
  if (positions.stride < positions.length) fail("positions.stride", positions.stride, "must be >= length");
  detail::check_selection(kept, positions.length);
  index_t next = 0;
  for (int axis = 0; axis < 3; ++axis)
    for (std::size_t i = 0; i < kept.size(); ++i) {
      const index_t p = positions.at(axis, kept[i]);
      out[axis * out_stride + static_cast<index_t>(i)] = p;
      next = std::max(next, p + 1);
    }
  return next;
}

// Compacted M-RoPE positions: on each axis, the distinct values among the kept tokens are renumbered densely
// from that axis's smallest kept value, preserving order (a pruned-away grid row or column closes its gap).
// `scratch` holds kept.size() entries. Returns one past the largest compacted position over all axes.
inline index_t compacted_mrope_positions(std::span<const index_t> kept, MropePositions positions, index_t* out,
                                         index_t out_stride, std::span<index_t> scratch) {
  if (scratch.size() < kept.size()) fail("scratch.size", scratch.size(), "must be >= kept.size()");
  original_mrope_positions(kept, positions, out, out_stride);
  index_t next = 0;
  const std::size_t m = kept.size();
  for (int axis = 0; axis < 3; ++axis) {
    index_t* row = out + axis * out_stride;
    std::copy(row, row + m, scratch.begin());
    std::sort(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(m));
    const auto distinct_end = std::unique(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(m));
    const index_t origin = m > 0 ? scratch[0] : 0;
    for (std::size_t i = 0; i < m; ++i) {
      const auto rank = std::lower_bound(scratch.begin(), distinct_end, row[i]) - scratch.begin();
      row[i] = origin + rank;
      next = std::max(next, row[i] + 1);
    }
  }
  return next;
}

}  // namespace tokenprune
