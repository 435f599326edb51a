// libFuzzer target: FoPru from maps (with strides and a dropped CLS block), from queries and keys, and from a
// significance vector; rank and row strategies over arbitrary grids, axes and budgets.
#include "fuzz_input.hpp"

using namespace tokenprune;

namespace {

template <class T>
void run(fuzzing::Bytes& in) {
  const index_t heads = in.in(1, 3), total = in.in(0, 20), pad = in.in(0, 2), dh = in.in(1, 6);
  const index_t skip = total > 0 ? in.in(0, 1) : 0;
  const index_t n = total - skip;
  FoPruConfig config;
  config.strategy = in.flag() ? FoPruStrategy::row : FoPruStrategy::rank;
  config.axis = static_cast<FoPruAxis>(in.in(0, 2));
  const index_t keep = in.in(0, n + 2);
  PruneInputs inputs;
  const index_t cols = in.in(0, 5);
  if (cols > 0) inputs.grid = Grid{n / cols + in.in(0, 1), cols};  // sometimes inconsistent on purpose
  std::vector<T> maps, q, k;
  std::vector<float> significance;
  try {
    switch (in.in(0, 2)) {
      case 0: {
        const index_t row_stride = total + pad, head_stride = total * row_stride + in.in(0, 2);
        maps = in.template values<T>(heads * head_stride);
        inputs.attention = AttentionMaps(maps.data(), heads, total, head_stride, row_stride).block(skip, n);
        break;
      }
      case 1:
        q = in.template values<T>(heads * total * dh);
        k = in.template values<T>(heads * total * dh);
        inputs.query_keys = QueryKeys{HeadMatrices(q.data(), heads, total, dh), HeadMatrices(k.data(), heads, total, dh),
                                      in.in(0, 2) / 2.0, in.flag(), skip};
        break;
      default:
        significance = in.values<float>(n);
        inputs.significance = significance;
        break;
    }
    FoPru pruner(config);
    pruner.reserve(n, dh);
    const Budget budget = Budget::count(keep);
    const auto kept = pruner.prune(inputs, budget);
    fuzzing::check_selection(kept, n, pruner.kept_count(inputs.shape(), budget));
  } catch (const Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzzing::Bytes in(data, size);
  fuzzing::with_element_type(in, [&]<class T>(T) { run<T>(in); });
  return 0;
}
