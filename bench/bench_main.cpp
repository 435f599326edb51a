// tokenprune_bench's main: Google Benchmark's, except that without a --benchmark_filter the video-scale
// benchmarks (names containing "Video", tens of seconds to minutes each) are left out, as if run with
// --benchmark_filter=-Video. Select them explicitly, e.g. --benchmark_filter=Video/frames16.

#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

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
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
