#pragma once
#include <tokenprune/core/abi.hpp>
// Element types and the index type. Token buffers come from engines in fp32, fp16 or bf16; every pruner
// computes in fp32 (wider where an exact tie or a variance comparison needs it).

#include <Eigen/Core>

#include <concepts>
#include <cstdint>
#include <string_view>

namespace tokenprune::inline TOKENPRUNE_ABI {

// Token indices, counts and strides. int64 matches the index tensors of PyTorch-style engines and `.npy` output.
using index_t = std::int64_t;

enum class DType : std::uint8_t { f32, f16, bf16 };

template <class T>
concept Element = std::same_as<T, float> || std::same_as<T, Eigen::half> || std::same_as<T, Eigen::bfloat16>;

template <Element T>
inline constexpr DType dtype_of = std::same_as<T, float> ? DType::f32
                                  : std::same_as<T, Eigen::half> ? DType::f16
                                                                 : DType::bf16;

constexpr std::string_view dtype_name(DType t) noexcept {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
  }
  return "?";
}

constexpr index_t dtype_size(DType t) noexcept { return t == DType::f32 ? 4 : 2; }

// Calls f(T{}) with T the element type named by `t`: the one place where a runtime dtype becomes a template.
template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f16: return f(Eigen::half{});
    case DType::bf16: return f(Eigen::bfloat16{});
    case DType::f32: break;
  }
  return f(float{});
}

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A row-major matrix view with a row stride: what every kernel reads.
template <class T>
using RowMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ConstRowMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

}  // namespace tokenprune
