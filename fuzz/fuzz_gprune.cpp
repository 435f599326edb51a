// libFuzzer target: G-Prune over arbitrary shapes, strides, element types, values, parameters and budgets, flat
// and through the LLaVA-NeXT layout. Invalid input must end in tokenprune::Error; valid input must give a
// well-formed selection, and the sparse path must agree bitwise with the dense one.
#include "fuzz_input.hpp"

using namespace tokenprune;

namespace {

template <class T>
void run(fuzzing::Bytes& in) {
  const index_t n = in.in(0, 40), d = in.in(0, 12), pad = in.in(0, 3);
  const std::vector<T> buffer = in.template values<T>(n * (d + pad));
  const TokenMatrix x(buffer.data(), n, d, d + pad);
  GPruneConfig config;
  config.threshold = in.in(-1, 11) / 10.0;  // includes invalid 0, -0.1 and 1.1
  config.temperature = in.in(0, 6) / 20.0;  // includes invalid 0
  config.iterations = static_cast<int>(in.in(-1, 7));
  const index_t keep = in.in(0, n + 2);
  const bool next_layout = in.flag();
  try {
    GPrune dense(config);
    if (next_layout) {
      const index_t rows = in.in(0, 3), cols = in.in(0, 4), base = n - rows * (cols + 1);
      LlavaNextLayout layout(rows, cols, keep / 10.0, base < 0 ? 0 : base);
      Segmented<GPrune> pruner{GPrune(config)};  // GPrune is move-only (its tiled graph arena)
      const auto kept = pruner.prune(PruneInputs{.features = x}, layout);
      fuzzing::check_selection(kept, n, pruner.kept_count(layout));
      return;
    }
    config.max_dense_tokens = 0;
    GPrune sparse(config);
    const Budget budget = Budget::count(keep);
    const auto kept = dense.prune(PruneInputs{.features = x}, budget);
    fuzzing::check_selection(kept, n, dense.kept_count(TokenShape{n}, budget));
    const std::vector<index_t> first(kept.begin(), kept.end());
    const auto again = sparse.prune(PruneInputs{.features = x}, budget);
    if (!std::equal(first.begin(), first.end(), again.begin(), again.end())) __builtin_trap();
    for (std::size_t i = 0; i < dense.scores().size(); ++i)
      if (!(dense.scores()[i] == sparse.scores()[i]) || !(dense.scores()[i] >= 0.0f)) __builtin_trap();
  } catch (const Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzzing::Bytes in(data, size);
  fuzzing::with_element_type(in, [&]<class T>(T) { run<T>(in); });
  return 0;
}
