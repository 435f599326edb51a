// Double-precision kernels of the pruners, written once and compiled once per instruction-set level: like
// level_body.inl, kernels/levels.hpp includes this file inside namespace level_<name> (right after
// level_body.inl) under the level's target pragma, so the lane loops below become AVX2 / AVX-512 code (and an
// std::fma one instruction) without any flag in the engine's build. No #include here.
//
// Fixed-order arithmetic (the same bits at every level): every result element is the same chain of IEEE double
// operations at any vector width; lanes are fixed by the element index and only ever hold independent elements
// or the fixed lanes of a reduction.

// ------------------------------------------------------------------------------------ CDPruner's greedy
// One step of the incremental Cholesky form of the DPP greedy (pruners/cdpruner.hpp, greedy()), for the pick j
// as pick number t: for every i in [0, n), in this order per element,
//   r = (wj * double(sj[i])) * w[i];                          // L_ji = w_j S_ji w_i
//   r = fma(coef[p], chol[p * stride + i], r)  for p = 0 .. t-1 // coef[p] = -c_p[j]
//   r = r / root;  row[i] = r;  gain[i] = fma(-r, r, gain[i]);
// sj is row j of S (sj[j] = 1), row = c_t (not one of the t rows read). Blocks of kDppBlock elements keep r in
// registers over the whole p chain (one pass over the t rows instead of t passes over row).
inline constexpr int kDppBlock = 32;
inline void cdpruner_row(const float* sj, const double* w, double wj, const double* coef, const double* chol,
                         index_t stride, index_t t, double root, double* row, double* gain, index_t n) {
  index_t i0 = 0;
  for (; i0 + kDppBlock <= n; i0 += kDppBlock) {
    double r[kDppBlock];
#pragma GCC unroll 32
    for (int l = 0; l < kDppBlock; ++l) {
      const double left = wj * static_cast<double>(sj[i0 + l]);
      r[l] = left * w[i0 + l];
    }
    for (index_t p = 0; p < t; ++p) {
      const double c = coef[p];
      const double* cp = chol + p * stride + i0;
#pragma GCC unroll 32
      for (int l = 0; l < kDppBlock; ++l) r[l] = std::fma(c, cp[l], r[l]);
    }
#pragma GCC unroll 32
    for (int l = 0; l < kDppBlock; ++l) {
      const double v = r[l] / root;
      row[i0 + l] = v;
      gain[i0 + l] = std::fma(-v, v, gain[i0 + l]);
    }
  }
  for (index_t i = i0; i < n; ++i) {
    const double left = wj * static_cast<double>(sj[i]);
    double r = left * w[i];
    for (index_t p = 0; p < t; ++p) r = std::fma(coef[p], chol[p * stride + i], r);
    const double v = r / root;
    row[i] = v;
    gain[i] = std::fma(-v, v, gain[i]);
  }
}

// ------------------------------------------------------------------------------------------- EVS's cosine
// dot(a_r, b_r) and |a_r|^2 of `count` pairs of fp32 rows in double (pruners/evs.hpp): element j in lane j mod 8,
// each lane a sequential chain of exact products (a float times a float is exact in double, so the product
// rounds nothing and a multiply then add is the same as an fma: written as mul + add so that the portable level
// makes no libm call), the lanes added pairwise (l + 4, then l + 2, then l + 1). b == nullptr: |a_r|^2 only,
// dot[r] = 0. Rows go two at a time (the 8 lanes of one row are only 4 add chains: two rows hide the latency).
// The 8 lanes are two GCC / Clang vectors of 4 doubles (one ymm each, or two xmm at the baseline): plain lane loops
// came out half scalar at -O3 (the loop vectorizer took the norm's lanes apart) and one vector of 8 spilled at AVX2.
inline constexpr int kEvsLanes = 8;

// Adds the tail elements [full, d) to lanes nl / dl (element j in lane j - full) and reduces them pairwise.
template <bool kWithB>
inline void evs_finish(double* nl, double* dl, const float* a, const float* b, index_t full, index_t d, double* dot,
                       double* norm) {
  for (index_t j = full; j < d; ++j) {
    const double x = a[j];
    const double xx = x * x;
    nl[j - full] += xx;
    if constexpr (kWithB) {
      const double xy = x * static_cast<double>(b[j]);
      dl[j - full] += xy;
    }
  }
#pragma GCC unroll 32
  for (int half = kEvsLanes / 2; half >= 1; half /= 2)
#pragma GCC unroll 32
    for (int l = 0; l < half; ++l) {
      nl[l] += nl[l + half];
      dl[l] += dl[l + half];
    }
  *dot = dl[0];
  *norm = nl[0];
}

#if defined(__GNUC__) || defined(__clang__)
typedef double EvsLanes __attribute__((vector_size(4 * sizeof(double))));  // lanes 0-3 and 4-7: two of them
struct EvsSums {
  EvsLanes n0, n1, d0, d1;  // named, not an array: kept in registers at -O2 too
};
template <bool kWithB>
inline void evs_step(EvsSums& s, const float* a, const float* b) {
  const EvsLanes x0 = {a[0], a[1], a[2], a[3]};  // one vcvtps2pd (a __builtin_convertvector took five)
  const EvsLanes x1 = {a[4], a[5], a[6], a[7]};
  const EvsLanes xx0 = x0 * x0, xx1 = x1 * x1;
  s.n0 += xx0;
  s.n1 += xx1;
  if constexpr (kWithB) {
    const EvsLanes y0 = {b[0], b[1], b[2], b[3]};
    const EvsLanes y1 = {b[4], b[5], b[6], b[7]};
    const EvsLanes xy0 = x0 * y0, xy1 = x1 * y1;
    s.d0 += xy0;
    s.d1 += xy1;
  }
}
template <bool kWithB>
inline void evs_done(const EvsSums& s, const float* a, const float* b, index_t full, index_t d, double* dot,
                     double* norm) {
  double nl[kEvsLanes], dl[kEvsLanes];
#pragma GCC unroll 32
  for (int l = 0; l < 4; ++l) {
    nl[l] = s.n0[l];
    nl[l + 4] = s.n1[l];
    dl[l] = s.d0[l];
    dl[l + 4] = s.d1[l];
  }
  evs_finish<kWithB>(nl, dl, a, b, full, d, dot, norm);
}
// AVX-512: the 8 lanes are one zmm, so a row needs two accumulators and four rows run at once (eight add
// chains in flight): half the operations of the two-ymm form (EVS 16 x 576 x 1280: 3.9 ms before).
typedef double EvsWide __attribute__((vector_size(kEvsLanes * sizeof(double))));
template <bool kWithB>
inline void evs_rows_wide(const float* const* a, const float* const* b, index_t d, double* dot, double* norm) {
  constexpr int R = 4;
  const index_t full = d - d % kEvsLanes;
  EvsWide n[R] = {}, t[R] = {};
  for (index_t j = 0; j < full; j += kEvsLanes)
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) {
      const float* x = a[r] + j;
      const EvsWide xv = {x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]};  // one vcvtps2pd
      const EvsWide xx = xv * xv;
      n[r] += xx;
      if constexpr (kWithB) {
        const float* y = b[r] + j;
        const EvsWide yv = {y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]};
        const EvsWide xy = xv * yv;
        t[r] += xy;
      }
    }
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r) {
    double nl[kEvsLanes], dl[kEvsLanes];
#pragma GCC unroll 32
    for (int l = 0; l < kEvsLanes; ++l) {
      nl[l] = n[r][l];
      dl[l] = t[r][l];
    }
    evs_finish<kWithB>(nl, dl, a[r], kWithB ? b[r] : nullptr, full, d, dot + r, norm + r);
  }
}
template <bool kWithB>
inline void evs_rows(const float* const* a, const float* const* b, index_t count, index_t d, double* dot,
                     double* norm) {
  const index_t full = d - d % kEvsLanes;
  index_t r = 0;
  if constexpr (V::kLanes >= 16)
    for (; r + 4 <= count; r += 4) evs_rows_wide<kWithB>(a + r, kWithB ? b + r : nullptr, d, dot + r, norm + r);
  for (; r + 2 <= count; r += 2) {
    const float *a0 = a[r], *a1 = a[r + 1];
    const float *b0 = kWithB ? b[r] : nullptr, *b1 = kWithB ? b[r + 1] : nullptr;
    EvsSums s0 = {}, s1 = {};
    for (index_t j = 0; j < full; j += kEvsLanes) {
      evs_step<kWithB>(s0, a0 + j, kWithB ? b0 + j : nullptr);
      evs_step<kWithB>(s1, a1 + j, kWithB ? b1 + j : nullptr);
    }
    evs_done<kWithB>(s0, a0, b0, full, d, dot + r, norm + r);
    evs_done<kWithB>(s1, a1, b1, full, d, dot + r + 1, norm + r + 1);
  }
  if (r < count) {
    const float* a0 = a[r];
    const float* b0 = kWithB ? b[r] : nullptr;
    EvsSums s0 = {};
    for (index_t j = 0; j < full; j += kEvsLanes) evs_step<kWithB>(s0, a0 + j, kWithB ? b0 + j : nullptr);
    evs_done<kWithB>(s0, a0, b0, full, d, dot + r, norm + r);
  }
}
#else
template <bool kWithB>
inline void evs_rows(const float* const* a, const float* const* b, index_t count, index_t d, double* dot,
                     double* norm) {
  const index_t full = d - d % kEvsLanes;
  for (index_t r = 0; r < count; ++r) {
    const float* ar = a[r];
    const float* br = kWithB ? b[r] : nullptr;
    double nl[kEvsLanes] = {}, dl[kEvsLanes] = {};
    for (index_t j = 0; j < full; j += kEvsLanes)
#pragma GCC unroll 32
      for (int l = 0; l < kEvsLanes; ++l) {
        const double x = ar[j + l];
        const double xx = x * x;
        nl[l] += xx;
        if constexpr (kWithB) {
          const double xy = x * static_cast<double>(br[j + l]);
          dl[l] += xy;
        }
      }
    evs_finish<kWithB>(nl, dl, ar, br, full, d, dot + r, norm + r);
  }
}
#endif

inline void evs_dot_norm(const float* const* a, const float* const* b, index_t count, index_t d, double* dot,
                         double* norm) {
  if (b == nullptr) {
    evs_rows<false>(a, nullptr, count, d, dot, norm);
  } else {
    evs_rows<true>(a, b, count, d, dot, norm);
  }
}
