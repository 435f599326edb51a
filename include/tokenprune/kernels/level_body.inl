// The hot kernels, written once and compiled once per instruction-set level: kernels/levels.hpp includes this
// file inside namespace level_<name>, after defining that level's vector type V, under the level's target
// pragma. No #include here: everything this file needs is included by levels.hpp before the pragma.
//
// Fixed-order arithmetic: every result is defined by operations whose order and rounding do not depend on the
// level, so all levels give the same bits.
// - A Gram entry is the fp32 FMA chain over the feature index in order: s = fma(a_d-1, b_d-1, ... fma(a_0, b_0, 0)).
//   The micro-kernel vectorizes over output columns, so each lane runs exactly that chain at any width and any
//   depth blocking (a depth block ends with a store and resumes with a load of the same fp32 value).
// - Double-precision reductions use lanes fixed by the element index (element j goes to lane j mod L for a fixed
//   L), each lane a sequential chain, the lanes added in a fixed pairwise order.
// - Every multiply-add is written as an fma, so no compiler contraction (-ffp-contract) has anything to fuse.
// - Every loop over an array of vector registers carries #pragma GCC unroll, and nothing hot is left to the
//   auto-vectorizer: GCC's -O2 (Debian packages, setuptools, RelWithDebInfo) unrolls and vectorizes far less than
//   -O3, and without them the arrays lived on the stack (the Gram ran 2.7x slower at -O2 than at -O3).

// ---------------------------------------------------------------------------------------------------- exp
// exp(x) for fp32, Cody-Waite reduction and a degree-6 polynomial, all steps explicit fmas: x = n ln2 + r with
// n = nearest(x log2e), |r| <= ln2/2, exp(r) = 1 + r + r^2 p(r), then scaled by 2^n in two exact power-of-two
// factors (so results down to the subnormal range round once, like any multiplication). Inputs are clamped to
// [-104, 88]: below, the result is 0 or the smallest subnormal; G-Prune and softmax only feed x <= ~0.
// Max error about 1 ulp.
inline typename V::F exp_fixed(typename V::F x) {
  using F = typename V::F;
  x = V::min(V::max(x, V::set1(-104.0f)), V::set1(88.0f));
  const F n = V::round_nearest(V::mul(x, V::set1(1.44269504088896341f)));
  F r = V::fma(n, V::set1(-0.693359375f), x);  // ln2 split so that n * hi is exact for |n| <= 2^8
  r = V::fma(n, V::set1(2.12194440e-4f), r);
  F p = V::set1(1.9875691500e-4f);
  p = V::fma(p, r, V::set1(1.3981999507e-3f));
  p = V::fma(p, r, V::set1(8.3334519073e-3f));
  p = V::fma(p, r, V::set1(4.1665795894e-2f));
  p = V::fma(p, r, V::set1(1.6666665459e-1f));
  p = V::fma(p, r, V::set1(5.0000001201e-1f));
  const F r2 = V::mul(r, r);
  F y = V::fma(p, r2, r);
  y = V::add(y, V::set1(1.0f));
  return V::scale_pow2(y, n);
}

// -------------------------------------------------------------------------------------------- Gram tiles
// Packed panels: a matrix of rows x d is stored as ceil(rows / kPanel) panels; panel p holds rows
// [p kPanel, p kPanel + kPanel) depth-major: element (p kPanel + c, k) at panel + k kPanel + c, zero beyond rows.

// c (kMR x kNR, row stride ldc) = a b^T over kc depths (or += the values already there when `resume`), for the
// kMR rows at `a` and the kNR columns at `b` in packed panels.
inline void micro_tile(const float* a, const float* b, index_t kc, float* c, index_t ldc, bool resume) {
  using F = typename V::F;
  constexpr int MR = V::kMR, NV = V::kNRVectors, L = V::kLanes;
  F acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
    for (int v = 0; v < NV; ++v) acc[r][v] = resume ? V::load(c + r * ldc + v * L) : V::zero();
#pragma GCC unroll 4
  for (index_t k = 0; k < kc; ++k) {
    const float* bk = b + k * kPanel;
    const float* ak = a + k * kPanel;
    F bv[NV];
#pragma GCC unroll 32
    for (int v = 0; v < NV; ++v) bv[v] = V::load(bk + v * L);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const F ar = V::set1(ak[r]);
#pragma GCC unroll 32
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(ar, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
    for (int v = 0; v < NV; ++v) V::store(c + r * ldc + v * L, acc[r][v]);
}

// out (h x w, row stride ld) = A B^T for rows [i0, i0 + h) of the packed `a` and rows [j0, j0 + w) of the packed
// `b` (i0, j0 multiples of kPanel), over depth d. With `lower`, only micro-tiles holding some entry j <= i are
// computed (entries above the diagonal may be written too and are to be ignored). Depth blocks of V::kDepthBlock
// keep the b block in L1 and the a blocks in L2; they do not change the arithmetic.
inline void gram_tile(const float* a, const float* b, index_t d, index_t i0, index_t h, index_t j0, index_t w,
                      float* out, index_t ld, bool lower) {
  constexpr int MR = V::kMR, NR = V::kNRVectors * V::kLanes;
  static_assert(kPanel % MR == 0 && kPanel % NR == 0, "micro-tiles must tile a panel");
  if (d == 0) {
    for (index_t r = 0; r < h; ++r)
      for (index_t c = 0; c < w; ++c) out[r * ld + c] = 0.0f;
    return;
  }
  alignas(64) float edge[MR * NR];  // a micro-tile that overhangs the output
  constexpr index_t KC = V::kDepthBlock;
  for (index_t k0 = 0; k0 < d; k0 += KC) {
    const index_t kc = d - k0 < KC ? d - k0 : KC;
    const bool resume = k0 > 0;
    for (index_t c0 = 0; c0 < w; c0 += NR) {
      const float* bp = b + ((j0 + c0) / kPanel) * kPanel * d + k0 * kPanel + (j0 + c0) % kPanel;
      const index_t cols = w - c0 < NR ? w - c0 : NR;
      for (index_t r0 = 0; r0 < h; r0 += MR) {
        if (lower && i0 + r0 + MR - 1 < j0 + c0) continue;  // wholly above the diagonal
        const float* ap = a + ((i0 + r0) / kPanel) * kPanel * d + k0 * kPanel + (i0 + r0) % kPanel;
        const index_t rows = h - r0 < MR ? h - r0 : MR;
        float* c = out + r0 * ld + c0;
        if (rows == MR && cols == NR) {
          micro_tile(ap, bp, kc, c, ld, resume);
          continue;
        }
        if (resume)
          for (index_t r = 0; r < rows; ++r)
            for (index_t q = 0; q < cols; ++q) edge[r * NR + q] = c[r * ld + q];
        micro_tile(ap, bp, kc, edge, NR, resume);
        for (index_t r = 0; r < rows; ++r)
          for (index_t q = 0; q < cols; ++q) c[r * ld + q] = edge[r * NR + q];
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ edge weights
// G-Prune's weights on `width` cosines in place: s >= tau ? exp(s / T - max_logit) : 0.
inline std::uint32_t edge_weights(float* s, index_t width, float tau, float temperature, float max_logit) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  const F vt = V::set1(tau), vT = V::set1(temperature), vm = V::set1(max_logit);
  std::uint32_t count = 0;
  index_t j = 0;
  for (; j + L <= width; j += L) {
    const F x = V::load(s + j);
    if (V::mask_ge(x, vt) == 0) {  // no edge among these lanes (most of a sparse graph): no exp to discard
      V::store(s + j, V::zero());
      continue;
    }
    const F e = V::select_ge(x, vt, exp_fixed(V::sub(V::div(x, vT), vm)));
    V::store(s + j, e);
    count += static_cast<std::uint32_t>(std::popcount(V::mask_positive(e)));
  }
  for (; j < width; ++j) {  // the tail as one-lane vectors: the same operations
    const float x = s[j];
    s[j] = x >= tau ? V::first(exp_fixed(V::sub(V::div(V::set1(x), vT), vm))) : 0.0f;
    count += s[j] > 0.0f ? 1u : 0u;
  }
  return count;
}

// Softmax of one row of logits in place: p_j = exp(fma(x_j, scale, -m)) / sum, m = fl(max_j x_j * scale)
// (scale > 0), the sum over 16 fixed lanes reduced pairwise. The shift is one fused operation on every level.
inline void softmax_row(float* p, index_t n, float scale) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  float top = p[0];
  for (index_t j = 1; j < n; ++j) top = p[j] > top ? p[j] : top;
  const F shift = V::set1(-(top * scale)), vs = V::set1(scale);
  index_t j = 0;
  for (; j + L <= n; j += L) V::store(p + j, exp_fixed(V::fma(V::load(p + j), vs, shift)));
  for (; j < n; ++j) p[j] = V::first(exp_fixed(V::fma(V::set1(p[j]), vs, shift)));
  float lanes[16] = {};
  const index_t full = n - n % 16;
  for (index_t t = 0; t < full; t += 16)
#pragma GCC unroll 32
    for (int l = 0; l < 16; ++l) lanes[l] += p[t + l];
  for (index_t t = full; t < n; ++t) lanes[t - full] += p[t];
#pragma GCC unroll 32
  for (int half = 8; half >= 1; half /= 2)
#pragma GCC unroll 32
    for (int l = 0; l < half; ++l) lanes[l] += lanes[l + half];
  const F total = V::set1(lanes[0]);
  for (j = 0; j + L <= n; j += L) V::store(p + j, V::div(V::load(p + j), total));
  for (; j < n; ++j) p[j] = p[j] / lanes[0];
}

// ------------------------------------------------------------------------------------- double reductions
// sum_j x_j^2 in double: 32 lanes (element j in lane j mod 32: several independent vector chains at any width),
// fma chains, reduced by halving. Written in the level's vectors rather than left to the auto-vectorizer, which
// GCC 12 at -O2 (its "very cheap" cost model) does not apply here: normalization ran 3.5x slower than at -O3.
inline double squared_norm(const float* x, index_t d) {
  using D = typename V::D;
  constexpr int kLanes = 32, L = V::kLanes, DL = V::kDLanes, kPerF = L / DL;
  static_assert(kLanes % L == 0 && L % DL == 0);
  D acc[kLanes / DL];
#pragma GCC unroll 32
  for (int v = 0; v < kLanes / DL; ++v) acc[v] = V::dzero();
  const index_t full = d - d % kLanes;
  for (index_t j = 0; j < full; j += kLanes) {
#pragma GCC unroll 32
    for (int c = 0; c < kLanes / L; ++c) {
      D wide[kPerF];
      V::load_double(x + j + c * L, wide);  // lanes c L .. c L + L - 1, lowest first
#pragma GCC unroll 32
      for (int h = 0; h < kPerF; ++h) acc[c * kPerF + h] = V::dfma(wide[h], wide[h], acc[c * kPerF + h]);
    }
  }
  double lanes[kLanes];
#pragma GCC unroll 32
  for (int v = 0; v < kLanes / DL; ++v) V::dstore(lanes + v * DL, acc[v]);
  for (index_t j = full; j < d; ++j) {
    const double v = x[j];
    lanes[j - full] = std::fma(v, v, lanes[j - full]);
  }
#pragma GCC unroll 32
  for (int half = kLanes / 2; half >= 1; half /= 2)
#pragma GCC unroll 32
    for (int l = 0; l < half; ++l) lanes[l] += lanes[l + half];
  return lanes[0];
}

// dst[j] = src[j] / divisor: IEEE division rounds each element once, so every width gives the same bits.
inline void divide_row(const float* src, float* dst, index_t d, float divisor) {
  constexpr int L = V::kLanes;
  const typename V::F q = V::set1(divisor);
  index_t j = 0;
  for (; j + 2 * L <= d; j += 2 * L) {
    V::store(dst + j, V::div(V::load(src + j), q));
    V::store(dst + j + L, V::div(V::load(src + j + L), q));
  }
  for (; j < d; ++j) dst[j] = src[j] / divisor;
}

// sum_j a_j b_j in double: 4 lanes by index mod 4, fma chains, ((l0 + l1) + (l2 + l3)).
inline double dot(const double* a, const double* b, index_t n) {
  double lanes[4] = {};
  const index_t full = n - n % 4;
  for (index_t j = 0; j < full; j += 4)
#pragma GCC unroll 32
    for (int l = 0; l < 4; ++l) lanes[l] = std::fma(a[j + l], b[j + l], lanes[l]);
  for (index_t j = full; j < n; ++j) lanes[j - full] = std::fma(a[j], b[j], lanes[j - full]);
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

// sum_t e_t x_cols(t) of one row of E in double, lanes by column index mod 4 (so a dense row and the compressed
// row of the same graph give the same bits: a zero weight adds exactly nothing). cols == nullptr: dense row.
inline double row_dot(const std::int32_t* cols, const float* e, index_t count, const double* x) {
  double lanes[4] = {};
  if (cols == nullptr) {
    const index_t full = count - count % 4;
    for (index_t t = 0; t < full; t += 4)
#pragma GCC unroll 32
      for (int l = 0; l < 4; ++l) lanes[l] = std::fma(static_cast<double>(e[t + l]), x[t + l], lanes[l]);
    for (index_t t = full; t < count; ++t) lanes[t - full] = std::fma(static_cast<double>(e[t]), x[t], lanes[t - full]);
  } else {
    for (index_t t = 0; t < count; ++t) {
      const std::int32_t j = cols[t];
      lanes[j & 3] = std::fma(static_cast<double>(e[t]), x[j], lanes[j & 3]);
    }
  }
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

// Query rows of 16-bit attention (n values each, widened to fp32 and then to double) into their column sums and
// their row totals. Definition (the same bits at every level):
// - column sum: received[j] = (((received[j] + a_0j) + a_1j) + ...), the rows added one after another in order;
// - row total: element j goes to row lane j mod 32, each lane a sequential chain in j, the lanes reduced by
//   halving (lane l plus lane l + 16, then l + 8, ...); totals[r] = lane 0.
// 32 lanes are several independent vector chains at any width (16 lanes, one chain per 8-lane zmm pair, ran
// latency-bound at 1.6x a read of the maps). Rows are taken one at a time, a whole head per call: the maps are read
// as one sequential stream (blocks of 2 or 4 rows, one load and store of the column sums per block, measured 1.5
// to 2.5 times slower on Zen 5, with or without software prefetch).
inline constexpr int kAttentionRowLanes = 32;
// The maps are one stream read once; the hardware prefetcher alone left the kernels waiting on it (fp32 maps 1.6x
// a read without this on Zen 5; 8 to 16 KB ahead measured alike; see attention_rows for fp32's figures with it).
// A prefetch changes no value.
inline constexpr std::ptrdiff_t kPrefetchBytes = 16384;
// Where the prefetched line goes: l1 (prefetcht0) or l2 (prefetcht2 on x86: L2, not L1). One fp32 row at a time
// on a Zen 4: 1.0 to 1.3x a read of the maps with l2, 1.2 to 1.5x with l1 at the same distance, 1.2 to 1.6x
// without (interleaved micro-benchmark); 16-bit rows measured alike either way (bound by conversions).
enum class PrefetchTo { l1 = 3, l2 = 1 };
template <PrefetchTo To = PrefetchTo::l1, class E>
inline void prefetch_ahead(const E* p) {
  __builtin_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, 0, static_cast<int>(To));
}
template <class Load, class E>
inline double attention_row_of(const E* row, index_t n, double* received) {
  using D = typename V::D;
  constexpr int FL = V::kLanes, DL = V::kDLanes;
  constexpr index_t kStep = kAttentionRowLanes;  // columns per chunk: a multiple of every level's kLanes
  constexpr int NF = kStep / FL, PER_F = FL / DL, NA = kAttentionRowLanes / DL;
  static_assert(kStep % FL == 0 && FL % DL == 0, "lanes must tile a chunk");
  D acc[NA];
#pragma GCC unroll 32
  for (int a = 0; a < NA; ++a) acc[a] = V::dzero();
  index_t j = 0;
  for (; j + kStep <= n; j += kStep) {
    for (index_t c = 0; c < kStep; c += static_cast<index_t>(64 / sizeof(E))) prefetch_ahead(row + j + c);
#pragma GCC unroll 32
    for (int f = 0; f < NF; ++f) {
      D w[PER_F];
      Load::widen(row + j + f * FL, w);
#pragma GCC unroll 32
      for (int q = 0; q < PER_F; ++q) {
        const int d = f * PER_F + q;  // columns j + d DL ...: row lanes d DL ...
        V::dstore(received + j + d * DL, V::dadd(V::dload(received + j + d * DL), w[q]));
        acc[d] = V::dadd(acc[d], w[q]);
      }
    }
  }
  if (j == n) {  // no tail: the same halving in registers (lane l + 16 is vector a + NA / 2, ...), then within one
#pragma GCC unroll 32
    for (int count = NA; count > 1; count /= 2)
#pragma GCC unroll 32
      for (int a = 0; a < count / 2; ++a) acc[a] = V::dadd(acc[a], acc[a + count / 2]);
    return V::halving(acc[0]);
  }
  double lanes[kAttentionRowLanes];
#pragma GCC unroll 32
  for (int a = 0; a < NA; ++a) V::dstore(lanes + a * DL, acc[a]);
  for (; j < n; ++j) {  // the tail columns, after every vector chunk: each lane stays in order of j
    const double v = Load::scalar(row + j);
    received[j] += v;
    lanes[j % kAttentionRowLanes] += v;
  }
#pragma GCC unroll 32
  for (int half = kAttentionRowLanes / 2; half >= 1; half /= 2)
#pragma GCC unroll 32
    for (int l = 0; l < half; ++l) lanes[l] += lanes[l + half];
  return lanes[0];
}
template <class Load, class E>
inline void attention_rows_of(const E* rows, index_t count, index_t stride, index_t n, double* received,
                              double* totals) {
  for (index_t r = 0; r < count; ++r) totals[r] = attention_row_of<Load>(rows + r * stride, n, received);
}

// How each element type is loaded: kLanes values as doubles (kLanes / kDLanes D), and one value (the tail).
struct AttentionHalf {
  static void widen(const std::uint16_t* p, typename V::D* out) { V::to_double(V::load_half(p), out); }
  static double scalar(const std::uint16_t* p) { return static_cast<double>(level_portable::V::load_half(p)); }
};
struct AttentionBf16 {
  static void widen(const std::uint16_t* p, typename V::D* out) { V::to_double(V::load_bf16(p), out); }
  static double scalar(const std::uint16_t* p) { return static_cast<double>(level_portable::V::load_bf16(p)); }
};

// fp32 rows. Definition (the same bits at every level):
// - column sums in blocks of kFp32ColumnBlock rows of a head (rows [16 b, 16 b + 16), the last block shorter): the
//   block's rows are added one after another in fp32 (from +0 at the start of the block), and the block's sum is
//   then added to received[j] in double;
// - row total: element j goes to fp32 lane j mod 64, each lane a sequential chain in j; the 64 lanes are widened
//   and reduced in double by halving (lane l plus lane l + 32, then l + 16, ...).
// The block keeps double rounding where it matters (between blocks; an fp32 sum of 16 values loses ~4 bits to
// their magnitude at worst) and halves the work of a double chain per value: a widening and a double
// load-add-store per 4 or 8 values measured 1.9x a read of the maps on the AVX2 level, 1.4x on AVX-512.
inline constexpr int kFp32RowLanes = 64;
inline constexpr index_t kFp32ColumnBlock = 16;
// One row of a block. Opens: the row starts the block, so the column sums start from it (no load of `partial`);
// Closes: the row ends it, so the sums go to `received` in double (no store of `partial`, which the next block
// opens again). Starting from the row instead of from +0 gives the same bits: x and +0 + x differ only for x = -0,
// and +0 / -0 give the same value in every later sum and at `received` (which starts at +0 and so is never -0).
// Measured on a Zen 4: a separate pass over `partial` per block took 10% of FoPru's time.
template <bool Opens, bool Closes>
inline void attention_row_fp32(const float* row, index_t n, float* partial, double* received, double* total) {
  using F = typename V::F;
  using D = typename V::D;
  constexpr int FL = V::kLanes, DL = V::kDLanes, NA = kFp32RowLanes / FL, ND = kFp32RowLanes / DL;
  static_assert(kFp32RowLanes % FL == 0 && FL % DL == 0, "lanes must tile a chunk");
  // Every loop over the lanes is unrolled, so that acc[] lives in registers: with a loop over them left rolled
  // before the main loop is unrolled, GCC 12 kept acc[] on the stack at avx2 (a load and a store per vector; fp32
  // maps 0.48 against 0.42 ms a head set, Zen 5).
  F acc[NA];
#pragma GCC unroll 16
  for (int a = 0; a < NA; ++a) acc[a] = V::zero();
  index_t j = 0;
  for (; j + kFp32RowLanes <= n; j += kFp32RowLanes) {
#pragma GCC unroll 32
    for (int c = 0; c < kFp32RowLanes; c += 16) prefetch_ahead<PrefetchTo::l2>(row + j + c);  // 64-byte lines
#pragma GCC unroll 16
    for (int a = 0; a < NA; ++a) {
      float* sums = partial + j + a * FL;
      const F x = V::load_once(row + j + a * FL);
      const F column = Opens ? x : V::add(V::load(sums), x);
      acc[a] = V::add(acc[a], x);
      if constexpr (Closes) {
        D wide[FL / DL];
        V::to_double(column, wide);
        double* out = received + j + a * FL;
#pragma GCC unroll 32
        for (int q = 0; q < FL / DL; ++q) V::dstore(out + q * DL, V::dadd(V::dload(out + q * DL), wide[q]));
      } else {
        V::store(sums, column);
      }
    }
  }
  if (j < n) {  // the tail columns, after every vector chunk: each lane stays in order of j
    alignas(64) float lanes[kFp32RowLanes];
#pragma GCC unroll 16
    for (int a = 0; a < NA; ++a) V::store(lanes + a * FL, acc[a]);
    for (index_t t = j; t < n; ++t) {
      partial[t] = Opens ? row[t] : partial[t] + row[t];
      lanes[t % kFp32RowLanes] += row[t];
    }
#pragma GCC unroll 16
    for (int a = 0; a < NA; ++a) acc[a] = V::load(lanes + a * FL);
    if constexpr (Closes)
      for (index_t t = j; t < n; ++t) received[t] += static_cast<double>(partial[t]);
  }
  D wide[ND];
#pragma GCC unroll 16
  for (int a = 0; a < NA; ++a) V::to_double(acc[a], wide + a * (FL / DL));
#pragma GCC unroll 32
  for (int count = ND; count > 1; count /= 2)  // lane l + 32 is vector v + ND / 2, ...; then within one vector
#pragma GCC unroll 32
    for (int v = 0; v < count / 2; ++v) wide[v] = V::dadd(wide[v], wide[v + count / 2]);
  *total = V::halving(wide[0]);
}
// Rows [first_row, first_row + count) of a head of head_rows rows, one at a time with a prefetch into L2;
// `partial` holds the open block's sums. Measured against two rows per pass (one load and store of `partial` for
// both) with a prefetch into L1, interleaved in BM_FoPruRank at 16 x 576 x 576, 1 thread: Zen 4 1.04-1.29x a read
// against 2.4x (micro-benchmark); Zen 5 (avx512, 5 rounds) 1.51-1.70x against 1.56-2.34x, and the qwen2vl case
// 3.3-3.7 against 5.1-5.2 ms. Pairs were the Zen 5's best only before the L2 prefetch existed.
inline void attention_rows(const float* rows, index_t count, index_t stride, index_t n, index_t first_row,
                           index_t head_rows, float* partial, double* received, double* totals) {
  for (index_t r = 0; r < count; ++r) {
    const index_t i = first_row + r;
    const bool opens = i % kFp32ColumnBlock == 0, closes = (i + 1) % kFp32ColumnBlock == 0 || i + 1 == head_rows;
    const float* row = rows + r * stride;
    if (opens) {
      closes ? attention_row_fp32<true, true>(row, n, partial, received, totals + r)
             : attention_row_fp32<true, false>(row, n, partial, received, totals + r);
    } else {
      closes ? attention_row_fp32<false, true>(row, n, partial, received, totals + r)
             : attention_row_fp32<false, false>(row, n, partial, received, totals + r);
    }
  }
}
// fp16 rows, exactly: every fp16 value is a multiple of 2^-24, so sums of up to 8192 of them are exact in double
// and the double path's order does not matter. Rows whose values all have |x| < 2 (attention probabilities; the
// test is one bit, the top exponent bit of the widened values, OR-ed on the way) are summed here in int32
// fixed point (x 2^24 < 2^25, exact): the row total over two vectors of int32 lanes of at most 63 values each, then in int64;
// the column sums in `fixed` over blocks of up to 62 rows, then added to `received` in double. Both are exact,
// so they are the bits of the double path whenever that path is exact too (n <= 4064 and at most 8192 rows per
// column sum: the caller's condition). A row found out of range after it was added (a NaN, an Inf, a raw logit of
// 2 or more) is subtracted again (wrapping int32 arithmetic undoes any addition exactly) and takes the double path;
// after one such row the call checks each row before adding it. One conversion to int32 per value instead of two
// widenings (fp16 to fp32 to double) at half the vector width.
inline constexpr index_t kFixedMaxRows = 62, kFixedLaneValues = 63, kFixedMaxTokens = 4064;
inline constexpr bool kFixedQuads = V::kLanes >= 16;
inline constexpr std::uint16_t kFixedOutOfRange = 0x4000;  // fp16 exponent field >= 16: |x| >= 2, Inf or NaN
inline constexpr std::uint32_t kFixedOutOfRangeWide = 0x40000000;  // the same values widened: fp32 exponent >= 128
inline bool fixed_range(const std::uint16_t* row, index_t n) {  // every |x| < 2 (no NaN or Inf)
  std::uint16_t bits = 0;
  for (index_t j = 0; j < n; ++j) bits = static_cast<std::uint16_t>(bits | row[j]);
  return (bits & kFixedOutOfRange) == 0;
}
inline std::int32_t fixed_scalar(std::uint16_t bits) {  // the tail's value: wraps like the vector conversion
  return level_portable::V::to_fixed(level_portable::V::load_half(&bits));
}
inline std::int32_t wrap_add(std::int32_t a, std::int32_t b) { return level_portable::V::iadd(a, b); }
inline void flush_fixed(std::int32_t* fixed, index_t n, double* received) {
  constexpr int DL = V::kDLanes;
  index_t j = 0;
  for (; j + V::kLanes <= n; j += V::kLanes) {
#pragma GCC unroll 32
    for (int d = 0; d < V::kLanes; d += DL)
      V::dstore(received + j + d, V::dadd(V::dload(received + j + d), V::from_fixed(fixed + j + d)));
    V::istore(fixed + j, V::izero());
  }
  for (; j < n; ++j) {
    received[j] += static_cast<double>(fixed[j]) * 0x1p-24;
    fixed[j] = 0;
  }
}
// Adds R rows (1, 2 or 4) to `fixed` (one load and store of the column sums for all) and sets their totals.
// Returns false, with `fixed` as it was, if any value is out of range.
template <int R>
inline bool attention_rows_fixed(const std::uint16_t* const* row_pointers, index_t n, std::int32_t* fixed,
                                 double* totals) {
  const std::uint16_t* rows[R];  // local copies: the vector stores to `fixed` may alias anything in memory
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) rows[r] = row_pointers[r];
  using I = typename V::I;
  using F = typename V::F;
  // Each row's total goes through NA vectors of int32 lanes (integer sums are exact in any order, so the lane
  // count is free): two, at every level. Four at AVX2 (one per vector of a 32-column step) left GCC 12 spilling
  // them; two ran BM_FoPruRank fp16 about 10% faster on a Zen 3 (0.57 vs 0.63 ms, interleaved runs).
  constexpr int FL = V::kLanes, NI = kAttentionRowLanes / FL, NA = NI < 2 ? NI : 2;
  // Columns before the lanes go to int64: at most kFixedLaneValues values per lane, in whole 32-column steps.
  constexpr index_t kSegment = NA * FL * kFixedLaneValues / kAttentionRowLanes * kAttentionRowLanes;
  static_assert(kSegment >= kAttentionRowLanes);
  std::int64_t total[R] = {};
  // The fp32 bits of every widened value OR-ed (two rows per OR where one instruction takes three inputs): only
  // bit 30, the top exponent bit, is tested: set exactly for |x| >= 2, Inf and NaN.
  I seen = V::izero();
  index_t j = 0;
  while (j + kAttentionRowLanes <= n) {
    const index_t end = std::min(n - n % kAttentionRowLanes, j + kSegment);
    I acc[R][NA];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int a = 0; a < NA; ++a) acc[r][a] = V::izero();
    for (; j < end; j += kAttentionRowLanes) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) prefetch_ahead(rows[r] + j);  // 32 values: one 64-byte line
#pragma GCC unroll 16
      for (int a = 0; a < NI; ++a) {
        I sum = V::iload(fixed + j + a * FL);
        F wide[R];
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) wide[r] = V::load_half(rows[r] + j + a * FL);
#pragma GCC unroll 16
        for (int r = 0; r + 1 < R; r += 2) seen = V::ior3(seen, V::bits_of(wide[r]), V::bits_of(wide[r + 1]));
        if constexpr (R % 2 == 1) seen = V::ior(seen, V::bits_of(wide[R - 1]));
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
          const I x = V::to_fixed(wide[r]);
          sum = V::iadd(sum, x);
          acc[r][a % NA] = V::iadd(acc[r][a % NA], x);
        }
        V::istore(fixed + j + a * FL, sum);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int a = 0; a < NA; ++a) total[r] += V::isum(acc[r][a]);
  }
  std::uint16_t tail_bits = 0;
  for (; j < n; ++j)  // the tail: n - j < 32 values, each its own lane, so no lane passes 63 values
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      tail_bits = static_cast<std::uint16_t>(tail_bits | rows[r][j]);
      const std::int32_t x = fixed_scalar(rows[r][j]);
      fixed[j] = wrap_add(fixed[j], x);
      total[r] += x;
    }
  if (V::ibits_clear(seen, kFixedOutOfRangeWide) && (tail_bits & kFixedOutOfRange) == 0) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) totals[r] = static_cast<double>(total[r]) * 0x1p-24;  // |total| < 2^37: exact
    return true;
  }
  // Undo: the same conversions subtracted (wrapping), so `fixed` is as it was.
  const index_t vector_end = n - n % kAttentionRowLanes;
  for (index_t c = 0; c < vector_end; c += FL) {
    I sum = V::iload(fixed + c);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) sum = V::isub(sum, V::to_fixed(V::load_half(rows[r] + c)));
    V::istore(fixed + c, sum);
  }
  for (index_t c = vector_end; c < n; ++c)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) fixed[c] = level_portable::V::isub(fixed[c], fixed_scalar(rows[r][c]));
  return false;
}
inline void attention_rows_half(const std::uint16_t* rows, index_t count, index_t stride, index_t n, double* received,
                                double* totals, std::int32_t* fixed) {
  if (fixed == nullptr || n > kFixedMaxTokens) {
    attention_rows_of<AttentionHalf>(rows, count, stride, n, received, totals);
    return;
  }
  index_t pending = 0;  // rows in `fixed`
  bool check_first = false;  // after a row out of range: logits, most likely all of them
  for (index_t r = 0; r < count; ++r) {
    if (pending >= kFixedMaxRows - 1) {
      flush_fixed(fixed, n, received);
      pending = 0;
    }
    const std::uint16_t* row = rows + r * stride;
    if (check_first && !fixed_range(row, n)) {
      totals[r] = attention_row_of<AttentionHalf>(row, n, received);
      continue;
    }
    // Four rows per pass where the registers hold their lanes (AVX-512: 2.1x a read of the maps, against 2.3x by
    // pairs; AVX2 spills them), else pairs: fewer loads and stores of the column sums.
    if (kFixedQuads && !check_first && r + 3 < count && pending + 4 <= kFixedMaxRows) {
      const std::uint16_t* quad[4] = {row, row + stride, row + 2 * stride, row + 3 * stride};
      if (attention_rows_fixed<4>(quad, n, fixed, totals + r)) {
        pending += 4;
        r += 3;
        continue;
      }
      check_first = true;
      --r;
      continue;
    }
    if (r + 1 < count && (!check_first || fixed_range(row + stride, n))) {
      const std::uint16_t* pair[2] = {row, row + stride};
      if (attention_rows_fixed<2>(pair, n, fixed, totals + r)) {
        pending += 2;
        ++r;
        continue;
      }
      check_first = true;
      --r;  // both rows again, one at a time, each checked first
      continue;
    }
    if (attention_rows_fixed<1>(&row, n, fixed, totals + r)) {
      ++pending;
      continue;
    }
    check_first = true;
    totals[r] = attention_row_of<AttentionHalf>(row, n, received);
  }
  if (pending > 0) flush_fixed(fixed, n, received);
}
inline void attention_rows_bf16(const std::uint16_t* rows, index_t count, index_t stride, index_t n, double* received,
                                double* totals) {
  attention_rows_of<AttentionBf16>(rows, count, stride, n, received, totals);
}

// ------------------------------------------------------------------------------------ element-wise passes
// acc[j] += double(x[r stride + j]) for each row r in order: one add per element, so any vector width gives the
// same bits ([CLS] head sums, VisionZip's key means and merged tokens). A block of columns takes every row before
// it is stored: one load and store of the sums for all rows.
struct WidenFp32 {
  static void widen(const float* p, typename V::D* out) { V::load_double(p, out); }
  static double scalar(const float* p) { return static_cast<double>(*p); }
};
template <class Load, class E>
inline void accumulate_of(const E* x, index_t rows, index_t stride, index_t n, double* acc) {
  constexpr int FL = V::kLanes, DL = V::kDLanes;
  index_t j = 0;
  for (; j + FL <= n; j += FL) {
    typename V::D sum[FL / DL];
#pragma GCC unroll 32
    for (int q = 0; q < FL / DL; ++q) sum[q] = V::dload(acc + j + q * DL);
    for (index_t r = 0; r < rows; ++r) {
      typename V::D w[FL / DL];
      Load::widen(x + r * stride + j, w);
#pragma GCC unroll 32
      for (int q = 0; q < FL / DL; ++q) sum[q] = V::dadd(sum[q], w[q]);
    }
#pragma GCC unroll 32
    for (int q = 0; q < FL / DL; ++q) V::dstore(acc + j + q * DL, sum[q]);
  }
  for (; j < n; ++j)
    for (index_t r = 0; r < rows; ++r) acc[j] += Load::scalar(x + r * stride + j);
}
inline void accumulate(const float* x, index_t rows, index_t stride, index_t n, double* acc) {
  accumulate_of<WidenFp32>(x, rows, stride, n, acc);
}
inline void accumulate_half(const std::uint16_t* x, index_t rows, index_t stride, index_t n, double* acc) {
  accumulate_of<AttentionHalf>(x, rows, stride, n, acc);
}
inline void accumulate_bf16(const std::uint16_t* x, index_t rows, index_t stride, index_t n, double* acc) {
  accumulate_of<AttentionBf16>(x, rows, stride, n, acc);
}

// True when none of p[0, n) is NaN or Inf (exponent field all ones). Integer lanes OR-ed, which the compiler
// vectorizes at the level's width, and which no floating-point flag (-ffast-math, -ffinite-math-only) can fold
// away (Eigen's allFinite() stayed scalar: 0.33 ms per 577 x 1024 against 0.048 ms for a copy).
inline bool all_finite(const float* p, index_t n) {
  constexpr int kLanes = 16;
  constexpr std::uint32_t kExponent = 0x7f800000u;
  std::uint32_t lanes[kLanes] = {};
  index_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
#pragma GCC unroll 32
    for (int l = 0; l < kLanes; ++l) {
      std::uint32_t bits;
      std::memcpy(&bits, p + j + l, sizeof bits);
      lanes[l] |= (bits & kExponent) == kExponent;
    }
  std::uint32_t any = 0;
  for (; j < n; ++j) {
    std::uint32_t bits;
    std::memcpy(&bits, p + j, sizeof bits);
    any |= (bits & kExponent) == kExponent;
  }
#pragma GCC unroll 32
  for (int l = 0; l < kLanes; ++l) any |= lanes[l];
  return any == 0;
}

// ------------------------------------------------------------------------------------------ row hashing
// A hash of a row's values (+0 and -0 alike) for grouping identical tokens: 64 independent FNV-style 32-bit
// lanes (element j in lane j mod 64: the multiply's latency spread over several vector chains), folded into
// 64 bits. Equal rows hash equal; the rare collision is resolved
// by comparing rows. Integer arithmetic: the same value on every level.
inline std::uint64_t row_hash(const float* row, index_t d) {
  constexpr int kLanes = 64;
  std::uint32_t lanes[kLanes];
  for (std::uint32_t l = 0; l < kLanes; ++l) lanes[l] = 2166136261u + l;
  const index_t full = d - d % kLanes;
  for (index_t j = 0; j < full; j += kLanes)
    for (index_t l = 0; l < kLanes; ++l) {
      std::uint32_t bits;
      std::memcpy(&bits, row + j + l, sizeof bits);
      bits = row[j + l] == 0.0f ? 0u : bits;
      lanes[l] = (lanes[l] ^ bits) * 16777619u;
    }
  for (index_t j = full; j < d; ++j) {
    std::uint32_t bits;
    std::memcpy(&bits, row + j, sizeof bits);
    bits = row[j] == 0.0f ? 0u : bits;
    lanes[j - full] = (lanes[j - full] ^ bits) * 16777619u;
  }
  std::uint64_t h = 1469598103934665603ull;
  for (std::uint32_t lane : lanes) h = (h ^ lane) * 1099511628211ull;
  return h;
}

// ------------------------------------------------------------------------------------------- conversions
inline void widen_half(const std::uint16_t* src, float* dst, index_t n) { V::widen_half(src, dst, n); }
inline void pack_panel(const float* x, index_t ld, index_t rows, index_t d, index_t panel, float* out) {
  V::pack_panel(x, ld, rows, d, panel, out);
}
inline void widen_bf16(const std::uint16_t* src, float* dst, index_t n) {  // exact: the 16 bits on top of zeros
  index_t j = 0;
  for (; j + V::kLanes <= n; j += V::kLanes) V::store(dst + j, V::load_bf16(src + j));
  auto* out = reinterpret_cast<std::uint32_t*>(dst);
  for (; j < n; ++j) out[j] = static_cast<std::uint32_t>(src[j]) << 16;
}

// Defined in level_double.inl (included after this file).
inline void cdpruner_row(const float* sj, const double* w, double wj, const double* coef, const double* chol,
                         index_t stride, index_t t, double root, double* row, double* gain, index_t n);
inline void evs_dot_norm(const float* const* a, const float* const* b, index_t count, index_t d, double* dot,
                         double* norm);

// The table levels.hpp hands out.
inline const KernelTable& table() {
  static constexpr KernelTable kernels{.isa = kIsa,
                                       .micro_rows = V::kMR,
                                       .micro_cols = V::kNRVectors * V::kLanes,
                                       .gram_tile = &gram_tile,
                                       .edge_weights = &edge_weights,
                                       .softmax_row = &softmax_row,
                                       .squared_norm = &squared_norm,
                                       .divide_row = &divide_row,
                                       .dot = &dot,
                                       .row_dot = &row_dot,
                                       .attention_rows = &attention_rows,
                                       .attention_rows_half = &attention_rows_half,
                                       .attention_rows_bf16 = &attention_rows_bf16,
                                       .accumulate = &accumulate,
                                       .accumulate_half = &accumulate_half,
                                       .accumulate_bf16 = &accumulate_bf16,
                                       .all_finite = &all_finite,
                                       .widen_half = &widen_half,
                                       .widen_bf16 = &widen_bf16,
                                       .pack_panel = &pack_panel,
                                       .row_hash = &row_hash,
                                       .cdpruner_row = &cdpruner_row,
                                       .evs_dot_norm = &evs_dot_norm,
                                       .select_keys = &V::select_keys};
  return kernels;
}
