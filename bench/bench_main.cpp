// tokenprune_bench's main: Google Benchmark's, except that
//  - without a --benchmark_filter the video-scale benchmarks (names containing "Video", tens of seconds to
//    minutes each) are left out, as if run with --benchmark_filter=-Video. Select them explicitly, e.g.
//    --benchmark_filter=Video/frames16;
//  - the context (console header and the JSON "context" object) says what the figures were measured with:
//    isa (the kernel dispatch level in use: TOKENPRUNE_ISA or the best this CPU supports), isa_supported,
//    omp_threads (the library's threads), march (default or native build) and, when linked, OpenBLAS's build
//    and core (openblas_config, openblas_core).

#include <tokenprune/core/executor.hpp>
#include <tokenprune/core/isa.hpp>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#ifndef TOKENPRUNE_BENCH_MARCH
#define TOKENPRUNE_BENCH_MARCH "unknown"
#endif

#if defined(TOKENPRUNE_HAVE_OPENBLAS)
namespace tokenprune::bench {
void add_openblas_context();  // bench_openblas.cpp
}
#endif

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  bool has_filter = false;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--benchmark_filter", 18) == 0) has_filter = true;
  static char default_filter[] = "--benchmark_filter=-Video";
  if (!has_filter) args.push_back(default_filter);
  int count = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;

  try {
    benchmark::AddCustomContext("isa", tokenprune::isa_name(tokenprune::active_isa()));
  } catch (const std::exception& e) {  // e.g. TOKENPRUNE_ISA names a level this CPU lacks
    std::fprintf(stderr, "tokenprune_bench: %s\n", e.what());
    return 1;
  }
  benchmark::AddCustomContext("isa_supported", tokenprune::supported_isas());
  benchmark::AddCustomContext("omp_threads", std::to_string(tokenprune::Executor{}.workers()));
  benchmark::AddCustomContext("march", TOKENPRUNE_BENCH_MARCH);
#if defined(TOKENPRUNE_HAVE_OPENBLAS)
  tokenprune::bench::add_openblas_context();
#else
  benchmark::AddCustomContext("openblas", "not linked (no BM_SyrkOpenBLAS)");
#endif

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
