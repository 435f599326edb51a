#pragma once
#include <tokenprune/core/abi.hpp>
// Instruction-set levels of the hot kernels, chosen at run time.
//
// Engines ship portable binaries (x86-64 baselines, distribution packages, wheels), so the kernels that dominate
// the cost (the cosine Gram, its epilogue, norms, propagation, attention sums, fp16 widening) exist once per level
// and are picked from CPUID when first used, with no compiler flag on the engine's side: GCC and Clang compile
// each level's functions with a `target` attribute. Every level computes the same fixed-order arithmetic (see
// kernels/simd.hpp), so the level changes the speed, never a bit of any score.
//
// The level in use is, in order of precedence: the last set_isa() call, the TOKENPRUNE_ISA environment variable
// (auto | avx512 | avx2 | portable, read at first use), or the best level this CPU supports. Asking for a level
// the CPU lacks is an Error naming the argument. The level is process-wide; reading it is one atomic load.

#include <tokenprune/core/error.hpp>

#include <array>
#include <atomic>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define TOKENPRUNE_X86_DISPATCH 1
#include <cpuid.h>
#else
#define TOKENPRUNE_X86_DISPATCH 0
#endif

namespace tokenprune::inline TOKENPRUNE_ABI {

enum class Isa : int {
  portable = 0,  // plain C++ (std::fma), vectorizable where FMA is baseline (AArch64)
  avx2 = 1,      // AVX2 + FMA + F16C (x86-64-v3)
  avx512 = 2,    // AVX-512 F/BW/DQ/VL (x86-64-v4)
};

inline constexpr std::array<Isa, 3> kAllIsas = {Isa::avx512, Isa::avx2, Isa::portable};

[[nodiscard]] constexpr const char* isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    case Isa::portable:
      break;
  }
  return "portable";
}

// "avx512", "avx2" or "portable"; "auto" and anything else give nullopt.
[[nodiscard]] inline std::optional<Isa> parse_isa(std::string_view name) noexcept {
  for (Isa isa : kAllIsas)
    if (name == isa_name(isa)) return isa;
  return std::nullopt;
}

#if TOKENPRUNE_X86_DISPATCH
namespace detail {
// CPUID leaf 1, ECX bit 29 (Clang 14's __builtin_cpu_supports does not know "f16c"). The OS-saved AVX state it
// needs is checked by __builtin_cpu_supports("avx2").
inline bool cpu_has_f16c() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && ((c >> 29) & 1u) != 0;
}
}  // namespace detail
#endif

// Whether this CPU (and its operating system, which must save the wider registers) runs the level.
[[nodiscard]] inline bool isa_supported(Isa isa) noexcept {
#if TOKENPRUNE_X86_DISPATCH
  __builtin_cpu_init();
  switch (isa) {
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt");
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && detail::cpu_has_f16c() &&
             __builtin_cpu_supports("popcnt");
    case Isa::portable:
      return true;
  }
  return false;
#else
  return isa == Isa::portable;
#endif
}

// The fastest supported level.
[[nodiscard]] inline Isa best_isa() noexcept {
  for (Isa isa : kAllIsas)
    if (isa_supported(isa)) return isa;
  return Isa::portable;
}

// The supported levels, fastest first, as text ("avx512 avx2 portable").
[[nodiscard]] inline std::string supported_isas() {
  std::string text;
  for (Isa isa : kAllIsas)
    if (isa_supported(isa)) {
      if (!text.empty()) text.push_back(' ');
      text.append(isa_name(isa));
    }
  return text;
}

namespace detail {
inline std::atomic<int>& isa_slot() noexcept {
  static std::atomic<int> slot{-1};  // -1: not chosen yet
  return slot;
}
// `name` as a level this CPU runs: "auto" is the best one; anything else unknown or unsupported is an Error.
inline Isa resolve_isa(std::string_view argument, std::string_view name) {
  if (name == "auto") return best_isa();
  const std::optional<Isa> isa = parse_isa(name);
  if (!isa) fail(argument, name, "expected auto, avx512, avx2 or portable");
  if (!isa_supported(*isa)) fail(argument, name, "this CPU does not support it (supported: " + supported_isas() + ")");
  return *isa;
}
}  // namespace detail

// Selects the level for every later kernel call in the process; an Error if this CPU does not support it.
inline void set_isa(Isa isa) {
  if (!isa_supported(isa)) fail("isa", isa_name(isa), "this CPU does not support it (supported: " + supported_isas() + ")");
  detail::isa_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}
// The same by name: auto | avx512 | avx2 | portable.
inline void set_isa(std::string_view name) { set_isa(detail::resolve_isa("isa", name)); }

// The level the kernels use now. The first call reads TOKENPRUNE_ISA (unset or empty means auto); an invalid or
// unsupported value is an Error naming TOKENPRUNE_ISA, raised by every call until it is fixed or set_isa() runs.
[[nodiscard]] inline Isa active_isa() {
  const int chosen = detail::isa_slot().load(std::memory_order_relaxed);
  if (chosen >= 0) return static_cast<Isa>(chosen);
  const char* env = std::getenv("TOKENPRUNE_ISA");
  const Isa isa = detail::resolve_isa("TOKENPRUNE_ISA", env != nullptr && *env != '\0' ? env : "auto");
  int expected = -1;  // a concurrent set_isa() wins
  detail::isa_slot().compare_exchange_strong(expected, static_cast<int>(isa), std::memory_order_relaxed);
  return static_cast<Isa>(detail::isa_slot().load(std::memory_order_relaxed));
}

}  // namespace tokenprune
