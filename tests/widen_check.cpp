// Built with -mf16c (see CMakeLists.txt), so widen() takes its F16C path, which the other test builds (no -march)
// never compile: every one of the 65,536 fp16 bit patterns must widen to the value a bit-level decoding gives,
// in the vectorized body and in the scalar tail alike. Exit 0 = pass; 77 = skipped (no F16C on this CPU, and
// not in CI, where a skip is a failure).
#include <tokenprune/kernels/convert.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {
// IEEE binary16: 1 sign bit, 5 exponent bits (bias 15), 10 fraction bits.
float decode(std::uint16_t bits) {
  const int sign = bits >> 15, exponent = (bits >> 10) & 0x1f, fraction = bits & 0x3ff;
  float magnitude = 0.0f;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(fraction), -24);  // zero and subnormals
  } else if (exponent == 31) {
    magnitude = fraction == 0 ? INFINITY : NAN;
  } else {
    magnitude = std::ldexp(static_cast<float>(1024 + fraction), exponent - 25);
  }
  return sign ? -magnitude : magnitude;
}

bool same(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);  // payloads may be quieted
  return std::memcmp(&a, &b, sizeof a) == 0;                                 // +0 and -0 differ here
}
}  // namespace

int main() {
#if defined(__F16C__) && (defined(__GNUC__) || defined(__clang__))
  if (!__builtin_cpu_supports("f16c")) {
    std::puts("widen_check: this CPU has no F16C");
    return std::getenv("CI") ? 1 : 77;
  }
#else
  std::puts("widen_check: not compiled with F16C");
  return 1;
#endif
  // 65,536 patterns, then 7 more so that the scalar tail (n not a multiple of 8) sees values too.
  constexpr std::size_t kPatterns = 65536, kExtra = 7;
  std::vector<Eigen::half> src(kPatterns + kExtra);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = Eigen::numext::bit_cast<Eigen::half>(static_cast<std::uint16_t>(i * 40503u));
  std::vector<float> dst(src.size(), 12345.0f);
  tokenprune::kernels::widen(src.data(), dst.data(), static_cast<tokenprune::index_t>(src.size()));
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < src.size(); ++i) {
    const auto bits = Eigen::numext::bit_cast<std::uint16_t>(src[i]);
    if (!same(dst[i], decode(bits)) && wrong++ < 5)
      std::printf("widen_check: 0x%04x widened to %.9g, expected %.9g\n", bits, dst[i], decode(bits));
  }
  std::printf("widen_check: %zu of %zu values wrong\n", wrong, src.size());
  return wrong == 0 ? 0 : 2;
}
