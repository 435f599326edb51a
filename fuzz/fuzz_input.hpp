#pragma once
// Turns fuzzer bytes into shapes, parameters and values. Values are taken as raw bit patterns, so NaN, Inf,
// denormals and huge magnitudes all occur; shapes are kept small so that each run is fast.

#include <tokenprune/tokenprune.hpp>

#include <cstdint>
#include <cstring>
#include <vector>

namespace fuzzing {

class Bytes {
 public:
  Bytes(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t byte() { return at_ < size_ ? data_[at_++] : 0; }
  std::int64_t in(std::int64_t lo, std::int64_t hi) { return lo + static_cast<std::int64_t>(byte()) % (hi - lo + 1); }
  bool flag() { return byte() & 1; }
  // A value: mostly well-behaved (small integers over 8, so ties and exact thresholds are common), sometimes raw bits.
  float value() {
    const std::uint8_t kind = byte();
    if (kind < 200) return static_cast<float>(static_cast<std::int8_t>(byte())) / 8.0f;
    std::uint32_t bits = 0;
    for (int i = 0; i < 4; ++i) bits = bits << 8 | byte();
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
  }
  template <class T>
  std::vector<T> values(std::int64_t count) {
    std::vector<T> out(static_cast<std::size_t>(count));
    for (auto& v : out) v = static_cast<T>(value());
    return out;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

// Calls body(T{}) with T = float, Eigen::half or Eigen::bfloat16, picked by the next byte.
template <class Body>
void with_element_type(Bytes& in, Body body) {
  switch (in.in(0, 2)) {
    case 0: body(float{}); break;
    case 1: body(Eigen::half{}); break;
    default: body(Eigen::bfloat16{}); break;
  }
}

// A selection must be strictly ascending, in range, and exactly as long as promised.
inline void check_selection(std::span<const tokenprune::index_t> kept, tokenprune::index_t n,
                            tokenprune::index_t promised) {
  if (static_cast<tokenprune::index_t>(kept.size()) != promised) __builtin_trap();
  for (std::size_t i = 0; i < kept.size(); ++i) {
    if (kept[i] < 0 || kept[i] >= n) __builtin_trap();
    if (i > 0 && kept[i] <= kept[i - 1]) __builtin_trap();
  }
}

}  // namespace fuzzing
