// Core: budgets, kept_count before data exists, zero-copy views (and the arguments they refuse at compile time),
// the TokenPruner concept (positive and negative), gather_rows and positions, and their errors.

#include "catch.hpp"
#include "isa_levels.hpp"

#include <tokenprune/tokenprune.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

namespace tp = tokenprune;
using tp::index_t;

namespace {

std::vector<index_t> to_vector(std::span<const index_t> s) { return {s.begin(), s.end()}; }

// Runs f, which must throw tokenprune::Error; checks its argument() and value(), and that the message says
// "argument = value: reason".
template <class F>
void require_error(F&& f, const std::string& argument, const std::string& value) {
  try {
    f();
    FAIL("expected tokenprune::Error naming " << argument);
  } catch (const tp::Error& e) {
    const std::string what = e.what();
    INFO("what(): " << what);
    CHECK(e.argument() == argument);
    CHECK(e.value() == value);
    CHECK_FALSE(e.reason().empty());
    CHECK(what == "tokenprune: " + argument + " = " + value + ": " + e.reason());
  }
}

// ---------------------------------------------------------------------------------------------------------
// A third-party pruner: keeps the last k tokens (e.g. an engine's "recency" baseline). Complete, so that it
// also runs through Segmented.
// ---------------------------------------------------------------------------------------------------------
class KeepLast {
 public:
  [[nodiscard]] index_t kept_count(const tp::TokenShape& shape, tp::Budget budget) const {
    return budget.resolve(shape.n_tokens);
  }
  void reserve(index_t max_tokens, index_t) {
    kept_.reserve(static_cast<std::size_t>(max_tokens));
    scores_.reserve(static_cast<std::size_t>(max_tokens));
  }
  std::span<const index_t> prune(const tp::PruneInputs& inputs, tp::Budget budget) {
    const index_t n = inputs.n_tokens();
    const index_t k = budget.resolve(n);
    kept_.resize(static_cast<std::size_t>(k));
    std::iota(kept_.begin(), kept_.end(), n - k);
    scores_.resize(static_cast<std::size_t>(n));
    std::iota(scores_.begin(), scores_.end(), 0.0f);
    return kept_;
  }
  [[nodiscard]] std::span<const float> scores() const { return scores_; }

 private:
  std::vector<index_t> kept_;
  std::vector<float> scores_;
};

// Types that miss one requirement each (declarations suffice: the concept only inspects signatures).
struct NoScores {
  index_t kept_count(const tp::TokenShape&, tp::Budget) const;
  void reserve(index_t, index_t);
  std::span<const index_t> prune(const tp::PruneInputs&, tp::Budget);
};
struct PruneReturnsVector {
  index_t kept_count(const tp::TokenShape&, tp::Budget) const;
  void reserve(index_t, index_t);
  std::vector<index_t> prune(const tp::PruneInputs&, tp::Budget);
  std::span<const float> scores() const;
};
struct KeptCountTakesIndex {
  index_t kept_count(index_t, tp::Budget) const;
  void reserve(index_t, index_t);
  std::span<const index_t> prune(const tp::PruneInputs&, tp::Budget);
  std::span<const float> scores() const;
};
struct KeptCountReturnsInt {
  int kept_count(const tp::TokenShape&, tp::Budget) const;
  void reserve(index_t, index_t);
  std::span<const index_t> prune(const tp::PruneInputs&, tp::Budget);
  std::span<const float> scores() const;
};
struct KeptCountNotConst {
  index_t kept_count(const tp::TokenShape&, tp::Budget);
  void reserve(index_t, index_t);
  std::span<const index_t> prune(const tp::PruneInputs&, tp::Budget);
  std::span<const float> scores() const;
};
struct NoReserve {
  index_t kept_count(const tp::TokenShape&, tp::Budget) const;
  std::span<const index_t> prune(const tp::PruneInputs&, tp::Budget);
  std::span<const float> scores() const;
};
struct ScoresNotConst {
  index_t kept_count(const tp::TokenShape&, tp::Budget) const;
  void reserve(index_t, index_t);
  std::span<const index_t> prune(const tp::PruneInputs&, tp::Budget);
  std::span<const float> scores();
};
struct ScoresAsDouble {
  index_t kept_count(const tp::TokenShape&, tp::Budget) const;
  void reserve(index_t, index_t);
  std::span<const index_t> prune(const tp::PruneInputs&, tp::Budget);
  std::span<const double> scores() const;
};
struct PruneWithoutBudget {
  index_t kept_count(const tp::TokenShape&, tp::Budget) const;
  void reserve(index_t, index_t);
  std::span<const index_t> prune(const tp::PruneInputs&);
  std::span<const float> scores() const;
};

}  // namespace

// The concept: ours, a third party's, and each missing member refused.
static_assert(tp::TokenPruner<tp::GPrune>);
static_assert(tp::TokenPruner<tp::FoPru>);
static_assert(tp::TokenPruner<KeepLast>);
static_assert(!tp::TokenPruner<NoScores>);
static_assert(!tp::TokenPruner<PruneReturnsVector>);
static_assert(!tp::TokenPruner<KeptCountTakesIndex>);
static_assert(!tp::TokenPruner<KeptCountReturnsInt>);
static_assert(!tp::TokenPruner<KeptCountNotConst>);
static_assert(!tp::TokenPruner<NoReserve>);
static_assert(!tp::TokenPruner<ScoresNotConst>);
static_assert(!tp::TokenPruner<ScoresAsDouble>);
static_assert(!tp::TokenPruner<PruneWithoutBudget>);
static_assert(!tp::TokenPruner<int>);

// Views: row-major float/half/bfloat16 matrices, Maps and row blocks are viewed; everything that would need a
// conversion or a transposed copy is refused at compile time.
static_assert(std::is_constructible_v<tp::TokenMatrix, tp::RowMatrix<float>>);
static_assert(std::is_constructible_v<tp::TokenMatrix, tp::RowMatrix<Eigen::half>>);
static_assert(std::is_constructible_v<tp::TokenMatrix, tp::RowMatrix<Eigen::bfloat16>>);
static_assert(std::is_constructible_v<tp::TokenMatrix, tp::ConstRowMap<float>>);
static_assert(std::is_constructible_v<tp::TokenMatrix, Eigen::Map<tp::RowMatrix<Eigen::half>>>);
static_assert(std::is_constructible_v<tp::TokenMatrix, Eigen::Block<tp::RowMatrix<float>>>);
static_assert(std::is_convertible_v<tp::RowMatrix<float>, tp::TokenMatrix>);  // implicit, like Eigen::Ref
static_assert(!std::is_constructible_v<tp::TokenMatrix, Eigen::MatrixXf>);    // column-major
static_assert(!std::is_constructible_v<tp::TokenMatrix, Eigen::Matrix<Eigen::half, -1, -1>>);
static_assert(!std::is_constructible_v<tp::TokenMatrix, Eigen::Matrix<double, -1, -1, Eigen::RowMajor>>);
static_assert(!std::is_constructible_v<tp::TokenMatrix, Eigen::Matrix<int, -1, -1, Eigen::RowMajor>>);
static_assert(!std::is_constructible_v<tp::TokenMatrix, tp::RowMatrix<float>::TransposeReturnType>);
static_assert(!std::is_constructible_v<tp::TokenMatrix,
                                       decltype(std::declval<const tp::RowMatrix<float>&>() * 2.0f)>);  // expression
static_assert(!std::is_constructible_v<tp::TokenMatrix, const double*, index_t, index_t>);
static_assert(!std::is_constructible_v<tp::AttentionMaps, const double*, index_t, index_t>);

TEST_CASE("core: Error carries argument, value and reason", "[core][error]") {
  try {
    (void)tp::Budget::count(7).resolve(6);
    FAIL("keep 7 of 6 was accepted");
  } catch (const tp::Error& e) {
    CHECK(e.argument() == "keep");
    CHECK(e.value() == "7");
    CHECK(e.reason().find("[0, 6]") != std::string::npos);
    CHECK(std::string(e.what()) == "tokenprune: keep = 7: " + e.reason());
    // A front end's name for the same argument keeps value and reason.
    const tp::Error flag = e.renamed("--keep");
    CHECK(flag.argument() == "--keep");
    CHECK(flag.value() == "7");
    CHECK(flag.reason() == e.reason());
    CHECK(std::string(flag.what()) == "tokenprune: --keep = 7: " + e.reason());
  }
  const tp::Error no_value("command line", "", "unknown option --kep");
  CHECK(std::string(no_value.what()) == "tokenprune: command line: unknown option --kep");
}

TEST_CASE("core: Budget", "[core][budget]") {
  CHECK(tp::Budget::count(0).resolve(0) == 0);
  CHECK(tp::Budget::count(7).resolve(7) == 7);
  CHECK(tp::Budget::count(3).resolve(100) == 3);
  CHECK(tp::Budget::ratio(0.0).resolve(576) == 0);
  CHECK(tp::Budget::ratio(1.0).resolve(576) == 576);
  CHECK(tp::Budget::ratio(0.25).resolve(576) == 144);
  CHECK(tp::Budget::ratio(0.5).resolve(7) == 3);

  // floor(r * n) in double: 0.29 * 100.0 is 28.999999999999996 in double (0.29 is slightly below 0.29), so 28;
  // the same product in float rounds up to exactly 29.0f. Likewise 0.58 * 100.0 -> 57.
  const double in_double = std::floor(0.29 * 100.0);
  CHECK(in_double == 28.0);
  CHECK(std::floor(0.29f * 100.0f) == 29.0f);  // what a float implementation would (wrongly) keep
  CHECK(tp::Budget::ratio(0.29).resolve(100) == 28);
  CHECK(tp::Budget::ratio(0.58).resolve(100) == static_cast<index_t>(std::floor(0.58 * 100.0)));
  CHECK(tp::Budget::ratio(0.58).resolve(100) == 57);
  CHECK(tp::Budget::ratio(0.1).resolve(2304) == 230);

  CHECK(tp::Budget::count(5).is_ratio() == false);
  CHECK(tp::Budget::ratio(0.5).is_ratio());

  require_error([] { (void)tp::Budget::count(-1); }, "keep", "-1");
  require_error([] { (void)tp::Budget::count(7).resolve(6); }, "keep", "7");
  require_error([] { (void)tp::Budget::ratio(-0.1); }, "ratio", "-0.1");
  require_error([] { (void)tp::Budget::ratio(1.5); }, "ratio", "1.5");
  require_error([] { (void)tp::Budget::ratio(std::nan("")); }, "ratio", "nan");
  require_error([] { (void)tp::Budget::ratio(std::numeric_limits<double>::infinity()); }, "ratio", "inf");
  require_error([] { (void)tp::Budget::ratio(0.5).resolve(-3); }, "n_tokens", "-3");
}

TEST_CASE("core: kept_count before any data exists", "[core][budget]") {
  const tp::Budget quarter = tp::Budget::ratio(0.25);
  const tp::TokenShape image{576};  // 24 x 24, no grid given
  CHECK(tp::GPrune().kept_count(image, quarter) == 144);
  CHECK(tp::FoPru().kept_count(image, quarter) == 144);
  const tp::FoPru row(tp::FoPruConfig{tp::FoPruStrategy::row});
  CHECK(row.kept_count(image, quarter) == 144);                                 // square grid: 6 rows of 24
  CHECK(row.kept_count(image, tp::Budget::ratio(0.3)) == 168);                  // floor(172.8) = 172 -> 7 rows
  CHECK(row.kept_count(tp::TokenShape{15, {3, 5}}, tp::Budget::count(9)) == 5);  // floor(9 / 5) rows of 5
  CHECK(row.kept_count(tp::TokenShape{12, {6, 2}}, tp::Budget::count(7)) == 6);
  CHECK(KeepLast().kept_count(image, quarter) == 144);

  // LLaVA-NeXT with a 2 x 2 crop grid: base 576 + 48 rows of (48 grid tokens + newline) = 2928 tokens;
  // floor(0.25 * 576) + floor(0.25 * 2304) + 48 newlines = 144 + 576 + 48.
  tp::LlavaNextLayout llava(48, 48, 0.25);
  CHECK(llava.n_tokens() == 2928);
  CHECK(tp::Segmented<tp::GPrune>().kept_count(llava) == 768);
  // A custom base size; ratio 0.3 of 10 base tokens -> 3; of 2 x 3 grid tokens -> floor(1.8) = 1; 2 newlines.
  tp::LlavaNextLayout small(2, 3, 0.3, 10);
  CHECK(small.n_tokens() == 18);
  CHECK(tp::Segmented<tp::GPrune>().kept_count(small) == 3 + 1 + 2);
  CHECK(tp::Segmented<KeepLast>().kept_count(small) == 3 + 1 + 2);

  // Segments with grids for FoPru's row strategy: two images 4x4 and 2x5, plus 3 always-kept tokens.
  const std::vector<index_t> a = [] { std::vector<index_t> v(16); std::iota(v.begin(), v.end(), 0); return v; }();
  const std::vector<index_t> b = [] { std::vector<index_t> v(10); std::iota(v.begin(), v.end(), 19); return v; }();
  const std::vector<index_t> text{16, 17, 18};
  const tp::Segment segments[] = {{a, tp::Budget::count(7), {4, 4}}, {b, tp::Budget::ratio(0.5), {2, 5}}};
  const tp::SegmentLayout layout{29, segments, text};
  CHECK(tp::Segmented<tp::FoPru>(tp::FoPru(tp::FoPruConfig{tp::FoPruStrategy::row})).kept_count(layout) == 4 + 5 + 3);
  CHECK(tp::Segmented<tp::FoPru>().kept_count(layout) == 7 + 5 + 3);

  require_error([] { (void)tp::GPrune().kept_count(tp::TokenShape{10}, tp::Budget::count(11)); }, "keep", "11");
  require_error([] { (void)tp::LlavaNextLayout(2, 3, 1.5, 10); }, "ratio", "1.5");
  require_error([] { (void)tp::LlavaNextLayout(-2, 3, 0.5, 10); }, "grid_rows", "-2");
}

TEST_CASE("core: TokenMatrix views", "[core][views]") {
  tp::RowMatrix<float> m(5, 3);
  for (index_t i = 0; i < 15; ++i) m.data()[i] = static_cast<float>(i);

  SECTION("a row-major matrix, a Map with an outer stride, row blocks") {
    const tp::TokenMatrix v = m;
    CHECK(v.data() == m.data());
    CHECK(v.n_tokens() == 5);
    CHECK(v.dim() == 3);
    CHECK(v.row_stride() == 3);
    CHECK(v.dtype() == tp::DType::f32);
    CHECK_FALSE(v.empty());
    CHECK(v.as<float>()(4, 2) == 14.0f);

    std::vector<float> buffer(5 * 7, -1.0f);
    const Eigen::Map<const tp::RowMatrix<float>, Eigen::Unaligned, Eigen::OuterStride<>> map(buffer.data(), 5, 3,
                                                                                           Eigen::OuterStride<>(7));
    const tp::TokenMatrix padded = map;
    CHECK(padded.row_stride() == 7);
    CHECK(padded.dim() == 3);
    CHECK(padded.data() == buffer.data());

    const tp::TokenMatrix middle = m.middleRows(1, 3);
    CHECK(middle.data() == m.data() + 3);
    CHECK(middle.n_tokens() == 3);
    CHECK(middle.as<float>()(0, 0) == 3.0f);

    const tp::TokenMatrix block = m.block(2, 1, 2, 2);  // rows 2-3, columns 1-2: stride stays 3
    CHECK(block.data() == m.data() + 7);
    CHECK(block.row_stride() == 3);
    CHECK(block.dim() == 2);
    CHECK(block.as<float>()(1, 1) == 11.0f);

    const tp::TokenMatrix rows = v.rows(2, 2);
    CHECK(rows.data() == m.data() + 6);
    CHECK(rows.n_tokens() == 2);
    CHECK(v.rows(5, 0).n_tokens() == 0);
    CHECK_FALSE(v.rows(5, 0).empty());  // zero tokens is not "not given"
    CHECK(tp::TokenMatrix().empty());
  }
  SECTION("half and bfloat16") {
    const tp::RowMatrix<Eigen::half> h = m.cast<Eigen::half>();
    const tp::TokenMatrix vh = h;
    CHECK(vh.dtype() == tp::DType::f16);
    CHECK(vh.rows(3, 1).data() == static_cast<const void*>(h.data() + 9));
    CHECK(static_cast<float>(vh.as<Eigen::half>()(4, 1)) == 13.0f);
    const tp::RowMatrix<Eigen::bfloat16> b = m.cast<Eigen::bfloat16>();
    const tp::TokenMatrix vb = b.middleRows(1, 2);
    CHECK(vb.dtype() == tp::DType::bf16);
    CHECK(vb.data() == static_cast<const void*>(b.data() + 3));
    require_error([&] { (void)vb.as<float>(); }, "features.dtype", "bfloat16");
  }
  SECTION("errors") {
    require_error([&] { (void)tp::TokenMatrix(m.data(), 5, 3, 2); }, "row_stride", "2");
    require_error([&] { (void)tp::TokenMatrix(m.data(), -1, 3, 3); }, "n_tokens", "-1");
    require_error([&] { (void)tp::TokenMatrix(static_cast<const float*>(nullptr), 2, 3, 3); }, "data", "null");
    require_error([&] { (void)tp::TokenMatrix(m).rows(4, 2); }, "rows.first", "4");
  }
}

TEST_CASE("core: AttentionMaps views", "[core][views]") {
  // [2, 4, 4] with value 100 h + 10 i + j.
  std::vector<float> a(32);
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) a[static_cast<std::size_t>(h * 16 + i * 4 + j)] = static_cast<float>(100 * h + 10 * i + j);
  const tp::AttentionMaps maps(a.data(), 2, 4);
  CHECK(maps.head_stride() == 16);
  CHECK(maps.row_stride() == 4);
  CHECK(maps.head<float>(1)(2, 3) == 123.0f);
  const tp::AttentionMaps patch = maps.block(1, 3);  // drops query row 0 and key column 0
  CHECK(patch.n_tokens() == 3);
  CHECK(patch.head<float>(0)(0, 0) == 11.0f);
  CHECK(patch.head<float>(1)(2, 2) == 133.0f);
  CHECK(tp::AttentionMaps().empty());

  require_error([&] { (void)maps.block(2, 3); }, "attention.block", "2");
  require_error([&] { (void)maps.head<Eigen::half>(0); }, "attention.dtype", "float32");
  require_error([&] { (void)tp::AttentionMaps(a.data(), 0, 4); }, "heads", "0");
  require_error([&] { (void)tp::AttentionMaps(a.data(), 2, 4, 16, 3); }, "attention.row_stride", "3");
  require_error([&] { (void)tp::AttentionMaps(a.data(), 2, 4, 12, 4); }, "attention.head_stride", "12");
}

TEST_CASE("core: PruneInputs token counts must agree", "[core]") {
  std::vector<float> x(12, 1.0f), sig(5, 1.0f);
  tp::PruneInputs in;
  require_error([&] { (void)in.n_tokens(); }, "inputs", "empty");
  in.features = tp::TokenMatrix(x.data(), 4, 3);
  CHECK(in.n_tokens() == 4);
  in.significance = sig;
  require_error([&] { (void)in.n_tokens(); }, "significance.size", "5");
  in.significance = {};
  in.grid = tp::Grid{2, 3};
  require_error([&] { (void)in.n_tokens(); }, "grid.rows*grid.cols", "6");
}

TEST_CASE("core: a third-party pruner through Segmented", "[core][concept]") {
  std::vector<float> x(20 * 2, 0.5f);
  tp::PruneInputs in;
  in.features = tp::TokenMatrix(x.data(), 20, 2);
  std::vector<index_t> a(8), b(10);
  std::iota(a.begin(), a.end(), 0);
  std::iota(b.begin(), b.end(), 10);
  const std::vector<index_t> keep{8, 9};
  const tp::Segment segments[] = {{a, tp::Budget::count(3)}, {b, tp::Budget::ratio(0.2)}};
  tp::Segmented<KeepLast> pruner;
  const tp::SegmentLayout layout{20, segments, keep};
  CHECK(pruner.kept_count(layout) == 7);
  CHECK(to_vector(pruner.prune(in, layout)) == std::vector<index_t>{5, 6, 7, 8, 9, 18, 19});
}

TEST_CASE("core: gather_rows", "[core][gather]") {
  const index_t n = 5, dim = 3, src_stride = 4, dst_stride = 6;
  const std::vector<index_t> kept{0, 2, 4};
  auto check_dtype = [&]<class T>(T) {
    std::vector<T> src(static_cast<std::size_t>(n * src_stride));
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < src_stride; ++j)
        src[static_cast<std::size_t>(i * src_stride + j)] = T(static_cast<float>(j < dim ? 10 * i + j : -7));
    const tp::TokenMatrix view(src.data(), n, dim, src_stride);
    std::vector<T> dst(static_cast<std::size_t>(3 * dst_stride), T(-1.0f));
    tp::gather_rows(view, kept, dst.data(), dst_stride);
    for (index_t r = 0; r < 3; ++r)
      for (index_t j = 0; j < dst_stride; ++j) {
        const float expected = j < dim ? static_cast<float>(10 * kept[static_cast<std::size_t>(r)] + j) : -1.0f;
        INFO("row " << r << " col " << j);
        CHECK(static_cast<float>(dst[static_cast<std::size_t>(r * dst_stride + j)]) == expected);
      }
  };
  check_dtype(float{});
  check_dtype(Eigen::half{});
  check_dtype(Eigen::bfloat16{});

  SECTION("empty selection writes nothing") {
    std::vector<float> src(15, 1.0f);
    tp::gather_rows(tp::TokenMatrix(src.data(), 5, 3), {}, static_cast<float*>(nullptr), 3);
  }
  SECTION("errors") {
    std::vector<float> src(static_cast<std::size_t>(n * dim), 1.0f);
    std::vector<float> dst(static_cast<std::size_t>(n * dim));
    std::vector<Eigen::half> dst16(static_cast<std::size_t>(n * dim));
    const tp::TokenMatrix view(src.data(), n, dim);
    const std::vector<index_t> outside{1, 5}, unsorted{3, 1}, repeated{2, 2}, negative{-1, 2};
    require_error([&] { tp::gather_rows(view, outside, dst.data(), dim); }, "kept", "5");
    require_error([&] { tp::gather_rows(view, unsorted, dst.data(), dim); }, "kept", "1");
    require_error([&] { tp::gather_rows(view, repeated, dst.data(), dim); }, "kept", "2");
    require_error([&] { tp::gather_rows(view, negative, dst.data(), dim); }, "kept", "-1");
    require_error([&] { tp::gather_rows(view, kept, dst16.data(), dim); }, "dst", "float16");
    require_error([&] { tp::gather_rows(view, kept, dst.data(), dim - 1); }, "dst_row_stride", "2");
    require_error([&] { tp::gather_rows(view, kept, static_cast<float*>(nullptr), dim); }, "dst", "null");
  }
}

TEST_CASE("core: 1-D positions", "[core][positions]") {
  const std::vector<index_t> ids{10, 11, 12, 13, 14, 15};
  const std::vector<index_t> kept{1, 3, 4};
  std::vector<index_t> out(4, -1);
  CHECK(tp::original_positions(kept, ids, out) == 15);
  CHECK(out == std::vector<index_t>{11, 13, 14, -1});
  CHECK(tp::compacted_positions(3, 10, out) == 13);
  CHECK(out == std::vector<index_t>{10, 11, 12, -1});
  CHECK(tp::compacted_positions(0, 10, out) == 10);

  std::vector<index_t> small(2);
  require_error([&] { (void)tp::original_positions(kept, ids, small); }, "out.size", "2");
  const std::vector<index_t> outside{2, 6}, unsorted{4, 3};
  require_error([&] { (void)tp::original_positions(outside, ids, out); }, "kept", "6");
  require_error([&] { (void)tp::original_positions(unsorted, ids, out); }, "kept", "3");
  require_error([&] { (void)tp::compacted_positions(5, 0, out); }, "count", "5");
  require_error([&] { (void)tp::compacted_positions(-1, 0, out); }, "count", "-1");
}

TEST_CASE("core: M-RoPE (3, L) positions", "[core][positions]") {
  // A 2 x 3 image grid after 5 text tokens (Qwen2-VL style): t = 5 for all, h = 5 + row, w = 5 + col.
  // Stored (3, 6) with row stride 8; the padding holds -99.
  const index_t L = 6, stride = 8;
  std::vector<index_t> pos(3 * stride, -99);
  const index_t t[] = {5, 5, 5, 5, 5, 5}, h[] = {5, 5, 5, 6, 6, 6}, w[] = {5, 6, 7, 5, 6, 7};
  for (index_t i = 0; i < L; ++i) {
    pos[static_cast<std::size_t>(0 * stride + i)] = t[i];
    pos[static_cast<std::size_t>(1 * stride + i)] = h[i];
    pos[static_cast<std::size_t>(2 * stride + i)] = w[i];
  }
  const tp::MropePositions positions{pos.data(), L, stride};

  // Keep tokens 0, 2, 3, 5: grid columns 0 and 2 of both rows.
  const std::vector<index_t> kept{0, 2, 3, 5};
  const index_t out_stride = 5;
  std::vector<index_t> out(3 * out_stride, -1);
  CHECK(tp::original_mrope_positions(kept, positions, out.data(), out_stride) == 8);  // max w = 7
  CHECK(out == std::vector<index_t>{5, 5, 5, 5, -1,   //
                                    5, 5, 6, 6, -1,   //
                                    5, 7, 5, 7, -1});

  // Compacted: the missing column 1 closes up (w: 5, 7 -> 5, 6); rows 5, 6 and t stay; next = 7.
  std::vector<index_t> scratch(4);
  std::fill(out.begin(), out.end(), -1);
  CHECK(tp::compacted_mrope_positions(kept, positions, out.data(), out_stride, scratch) == 7);
  CHECK(out == std::vector<index_t>{5, 5, 5, 5, -1,   //
                                    5, 5, 6, 6, -1,   //
                                    5, 6, 5, 6, -1});

  // Keep only token 4 and 5 (row 1, columns 1 and 2): original h = 6, w = 6, 7.
  const std::vector<index_t> tail{4, 5};
  std::fill(out.begin(), out.end(), -1);
  CHECK(tp::original_mrope_positions(tail, positions, out.data(), 2) == 8);
  CHECK(std::vector<index_t>(out.begin(), out.begin() + 6) == std::vector<index_t>{5, 5, 6, 6, 6, 7});

  SECTION("errors") {
    require_error([&] { (void)tp::original_mrope_positions(kept, positions, out.data(), 3); }, "out_stride", "3");
    require_error([&] { (void)tp::original_mrope_positions(kept, tp::MropePositions{pos.data(), L, 4}, out.data(), 5); },
                  "positions.stride", "4");
    const std::vector<index_t> outside{1, 6}, unsorted{3, 2};
    require_error([&] { (void)tp::original_mrope_positions(outside, positions, out.data(), 5); }, "kept", "6");
    require_error([&] { (void)tp::original_mrope_positions(unsorted, positions, out.data(), 5); }, "kept", "2");
    std::vector<index_t> short_scratch(3);
    require_error([&] { (void)tp::compacted_mrope_positions(kept, positions, out.data(), 5, short_scratch); },
                  "scratch.size", "3");
  }
}

TEST_CASE("core: dtype helpers", "[core]") {
  CHECK(tp::dtype_of<float> == tp::DType::f32);
  CHECK(tp::dtype_of<Eigen::half> == tp::DType::f16);
  CHECK(tp::dtype_of<Eigen::bfloat16> == tp::DType::bf16);
  CHECK(tp::dtype_size(tp::DType::f16) == 2);
  CHECK(tp::dtype_name(tp::DType::bf16) == "bfloat16");
}

TEST_CASE("core: non-contiguous token elements are refused at run time", "[core][views]") {
  // An inner stride of 2 (every other float) is a valid Eigen Map with direct access, but not a token matrix.
  std::vector<float> buffer(4 * 8, 1.0f);
  const Eigen::Map<const tp::RowMatrix<float>, Eigen::Unaligned, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>> every_other(
      buffer.data(), 4, 3, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(8, 2));
  require_error([&] { (void)tp::TokenMatrix(every_other); }, "features.inner_stride", "2");
}

TEST_CASE("core: zero tokens", "[core]") {
  std::vector<float> none;
  tp::PruneInputs in;
  in.features = tp::TokenMatrix(none.data(), 0, 4, 4);
  CHECK(in.n_tokens() == 0);
  tp::GPrune gprune;
  CHECK(gprune.prune(in, tp::Budget::ratio(0.5)).empty());
  CHECK(gprune.scores().empty());
  tp::PruneInputs maps;
  maps.attention = tp::AttentionMaps(none.data(), 2, 0);
  tp::FoPru fopru;
  CHECK(fopru.prune(maps, tp::Budget::count(0)).empty());
  require_error([&] { (void)gprune.prune(in, tp::Budget::count(1)); }, "keep", "1");
}

TEST_CASE("core: top-k of float scores ranks as the comparator does (descending, ties and -0/+0 to the lower index)",
          "[core][topk]") {
  // Few distinct values (many ties), both zeros, negatives, subnormals and the extremes, against a stable sort
  // by the documented order (an independent spelling of it).
  const std::vector<float> pool = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, -0.5f, 1e-42f, -1e-42f, 3.4e38f, -3.4e38f, 0.25f};
  std::uint32_t state = 12345;
  auto next = [&] { return state = state * 1664525u + 1013904223u; };
  // Trials 200 to 399 take few of many (k <= n / 4, n >= 128: the sampled candidate bound), with fresh values
  // besides the pool; from 300 on the strided sample holds the best values (multiples of 8), so its bound passes
  // fewer than k and the whole set is selected instead.
  for (int trial = 0; trial < 400; ++trial) {
    const bool few = trial >= 200;
    const auto n = static_cast<tokenprune::index_t>(few ? 128 + next() % 1500 : 1 + next() % 300);
    std::vector<float> scores(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < scores.size(); ++i) {
      scores[i] = few && next() % 2 ? static_cast<float>(next() % 1000) * 0.001f : pool[next() % pool.size()];
      if (trial >= 300 && i % 8 == 0) scores[i] = 4.0f + static_cast<float>(next() % 4);
    }
    const auto k = static_cast<tokenprune::index_t>(next() % static_cast<std::uint32_t>((few ? n / 4 : n) + 1));
    std::vector<tokenprune::index_t> order(scores.size()), expected, scratch(scores.size()), out(static_cast<std::size_t>(k));
    std::iota(order.begin(), order.end(), tokenprune::index_t{0});
    std::stable_sort(order.begin(), order.end(), [&](tokenprune::index_t a, tokenprune::index_t b) {
      return scores[static_cast<std::size_t>(a)] > scores[static_cast<std::size_t>(b)];  // -0 == +0: stable keeps index order
    });
    expected.assign(order.begin(), order.begin() + k);
    std::sort(expected.begin(), expected.end());
    INFO("n " << n << " k " << k);
    const tokenprune::testing::IsaGuard guard;
    for (tokenprune::Isa isa : tokenprune::testing::supported_levels()) {  // the candidate filter is a kernel
      tokenprune::set_isa(isa);
      INFO("isa " << tokenprune::isa_name(isa));
      std::fill(out.begin(), out.end(), -1);
      tokenprune::kernels::top_k_ascending(std::span<const float>(scores), k, scratch, out);
      REQUIRE(out == expected);
    }
    // The double path (the comparator itself) agrees too.
    const std::vector<double> wide(scores.begin(), scores.end());
    tokenprune::kernels::top_k_ascending(std::span<const double>(wide), k, scratch, out);
    REQUIRE(out == expected);
  }
}
