#pragma once
#include <tokenprune/core/abi.hpp>
// NumPy .npy files (format versions 1.0, 2.0 and 3.0) for the dtypes the library uses: float32, float16 (kept as
// raw bits) and int64. Input is untrusted: every defect ends in tokenprune::Error, and nothing is allocated from a
// size the header claims until that size has been checked against the bytes actually present.

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "tokenprune/core/error.hpp"

namespace tokenprune::inline TOKENPRUNE_ABI::io {

// Element bytes are copied as they are in the file; a big-endian host would need byte swapping throughout.
static_assert(std::endian::native == std::endian::little, "tokenprune npy I/O assumes a little-endian host");

enum class NpyType { f32, f16, i64 };

namespace detail {

inline std::size_t npy_item_size(NpyType type) {
  constexpr std::size_t sizes[] = {4, 2, 8};
  return sizes[static_cast<int>(type)];
}

inline const char* npy_descr(NpyType type) {
  constexpr const char* descrs[] = {"<f4", "<f2", "<i8"};
  return descrs[static_cast<int>(type)];
}

template <class T>
constexpr NpyType npy_type_of() {
  if constexpr (std::is_same_v<T, float>) {
    return NpyType::f32;
  } else if constexpr (std::is_same_v<T, std::uint16_t>) {
    return NpyType::f16;
  } else {
    static_assert(std::is_same_v<T, std::int64_t>, "npy elements are float, std::uint16_t (f16 bits) or int64_t");
    return NpyType::i64;
  }
}

}  // namespace detail

struct NpyArray {
  NpyType type = NpyType::f32;
  std::vector<std::int64_t> shape;  // as in the header; empty for a scalar
  std::vector<std::byte> data;      // always C (row-major) order, little-endian

  // Number of elements. A parsed array with a zero dimension is empty whatever its other dimensions claim
  // (they may be huge), so zero is checked first and the product is never formed for it.
  [[nodiscard]] std::int64_t size() const {
    for (std::int64_t dim : shape)
      if (dim == 0) return 0;
    std::int64_t count = 1;
    for (std::int64_t dim : shape) count *= dim;  // bounded by the bytes present, checked by the parser
    return count;
  }

  template <class T>
  [[nodiscard]] std::span<const T> values() const {
    if (detail::npy_type_of<T>() != type) {
      fail("NpyArray::values", detail::npy_descr(type), "requested element type does not match the array's dtype");
    }
    // Vector storage comes from operator new, which aligns for every supported element type.
    return {reinterpret_cast<const T*>(data.data()), data.size() / sizeof(T)};
  }
};

namespace detail {

inline constexpr std::size_t npy_max_header_length = std::size_t{1} << 20;
inline constexpr std::string_view npy_magic{"\x93NUMPY", 6};

// Untrusted text shortened and made printable for error messages.
inline std::string npy_excerpt(std::string_view text) {
  constexpr std::size_t limit = 48;
  std::string out;
  for (char c : text.substr(0, limit)) out += (c >= ' ' && c <= '~') ? c : '?';
  if (text.size() > limit) out += "...";
  return out;
}

// Python tuple syntax, as numpy writes it: "()", "(5,)", "(2, 3)".
inline std::string npy_shape_text(std::span<const std::int64_t> shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

// Product of non-negative dims, failing instead of overflowing.
inline std::uint64_t npy_element_count(std::span<const std::int64_t> shape, std::string_view name) {
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  std::uint64_t count = 1;
  for (std::int64_t dim : shape) {
    if (count > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max() / dim)) {
      fail(name, npy_shape_text(shape), "npy shape element count overflows");
    }
    count *= static_cast<std::uint64_t>(dim);
  }
  return count;
}

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<std::int64_t> shape;
};

// Parses the Python dict literal numpy writes; only the three keys of the format are allowed.
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string_view text, std::string_view name) : text_(text), name_(name) {}

  NpyHeader parse() {
    NpyHeader header;
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    expect('{');
    while (!consume('}')) {
      const std::size_t key_pos = pos_;
      const std::string key = parse_string();
      expect(':');
      if (key == "descr" && !seen_descr) {
        skip_space();
        if (peek() == '[') fail(name_, npy_excerpt(text_.substr(pos_)), "unsupported npy dtype: structured arrays");
        header.descr = parse_string();
        seen_descr = true;
      } else if (key == "fortran_order" && !seen_fortran) {
        header.fortran_order = parse_bool();
        seen_fortran = true;
      } else if (key == "shape" && !seen_shape) {
        header.shape = parse_shape();
        seen_shape = true;
      } else {
        pos_ = key_pos;
        error(key == "descr" || key == "fortran_order" || key == "shape" ? "duplicate key" : "unknown key");
      }
      if (!consume(',')) {
        expect('}');
        break;
      }
    }
    skip_space();
    if (pos_ != text_.size()) error("unexpected text after the header dict");
    for (auto [seen, key] :
         {std::pair{seen_descr, "descr"}, std::pair{seen_fortran, "fortran_order"}, std::pair{seen_shape, "shape"}}) {
      if (!seen) fail(name_, npy_excerpt(text_), std::string("npy header is missing key '") + key + "'");
    }
    return header;
  }

 private:
  [[noreturn]] void error(const std::string& reason) const {
    fail(name_, npy_excerpt(text_.substr(pos_)), "malformed npy header: " + reason);
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < text_.size() && std::string_view(" \t\r\n").find(text_[pos_]) != std::string_view::npos) ++pos_;
  }
  bool consume(char c) {
    skip_space();
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  void expect(char c) {
    if (!consume(c)) error(std::string("expected '") + c + "'");
  }

  std::string parse_string() {
    skip_space();
    const char quote = peek();
    if (quote != '\'' && quote != '"') error("expected a quoted string");
    const std::size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) error("unterminated string");
    std::string value(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return value;
  }

  bool parse_bool() {
    skip_space();
    for (auto [word, value] :
         {std::pair{std::string_view("True"), true}, std::pair{std::string_view("False"), false}}) {
      if (text_.substr(pos_).starts_with(word)) {
        pos_ += word.size();
        return value;
      }
    }
    error("fortran_order must be True or False");
  }

  std::vector<std::int64_t> parse_shape() {
    expect('(');
    std::vector<std::int64_t> shape;
    bool trailing_comma = false;
    while (!consume(')')) {
      shape.push_back(parse_dim());
      trailing_comma = consume(',');
      if (!trailing_comma) {
        expect(')');
        break;
      }
    }
    // In Python "(5)" is the integer 5, not a tuple.
    if (shape.size() == 1 && !trailing_comma) error("a one-element shape needs a trailing comma, as in (5,)");
    return shape;
  }

  std::int64_t parse_dim() {
    skip_space();
    if (peek() == '-') error("negative dimension");
    if (peek() < '0' || peek() > '9') error("non-numeric dimension");
    std::int64_t value = 0;
    while (peek() >= '0' && peek() <= '9') {
      const int digit = peek() - '0';
      if (value > (std::numeric_limits<std::int64_t>::max() - digit) / 10) error("dimension too large");
      value = value * 10 + digit;
      ++pos_;
    }
    if (peek() == 'L') ++pos_;  // Python 2 era files wrote long integers as "3L"
    return value;
  }

  std::string_view text_;
  std::string_view name_;
  std::size_t pos_ = 0;
};

// The element type of a descr, and whether the file holds float64 (numpy's default), which is read as float32.
struct NpyFileType {
  NpyType type;
  bool from_f64;
  [[nodiscard]] std::size_t file_item() const { return from_f64 ? 8 : npy_item_size(type); }
};

inline NpyFileType npy_type_from_descr(std::string_view descr, std::string_view name) {
  // '=' is native order, which is little-endian here (see the static_assert above).
  if (descr.size() == 3 && (descr[0] == '<' || descr[0] == '=')) {
    for (NpyType type : {NpyType::f32, NpyType::f16, NpyType::i64}) {
      if (descr.substr(1) == npy_descr(type) + 1) return {type, false};
    }
    if (descr.substr(1) == "f8") return {NpyType::f32, true};
  }
  if (descr.starts_with('>') || descr.starts_with('!')) {
    fail(name, npy_excerpt(descr), "unsupported byte order (big-endian); expected '<f4', '<f2', '<f8' or '<i8'");
  }
  fail(name, npy_excerpt(descr), "unsupported npy dtype; expected '<f4', '<f2', '<f8' or '<i8'");
}

// Reorders column-major (Fortran) elements into row-major order for any rank.
inline std::vector<std::byte> npy_fortran_to_c(std::span<const std::byte> source,
                                               const std::vector<std::int64_t>& shape, std::size_t item) {
  const std::size_t rank = shape.size();
  std::vector<std::size_t> source_stride(rank);  // in bytes; the first axis varies fastest in Fortran order
  std::size_t stride = item;
  for (std::size_t axis = 0; axis < rank; ++axis) {
    source_stride[axis] = stride;
    stride *= static_cast<std::size_t>(shape[axis]);
  }
  std::vector<std::byte> target(source.size());
  std::vector<std::int64_t> index(rank, 0);
  std::size_t from = 0;
  for (std::size_t to = 0; to < target.size(); to += item) {
    std::memcpy(target.data() + to, source.data() + from, item);
    // Advance the C-order multi-index (last axis fastest) and move the source offset along with it.
    for (std::size_t axis = rank; axis-- > 0;) {
      if (++index[axis] < shape[axis]) {
        from += source_stride[axis];
        break;
      }
      index[axis] = 0;
      from -= source_stride[axis] * static_cast<std::size_t>(shape[axis] - 1);
    }
  }
  return target;
}

// Temp-file names: the clock separates processes, the counter separates calls within one, and the exclusive open
// in npy_write_file catches any remaining collision.
inline std::string npy_temp_suffix() {
  static std::atomic<unsigned> counter{0};
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return ".tmp-" + std::to_string(now) + "-" + std::to_string(counter++);
}

inline void npy_write_file(const std::string& path, NpyType type, std::span<const std::int64_t> shape,
                           std::span<const std::byte> data) {
  for (std::int64_t dim : shape) {
    if (dim < 0) fail(path, npy_shape_text(shape), "npy shape has a negative dimension");
  }
  const std::size_t item = npy_item_size(type);
  if (npy_element_count(shape, path) != data.size() / item) {
    fail(path, npy_shape_text(shape),
         "shape does not match the " + std::to_string(data.size() / item) + " values given");
  }
  std::string header = std::string("{'descr': '") + npy_descr(type) +
                       "', 'fortran_order': False, 'shape': " + npy_shape_text(shape) + ", }";
  // Like numpy: pad with spaces so the data starts on a 64-byte boundary, and end the header with a newline.
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  if (header.size() > 0xffff) fail(path, npy_shape_text(shape), "shape too long for an npy 1.0 header");
  std::string prefix(npy_magic);
  for (unsigned value : {1u, 0u, unsigned(header.size() & 0xff), unsigned(header.size() >> 8)}) {
    prefix += static_cast<char>(value);
  }

  std::string temp;
  std::FILE* file = nullptr;
  for (int attempt = 0; attempt < 16 && !file; ++attempt) {
    temp = path + npy_temp_suffix();
    file = std::fopen(temp.c_str(), "wbx");  // "x": never clobber a file someone else created
  }
  if (!file) fail(path, temp, "cannot create temporary file for writing");
  const auto put = [file](const void* bytes, std::size_t count) {
    return count == 0 || std::fwrite(bytes, 1, count, file) == count;
  };
  const bool written =
      put(prefix.data(), prefix.size()) && put(header.data(), header.size()) && put(data.data(), data.size());
  const bool closed = std::fclose(file) == 0;
  std::error_code error;
  if (written && closed) std::filesystem::rename(temp, path, error);
  if (!written || !closed || error) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    fail(path, error ? error.message() : "write error", "cannot write npy file");
  }
}

}  // namespace detail

namespace detail {
// What the prefix and header of an npy file say: where the payload starts, its element type and shape.
struct NpyLayout {
  NpyHeader header;
  NpyFileType type;
  std::size_t payload_offset = 0;
  std::uint64_t count = 0;
};

// The fixed prefix: magic, version, header length. Needs npy_prefix_max (12) bytes, or the whole file if shorter.
inline std::size_t npy_header_end(std::span<const std::byte> bytes, std::string_view name) {
  const auto* chars = reinterpret_cast<const char*>(bytes.data());
  if (bytes.size() < 8 || std::string_view(chars, 6) != npy_magic) {
    fail(name, npy_excerpt(std::string_view(chars, std::min<std::size_t>(bytes.size(), 6))),
         "not an npy file (bad magic string)");
  }
  const auto major = std::to_integer<unsigned>(bytes[6]);
  const auto minor = std::to_integer<unsigned>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0) {
    fail(name, std::to_string(major) + "." + std::to_string(minor),
         "unsupported npy format version (expected 1.0, 2.0 or 3.0)");
  }
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  const std::size_t prefix = 8 + length_bytes;
  if (bytes.size() < prefix) fail(name, std::to_string(bytes.size()) + " bytes", "file ends inside the npy prefix");
  std::size_t header_length = 0;
  for (std::size_t i = 0; i < length_bytes; ++i) header_length |= std::to_integer<std::size_t>(bytes[8 + i]) << (8 * i);
  if (header_length > npy_max_header_length) fail(name, header_length, "npy header length exceeds the 1 MiB limit");
  return prefix + header_length;
}
inline constexpr std::size_t npy_prefix_max = 12;

// Parses prefix and header from `head` (the file's first npy_header_end() bytes) and checks the payload size
// the file has (file_size bytes in all).
inline NpyLayout npy_layout(std::span<const std::byte> head, std::uint64_t file_size, std::string_view name) {
  const std::size_t end = npy_header_end(head, name);
  const std::size_t prefix = std::to_integer<unsigned>(head[6]) == 1 ? 10 : 12;  // checked present above
  if (end > file_size) {
    fail(name, end - prefix,
         "npy header length runs past the end of the file (" + std::to_string(file_size - prefix) + " bytes left)");
  }
  const std::string_view text(reinterpret_cast<const char*>(head.data()) + prefix, end - prefix);
  if (!text.ends_with('\n')) fail(name, npy_excerpt(text), "npy header is not terminated by a newline");
  NpyLayout layout{NpyHeaderParser(text, name).parse(), {}, end, 0};
  layout.type = npy_type_from_descr(layout.header.descr, name);
  layout.count = npy_element_count(layout.header.shape, name);
  const std::size_t item = layout.type.file_item();
  const std::uint64_t payload = file_size - end;
  // Compare by division so the check itself cannot overflow.
  if (layout.count > payload / item) {
    fail(name, npy_shape_text(layout.header.shape),
         "npy data is truncated: the shape needs more than the " + std::to_string(payload) + " data bytes present");
  }
  if (payload != layout.count * item) {
    fail(name, npy_shape_text(layout.header.shape),
         "npy data has " + std::to_string(payload - layout.count * item) + " trailing bytes beyond the shape");
  }
  return layout;
}

// The array from its payload bytes: float64 narrowed to float32, column-major reordered to row-major.
inline NpyArray npy_array(const NpyLayout& layout, std::vector<std::byte> payload) {
  NpyArray array{layout.type.type, layout.header.shape, std::move(payload)};
  if (layout.type.from_f64) {  // in place: element t's 4 bytes go where element t/2's 8 bytes began
    for (std::uint64_t t = 0; t < layout.count; ++t) {
      double value;
      std::memcpy(&value, array.data.data() + t * 8, 8);
      const auto narrowed = static_cast<float>(value);
      std::memcpy(array.data.data() + t * 4, &narrowed, 4);
    }
    array.data.resize(static_cast<std::size_t>(layout.count) * 4);
  }
  if (layout.header.fortran_order && layout.header.shape.size() > 1)
    array.data = npy_fortran_to_c(array.data, layout.header.shape, npy_item_size(array.type));
  return array;
}
}  // namespace detail

// Parses an npy file held in memory. float64 ('<f8', numpy's default) is read as float32.
inline NpyArray parse_npy(std::span<const std::byte> bytes, std::string_view name) {
  using namespace detail;
  const NpyLayout layout = npy_layout(bytes, bytes.size(), name);
  const auto payload = bytes.subspan(layout.payload_offset);
  return npy_array(layout, std::vector<std::byte>(payload.begin(), payload.end()));
}

inline NpyArray read_npy(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (status.type() == fs::file_type::not_found) fail(path, "missing", "npy file does not exist");
  if (error) fail(path, error.message(), "cannot access npy file");
  if (fs::is_directory(status)) fail(path, "directory", "expected an npy file, found a directory");
  if (!fs::is_regular_file(status)) fail(path, "special file", "npy path is not a regular file");
  const std::uintmax_t size = fs::file_size(path, error);
  if (error) fail(path, error.message(), "cannot determine npy file size");
  // The header first, then the payload straight into the array: the file is held once, not twice.
  std::ifstream in(path, std::ios::binary);
  auto read = [&](std::byte* into, std::size_t count) {
    if (!in.read(reinterpret_cast<char*>(into), static_cast<std::streamsize>(count)))
      fail(path, "read error", "cannot read npy file");
  };
  std::vector<std::byte> head(static_cast<std::size_t>(std::min<std::uintmax_t>(size, detail::npy_prefix_max)));
  read(head.data(), head.size());
  const std::size_t end = detail::npy_header_end(head, path);
  if (end <= size && end > head.size()) {
    const std::size_t have = head.size();
    head.resize(end);
    read(head.data() + have, end - have);
  }
  const detail::NpyLayout layout = detail::npy_layout(head, size, path);
  std::vector<std::byte> payload(static_cast<std::size_t>(size - layout.payload_offset));
  if (!payload.empty()) read(payload.data(), payload.size());
  return detail::npy_array(layout, std::move(payload));
}

inline void write_npy_int64(const std::string& path, std::span<const std::int64_t> values) {
  const std::int64_t shape[] = {static_cast<std::int64_t>(values.size())};
  detail::npy_write_file(path, NpyType::i64, shape, std::as_bytes(values));
}

inline void write_npy_f32(const std::string& path, std::span<const float> values, std::span<const std::int64_t> shape) {
  detail::npy_write_file(path, NpyType::f32, shape, std::as_bytes(values));
}

inline void write_npy_f16_bits(const std::string& path, std::span<const std::uint16_t> bits,
                               std::span<const std::int64_t> shape) {
  detail::npy_write_file(path, NpyType::f16, shape, std::as_bytes(bits));
}

}  // namespace tokenprune::io
