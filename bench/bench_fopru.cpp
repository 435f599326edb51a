// FoPru benchmarks and their memory floor.
//
//   BM_FoPruRank/<case>/<dtype>   FoPru, rank strategy, from [heads, n, n] attention maps (ratio 0.5)
//   BM_FoPruRow/<case>/<dtype>    FoPru, row strategy (whole grid rows), same maps
//   BM_ReadMaps/<case>/<dtype>    one streaming pass over the same maps that only sums them: FoPru reads every
//                                 value once, so this is its floor (SPEC 5: memory bandwidth). Split into
//                                 FoPru's head groups on the same executor (OMP_NUM_THREADS threads) as FoPru.
//
// Cases: llava15 (16 heads x 576 x 576, CLIP ViT-L/336: 21 MB fp32 per image), qwen2vl (16 x 1296 x 1296) and
// llava15_off16 (fp32, the llava15 maps 16 bytes past a cache line).
// Counters: bytes_per_second = heads * n * n * sizeof(element) per call; tokens/s = n per call.

#include "bench_data.hpp"

#include <tokenprune/tokenprune.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#if TOKENPRUNE_X86_DISPATCH
#include <immintrin.h>
#endif

namespace {

using namespace tokenprune;
namespace tb = tokenprune::bench;

struct MapCase {
  const char* name;
  index_t heads;
  index_t side;  // n = side * side
  std::size_t offset_bytes = 0;  // where the maps start past a 64-byte boundary
};
// The maps start a cache line, as an engine's tensors do (PyTorch and OpenVINO allocate 64-byte aligned); the
// "_off16" case starts them 16 bytes past one (a std::vector's usual address), where every second 32-byte and
// every 64-byte load splits a line.
constexpr MapCase kMapCases[] = {{"llava15", 16, 24}, {"qwen2vl", 16, 36}, {"llava15_off16", 16, 24, 16}};

// The case's maps at their address: a copy of the generated maps, cached for the process like them.
template <Element T>
std::span<const T> placed_maps(const MapCase& c) {
  const std::vector<T>& maps = tb::attention_maps<T>(c.heads, c.side);
  static std::map<std::tuple<index_t, index_t, std::size_t>, std::vector<T>> copies;
  std::vector<T>& copy = copies[{c.heads, c.side, c.offset_bytes}];
  const std::size_t spare = (64 + c.offset_bytes) / sizeof(T);
  const bool fresh = copy.empty();
  if (fresh) copy.resize(maps.size() + spare);
  const auto address = reinterpret_cast<std::uintptr_t>(copy.data());
  T* start = copy.data() + ((64 - address % 64) % 64 + c.offset_bytes) / sizeof(T);
  if (fresh) std::copy(maps.begin(), maps.end(), start);
  return {start, maps.size()};
}

using tb::dtype_tag;

// Sum of `count` values, widened to fp32: one streaming read, four independent accumulators, at the same
// instruction-set level as the library (TOKENPRUNE_ISA), chosen at run time as the library does: a default
// build's SSE2 would make the floor, not FoPru, the slow side (fp16 especially: no F16C).
// (GCC 12 warns about the intrinsics' internal _mm512_undefined_* operands: a known false positive.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
template <Element T>
float read_sum_portable(const T* data, std::size_t count) {
  float acc[4] = {};
  std::size_t i = 0;
  for (; i + 4 <= count; i += 4)
    for (int a = 0; a < 4; ++a) acc[a] += static_cast<float>(data[i + a]);
  for (; i < count; ++i) acc[0] += static_cast<float>(data[i]);
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}
#if TOKENPRUNE_X86_DISPATCH
template <Element T>
__attribute__((target("avx512f,avx512bw"))) float read_sum_avx512(const T* data, std::size_t count) {
  std::size_t i = 0;
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (; i + 64 <= count; i += 64)
    for (int a = 0; a < 4; ++a) {
      const T* p = data + i + 16 * a;
      __m512 v;
      if constexpr (std::same_as<T, float>) {
        v = _mm512_loadu_ps(p);
      } else if constexpr (std::same_as<T, Eigen::half>) {
        v = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      } else {  // bf16: the upper half of an fp32
        const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        v = _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
      }
      acc[a] = _mm512_add_ps(acc[a], v);
    }
  float total = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
  return total + read_sum_portable(data + i, count - i);
}
template <Element T>
__attribute__((target("avx2,f16c"))) float read_sum_avx2(const T* data, std::size_t count) {
  std::size_t i = 0;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (; i + 32 <= count; i += 32)
    for (int a = 0; a < 4; ++a) {
      const T* p = data + i + 8 * a;
      __m256 v;
      if constexpr (std::same_as<T, float>) {
        v = _mm256_loadu_ps(p);
      } else if constexpr (std::same_as<T, Eigen::half>) {
        v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      } else {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        v = _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
      }
      acc[a] = _mm256_add_ps(acc[a], v);
    }
  const __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float total = 0.0f;
  for (float v : lanes) total += v;
  return total + read_sum_portable(data + i, count - i);
}
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

template <Element T>
float read_sum(const T* data, std::size_t count) {
#if TOKENPRUNE_X86_DISPATCH
  switch (active_isa()) {
    case Isa::avx512:
      return read_sum_avx512(data, count);
    case Isa::avx2:
      return read_sum_avx2(data, count);
    case Isa::portable:
      break;
  }
#endif
  return read_sum_portable(data, count);
}

template <Element T>
void read_maps(benchmark::State& state, MapCase c) {
  const std::span<const T> maps = placed_maps<T>(c);
  // Split like FoPru's head groups and run on the same executor, so that both sides use the same threads.
  const index_t n = c.side * c.side, groups = kernels::head_groups(c.heads);
  const Executor executor;
  executor.warm_up();
  float partial[kernels::kHeadGroups] = {};
  for (auto _ : state) {
    auto group = [&](index_t g, int) {
      const auto first = static_cast<std::size_t>(kernels::group_first_head(g, c.heads) * n * n);
      const auto last = static_cast<std::size_t>(kernels::group_first_head(g + 1, c.heads) * n * n);
      partial[g] = read_sum(maps.data() + first, last - first);
    };
    executor.for_each(groups, group);
    float total = 0.0f;
    for (index_t g = 0; g < groups; ++g) total += partial[g];
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(maps.size() * sizeof(T)));
  tb::set_tokens(state, static_cast<double>(n));
  state.SetLabel(std::string(c.name) + " " + dtype_tag<T>() + " " + std::to_string(c.heads) + "x" +
                 std::to_string(n) + "x" + std::to_string(n) + " sum");
}

template <Element T>
void fopru(benchmark::State& state, MapCase c, FoPruStrategy strategy) {
  const std::span<const T> maps = placed_maps<T>(c);
  const index_t n = c.side * c.side;
  FoPru pruner(FoPruConfig{strategy, FoPruAxis::automatic});
  pruner.reserve(n, 0);
  PruneInputs inputs;
  inputs.attention = AttentionMaps(maps.data(), c.heads, n);
  inputs.grid = Grid{c.side, c.side};
  const Budget budget = Budget::ratio(0.5);
  for (auto _ : state) {
    std::span<const index_t> kept = pruner.prune(inputs, budget);
    benchmark::DoNotOptimize(kept.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(maps.size() * sizeof(T)));
  tb::set_tokens(state, static_cast<double>(n));
  state.SetLabel(std::string(c.name) + " " + dtype_tag<T>() + " " + std::to_string(c.heads) + "x" +
                 std::to_string(n) + "x" + std::to_string(n) +
                 (pruner.chosen_axis() == FoPruAxis::received ? " axis=received" : " axis=given"));
}

template <Element T>
void register_case(const MapCase& c) {
  const std::string suffix = std::string("/") + c.name + "/" + dtype_tag<T>();
  benchmark::RegisterBenchmark(("BM_FoPruRank" + suffix).c_str(),
                               [c](benchmark::State& s) { fopru<T>(s, c, FoPruStrategy::rank); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark(("BM_FoPruRow" + suffix).c_str(),
                               [c](benchmark::State& s) { fopru<T>(s, c, FoPruStrategy::row); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark(("BM_ReadMaps" + suffix).c_str(), [c](benchmark::State& s) { read_maps<T>(s, c); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

const bool registered = [] {
  for (const MapCase& c : kMapCases) {
    register_case<float>(c);
    if (c.offset_bytes != 0) continue;  // the misaligned case measures the fp32 path only
    register_case<Eigen::half>(c);
    register_case<Eigen::bfloat16>(c);
  }
  return true;
}();

}  // namespace
