// Instruction-set levels (core/isa.hpp, kernels/levels.hpp): every level this CPU runs must give the same bits,
// for each kernel against an independent spelling of its fixed-order definition, and for whole pruners. Levels
// the CPU lacks cannot run here; CI runs on x86 machines with at least AVX2, where two levels are compared.

#include "catch.hpp"
#include "isa_levels.hpp"
#include "synthetic.hpp"

#include <tokenprune/tokenprune.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <random>
#include <string>
#include <limits>
#include <vector>

using namespace tokenprune;

namespace {

using tokenprune::testing::IsaGuard;
std::vector<Isa> levels() { return tokenprune::testing::supported_levels(); }

std::vector<float> normal_values(std::size_t count, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(count);
  for (auto& x : v) x = normal(rng);
  return v;
}

std::vector<std::uint32_t> bits_of(std::span<const float> values) {
  std::vector<std::uint32_t> out(values.size());
  std::memcpy(out.data(), values.data(), values.size() * sizeof(float));
  return out;
}

RowMatrix<float> image_like(index_t n, index_t d, unsigned seed) {
  return tokenprune::testing::image_like(n, d, seed, 0.35f);
}

}  // namespace

TEST_CASE("levels: this CPU runs portable and, in CI on x86, a SIMD level", "[levels]") {
  const auto supported = levels();
  REQUIRE(!supported.empty());
  CHECK(supported.back() == Isa::portable);
  const char* ci = std::getenv("CI");
#if TOKENPRUNE_X86_DISPATCH
  if (ci != nullptr && std::string(ci) == "true") CHECK(supported.size() >= 2);  // else nothing is compared
#else
  (void)ci;
#endif
  CHECK(supported_isas().find("portable") != std::string::npos);
}

TEST_CASE("levels: set_isa rejects unknown names and levels this CPU lacks", "[levels]") {
  IsaGuard guard;
  try {
    set_isa("avx1024");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.argument() == "isa");
    CHECK(e.value() == "avx1024");
  }
  for (Isa isa : kAllIsas) {
    if (isa_supported(isa)) {
      set_isa(isa);
      CHECK(active_isa() == isa);
      CHECK(kernels::active_kernels().isa == isa);
    } else {
      CHECK_THROWS_AS(set_isa(isa), Error);
    }
  }
  set_isa("auto");
  CHECK(active_isa() == best_isa());
}

TEST_CASE("levels: each Gram entry is the in-order fp32 fma chain, on every level", "[levels]") {
  // Sizes with tails everywhere: rows and columns not multiples of any micro-tile, depth past every level's depth
  // block (256 at portable and avx512, 64 at avx2: 293 is 1 block and a tail there, 4 blocks and a tail at avx2).
  // Depths with and without a tail of 8 (the x86 levels pack whole 8 x 8 blocks in registers).
  const index_t m = 101, n = 77, d = GENERATE(256 + 37, 256 + 40);
  const auto a = normal_values(static_cast<std::size_t>(m * d), 1);
  const auto b = normal_values(static_cast<std::size_t>(n * d), 2);
  std::vector<float> expected(static_cast<std::size_t>(m * n));
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      float s = 0.0f;
      for (index_t k = 0; k < d; ++k) s = std::fma(a[i * d + k], b[j * d + k], s);
      expected[i * n + j] = s;
    }
  IsaGuard guard;
  for (Isa isa : levels()) {
    INFO("level " << isa_name(isa));
    set_isa(isa);
    kernels::GramWorkspace workspace;
    std::vector<float> out(static_cast<std::size_t>(m * n), -1.0f);
    workspace.product(ConstRowMap<float>(a.data(), m, d, Eigen::OuterStride<>(d)),
                      ConstRowMap<float>(b.data(), n, d, Eigen::OuterStride<>(d)), out.data(), n);
    CHECK(bits_of(out) == bits_of(expected));
  }
}

TEST_CASE("levels: the lower Gram of a multi-tile input is the same chain, on every level and thread count", "[levels]") {
  const index_t n = 2 * kernels::kTile + 29, d = 67;
  auto x = normal_values(static_cast<std::size_t>(n * d), 3);
  const ConstRowMap<float> u(x.data(), n, d, Eigen::OuterStride<>(d));
  IsaGuard guard;
  for (Isa isa : levels()) {
    INFO("level " << isa_name(isa));
    set_isa(isa);
    kernels::GramWorkspace workspace;
    std::vector<float> out(static_cast<std::size_t>(n * n), 0.0f);
    workspace.lower_gram(
        u, n, true, [&](index_t i0) { return out.data() + i0 * n; }, [](float*, index_t, index_t, index_t, index_t, index_t) {},
        [](index_t, index_t) {});
    std::size_t wrong = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j <= i; ++j) {
        float s = 0.0f;
        for (index_t k = 0; k < d; ++k) s = std::fma(x[i * d + k], x[j * d + k], s);
        wrong += std::bit_cast<std::uint32_t>(s) != std::bit_cast<std::uint32_t>(out[i * n + j]);
      }
    CHECK(wrong == 0);
  }
}

TEST_CASE("levels: exp within 2 ulp of the true value and bitwise equal across levels", "[levels]") {
  // edge_weights with tau below every input, T = 1 and no shift is exp(x) itself.
  std::vector<float> inputs;
  for (float x = -100.0f; x <= 0.5f; x += 0.0137f) inputs.push_back(x);
  inputs.push_back(0.0f);
  inputs.push_back(-0.0f);
  inputs.push_back(-87.5f);  // subnormal results
  std::vector<std::uint32_t> first;
  for (Isa isa : levels()) {
    INFO("level " << isa_name(isa));
    std::vector<float> e = inputs;
    kernels::kernels_for(isa).edge_weights(e.data(), static_cast<index_t>(e.size()), -1e30f, 1.0f, 0.0f);
    int worst = 0;
    for (std::size_t t = 0; t < e.size(); ++t) {
      const float truth = static_cast<float>(std::exp(static_cast<double>(inputs[t])));
      if (truth < 1.17549435e-38f) continue;  // subnormal: absolute error checked below
      worst = std::max(worst, std::abs(static_cast<int>(std::bit_cast<std::int32_t>(e[t]) - std::bit_cast<std::int32_t>(truth))));
    }
    CHECK(worst <= 2);
    CHECK(std::abs(e.back() - static_cast<float>(std::exp(-87.5))) <= 2e-45f);
    if (first.empty()) first = bits_of(e);
    CHECK(bits_of(e) == first);
  }
}

TEST_CASE("levels: weights, softmax and double reductions give the same bits on every level", "[levels]") {
  const index_t n = 1000 + 13;
  const auto x = normal_values(static_cast<std::size_t>(n), 5);
  std::vector<double> xd(x.begin(), x.end()), yd(xd.rbegin(), xd.rend());
  std::vector<std::int32_t> cols;
  std::vector<float> sparse_e;
  for (index_t j = 0; j < n; j += 3) {
    cols.push_back(static_cast<std::int32_t>(j));
    sparse_e.push_back(std::abs(x[static_cast<std::size_t>(j)]));
  }
  // The documented orders, spelled out independently.
  double norm_lanes[32] = {};
  for (index_t j = 0; j < n; ++j) norm_lanes[j % 32] = std::fma(double(x[j]), double(x[j]), norm_lanes[j % 32]);
  for (int half = 16; half >= 1; half /= 2)  // lane l plus lane l + half
    for (int l = 0; l < half; ++l) norm_lanes[l] += norm_lanes[l + half];
  const double norm = norm_lanes[0];
  double dot_lanes[4] = {};
  for (index_t j = 0; j < n; ++j) dot_lanes[j % 4] = std::fma(xd[j], yd[j], dot_lanes[j % 4]);
  const double dot = (dot_lanes[0] + dot_lanes[1]) + (dot_lanes[2] + dot_lanes[3]);
  double sparse_lanes[4] = {};
  for (std::size_t t = 0; t < cols.size(); ++t)
    sparse_lanes[cols[t] & 3] = std::fma(double(sparse_e[t]), yd[cols[t]], sparse_lanes[cols[t] & 3]);
  const double sparse = (sparse_lanes[0] + sparse_lanes[1]) + (sparse_lanes[2] + sparse_lanes[3]);
  // The same sparse row stored densely (zeros between) sums to the same bits.
  std::vector<float> dense_e(static_cast<std::size_t>(n), 0.0f);
  for (std::size_t t = 0; t < cols.size(); ++t) dense_e[cols[t]] = sparse_e[t];

  // Attention rows: row lane j mod 32, lanes halved; column sums added row after row.
  auto lanes32 = [](const std::vector<double>& v) {
    double lanes[32] = {};
    for (std::size_t j = 0; j < v.size(); ++j) lanes[j % 32] += v[j];
    for (int half = 16; half >= 1; half /= 2)
      for (int l = 0; l < half; ++l) lanes[l] += lanes[l + half];
    return lanes[0];
  };
  // fp32 attention rows: 64 fp32 lanes (lane j mod 64), widened and halved in double; column sums in fp32 over
  // blocks of 16 rows of a head, each block then added in double.
  auto lanes64 = [](const float* v, index_t count) {
    float lanes[64] = {};
    for (index_t j = 0; j < count; ++j) lanes[j % 64] += v[j];
    double wide[64];
    for (int l = 0; l < 64; ++l) wide[l] = lanes[l];
    for (int half = 32; half >= 1; half /= 2)
      for (int l = 0; l < half; ++l) wide[l] += wide[l + half];
    return wide[0];
  };
  const double row_total = lanes64(x.data(), n);
  const index_t head_rows = 37;  // two full blocks of 16 and a short one
  const auto head32 = normal_values(static_cast<std::size_t>(head_rows * (16 * 37 + 14)), 11);
  std::vector<double> head32_received(static_cast<std::size_t>(16 * 37 + 9), 0.25), head32_totals;
  {
    const index_t hn = 16 * 37 + 9, hstride = hn + 5;
    std::vector<float> block(static_cast<std::size_t>(hn), 0.0f);
    for (index_t r = 0; r < head_rows; ++r) {
      for (index_t j = 0; j < hn; ++j) block[j] += head32[r * hstride + j];
      head32_totals.push_back(lanes64(head32.data() + r * hstride, hn));
      if ((r + 1) % 16 == 0 || r + 1 == head_rows)
        for (index_t j = 0; j < hn; ++j) head32_received[j] += std::exchange(block[j], 0.0f);
    }
  }
  const index_t rows_count = 11, rows_n = 16 * 37 + 9, rows_stride = rows_n + 5;
  const auto rows = normal_values(static_cast<std::size_t>(rows_count * rows_stride), 7);
  std::vector<std::uint16_t> rows_half(rows.size()), rows_bf16(rows.size());
  for (std::size_t t = 0; t < rows.size(); ++t) {
    const float small = (t / static_cast<std::size_t>(rows_stride)) % 4 == 3 ? 1.0f : 0.25f;  // most rows |x| <= 1
    rows_half[t] = Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(std::clamp(rows[t] * small, -1.0f, 1.0f)));
    if (t == 5 * static_cast<std::size_t>(rows_stride) + 3) rows_half[t] = Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(1e-7f));
    if (t / static_cast<std::size_t>(rows_stride) == 6 && t % 5 == 0)  // +0, -0, the smallest subnormals, +-1
      rows_half[t] = std::array<std::uint16_t, 6>{0x0000, 0x8000, 0x0001, 0x8001, 0x3c00, 0xbc00}[t / 5 % 6];
    // Out of the fixed-point range (|x| >= 2), found after the row was added: logits in row 3 (vector part), one
    // 2.0 in the tail of row 8; row 9 holds the largest value in range (1.999, 0x3fff) and -1.999.
    const std::size_t row = t / static_cast<std::size_t>(rows_stride), col = t % static_cast<std::size_t>(rows_stride);
    if (row == 3) rows_half[t] = Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(rows[t] * 4.0f));
    if (row == 8 && col == 590) rows_half[t] = 0x4000;
    if (row == 9 && col % 7 == 0) rows_half[t] = col % 2 == 0 ? 0x3fff : 0xbfff;
    rows_bf16[t] = Eigen::numext::bit_cast<std::uint16_t>(Eigen::bfloat16(rows[t]));
  }
  auto expected_rows = [&](auto value) {
    std::vector<double> received(static_cast<std::size_t>(rows_n), 0.25), totals;
    for (index_t r = 0; r < rows_count; ++r) {
      std::vector<double> row(static_cast<std::size_t>(rows_n));
      for (index_t j = 0; j < rows_n; ++j) row[j] = value(r * rows_stride + j);
      for (index_t j = 0; j < rows_n; ++j) received[j] += row[j];
      totals.push_back(lanes32(row));
    }
    return std::pair{received, totals};
  };
  const auto [half_received, half_totals] =
      expected_rows([&](index_t t) { return double(Eigen::numext::bit_cast<Eigen::half>(rows_half[t])); });
  const auto [bf16_received, bf16_totals] =
      expected_rows([&](index_t t) { return double(Eigen::numext::bit_cast<Eigen::bfloat16>(rows_bf16[t])); });

  std::vector<std::uint32_t> weights0, softmax0;
  std::vector<double> received0;
  double total0 = 0.0;
  for (Isa isa : levels()) {
    INFO("level " << isa_name(isa));
    const kernels::KernelTable& k = kernels::kernels_for(isa);
    CHECK(k.squared_norm(x.data(), n) == norm);
    CHECK(k.dot(xd.data(), yd.data(), n) == dot);
    CHECK(k.row_dot(cols.data(), sparse_e.data(), static_cast<index_t>(cols.size()), yd.data()) == sparse);
    CHECK(k.row_dot(nullptr, dense_e.data(), n, yd.data()) == sparse);
    std::vector<float> w(x.begin(), x.end());
    for (auto& v : w) v = std::tanh(v);  // cosines in (-1, 1)
    k.edge_weights(w.data(), n, 0.2f, 0.03f, 1.0f / 0.03f);
    std::vector<float> p = x;
    k.softmax_row(p.data(), n, 0.125f);
    double sum = 0.0;
    for (float v : p) sum += v;
    CHECK(std::abs(sum - 1.0) < 1e-5);
    std::vector<double> received(static_cast<std::size_t>(n), 0.0);
    double total = 0.0;
    // The open block's scratch holds NaN before each head: a block starts from its first row, never from what the
    // scratch held (a kernel that read it would turn every sum into NaN).
    std::vector<float> block(static_cast<std::size_t>(std::max<index_t>(n, 16 * 37 + 9)));
    std::fill(received.begin(), received.end(), 0.0);
    std::fill(block.begin(), block.end(), std::numeric_limits<float>::quiet_NaN());
    k.attention_rows(x.data(), 1, n, n, 0, 1, block.data(), received.data(), &total);
    CHECK(received == xd);
    CHECK(total == row_total);
    std::fill(block.begin(), block.end(), std::numeric_limits<float>::quiet_NaN());
    // A head of strided fp32 rows with a tail, fed in two calls that split a block: blocks of 16 rows.
    const index_t hn = 16 * 37 + 9, hstride = hn + 5;
    std::vector<double> sums(static_cast<std::size_t>(hn), 0.25), totals(static_cast<std::size_t>(head_rows));
    k.attention_rows(head32.data(), 20, hstride, hn, 0, head_rows, block.data(), sums.data(), totals.data());
    k.attention_rows(head32.data() + 20 * hstride, head_rows - 20, hstride, hn, 20, head_rows, block.data(),
                     sums.data(), totals.data() + 20);
    CHECK(sums == head32_received);
    CHECK(totals == head32_totals);
    std::vector<double> sums_half(static_cast<std::size_t>(rows_n), 0.25), totals_half(static_cast<std::size_t>(rows_count));
    k.attention_rows_half(rows_half.data(), rows_count, rows_stride, rows_n, sums_half.data(), totals_half.data(),
                          nullptr);
    CHECK(sums_half == half_received);
    CHECK(totals_half == half_totals);
    // The exact fixed-point path (rows with every |x| <= 1, others through the double path) gives the same bits.
    std::vector<std::int32_t> fixed(static_cast<std::size_t>(rows_n), 0);
    std::fill(sums_half.begin(), sums_half.end(), 0.25);
    k.attention_rows_half(rows_half.data(), rows_count, rows_stride, rows_n, sums_half.data(), totals_half.data(),
                          fixed.data());
    CHECK(sums_half == half_received);
    CHECK(totals_half == half_totals);
    CHECK(std::all_of(fixed.begin(), fixed.end(), [](std::int32_t v) { return v == 0; }));
    // Rows [2, 4) alone: a pair attempt that fails on row 3 (at every level: AVX-512 takes four rows at once).
    std::fill(sums_half.begin(), sums_half.end(), 0.25);
    for (const auto& [first, count] : {std::pair<index_t, index_t>{0, 2}, {2, 2}, {4, rows_count - 4}})
      k.attention_rows_half(rows_half.data() + first * rows_stride, count, rows_stride, rows_n, sums_half.data(),
                            totals_half.data() + first, fixed.data());
    CHECK(sums_half == half_received);
    CHECK(totals_half == half_totals);
    CHECK(std::all_of(fixed.begin(), fixed.end(), [](std::int32_t v) { return v == 0; }));
    // Row by row: every row is a single attempt, and rows 3 and 8 are subtracted again from the fixed sums.
    std::fill(sums_half.begin(), sums_half.end(), 0.25);
    for (index_t r = 0; r < rows_count; ++r)
      k.attention_rows_half(rows_half.data() + r * rows_stride, 1, rows_stride, rows_n, sums_half.data(),
                            totals_half.data() + r, fixed.data());
    CHECK(sums_half == half_received);
    CHECK(totals_half == half_totals);
    CHECK(std::all_of(fixed.begin(), fixed.end(), [](std::int32_t v) { return v == 0; }));
    std::vector<double> sums_bf16(static_cast<std::size_t>(rows_n), 0.25), totals_bf16(static_cast<std::size_t>(rows_count));
    k.attention_rows_bf16(rows_bf16.data(), rows_count, rows_stride, rows_n, sums_bf16.data(), totals_bf16.data());
    CHECK(sums_bf16 == bf16_received);
    CHECK(totals_bf16 == bf16_totals);
    if (weights0.empty()) {
      weights0 = bits_of(w);
      softmax0 = bits_of(p);
      received0 = received;
      total0 = total;
    }
    CHECK(bits_of(w) == weights0);
    CHECK(bits_of(p) == softmax0);
    CHECK(total == total0);
  }
}

TEST_CASE("levels: the fp16 fixed-point sums stay exact at their limits (n = 4064, values near 2, 63+ rows)", "[levels]") {
  // The fixed path's bounds are tight: up to 63 values below 2^25 per int32 lane (row totals), up to 62 rows per
  // column sum. Rows of the largest in-range magnitude with one sign fill every lane to its bound; a wrong segment
  // length or flush point wraps a lane and breaks these sums. Rows of 2.0 (out of range) take the double path.
  const index_t n = 4064, count = 130;
  std::vector<std::uint16_t> rows(static_cast<std::size_t>(n * count));
  std::mt19937 rng(41);
  std::uniform_int_distribution<int> small(0, 0x2fff);  // |x| < 0.125
  for (index_t r = 0; r < count; ++r)
    for (index_t j = 0; j < n; ++j) {
      std::uint16_t v = 0x3fff;  // 1.9990234375, the largest fp16 below 2
      if (r % 3 == 1) v = 0xbfff;
      if (r % 5 == 4) v = static_cast<std::uint16_t>(small(rng) | (j % 2 == 0 ? 0x8000 : 0));
      if (r == 70 && j == n - 1) v = 0x4000;  // 2.0: this row leaves the fixed path
      rows[r * n + j] = v;
    }
  std::vector<double> want_received(static_cast<std::size_t>(n), 0.0), want_totals(static_cast<std::size_t>(count), 0.0);
  for (index_t r = 0; r < count; ++r)
    for (index_t j = 0; j < n; ++j) {
      const double x = double(Eigen::numext::bit_cast<Eigen::half>(rows[r * n + j]));
      want_received[j] += x;  // multiples of 2^-24 below 2^13 in magnitude: every partial sum is exact in double
      want_totals[r] += x;
    }
  for (Isa isa : levels()) {
    INFO("level " << isa_name(isa));
    const kernels::KernelTable& k = kernels::kernels_for(isa);
    std::vector<std::int32_t> fixed(static_cast<std::size_t>(n), 0);
    for (std::int32_t* scratch : {static_cast<std::int32_t*>(nullptr), fixed.data()}) {
      INFO((scratch == nullptr ? "double path" : "fixed path"));
      std::vector<double> received(static_cast<std::size_t>(n), 0.0), totals(static_cast<std::size_t>(count), -1.0);
      k.attention_rows_half(rows.data(), count, n, n, received.data(), totals.data(), scratch);
      CHECK(received == want_received);
      CHECK(totals == want_totals);
    }
    CHECK(std::all_of(fixed.begin(), fixed.end(), [](std::int32_t v) { return v == 0; }));
  }
}

TEST_CASE("levels: fp16 and bf16 widening is exact on every level", "[levels]") {
  std::vector<std::uint16_t> all(65536 + 7);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i * 40503u);  // every pattern, tails
  for (std::size_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
  for (Isa isa : levels()) {
    INFO("level " << isa_name(isa));
    std::vector<float> out(all.size());
    kernels::kernels_for(isa).widen_half(all.data(), out.data(), static_cast<index_t>(all.size()));
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < all.size(); ++i) {
      const float want = static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(all[i]));
      wrong += !(std::bit_cast<std::uint32_t>(want) == std::bit_cast<std::uint32_t>(out[i]) ||
                 (std::isnan(want) && std::isnan(out[i])));
    }
    CHECK(wrong == 0);
    kernels::kernels_for(isa).widen_bf16(all.data(), out.data(), static_cast<index_t>(all.size()));
    wrong = 0;
    for (std::size_t i = 0; i < all.size(); ++i) wrong += std::bit_cast<std::uint32_t>(out[i]) != (std::uint32_t{all[i]} << 16);
    CHECK(wrong == 0);
  }
}

TEST_CASE("levels: G-Prune scores are bitwise equal on every level (dense, sparse, fp16, bf16)", "[levels]") {
  const index_t n = 2 * kernels::kTile + 61, d = 96;
  const RowMatrix<float> x = image_like(n, d, 11);
  const RowMatrix<Eigen::half> xh = x.cast<Eigen::half>();
  const RowMatrix<Eigen::bfloat16> xb = x.cast<Eigen::bfloat16>();
  IsaGuard guard;
  for (const bool sparse : {false, true}) {
    for (int type = 0; type < 3; ++type) {
      INFO("sparse " << sparse << " dtype " << type);
      std::vector<std::uint32_t> first;
      std::vector<index_t> first_kept;
      for (Isa isa : levels()) {
        INFO("level " << isa_name(isa));
        set_isa(isa);
        GPruneConfig config;
        if (sparse) config.max_dense_tokens = 100;
        GPrune pruner(config);
        PruneInputs in;
        in.features = type == 0 ? TokenMatrix(x) : type == 1 ? TokenMatrix(xh) : TokenMatrix(xb);
        const auto kept = pruner.prune(in, Budget::count(n / 3));
        CHECK(sparse == (pruner.sparse_edges() > 0));
        if (first.empty()) {
          first = bits_of(pruner.scores());
          first_kept.assign(kept.begin(), kept.end());
        }
        CHECK(bits_of(pruner.scores()) == first);
        CHECK(std::vector<index_t>(kept.begin(), kept.end()) == first_kept);
      }
    }
  }
}

TEST_CASE("levels: FoPru significance is bitwise equal on every level (fp32 and fp16 maps, queries and keys)", "[levels]") {
  const index_t heads = 3, n = 150, dh = 40;
  const auto q = normal_values(static_cast<std::size_t>(heads * n * dh), 21);
  const auto k = normal_values(static_cast<std::size_t>(heads * n * dh), 22);
  // Softmax maps built in double, so they do not depend on any level.
  std::vector<float> maps(static_cast<std::size_t>(heads * n * n));
  for (index_t h = 0; h < heads; ++h)
    for (index_t i = 0; i < n; ++i) {
      std::vector<double> row(static_cast<std::size_t>(n));
      double top = -1e300, sum = 0.0;
      for (index_t j = 0; j < n; ++j) {
        double s = 0.0;
        for (index_t c = 0; c < dh; ++c) s += double(q[(h * n + i) * dh + c]) * double(k[(h * n + j) * dh + c]);
        row[j] = s / std::sqrt(double(dh));
        top = std::max(top, row[j]);
      }
      for (auto& v : row) sum += (v = std::exp(v - top));
      for (index_t j = 0; j < n; ++j) maps[(h * n + i) * n + j] = static_cast<float>(row[j] / sum);
    }
  std::vector<Eigen::half> maps_half(maps.size());
  for (std::size_t t = 0; t < maps.size(); ++t) maps_half[t] = Eigen::half(maps[t]);
  IsaGuard guard;
  for (int input = 0; input < 4; ++input) {
    INFO("input " << input);
    std::vector<std::uint32_t> first;
    for (Isa isa : levels()) {
      INFO("level " << isa_name(isa));
      set_isa(isa);
      FoPru pruner;
      PruneInputs in;
      if (input == 0) in.attention = AttentionMaps(maps.data(), heads, n);
      if (input == 1) in.attention = AttentionMaps(maps_half.data(), heads, n);
      if (input >= 2) {
        in.query_keys.queries = HeadMatrices(q.data(), heads, n, dh);
        in.query_keys.keys = HeadMatrices(k.data(), heads, n, dh);
        in.query_keys.softmax = input == 2;
      }
      pruner.prune(in, Budget::count(20));
      if (first.empty()) first = bits_of(pruner.scores());
      CHECK(bits_of(pruner.scores()) == first);
    }
  }
}
