#pragma once
#include <tokenprune/core/abi.hpp>
// The hot kernels once per instruction-set level, and the table of the level in use.
//
// kernels/level_body.inl holds the kernels, written once against a small vector type V. It is included here
// three times, each time in its own namespace with its own V and, for the x86 levels, under a target pragma, so
// GCC and Clang compile AVX-512 and AVX2 code in a header without any flag in the engine's build. level_portable
// is plain C++ (std::fma), which vectorizes where FMA is baseline (AArch64) and is exact, if slow, where it is not.
// active_kernels() returns the function table of active_isa() (core/isa.hpp); callers take it once per call.

#include <tokenprune/core/isa.hpp>
#include <tokenprune/core/types.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#if TOKENPRUNE_X86_DISPATCH
#include <immintrin.h>
#endif

namespace tokenprune::inline TOKENPRUNE_ABI::kernels {

// Rows per packed panel of a Gram operand (see level_body.inl); every level's micro-tiles divide it. Each level's
// V::kDepthBlock is the depth block of its Gram micro-kernels: a fixed constant, never derived from the CPU's cache
// sizes (it changes no value: a block resumes each FMA chain where the last one stopped; it only keeps the working
// set in cache).
inline constexpr index_t kPanel = 48;

// The rank of (score, index) as one integer, smaller first: score descending, then index ascending (top-k's
// order, kernels/topk.hpp). The float's bits are mapped to an order-reversing integer (negative floats after
// positive ones), -0 is folded into +0 (they compare equal, so they tie), and the index fills the low half.
inline std::uint64_t rank_key(float score, index_t index) {
  std::uint32_t bits = std::bit_cast<std::uint32_t>(score);
  bits = bits == 0x80000000u ? 0u : bits;                                         // branch-free: vectorizes
  const auto negative = static_cast<std::uint32_t>(static_cast<std::int32_t>(bits) >> 31);  // all ones or 0
  const std::uint32_t descending = bits ^ (~negative & 0x7fffffffu);
  return (static_cast<std::uint64_t>(descending) << 32) | static_cast<std::uint64_t>(index);
}
// keys[c++] = rank_key(scores[i], i) for i in [i0, n) whose key <= bound, in order; keys[c] is written before c
// can pass i (branch-free), so keys needs n entries. Returns c.
inline index_t select_keys_from(const float* scores, index_t i0, index_t n, std::uint64_t bound, std::uint64_t* keys,
                                index_t c) {
  for (index_t i = i0; i < n; ++i) {
    const std::uint64_t key = rank_key(scores[i], i);
    keys[c] = key;
    c += key <= bound ? 1 : 0;
  }
  return c;
}

struct KernelTable {
  Isa isa;
  int micro_rows, micro_cols;
  void (*gram_tile)(const float* a, const float* b, index_t d, index_t i0, index_t h, index_t j0, index_t w,
                    float* out, index_t ld, bool lower);
  // Returns how many of the width weights are > 0.
  std::uint32_t (*edge_weights)(float* s, index_t width, float tau, float temperature, float max_logit);
  void (*softmax_row)(float* p, index_t n, float scale);
  double (*squared_norm)(const float* x, index_t d);
  // dst[j] = src[j] / divisor for j < d (fp32 division: the same bits at any width).
  void (*divide_row)(const float* src, float* dst, index_t d, float divisor);
  double (*dot)(const double* a, const double* b, index_t n);
  double (*row_dot)(const std::int32_t* cols, const float* e, index_t count, const double* x);
  // `count` fp32 query rows of n attention values (row stride `stride`), rows [first_row, first_row + count) of a
  // head of head_rows rows, into their column sums (received, through the open 16-row block in `partial`: n floats
  // of scratch, whatever they hold when a block opens) and their row totals (totals[r] =): level_body.inl,
  // attention_rows.
  void (*attention_rows)(const float* rows, index_t count, index_t stride, index_t n, index_t first_row,
                         index_t head_rows, float* partial, double* received, double* totals);
  // 16-bit rows: the same, but received += in row order in double, row totals over 32 double lanes.
  // fixed: n zeroed int32 of scratch (left zeroed) for the exact fixed-point path, which needs n <= 4064 and at most
  // 8192 values per column sum and row (then it gives the bits of the double path); nullptr: the double path.
  void (*attention_rows_half)(const std::uint16_t* rows, index_t count, index_t stride, index_t n, double* received,
                              double* totals, std::int32_t* fixed);
  void (*attention_rows_bf16)(const std::uint16_t* rows, index_t count, index_t stride, index_t n, double* received,
                              double* totals);
  // acc[j] += double(x[j]) for j < n (fp32, fp16, bf16 x); all_finite: no NaN or Inf in p[0, n).
  // acc[j] += double(x[r stride + j]) for r = 0, 1, ..., rows - 1 in order, j < n.
  void (*accumulate)(const float* x, index_t rows, index_t stride, index_t n, double* acc);
  void (*accumulate_half)(const std::uint16_t* x, index_t rows, index_t stride, index_t n, double* acc);
  void (*accumulate_bf16)(const std::uint16_t* x, index_t rows, index_t stride, index_t n, double* acc);
  bool (*all_finite)(const float* p, index_t n);
  void (*widen_half)(const std::uint16_t* src, float* dst, index_t n);
  void (*widen_bf16)(const std::uint16_t* src, float* dst, index_t n);
  void (*pack_panel)(const float* x, index_t ld, index_t rows, index_t d, index_t panel, float* out);
  std::uint64_t (*row_hash)(const float* row, index_t d);
  // Double-precision kernels of the pruners (level_double.inl): CDPruner's greedy row update, EVS's dot and norm.
  void (*cdpruner_row)(const float* sj, const double* w, double wj, const double* coef, const double* chol,
                       index_t stride, index_t t, double root, double* row, double* gain, index_t n);
  void (*evs_dot_norm)(const float* const* a, const float* const* b, index_t count, index_t d, double* dot,
                       double* norm);
  // The rank keys <= bound of scores[0, n), in index order, into keys (n entries); returns their number.
  index_t (*select_keys)(const float* scores, index_t n, std::uint64_t bound, std::uint64_t* keys);
};

// Packs panel `panel` of rows x d of x (row stride ld) into out (see level_body.inl): element (r, k) of the
// panel's rows at out + panel kPanel d + k kPanel + (r - panel kPanel), zero rows past the end. Data movement only.
inline void pack_panel_scalar(const float* x, index_t ld, index_t rows, index_t d, index_t panel, float* out) {
  constexpr index_t kBlock = 64;  // depths per pass: the 64 x kPanel destination block stays in L1
  float* dst = out + panel * kPanel * d;
  const index_t first = panel * kPanel, count = std::min(kPanel, rows - first);
  for (index_t k0 = 0; k0 < d; k0 += kBlock) {
    const index_t k1 = std::min(d, k0 + kBlock);
    for (index_t c = 0; c < count; ++c) {
      const float* src = x + (first + c) * ld;
      for (index_t k = k0; k < k1; ++k) dst[k * kPanel + c] = src[k];
    }
    for (index_t c = count; c < kPanel; ++c)
      for (index_t k = k0; k < k1; ++k) dst[k * kPanel + c] = 0.0f;
  }
}

namespace level_portable {
inline constexpr Isa kIsa = Isa::portable;
struct V {
  static index_t select_keys(const float* scores, index_t n, std::uint64_t bound, std::uint64_t* keys) {
    return select_keys_from(scores, 0, n, bound, keys, 0);
  }
  using F = float;
  static constexpr int kLanes = 1, kMR = 4, kNRVectors = 16;
  static constexpr index_t kDepthBlock = 256;
  static F zero() { return 0.0f; }
  static F set1(float x) { return x; }
  static F load(const float* p) { return *p; }
  // A load whose register serves several adds: the compiler may not fold it into each of them as a memory
  // operand (a second load of the same, possibly line-splitting, address).
  static F load_once(const float* p) { return *p; }
  static void store(float* p, F x) { *p = x; }
  static F fma(F a, F b, F c) { return std::fma(a, b, c); }
  static F mul(F a, F b) { return a * b; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static F div(F a, F b) { return a / b; }
  static F min(F a, F b) { return b < a ? b : a; }
  static F max(F a, F b) { return a < b ? b : a; }
  static F round_nearest(F x) { return std::nearbyint(x); }
  static F select_ge(F x, F t, F e) { return x >= t ? e : 0.0f; }
  static unsigned mask_ge(F x, F t) { return x >= t ? 1u : 0u; }  // bit l: lane l of x >= t
  static unsigned mask_positive(F x) { return x > 0.0f ? 1u : 0u; }
  static float first(F x) { return x; }
  static F pow2(std::int32_t n) {  // 2^n for n in [-126, 127]
    const auto bits = static_cast<std::uint32_t>(n + 127) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
  static F scale_pow2(F y, F n) {
    const auto k = static_cast<std::int32_t>(n);
    const std::int32_t k1 = k >> 1, k2 = k - k1;  // floor halves: two normal powers of two
    return (y * pow2(k1)) * pow2(k2);
  }
  static void widen_half(const std::uint16_t* src, float* dst, index_t n) {
    for (index_t j = 0; j < n; ++j) dst[j] = static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(src[j]));
  }
  // Doubles for the attention sums: D holds kDLanes doubles; to_double widens the kLanes floats of an F into
  // kLanes / kDLanes D (lowest elements first). load_half / load_bf16: kLanes 16-bit values as an F (exact).
  using D = double;
  static constexpr int kDLanes = 1;
  static D dzero() { return 0.0; }
  static D dload(const double* p) { return *p; }
  static void dstore(double* p, D x) { *p = x; }
  static D dadd(D a, D b) { return a + b; }
  static D dfma(D a, D b, D c) { return std::fma(a, b, c); }
  static void to_double(F x, D* out) { out[0] = x; }
  static void load_double(const float* p, D* out) { out[0] = *p; }  // kLanes floats at p as to_double gives them
  // int32 vectors of kLanes for exact fixed-point sums: to_fixed(x) = x 2^24, exact for x on fp16's 2^-24 grid
  // with |x| <= 1.
  using I = std::int32_t;
  static I izero() { return 0; }
  static I iload(const std::int32_t* p) { return *p; }
  static void istore(std::int32_t* p, I x) { *p = x; }
  // Wrapping, as the vector levels' integer adds: a row whose values fall outside the fixed-point range is added
  // and then subtracted again (level_body.inl), exactly, whatever it held.
  static I iadd(I a, I b) { return static_cast<I>(static_cast<std::uint32_t>(a) + static_cast<std::uint32_t>(b)); }
  static I isub(I a, I b) { return static_cast<I>(static_cast<std::uint32_t>(a) - static_cast<std::uint32_t>(b)); }
  // Values beyond int32 (and NaN) give INT32_MIN, as cvtps2dq does: never undefined.
  static I to_fixed(F x) {
    const float scaled = x * 16777216.0f;
    return std::abs(scaled) < 2147483648.0f ? static_cast<std::int32_t>(scaled) : INT32_MIN;
  }
  // The bits of an F as an I, OR-ed (two or three at once), for range checks (ibits_clear: no lane has a bit of
  // `mask` set).
  static I bits_of(F x) { return std::bit_cast<I>(x); }
  static I ior(I a, I b) { return a | b; }
  static I ior3(I a, I b, I c) { return a | b | c; }
  static bool ibits_clear(I x, std::uint32_t mask) { return (static_cast<std::uint32_t>(x) & mask) == 0; }
  // halving(x): the lanes of x reduced by halving (lane l plus lane l + kDLanes / 2, ...); isum(x): the lanes'
  // sum in int64 (exact, any order).
  static double halving(D x) { return x; }
  static std::int64_t isum(I x) { return x; }
  // kDLanes int32 at p as doubles, times 2^-24 (exact).
  static D from_fixed(const std::int32_t* p) { return static_cast<double>(*p) * 0x1p-24; }
  static F load_half(const std::uint16_t* p) { return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(*p)); }
  static F load_bf16(const std::uint16_t* p) {
    const std::uint32_t bits = static_cast<std::uint32_t>(*p) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
  static void pack_panel(const float* x, index_t ld, index_t rows, index_t d, index_t panel, float* out) {
    pack_panel_scalar(x, ld, rows, d, panel, out);
  }
};
#include <tokenprune/kernels/level_body.inl>
#include <tokenprune/kernels/level_double.inl>
}  // namespace level_portable

#if TOKENPRUNE_X86_DISPATCH

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,popcnt")
#endif
namespace level_avx2 {
inline constexpr Isa kIsa = Isa::avx2;
struct V {
  static index_t select_keys(const float* scores, index_t n, std::uint64_t bound, std::uint64_t* keys) {
    return select_keys_from(scores, 0, n, bound, keys, 0);
  }
  using F = __m256;
  static constexpr int kLanes = 8, kMR = 4, kNRVectors = 3;  // 12 accumulators of 16 registers
  // 64 depths: the b slice (24 columns, 6 KB) and the 48-row panel of a that its micro-tiles read (12 KB) stay in
  // a 32 KB L1. Zen 4, BM_Gram / OpenBLAS SYRK (Haswell kernels) in 3 interleaved rounds: 576 x 1024 0.97-1.08
  // (1.01-1.23 with 256), 576 x 4096 1.11-1.30x faster than with 256; LLaVA-NeXT 1.01-1.08 (1.08-1.28).
  static constexpr index_t kDepthBlock = 64;
  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float x) { return _mm256_set1_ps(x); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F load_once(const float* p) {
    F x = _mm256_loadu_ps(p);
    __asm__("" : "+x"(x));  // x is a register from here on
    return x;
  }
  static void store(float* p, F x) { _mm256_storeu_ps(p, x); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F round_nearest(F x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F select_ge(F x, F t, F e) { return _mm256_and_ps(_mm256_cmp_ps(x, t, _CMP_GE_OQ), e); }
  static unsigned mask_ge(F x, F t) { return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(x, t, _CMP_GE_OQ))); }
  static unsigned mask_positive(F x) {
    return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ)));
  }
  static float first(F x) { return _mm256_cvtss_f32(x); }
  static F scale_pow2(F y, F n) {
    const __m256i k = _mm256_cvtps_epi32(n);
    const __m256i k1 = _mm256_srai_epi32(k, 1), k2 = _mm256_sub_epi32(k, k1);
    const __m256i bias = _mm256_set1_epi32(127);
    const F s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    const F s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
  }
  static void widen_half(const std::uint16_t* src, float* dst, index_t n) {
    index_t j = 0;
    for (; j + 8 <= n; j += 8)
      _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j))));
    level_portable::V::widen_half(src + j, dst + j, n - j);
  }
  using D = __m256d;
  static constexpr int kDLanes = 4;
  static D dzero() { return _mm256_setzero_pd(); }
  static D dload(const double* p) { return _mm256_loadu_pd(p); }
  static void dstore(double* p, D x) { _mm256_storeu_pd(p, x); }
  static D dadd(D a, D b) { return _mm256_add_pd(a, b); }
  static D dfma(D a, D b, D c) { return _mm256_fmadd_pd(a, b, c); }
  static void to_double(F x, D* out) {
    out[0] = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
    out[1] = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
  }
  static void load_double(const float* p, D* out) {  // each half converted from memory: no lane extraction
    out[0] = _mm256_cvtps_pd(_mm_loadu_ps(p));
    out[1] = _mm256_cvtps_pd(_mm_loadu_ps(p + 4));
  }
  using I = __m256i;
  static I izero() { return _mm256_setzero_si256(); }
  static I iload(const std::int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static void istore(std::int32_t* p, I x) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), x); }
  static I iadd(I a, I b) { return _mm256_add_epi32(a, b); }
  static I isub(I a, I b) { return _mm256_sub_epi32(a, b); }
  static I bits_of(F x) { return _mm256_castps_si256(x); }
  static I ior(I a, I b) { return _mm256_or_si256(a, b); }
  static I ior3(I a, I b, I c) { return _mm256_or_si256(_mm256_or_si256(a, b), c); }
  static bool ibits_clear(I x, std::uint32_t mask) {
    return _mm256_testz_si256(x, _mm256_set1_epi32(static_cast<int>(mask))) != 0;
  }
  // x 2^24 by adding 24 to the exponent field (an integer add: zeros become +-2^-103, which convert to 0)
  static I to_fixed(F x) {
    return _mm256_cvtps_epi32(_mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(x), _mm256_set1_epi32(24 << 23))));
  }
  static double halving(D x) {
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(x), _mm256_extractf128_pd(x, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  }
  static std::int64_t isum(I x) {
    const __m256i w = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(x)),
                                       _mm256_cvtepi32_epi64(_mm256_extracti128_si256(x, 1)));
    const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    return _mm_cvtsi128_si64(_mm_add_epi64(h, _mm_unpackhi_epi64(h, h)));
  }
  static D from_fixed(const std::int32_t* p) {
    return _mm256_mul_pd(_mm256_cvtepi32_pd(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
                         _mm256_set1_pd(0x1p-24));
  }
  static F load_half(const std::uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static F load_bf16(const std::uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  // pack_panel_scalar in 8 x 8 blocks transposed in registers (the scalar form measured 5% of G-Prune's time).
  static void pack_panel(const float* x, index_t ld, index_t rows, index_t d, index_t panel, float* out) {
    const index_t first = panel * kPanel, count = std::min(kPanel, rows - first);
    if (count < kPanel || d % 8 != 0) {
      pack_panel_scalar(x, ld, rows, d, panel, out);
      return;
    }
    float* dst = out + panel * kPanel * d;
    // 64 depths of 8 rows at a time: the 8 source rows (a whole number of pages apart, so they share cache sets)
    // touch 32 lines, within L1's associativity; 48 rows at once thrashed (pack measured 2.7 GB/s).
    for (index_t k0 = 0; k0 < d; k0 += 64)
      for (index_t c = 0; c < kPanel; c += 8)
        for (index_t k = k0; k < std::min(d, k0 + 64); k += 8) {
        const float* src = x + (first + c) * ld + k;
        __m256 r[8], t[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i += 2) {
          t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
          t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
        }
        const __m256 u0 = _mm256_shuffle_ps(t[0], t[2], 0x44), u1 = _mm256_shuffle_ps(t[0], t[2], 0xEE);
        const __m256 u2 = _mm256_shuffle_ps(t[1], t[3], 0x44), u3 = _mm256_shuffle_ps(t[1], t[3], 0xEE);
        const __m256 u4 = _mm256_shuffle_ps(t[4], t[6], 0x44), u5 = _mm256_shuffle_ps(t[4], t[6], 0xEE);
        const __m256 u6 = _mm256_shuffle_ps(t[5], t[7], 0x44), u7 = _mm256_shuffle_ps(t[5], t[7], 0xEE);
        float* o = dst + k * kPanel + c;
        _mm256_storeu_ps(o + 0 * kPanel, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(o + 1 * kPanel, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(o + 2 * kPanel, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(o + 3 * kPanel, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(o + 4 * kPanel, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(o + 5 * kPanel, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(o + 6 * kPanel, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(o + 7 * kPanel, _mm256_permute2f128_ps(u3, u7, 0x31));
      }
  }
};
#include <tokenprune/kernels/level_body.inl>
#include <tokenprune/kernels/level_double.inl>
}  // namespace level_avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,popcnt"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,popcnt,prefer-vector-width=512")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 on its own _mm512_undefined_* in the intrinsics
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
namespace level_avx512 {
inline constexpr Isa kIsa = Isa::avx512;
struct V {
  using F = __m512;
  static constexpr int kLanes = 16, kMR = 8, kNRVectors = 3;  // 24 accumulators of 32 registers
  static constexpr index_t kDepthBlock = 256;  // 64 and 128 measured no faster on a Zen 4
  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float x) { return _mm512_set1_ps(x); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load_once(const float* p) {
    F x = _mm512_loadu_ps(p);
    __asm__("" : "+v"(x));  // x is a register from here on
    return x;
  }
  static void store(float* p, F x) { _mm512_storeu_ps(p, x); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F round_nearest(F x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F select_ge(F x, F t, F e) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, t, _CMP_GE_OQ), e); }
  static unsigned mask_ge(F x, F t) { return _mm512_cmp_ps_mask(x, t, _CMP_GE_OQ); }
  static unsigned mask_positive(F x) { return _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ); }
  static float first(F x) { return _mm512_cvtss_f32(x); }
  static F scale_pow2(F y, F n) {
    const __m512i k = _mm512_cvtps_epi32(n);
    const __m512i k1 = _mm512_srai_epi32(k, 1), k2 = _mm512_sub_epi32(k, k1);
    const __m512i bias = _mm512_set1_epi32(127);
    const F s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k1, bias), 23));
    const F s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k2, bias), 23));
    return _mm512_mul_ps(_mm512_mul_ps(y, s1), s2);
  }
  static void widen_half(const std::uint16_t* src, float* dst, index_t n) {
    index_t j = 0;
    for (; j + 16 <= n; j += 16)
      _mm512_storeu_ps(dst + j, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + j))));
    level_portable::V::widen_half(src + j, dst + j, n - j);
  }
  using D = __m512d;
  static constexpr int kDLanes = 8;
  static D dzero() { return _mm512_setzero_pd(); }
  static D dload(const double* p) { return _mm512_loadu_pd(p); }
  static void dstore(double* p, D x) { _mm512_storeu_pd(p, x); }
  static D dadd(D a, D b) { return _mm512_add_pd(a, b); }
  static D dfma(D a, D b, D c) { return _mm512_fmadd_pd(a, b, c); }
  static void to_double(F x, D* out) {
    out[0] = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
    out[1] = _mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1));
  }
  static void load_double(const float* p, D* out) {
    out[0] = _mm512_cvtps_pd(_mm256_loadu_ps(p));
    out[1] = _mm512_cvtps_pd(_mm256_loadu_ps(p + 8));
  }
  using I = __m512i;
  static I izero() { return _mm512_setzero_si512(); }
  static I iload(const std::int32_t* p) { return _mm512_loadu_si512(p); }
  static void istore(std::int32_t* p, I x) { _mm512_storeu_si512(p, x); }
  static I iadd(I a, I b) { return _mm512_add_epi32(a, b); }
  static I isub(I a, I b) { return _mm512_sub_epi32(a, b); }
  static I bits_of(F x) { return _mm512_castps_si512(x); }
  static I ior(I a, I b) { return _mm512_or_si512(a, b); }
  static I ior3(I a, I b, I c) { return _mm512_ternarylogic_epi32(a, b, c, 0xfe); }  // one instruction
  static bool ibits_clear(I x, std::uint32_t mask) {
    return _mm512_test_epi32_mask(x, _mm512_set1_epi32(static_cast<int>(mask))) == 0;
  }
  static I to_fixed(F x) {
    return _mm512_cvtps_epi32(_mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(x), _mm512_set1_epi32(24 << 23))));
  }
  static double halving(D x) {
    return level_avx2::V::halving(_mm256_add_pd(_mm512_castpd512_pd256(x), _mm512_extractf64x4_pd(x, 1)));
  }
  static std::int64_t isum(I x) {
    return _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(x)),
                                                    _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(x, 1))));
  }
  static D from_fixed(const std::int32_t* p) {
    return _mm512_mul_pd(_mm512_cvtepi32_pd(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))),
                         _mm512_set1_pd(0x1p-24));
  }
  static F load_half(const std::uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F load_bf16(const std::uint16_t* p) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
  static void pack_panel(const float* x, index_t ld, index_t rows, index_t d, index_t panel, float* out) {
    level_avx2::V::pack_panel(x, ld, rows, d, panel, out);
  }
  // rank_key of 16 scores at a time, compared as 8 64-bit keys twice; passing keys compressed in a register and
  // stored whole (8 keys at keys + c never pass the block's end, as c <= i).
  static index_t select_keys(const float* scores, index_t n, std::uint64_t bound, std::uint64_t* keys) {
    const __m512i limit = _mm512_set1_epi64(static_cast<long long>(bound));
    const __m512i negative_zero = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
    const __m512i iota = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
    index_t i = 0, c = 0;
    for (; i + 16 <= n; i += 16) {
      __m512i bits = _mm512_loadu_si512(scores + i);
      bits = _mm512_maskz_mov_epi32(_mm512_cmpneq_epi32_mask(bits, negative_zero), bits);
      const __m512i descending = _mm512_xor_si512(bits, _mm512_andnot_si512(_mm512_srai_epi32(bits, 31), magnitude));
      for (int half = 0; half < 2; ++half) {
        const __m256i high = half == 0 ? _mm512_castsi512_si256(descending) : _mm512_extracti64x4_epi64(descending, 1);
        const __m512i index = _mm512_add_epi64(iota, _mm512_set1_epi64(static_cast<long long>(i + 8 * half)));
        const __m512i key = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(high), 32), index);
        const __mmask8 pass = _mm512_cmple_epu64_mask(key, limit);
        _mm512_storeu_si512(keys + c, _mm512_maskz_compress_epi64(pass, key));
        c += std::popcount(static_cast<unsigned>(pass));
      }
    }
    return select_keys_from(scores, i, n, bound, keys, c);
  }
};
#include <tokenprune/kernels/level_body.inl>
#include <tokenprune/kernels/level_double.inl>
}  // namespace level_avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

#endif  // TOKENPRUNE_X86_DISPATCH

// The kernels of `isa` (portable where the build has no x86 dispatch).
[[nodiscard]] inline const KernelTable& kernels_for(Isa isa) {
#if TOKENPRUNE_X86_DISPATCH
  switch (isa) {
    case Isa::avx512:
      return level_avx512::table();
    case Isa::avx2:
      return level_avx2::table();
    case Isa::portable:
      break;
  }
#else
  (void)isa;
#endif
  return level_portable::table();
}

// The kernels of the level in use (an Error if TOKENPRUNE_ISA names a level this CPU lacks).
[[nodiscard]] inline const KernelTable& active_kernels() { return kernels_for(active_isa()); }

}  // namespace tokenprune::kernels
