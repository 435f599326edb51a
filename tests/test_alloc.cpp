// SPEC 3: after reserve(max_tokens, dim), prune() allocates nothing. This is its own executable
// (tokenprune_alloc_test): it replaces the global operator new/delete and, outside sanitizer builds, malloc and
// friends, which must not leak into the other tests. Eigen is built with EIGEN_RUNTIME_NO_MALLOC so that an
// Eigen temporary inside prune() also fails loudly (an assertion) while set_is_malloc_allowed(false) is on.

#define EIGEN_RUNTIME_NO_MALLOC
#include <tokenprune/tokenprune.hpp>

#include "catch.hpp"
#include "method_inputs.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TOKENPRUNE_ALLOC_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define TOKENPRUNE_ALLOC_SANITIZED 1
#endif
#endif
#if !defined(TOKENPRUNE_ALLOC_SANITIZED) && defined(__GLIBC__)
#define TOKENPRUNE_ALLOC_HOOK_MALLOC 1
#endif

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_new_calls{0};     // operator new, every variant
std::atomic<long> g_malloc_calls{0};  // malloc family (only when interposed)

void count_new() {
  if (g_counting.load(std::memory_order_relaxed)) g_new_calls.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

// ---------------------------------------------------------------------------------------------------------
// malloc family, forwarded to glibc's own entry points.
// ---------------------------------------------------------------------------------------------------------
#if defined(TOKENPRUNE_ALLOC_HOOK_MALLOC)
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);

namespace {
void count_malloc() {
  if (g_counting.load(std::memory_order_relaxed)) g_malloc_calls.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

void* malloc(std::size_t size) {
  count_malloc();
  return __libc_malloc(size);
}
void* calloc(std::size_t count, std::size_t size) {
  count_malloc();
  return __libc_calloc(count, size);
}
void* realloc(void* p, std::size_t size) {
  count_malloc();
  return __libc_realloc(p, size);
}
void free(void* p) { __libc_free(p); }
void* memalign(std::size_t alignment, std::size_t size) {
  count_malloc();
  return __libc_memalign(alignment, size);
}
void* aligned_alloc(std::size_t alignment, std::size_t size) {
  count_malloc();
  return __libc_memalign(alignment, size);
}
int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  count_malloc();
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* p = __libc_memalign(alignment, size);
  if (p == nullptr && size != 0) return ENOMEM;
  *out = p;
  return 0;
}
}  // extern "C"
#endif

// ---------------------------------------------------------------------------------------------------------
// Global operator new/delete, every variant (plain, array, nothrow, aligned, sized deletes).
// ---------------------------------------------------------------------------------------------------------
namespace {
void* plain_alloc(std::size_t size) {
  count_new();
  void* p = std::malloc(size == 0 ? 1 : size);
  return p;
}
void* aligned_alloc_impl(std::size_t size, std::align_val_t alignment) {
  count_new();
  const auto a = std::max(static_cast<std::size_t>(alignment), sizeof(void*));
  void* p = nullptr;
  if (posix_memalign(&p, a, size == 0 ? 1 : size) != 0) return nullptr;
  return p;
}
}  // namespace

void* operator new(std::size_t size) {
  if (void* p = plain_alloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  if (void* p = plain_alloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return plain_alloc(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return plain_alloc(size); }
void* operator new(std::size_t size, std::align_val_t a) {
  if (void* p = aligned_alloc_impl(size, a)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size, std::align_val_t a) {
  if (void* p = aligned_alloc_impl(size, a)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return aligned_alloc_impl(size, a);
}
void* operator new[](std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return aligned_alloc_impl(size, a);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

namespace tp = tokenprune;
using Index = tp::index_t;

struct Allocations {
  long news = 0, mallocs = 0;
  [[nodiscard]] long total() const { return news + mallocs; }
};

// Counts the allocations made by f(), with Eigen's own heap allocations forbidden meanwhile. Nothing that
// allocates (Catch's assertions, INFO) may run inside.
template <class F>
Allocations count_allocations(F&& f) {
  g_new_calls = 0;
  g_malloc_calls = 0;
  Eigen::internal::set_is_malloc_allowed(false);
  g_counting = true;
  f();
  g_counting = false;
  Eigen::internal::set_is_malloc_allowed(true);
  return {g_new_calls.load(), g_malloc_calls.load()};
}

template <class T>
tp::RowMatrix<T> random_tokens(Index n, Index d, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  tp::RowMatrix<float> x(n, d);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < d; ++j) x(i, j) = normal(rng) + (i % 3 == 0 ? 2.0f : 0.0f);
  return x.cast<T>();
}

std::vector<float> random_maps(Index heads, Index n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> a(static_cast<std::size_t>(heads * n * n));
  for (auto& v : a) v = u(rng);
  return a;
}

tp::PruneInputs with_features(const tp::TokenMatrix& x) {
  tp::PruneInputs in;
  in.features = x;
  return in;
}

}  // namespace


// Every test below runs once per instruction-set level this CPU supports (each level has its own kernels).
std::vector<tp::Isa> supported_levels() {
  std::vector<tp::Isa> out;
  for (tp::Isa isa : tp::kAllIsas)
    if (tp::isa_supported(isa)) out.push_back(isa);
  return out;
}
#define TOKENPRUNE_EACH_LEVEL()                                              \
  const tp::Isa level = GENERATE(from_range(supported_levels()));            \
  tp::set_isa(level);                                                        \
  INFO("level " << tp::isa_name(level))

TEST_CASE("alloc: the counters are really hooked", "[alloc]") {
  SECTION("operator new") {
    const Allocations a = count_allocations([] {
      std::vector<int> v(100);
      v[3] = 1;
    });
    CHECK(a.news >= 1);
  }
  SECTION("aligned operator new") {
    struct alignas(64) Wide {
      float x[16];
    };
    const Allocations a = count_allocations([] {
      Wide* volatile p = new Wide{};  // volatile: the compiler may not elide the new/delete pair
      delete p;
    });
    CHECK(a.news == 1);
  }
#if defined(TOKENPRUNE_ALLOC_HOOK_MALLOC)
  SECTION("malloc family") {
    const Allocations a = count_allocations([] {
      void* volatile p = std::malloc(32);
      std::free(p);
      void* q = nullptr;
      if (posix_memalign(&q, 64, 128) == 0) std::free(q);
    });
    CHECK(a.mallocs == 2);
  }
  SECTION("Eigen's own heap allocations reach the counter") {
    // While counting, Eigen's allocations are also forbidden (an assertion in builds without NDEBUG, which
    // cannot be caught): allow them here, to see that the malloc counter would catch them anyway.
    const Allocations a = count_allocations([] {
      Eigen::internal::set_is_malloc_allowed(true);
      Eigen::VectorXf v(64);
      v.setZero();
    });
    CHECK(a.mallocs >= 1);
  }
#endif
}

TEST_CASE("alloc: GPrune allocates nothing after reserve", "[alloc]") {
  TOKENPRUNE_EACH_LEVEL();
  const Index n = 300, d = 64;
  auto run = [&]<class T>(T) {
    const tp::RowMatrix<T> warm = random_tokens<T>(n, d, 1), same = random_tokens<T>(n, d, 2),
                           smaller = random_tokens<T>(n - 100, d, 3);
    tp::GPrune pruner;
    pruner.reserve(n, d);
    const tp::PruneInputs first = with_features(warm), second = with_features(same), third = with_features(smaller);
    std::size_t kept_first = 0, kept_second = 0, kept_third = 0;
    // SPEC 3 asks for no allocation from the first call after reserve() on.
    const Allocations a0 = count_allocations([&] { kept_first = pruner.prune(first, tp::Budget::ratio(0.25)).size(); });
    const Allocations a1 = count_allocations([&] { kept_second = pruner.prune(second, tp::Budget::ratio(0.25)).size(); });
    const Allocations a2 = count_allocations([&] { kept_third = pruner.prune(third, tp::Budget::count(17)).size(); });
    CHECK(a0.total() == 0);
    CHECK(a1.news == 0);
    CHECK(a1.mallocs == 0);
    CHECK(a2.total() == 0);
    CHECK(kept_first == 75);
    CHECK(kept_second == 75);
    CHECK(kept_third == 17);
  };
  SECTION("fp32") { run(float{}); }
  SECTION("fp16") { run(Eigen::half{}); }
  SECTION("bf16") { run(Eigen::bfloat16{}); }
}

// An engine's executor (here one that runs the tasks on the calling thread, spreading them over three worker
// slots, as a pool that allocates nothing itself would): the library adds no allocation of its own.
TEST_CASE("alloc: GPrune with an engine executor allocates nothing after reserve", "[alloc]") {
  TOKENPRUNE_EACH_LEVEL();
  struct InlinePool {
    static void run(void*, Index tasks, tp::Executor::Task task, void* loop) {
      for (Index t = 0; t < tasks; ++t) task(loop, t, static_cast<int>(t % 3));
    }
  };
  const Index n = 600, d = 128;  // above the parallel thresholds: the executor runs the Gram tiles and row loops
  const tp::RowMatrix<float> x = random_tokens<float>(n, d, 4), y = random_tokens<float>(n - 50, d, 5);
  for (const Index max_dense : {Index{8192}, Index{0}}) {
    tp::GPrune pruner(tp::GPruneConfig{.max_dense_tokens = max_dense});
    pruner.set_executor(tp::Executor(&InlinePool::run, nullptr, 3));
    pruner.reserve(n, d);
    const tp::PruneInputs first = with_features(x), second = with_features(y);
    std::size_t k0 = 0, k1 = 0;
    const Allocations a0 = count_allocations([&] { k0 = pruner.prune(first, tp::Budget::ratio(0.25)).size(); });
    const Allocations a1 = count_allocations([&] { k1 = pruner.prune(second, tp::Budget::count(40)).size(); });
    INFO("max_dense_tokens " << max_dense);
    CHECK(a0.total() == 0);
    CHECK(a1.total() == 0);
    CHECK(k0 == 150);
    CHECK(k1 == 40);
  }
  // FoPru's head groups on the same executor, fp16 maps (one widened row per worker slot).
  const Index heads = 16, m = 96;
  const std::vector<float> values = random_maps(heads, m, 6);
  std::vector<Eigen::half> half(values.begin(), values.end());
  tp::FoPru fopru;
  fopru.set_executor(tp::Executor(&InlinePool::run, nullptr, 3));
  fopru.reserve(m, 0);
  tp::PruneInputs maps;
  maps.attention = tp::AttentionMaps(half.data(), heads, m);
  std::size_t k2 = 0;
  const Allocations a2 = count_allocations([&] { k2 = fopru.prune(maps, tp::Budget::count(20)).size(); });
  CHECK(a2.total() == 0);
  CHECK(k2 == 20);
}

TEST_CASE("alloc: FoPru allocates nothing after reserve", "[alloc]") {
  TOKENPRUNE_EACH_LEVEL();
  const Index heads = 4, n = 256, small = 196;  // 16 x 16 and 14 x 14 grids
  const std::vector<float> warm = random_maps(heads, n, 4), same = random_maps(heads, n, 5),
                           smaller = random_maps(heads, small, 6);
  for (auto strategy : {tp::FoPruStrategy::rank, tp::FoPruStrategy::row}) {
    tp::FoPru pruner(tp::FoPruConfig{strategy});
    pruner.reserve(n, 0);
    tp::PruneInputs a, b, c, sig;
    a.attention = tp::AttentionMaps(warm.data(), heads, n);
    b.attention = tp::AttentionMaps(same.data(), heads, n);
    c.attention = tp::AttentionMaps(smaller.data(), heads, small);
    sig.significance = std::span<const float>(same.data(), static_cast<std::size_t>(n));
    std::size_t k0 = 0, k1 = 0, k2 = 0, k3 = 0;
    const Allocations a0 = count_allocations([&] { k0 = pruner.prune(a, tp::Budget::ratio(0.5)).size(); });
    const Allocations a1 = count_allocations([&] { k1 = pruner.prune(b, tp::Budget::ratio(0.5)).size(); });
    const Allocations a2 = count_allocations([&] { k2 = pruner.prune(c, tp::Budget::count(30)).size(); });
    const Allocations a3 = count_allocations([&] { k3 = pruner.prune(sig, tp::Budget::count(40)).size(); });
    INFO("strategy " << int(strategy));
    CHECK(a0.total() == 0);
    CHECK(a1.total() == 0);
    CHECK(a2.total() == 0);
    CHECK(a3.total() == 0);
    CHECK(k0 == 128);
    CHECK(k1 == 128);
    CHECK(k2 == (strategy == tp::FoPruStrategy::rank ? 30u : 28u));
    CHECK(k3 == (strategy == tp::FoPruStrategy::rank ? 40u : 32u));
  }
}

TEST_CASE("alloc: Segmented<GPrune> with the LLaVA-NeXT layout allocates nothing after reserve", "[alloc]") {
  TOKENPRUNE_EACH_LEVEL();
  const Index d = 32;
  tp::LlavaNextLayout layout(4, 5, 0.5, 36);  // 36 + 4 * (5 + 1) = 60 tokens
  tp::LlavaNextLayout small_layout(3, 4, 0.5, 25);  // 25 + 3 * 5 = 40 tokens
  const Index n = layout.n_tokens();
  const auto warm = random_tokens<Eigen::half>(n, d, 7), same = random_tokens<Eigen::half>(n, d, 8);
  const auto smaller = random_tokens<Eigen::half>(small_layout.n_tokens(), d, 9);
  tp::Segmented<tp::GPrune> pruner;
  pruner.reserve(n, d);
  const tp::PruneInputs a = with_features(warm), b = with_features(same), c = with_features(smaller);
  std::size_t k0 = 0, k1 = 0, k2 = 0;
  const Allocations a0 = count_allocations([&] { k0 = pruner.prune(a, layout).size(); });
  const Allocations a1 = count_allocations([&] { k1 = pruner.prune(b, layout).size(); });
  const Allocations a2 = count_allocations([&] { k2 = pruner.prune(c, small_layout).size(); });
  CHECK(a0.total() == 0);
  CHECK(a1.total() == 0);
  CHECK(a2.total() == 0);
  CHECK(k0 == 18 + 10 + 4);
  CHECK(k1 == 18 + 10 + 4);
  CHECK(k2 == 12 + 6 + 3);
}

// An engine reserves once for its largest request (a video, say) and then serves whatever comes: each call picks
// dense or sparse storage by its own size, so reserve() must have sized both.
TEST_CASE("alloc: GPrune reserved for its largest request serves smaller ones on either path", "[alloc]") {
  TOKENPRUNE_EACH_LEVEL();
  const Index largest = 600, d = 64;
  tp::GPrune pruner(tp::GPruneConfig{.max_dense_tokens = 500});
  pruner.reserve(largest, d);
  const tp::RowMatrix<float> video = random_tokens<float>(largest, d, 11), image = random_tokens<float>(480, d, 12),
                             narrow = random_tokens<float>(100, 32, 13);
  struct Request {
    const tp::RowMatrix<float>* x;
    bool sparse;
  };
  for (const Request r : {Request{&video, true}, Request{&image, false}, Request{&narrow, false}, Request{&video, true}}) {
    INFO("n " << r.x->rows() << " d " << r.x->cols());
    std::size_t kept = 0;
    const Allocations a = count_allocations([&] { kept = pruner.prune(with_features(*r.x), tp::Budget::ratio(0.25)).size(); });
    CHECK(a.total() == 0);
    CHECK(kept == static_cast<std::size_t>(r.x->rows() / 4));
    (void)r.sparse;  // by construction: more than max_dense_tokens distinct tokens take the sparse path
  }
}

TEST_CASE("alloc: the span prune() returned stays valid across a reserve() within earlier bounds", "[alloc]") {
  const tp::RowMatrix<float> x = random_tokens<float>(200, 32, 14);
  tp::GPrune gprune;
  gprune.reserve(300, 48);
  const auto kept = gprune.prune(with_features(x), tp::Budget::count(50));
  const std::vector<Index> copy(kept.begin(), kept.end());
  const auto scores = gprune.scores();
  gprune.reserve(300, 48);
  gprune.reserve(250, 16);
  CHECK(std::vector<Index>(kept.begin(), kept.end()) == copy);  // under ASan, a freed buffer would be reported here
  CHECK(gprune.scores().data() == scores.data());
  CHECK(gprune.prune(with_features(x), tp::Budget::count(50)).data() == kept.data());

  const std::vector<float> maps = random_maps(2, 64, 15);
  tp::FoPru fopru;
  fopru.reserve(100, 0);
  tp::PruneInputs in;
  in.attention = tp::AttentionMaps(maps.data(), 2, 64);
  const auto fkept = fopru.prune(in, tp::Budget::count(10));
  const std::vector<Index> fcopy(fkept.begin(), fkept.end());
  fopru.reserve(80, 0);
  CHECK(std::vector<Index>(fkept.begin(), fkept.end()) == fcopy);
  CHECK(fopru.prune(in, tp::Budget::count(10)).data() == fkept.data());
}

// Encoders put a CLS token and sometimes register tokens before the patches: the queries/keys path skips them.
TEST_CASE("alloc: FoPru from queries and keys with 0, 1 and 5 skipped tokens, executor set after reserve", "[alloc]") {
  TOKENPRUNE_EACH_LEVEL();
  struct InlinePool {
    static void run(void*, Index tasks, tp::Executor::Task task, void* loop) {
      for (Index t = 0; t < tasks; ++t) task(loop, t, static_cast<int>(t % 3));
    }
  };
  const Index heads = 4, n = 300, dh = 32, most_skipped = 5;
  const auto q = random_tokens<float>(heads * (n + most_skipped), dh, 16);
  const auto k = random_tokens<float>(heads * (n + most_skipped), dh, 17);
  tp::FoPru pruner;
  pruner.reserve(n, dh, most_skipped);
  pruner.set_executor(tp::Executor(&InlinePool::run, nullptr, 3));  // after reserve: must not need more memory
  for (const Index skip : {Index{0}, Index{1}, most_skipped})
    for (const bool softmax : {true, false}) {
      INFO("skip " << skip << " softmax " << softmax);
      const Index total = n + skip;
      tp::PruneInputs in;
      in.query_keys.queries = tp::HeadMatrices(q.data(), heads, total, dh);
      in.query_keys.keys = tp::HeadMatrices(k.data(), heads, total, dh);
      in.query_keys.skip_tokens = skip;
      in.query_keys.softmax = softmax;
      std::size_t kept = 0;
      const Allocations a = count_allocations([&] { kept = pruner.prune(in, tp::Budget::count(30)).size(); });
      CHECK(a.total() == 0);
      CHECK(kept == 30);
    }
  // fp16 maps on the pool set after reserve.
  const std::vector<float> values = random_maps(heads, n, 18);
  const std::vector<Eigen::half> half(values.begin(), values.end());
  tp::PruneInputs maps;
  maps.attention = tp::AttentionMaps(half.data(), heads, n);
  std::size_t kept = 0;
  const Allocations a = count_allocations([&] { kept = pruner.prune(maps, tp::Budget::count(30)).size(); });
  CHECK(a.total() == 0);
  CHECK(kept == 30);
}

// Every registered method, built by name (so a method added to the registry is covered here too): reserve for the
// largest request, then the first call, a second one and a smaller one allocate nothing, at every level.
TEST_CASE("alloc: every registered method allocates nothing after reserve", "[alloc]") {
  TOKENPRUNE_EACH_LEVEL();
  const Index n = 256, small = 128, d = 48;
  for (const std::string& name : tp::method_names()) {
    INFO("method " << name);
    const tp::MethodInfo& info = tp::method_info(name);
    const tp::testing::MethodInputs big = tp::testing::make_method_inputs(info, n, d, 5);
    const tp::testing::MethodInputs other = tp::testing::make_method_inputs(info, n, d, 6);
    const tp::testing::MethodInputs fewer = tp::testing::make_method_inputs(info, small, d, 7);
    tp::PruneInputs smaller = fewer.inputs;
    if (info.reads(tp::Input::grid)) smaller.grid = tp::Grid{8, 16};  // 128 is no square
    tp::AnyPruner pruner = tp::create_pruner(name);
    pruner.reserve(n, d);
    std::size_t k0 = 0, k1 = 0, k2 = 0;
    const Allocations a0 = count_allocations([&] { k0 = pruner.prune(big.inputs, tp::Budget::count(64)).size(); });
    const Allocations a1 = count_allocations([&] { k1 = pruner.prune(other.inputs, tp::Budget::count(32)).size(); });
    const Allocations a2 = count_allocations([&] { k2 = pruner.prune(smaller, tp::Budget::count(16)).size(); });
    CHECK(a0.total() == 0);
    CHECK(a1.total() == 0);
    CHECK(a2.total() == 0);
    CHECK(static_cast<Index>(k0) == pruner.kept_count(big.inputs.shape(), tp::Budget::count(64)));
    CHECK(static_cast<Index>(k1) == pruner.kept_count(other.inputs.shape(), tp::Budget::count(32)));
    CHECK(static_cast<Index>(k2) == pruner.kept_count(smaller.shape(), tp::Budget::count(16)));
  }
}

// CDPruner's three ways to its rows of S: packed with the normalization (crops = 1), packed per crop (a crop of
// 130 tokens does not start on a 48-row panel), and the whole triangle (4 k > P).
TEST_CASE("alloc: CDPruner's rows on demand and its triangle allocate nothing after reserve", "[alloc]") {
  TOKENPRUNE_EACH_LEVEL();
  const Index n = 260, d = 48;
  const tp::MethodInfo& info = tp::method_info("cdpruner");
  const tp::testing::MethodInputs in = tp::testing::make_method_inputs(info, n, d, 9);
  for (const double crops : {1.0, 2.0}) {
    INFO("crops " << crops);
    tp::AnyPruner pruner = tp::create_pruner("cdpruner", {{"crops", crops}});
    pruner.reserve(n, d);
    for (const Index k : {Index{16}, Index{32}, Index{60}}) {
      INFO("keep " << k);
      std::size_t kept = 0;
      const Allocations a = count_allocations([&] { kept = pruner.prune(in.inputs, tp::Budget::count(k)).size(); });
      CHECK(a.total() == 0);
      CHECK(static_cast<Index>(kept) == static_cast<Index>(crops) * k);
    }
  }
}

// Issue 9: G-Prune's tiled graph, with every row panel stored, a prefix stored and the rest recomputed, or every
// panel recomputed, allocates nothing after reserve(), for the reserved size and a smaller graph.
TEST_CASE("alloc: GPrune's tiled graph allocates nothing after reserve, within any budget", "[alloc]") {
  TOKENPRUNE_EACH_LEVEL();
  const Index n = 1200, d = 32;
  const tp::RowMatrix<float> x = random_tokens<float>(n, d, 21), y = random_tokens<float>(n - 400, d, 22);
  const std::size_t panel = sizeof(float) * static_cast<std::size_t>(tp::kernels::kTile * n);
  for (const std::size_t budget : {std::size_t{1} << 40, panel + 300000, std::size_t{0}}) {
    INFO("budget " << budget);
    tp::GPrune pruner(tp::GPruneConfig{.max_dense_tokens = 0, .max_graph_bytes = budget});
    pruner.reserve(n, d);
    const tp::PruneInputs first = with_features(x), second = with_features(y);
    std::size_t k0 = 0, k1 = 0;
    const Allocations a0 = count_allocations([&] { k0 = pruner.prune(first, tp::Budget::ratio(0.25)).size(); });
    const tp::kernels::GraphStorage storage = pruner.graph_storage();
    const Allocations a1 = count_allocations([&] { k1 = pruner.prune(second, tp::Budget::count(40)).size(); });
    CHECK(a0.total() == 0);
    CHECK(a1.total() == 0);
    CHECK(k0 == 300);
    CHECK(k1 == 40);
    CHECK(storage.panels == 5);
    if (budget == 0) CHECK(storage.stored_panels == 0);
    if (budget == panel + 300000) CHECK((storage.stored_panels > 0 && storage.stored_panels < 5));
    if (budget > panel + 300000) CHECK(storage.stored_panels == 5);
  }
}
