#pragma once
// Synthetic inputs for any registered method, built from what its MethodInfo says it reads: generic tests (the
// registry, allocation, segments) run every method, including ones added later, without per-method code.

#include <tokenprune/tokenprune.hpp>

#include <cmath>
#include <random>
#include <vector>

namespace tokenprune::testing {

struct MethodInputs {
  index_t n = 0;    // tokens (patches)
  index_t dim = 0;  // feature dimension (embeddings use it too; keys half of it)
  std::vector<float> features, hidden, keys, cls, maps, image, text;
  PruneInputs inputs;
};

// n must be a multiple of 16 and a perfect square (the grid of fopru-row; video frames of 4 x 4).
inline MethodInputs make_method_inputs(const MethodInfo& info, index_t n, index_t dim, unsigned seed,
                                       index_t heads = 2) {
  MethodInputs m;
  m.n = n;
  m.dim = dim;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.01f, 1.0f);
  // Image-like tokens: a few directions with noise, so graphs and diversity have structure.
  auto tokens = [&](index_t rows, index_t cols) {
    std::vector<float> centres(static_cast<std::size_t>(6 * cols));
    for (float& c : centres) c = normal(rng);
    std::vector<float> out(static_cast<std::size_t>(rows * cols));
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j)
        out[static_cast<std::size_t>(i * cols + j)] = centres[static_cast<std::size_t>((i % 6) * cols + j)] + 0.4f * normal(rng);
    return out;
  };
  PruneInputs& in = m.inputs;
  if (info.reads(Input::hidden_states)) {
    m.hidden = tokens(n + 1, dim);
    in.hidden_states = TokenMatrix(m.hidden.data(), n + 1, dim);
  } else if (info.reads(Input::features)) {
    m.features = tokens(n, dim);
    in.features = TokenMatrix(m.features.data(), n, dim);
  }
  if (info.reads(Input::keys)) {
    m.keys = tokens(n + 1, dim / 2);
    in.keys = TokenMatrix(m.keys.data(), n + 1, dim / 2);
  }
  if (info.reads(Input::cls_attention)) {
    m.cls.resize(static_cast<std::size_t>(heads * n));
    for (float& v : m.cls) v = uniform(rng) / static_cast<float>(n);
    in.cls_attention = TokenMatrix(m.cls.data(), heads, n);
  }
  if (info.reads(Input::attention)) {  // softmax-like rows
    m.maps.resize(static_cast<std::size_t>(heads * n * n));
    for (index_t r = 0; r < heads * n; ++r) {
      float total = 0.0f;
      for (index_t c = 0; c < n; ++c) total += m.maps[static_cast<std::size_t>(r * n + c)] = uniform(rng);
      for (index_t c = 0; c < n; ++c) m.maps[static_cast<std::size_t>(r * n + c)] /= total;
    }
    in.attention = AttentionMaps(m.maps.data(), heads, n);
  }
  if (info.reads(Input::image_embeds)) {
    m.image = tokens(n, dim);
    in.image_embeds = TokenMatrix(m.image.data(), n, dim);
  }
  if (info.reads(Input::text_embeds)) {
    m.text = tokens(2, dim);
    in.text_embeds = TokenMatrix(m.text.data(), 2, dim);
  }
  if (info.reads(Input::grid)) {
    const auto side = static_cast<index_t>(std::llround(std::sqrt(static_cast<double>(n))));
    in.grid = Grid{side, side};
  }
  if (info.reads(Input::video)) in.video = VideoGrid{n / 16, 4, 4};
  return m;
}

}  // namespace tokenprune::testing
