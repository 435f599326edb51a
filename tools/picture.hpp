// tools/picture.hpp: `tokenprune prune ... --picture kept.png [--image photo.png]`, a PNG of what was kept.
//
// Part of the command-line tool only (tools/tokenprune.cpp includes it once); the header-only library never
// includes it. Needs stb (Debian: libstb-dev: stb_image.h, stb_image_write.h, stb_image_resize.h), whose
// implementations are compiled here, static, into the tool.
//
// What is drawn: the patch grid, one cell per token.
//   - Without --image: each token's score (the values the method ranked, pruner.scores()) as a colour scale
//     (viridis: dark purple = low, yellow = high; linear between the 2nd and 98th percentile of the finite scores,
//     +Inf at the top, -Inf at the bottom, NaN grey), and the dropped tokens dimmed (each channel times 0.35).
//   - With --image: the photograph resized to the grid (each cell is one patch of it), the kept patches as they are
//     and the dropped ones greyed out (a flat light grey with a faint trace of their luminance).
// Token layout:
//   - --layout llava-next: the base view (576 tokens, 24x24) and the high-resolution grid (R x C, the newline token
//     closing each row is not drawn) side by side, both the same height; each with its own colour scale (each is
//     pruned as a segment of its own).
//   - a video method (--frames T --grid HxW): the T frames as a horizontal strip, one colour scale.
//   - a method with --grid (fopru-row): that grid.
//   - otherwise a square grid when n is a perfect square, else an error naming --picture.
// The PNG is written atomically (temporary file in the same directory, then rename), like the .npy writers.
#pragma once

#include <tokenprune/tokenprune.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_HDR
#include <stb_image.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#define STB_IMAGE_RESIZE_STATIC
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace tokenprune_picture {

using tokenprune::fail;
using tokenprune::index_t;

// One grid drawn in the picture: rows x cols cells, each showing the token at that sequence index.
struct Panel {
  index_t rows = 0, cols = 0;
  std::vector<index_t> tokens;  // rows * cols, row-major
  int scale_group = 0;          // panels of one group share the colour scale
  int cell = 1;                 // pixels per cell side
};

// What the command line said about how the tokens are laid out.
struct Shape {
  index_t n_tokens = 0;
  bool llava_next = false;
  std::optional<std::pair<index_t, index_t>> grid;  // --grid: llava-next high-res grid, a video frame, fopru-row's grid
  std::optional<index_t> frames;                    // --frames (video methods)
};

// An RGB image, 8 bits per channel, rows top to bottom.
struct Image {
  int width = 0, height = 0;
  std::vector<unsigned char> rgb;
};

inline constexpr int kTargetSide = 336;   // a panel's longer side aims at this many pixels (CLIP's 336 / 14 px)
inline constexpr int kMaxStrip = 2688;    // a video strip is at most this wide (cells shrink, >= 1 px)
inline constexpr int kGap = 8;            // background between panels
inline constexpr unsigned char kBackground = 255;

inline index_t exact_sqrt(index_t n) {
  if (n < 0) return -1;
  auto r = static_cast<index_t>(std::llround(std::sqrt(static_cast<double>(n))));
  while (r > 0 && r * r > n) --r;
  while ((r + 1) * (r + 1) <= n) ++r;
  return r * r == n ? r : -1;
}

inline Panel grid_panel(index_t rows, index_t cols, index_t first, index_t row_step, int group) {
  Panel p;
  p.rows = rows;
  p.cols = cols;
  p.scale_group = group;
  p.tokens.resize(static_cast<std::size_t>(rows * cols));
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) p.tokens[static_cast<std::size_t>(r * cols + c)] = first + r * row_step + c;
  return p;
}

// The panels for a selection, or an Error naming --picture (value: `picture_path`).
inline std::vector<Panel> panels_for(const Shape& s, const std::string& picture_path) {
  const index_t n = s.n_tokens;
  std::vector<Panel> panels;
  auto pixels_limit = [&](index_t rows, index_t cols) {
    if (rows > 16384 || cols > 16384)
      fail("--picture", picture_path,
           "a " + std::to_string(rows) + "x" + std::to_string(cols) + " grid is too large to draw (at most 16384 a side)");
  };
  if (s.llava_next && s.grid) {
    const index_t base = tokenprune::LlavaNextLayout::kBaseTokens, side = exact_sqrt(base);
    const auto [rows, cols] = *s.grid;
    if (n != base + rows * (cols + 1))
      fail("--picture", picture_path, "llava-next needs 576 + R*(C+1) tokens, the input has " + std::to_string(n));
    pixels_limit(rows, cols);
    panels.push_back(grid_panel(side, side, 0, side, 0));
    panels.push_back(grid_panel(rows, cols, base, cols + 1, 1));
    const int height = kTargetSide;
    panels[0].cell = std::max(1, height / static_cast<int>(side));
    panels[1].cell = std::max(1, height / static_cast<int>(rows));
    return panels;
  }
  if (s.frames && s.grid) {
    const index_t frames = *s.frames;
    const auto [rows, cols] = *s.grid;
    if (frames * rows * cols != n)
      fail("--picture", picture_path,
           "--frames * --grid = " + std::to_string(frames * rows * cols) + " tokens, the input has " + std::to_string(n));
    pixels_limit(rows, cols * frames);
    const auto longer = static_cast<int>(std::max(rows, cols));
    const int strip = static_cast<int>(std::max<index_t>(1, (kMaxStrip - kGap * (frames - 1)) / (frames * cols)));
    const int cell = std::max(1, std::min(kTargetSide / 2 / longer, strip));
    for (index_t t = 0; t < frames; ++t) {
      panels.push_back(grid_panel(rows, cols, t * rows * cols, cols, 0));
      panels.back().cell = cell;
    }
    return panels;
  }
  index_t rows = 0, cols = 0;
  if (s.grid) {
    std::tie(rows, cols) = *s.grid;
    if (rows * cols != n)
      fail("--picture", picture_path,
           "--grid has " + std::to_string(rows * cols) + " cells, the input has " + std::to_string(n) + " tokens");
  } else {
    const index_t side = exact_sqrt(n);
    if (side < 1)
      fail("--picture", picture_path,
           std::to_string(n) + " tokens are not a square grid: a picture needs a square token count, "
                               "--layout llava-next, a video (--frames, --grid) or a method that takes --grid");
    rows = cols = side;
  }
  pixels_limit(rows, cols);
  panels.push_back(grid_panel(rows, cols, 0, cols, 0));
  panels.back().cell = std::max(2, kTargetSide / static_cast<int>(std::max(rows, cols)));
  return panels;
}

// --image: read and decode (PNG, JPEG, BMP, ... as stb_image reads them) to RGB, or an Error naming --image.
inline Image load_image(const std::string& path) {
  std::error_code error;
  if (path.empty()) fail("--image", "\"\"", "must be a file path");
  if (!std::filesystem::exists(path, error)) fail("--image", path, "file does not exist");
  if (std::filesystem::is_directory(path, error)) fail("--image", path, "is a directory");
  int w = 0, h = 0, channels = 0;
  unsigned char* data = stbi_load(path.c_str(), &w, &h, &channels, 3);
  if (data == nullptr) {
    const char* why = stbi_failure_reason();
    fail("--image", path, std::string("cannot decode the image (") + (why ? why : "unknown reason") + ")");
  }
  Image image;
  image.width = w;
  image.height = h;
  image.rgb.assign(data, data + static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * 3);
  stbi_image_free(data);
  if (w < 1 || h < 1) fail("--image", path, "the image is empty");
  return image;
}

// Viridis, 9 stops (matplotlib's values at 0, 1/8, ..., 1), linearly interpolated.
inline std::array<unsigned char, 3> viridis(float t) {
  static constexpr float stops[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},   {44, 113, 142}, {33, 144, 141},
                                        {39, 173, 129}, {92, 200, 99},  {170, 220, 50},  {253, 231, 37}};
  t = std::clamp(t, 0.0f, 1.0f) * 8.0f;
  const int i = std::min(7, static_cast<int>(t));
  const float f = t - static_cast<float>(i);
  std::array<unsigned char, 3> out{};
  for (int c = 0; c < 3; ++c)
    out[c] = static_cast<unsigned char>(std::lround(stops[i][c] + f * (stops[i + 1][c] - stops[i][c])));
  return out;
}

// The colour-scale ends of one group: the 2nd and 98th percentile of its finite scores.
inline std::pair<float, float> scale_of(const std::vector<Panel>& panels, int group, std::span<const float> scores) {
  std::vector<float> finite;
  for (const Panel& p : panels) {
    if (p.scale_group != group) continue;
    for (index_t t : p.tokens)
      if (t >= 0 && static_cast<std::size_t>(t) < scores.size() && std::isfinite(scores[static_cast<std::size_t>(t)]))
        finite.push_back(scores[static_cast<std::size_t>(t)]);
  }
  if (finite.empty()) return {0.0f, 0.0f};
  std::sort(finite.begin(), finite.end());
  const auto at = [&](double q) { return finite[static_cast<std::size_t>(std::lround(q * static_cast<double>(finite.size() - 1)))]; };
  return {at(0.02), at(0.98)};
}

// Draws the panels side by side (top-aligned, kGap apart) into an RGB image.
inline Image render(std::vector<Panel> panels, std::span<const float> scores, std::span<const index_t> kept,
                    const Image* photo) {
  index_t max_token = -1;
  for (const Panel& p : panels)
    for (index_t t : p.tokens) max_token = std::max(max_token, t);
  std::vector<char> is_kept(static_cast<std::size_t>(max_token + 1), 0);
  for (index_t k : kept)
    if (k >= 0 && k <= max_token) is_kept[static_cast<std::size_t>(k)] = 1;

  int width = 0, height = 0;
  for (std::size_t i = 0; i < panels.size(); ++i) {
    width += static_cast<int>(panels[i].cols) * panels[i].cell + (i ? kGap : 0);
    height = std::max(height, static_cast<int>(panels[i].rows) * panels[i].cell);
  }
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.assign(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3, kBackground);

  std::vector<std::pair<float, float>> scales;
  for (const Panel& p : panels) {
    if (static_cast<std::size_t>(p.scale_group) >= scales.size()) scales.resize(static_cast<std::size_t>(p.scale_group) + 1);
  }
  for (std::size_t g = 0; g < scales.size(); ++g) scales[g] = scale_of(panels, static_cast<int>(g), scores);

  int x0 = 0;
  for (const Panel& p : panels) {
    const int pw = static_cast<int>(p.cols) * p.cell, ph = static_cast<int>(p.rows) * p.cell;
    std::vector<unsigned char> resized;
    if (photo != nullptr) {
      resized.resize(static_cast<std::size_t>(pw) * static_cast<std::size_t>(ph) * 3);
      if (!stbir_resize_uint8(photo->rgb.data(), photo->width, photo->height, 0, resized.data(), pw, ph, 0, 3))
        fail("--image", "resize", "cannot resize the image to the token grid");
    }
    const auto [lo, hi] = scales[static_cast<std::size_t>(p.scale_group)];
    for (index_t r = 0; r < p.rows; ++r) {
      for (index_t c = 0; c < p.cols; ++c) {
        const index_t token = p.tokens[static_cast<std::size_t>(r * p.cols + c)];
        const bool keep = token >= 0 && is_kept[static_cast<std::size_t>(token)] != 0;
        std::array<unsigned char, 3> colour{128, 128, 128};
        if (photo == nullptr && token >= 0 && static_cast<std::size_t>(token) < scores.size()) {
          const float v = scores[static_cast<std::size_t>(token)];
          if (!std::isnan(v)) {
            float t = 0.5f;
            if (v == std::numeric_limits<float>::infinity()) t = 1.0f;
            else if (v == -std::numeric_limits<float>::infinity()) t = 0.0f;
            else if (hi > lo) t = (v - lo) / (hi - lo);
            colour = viridis(t);
          }
        }
        for (int y = 0; y < p.cell; ++y) {
          const int py = static_cast<int>(r) * p.cell + y;
          unsigned char* row = out.rgb.data() + (static_cast<std::size_t>(py) * static_cast<std::size_t>(width) +
                                                 static_cast<std::size_t>(x0 + static_cast<int>(c) * p.cell)) * 3;
          for (int x = 0; x < p.cell; ++x) {
            unsigned char* px = row + static_cast<std::size_t>(x) * 3;
            if (photo != nullptr) {
              const unsigned char* src =
                  resized.data() + (static_cast<std::size_t>(py) * static_cast<std::size_t>(pw) +
                                    static_cast<std::size_t>(static_cast<int>(c) * p.cell + x)) * 3;
              if (keep) {
                px[0] = src[0], px[1] = src[1], px[2] = src[2];
              } else {
                const double lum = 0.299 * src[0] + 0.587 * src[1] + 0.114 * src[2];
                const auto grey = static_cast<unsigned char>(std::lround(200.0 + 0.15 * (lum - 128.0)));
                px[0] = px[1] = px[2] = grey;
              }
            } else {
              for (int k = 0; k < 3; ++k)
                px[k] = keep ? colour[static_cast<std::size_t>(k)]
                             : static_cast<unsigned char>(std::lround(0.35 * colour[static_cast<std::size_t>(k)]));
            }
          }
        }
      }
    }
    x0 += pw + kGap;
  }
  return out;
}

// The PNG bytes of an image.
inline std::vector<unsigned char> encode_png(const Image& image) {
  std::vector<unsigned char> bytes;
  const auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(context);
    const auto* begin = static_cast<const unsigned char*>(data);
    out->insert(out->end(), begin, begin + size);
  };
  stbi_write_png_compression_level = 9;
  if (!stbi_write_png_to_func(append, &bytes, image.width, image.height, 3, image.rgb.data(), image.width * 3))
    fail("--picture", "encode", "cannot encode the PNG");
  return bytes;
}

// Writes `bytes` to `path` through a temporary file in the same directory and a rename: a failed write leaves no
// file (and never a partial one) behind.
inline void write_file_atomically(const std::string& path, const std::vector<unsigned char>& bytes) {
  static std::atomic<unsigned> counter{0};
  std::string temp;
  std::FILE* file = nullptr;
  for (int attempt = 0; attempt < 16 && !file; ++attempt) {
    temp = path + ".tmp-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "-" +
           std::to_string(counter++);
    file = std::fopen(temp.c_str(), "wbx");
  }
  if (!file) fail("--picture", path, "cannot create a temporary file next to it");
  const bool written = bytes.empty() || std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  const bool closed = std::fclose(file) == 0;
  std::error_code error;
  if (written && closed) std::filesystem::rename(temp, path, error);
  if (!written || !closed || error) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    fail("--picture", path, "cannot write the PNG" + (error ? ": " + error.message() : std::string()));
  }
}

}  // namespace tokenprune_picture
