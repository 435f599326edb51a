#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "tokenprune/io/npy.hpp"

namespace {

namespace fs = std::filesystem;
using tokenprune::io::NpyArray;
using tokenprune::io::NpyType;
using tokenprune::io::parse_npy;
using tokenprune::io::read_npy;

// A fresh directory per test, removed afterwards.
struct TempDir {
  fs::path path = fs::temp_directory_path() /
                  ("tokenprune_npy_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  // Writers must never leave their temp files behind.
  bool has_temp_files() const {
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.path().filename().string().find(".tmp-") != std::string::npos) return true;
    }
    return false;
  }
};

std::vector<std::byte> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

template <class T>
std::vector<std::byte> to_bytes(const std::vector<T>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(T));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

// Builds an .npy image by hand: magic, version, little-endian header length (2 bytes for 1.0, else 4), header, data.
std::vector<std::byte> npy_image(unsigned major, std::string_view header, const std::vector<std::byte>& payload = {}) {
  std::vector<std::byte> out;
  const auto put = [&out](unsigned value) { out.push_back(static_cast<std::byte>(value & 0xff)); };
  for (char c : std::string_view("\x93NUMPY", 6)) put(static_cast<unsigned char>(c));
  put(major);
  put(0);
  for (unsigned i = 0; i < (major == 1 ? 2u : 4u); ++i) put(static_cast<unsigned>(header.size() >> (8 * i)));
  for (char c : header) put(static_cast<unsigned char>(c));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::string dict(const std::string& descr, const std::string& fortran, const std::string& shape) {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }\n";
}

const std::vector<float> two_floats = {1.5f, -2.0f};

void require_parse_error(const std::vector<std::byte>& bytes, const std::string& expected) {
  REQUIRE_THROWS_AS(parse_npy(bytes, "input.npy"), tokenprune::Error);
  try {
    parse_npy(bytes, "input.npy");
  } catch (const tokenprune::Error& error) {
    INFO(error.what());
    CHECK(error.argument() == "input.npy");
    CHECK(std::string(error.what()).find(expected) != std::string::npos);
  }
}

// A version 1.0 file holding two_floats under the given header.
void require_header_error(const std::string& header, const std::string& expected) {
  INFO(header);
  require_parse_error(npy_image(1, header, to_bytes(two_floats)), expected);
}

template <class Call>
void require_path_error(Call call, const std::string& path, const std::string& expected) {
  REQUIRE_THROWS_AS(call(), tokenprune::Error);
  try {
    call();
  } catch (const tokenprune::Error& error) {
    INFO(error.what());
    CHECK(error.argument() == path);
    CHECK(std::string(error.what()).find(path) != std::string::npos);
    CHECK(std::string(error.what()).find(expected) != std::string::npos);
  }
}

template <class T>
std::vector<T> values_of(const NpyArray& array) {
  const auto span = array.values<T>();
  return {span.begin(), span.end()};
}

}  // namespace

TEST_CASE("npy: int64 writer round trip") {
  TempDir dir;
  const std::string path = dir.file("keep.npy");
  const std::vector<std::int64_t> values = {0, -1, 42, std::numeric_limits<std::int64_t>::min(),
                                            std::numeric_limits<std::int64_t>::max()};
  tokenprune::io::write_npy_int64(path, values);
  const NpyArray array = read_npy(path);
  CHECK(array.type == NpyType::i64);
  CHECK(array.shape == std::vector<std::int64_t>{5});
  CHECK(array.size() == 5);
  CHECK(values_of<std::int64_t>(array) == values);
  CHECK_FALSE(dir.has_temp_files());

  // Layout numpy expects: version 1.0, header padded to a multiple of 64 bytes and ending in a newline.
  const std::vector<std::byte> bytes = read_bytes(path);
  REQUIRE(bytes.size() > 10);
  CHECK(std::to_integer<int>(bytes[6]) == 1);
  CHECK(std::to_integer<int>(bytes[7]) == 0);
  const std::size_t header_end =
      10 + std::to_integer<std::size_t>(bytes[8]) + 256 * std::to_integer<std::size_t>(bytes[9]);
  CHECK(header_end % 64 == 0);
  CHECK(std::to_integer<char>(bytes[header_end - 1]) == '\n');
  CHECK(bytes.size() == header_end + values.size() * 8);

  tokenprune::io::write_npy_int64(path, std::vector<std::int64_t>{});  // overwrites, empty 1-D array
  const NpyArray empty = read_npy(path);
  CHECK(empty.shape == std::vector<std::int64_t>{0});
  CHECK(empty.size() == 0);
  CHECK(empty.values<std::int64_t>().empty());
}

TEST_CASE("npy: f32 writer round trip") {
  TempDir dir;
  const std::string path = dir.file("features.npy");
  const std::vector<float> values = {0.f, 1.5f, -2.25f, 3e38f, -1e-38f, 7.f};
  tokenprune::io::write_npy_f32(path, values, std::vector<std::int64_t>{2, 3});
  const NpyArray array = read_npy(path);
  CHECK(array.type == NpyType::f32);
  CHECK(array.shape == std::vector<std::int64_t>{2, 3});
  CHECK(values_of<float>(array) == values);

  tokenprune::io::write_npy_f32(path, std::vector<float>{4.5f}, std::vector<std::int64_t>{});
  const NpyArray scalar = read_npy(path);
  CHECK(scalar.shape.empty());
  CHECK(scalar.size() == 1);
  CHECK(values_of<float>(scalar) == std::vector<float>{4.5f});

  tokenprune::io::write_npy_f32(path, std::vector<float>{}, std::vector<std::int64_t>{0, 4});
  const NpyArray empty = read_npy(path);
  CHECK(empty.shape == std::vector<std::int64_t>{0, 4});
  CHECK(empty.size() == 0);
  CHECK_FALSE(dir.has_temp_files());
}

TEST_CASE("npy: f16 bits writer round trip") {
  TempDir dir;
  const std::string path = dir.file("half.npy");
  const std::vector<std::uint16_t> bits = {0x0000, 0x3c00, 0xbc00, 0x7bff, 0x7c00, 0x7e00, 0x0001, 0xffff};
  tokenprune::io::write_npy_f16_bits(path, bits, std::vector<std::int64_t>{2, 2, 2});
  const NpyArray array = read_npy(path);
  CHECK(array.type == NpyType::f16);
  CHECK(array.shape == std::vector<std::int64_t>{2, 2, 2});
  CHECK(values_of<std::uint16_t>(array) == bits);
  CHECK_FALSE(dir.has_temp_files());
}

TEST_CASE("npy: writers reject shapes that do not match the values") {
  TempDir dir;
  const std::string path = dir.file("bad.npy");
  const std::vector<float> three = {1.f, 2.f, 3.f};
  require_path_error(
      [&] {
        tokenprune::io::write_npy_f32(path, three, std::vector<std::int64_t>{2, 2});
      },
      path, "does not match the 3 values");
  require_path_error([&] { tokenprune::io::write_npy_f32(path, three, std::vector<std::int64_t>{-3}); }, path,
                     "negative dimension");
  require_path_error(
      [&] {
        tokenprune::io::write_npy_f16_bits(path, std::vector<std::uint16_t>{1},
                                           std::vector<std::int64_t>{1LL << 40, 1LL << 40});
      },
      path, "overflows");
  CHECK_FALSE(fs::exists(path));
  CHECK_FALSE(dir.has_temp_files());
}

TEST_CASE("npy: writers fail cleanly when the target cannot be written") {
  TempDir dir;
  const std::vector<std::int64_t> values = {1, 2};
  const std::string in_missing_dir = dir.file("no/such/dir/x.npy");
  require_path_error([&] { tokenprune::io::write_npy_int64(in_missing_dir, values); }, in_missing_dir,
                     "cannot create temporary file");

  // Rename onto an existing non-empty directory fails after the data was written; the temp file must go.
  const std::string occupied = dir.file("occupied");
  fs::create_directories(fs::path(occupied) / "child");
  require_path_error([&] { tokenprune::io::write_npy_int64(occupied, values); }, occupied, "cannot write npy file");
  CHECK(fs::is_directory(occupied));
  CHECK_FALSE(dir.has_temp_files());
}

TEST_CASE("npy: parses version 1.0, 2.0 and 3.0 headers") {
  const std::vector<std::int64_t> values = {7, -8, 9};
  for (unsigned major : {1u, 2u, 3u}) {
    INFO("version " << major);
    const NpyArray array = parse_npy(npy_image(major, dict("<i8", "False", "(3,)"), to_bytes(values)), "v.npy");
    CHECK(array.type == NpyType::i64);
    CHECK(array.shape == std::vector<std::int64_t>{3});
    CHECK(values_of<std::int64_t>(array) == values);
  }
  // 2.0 and 3.0 use a 4-byte length field; a header longer than 65535 bytes needs it.
  const std::string long_header =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}" + std::string(70000, ' ') + "\n";
  CHECK(parse_npy(npy_image(2, long_header, to_bytes(two_floats)), "long.npy").shape == std::vector<std::int64_t>{2});
}

TEST_CASE("npy: header dict syntax variants") {
  struct Variant {
    std::string header;
    std::vector<std::int64_t> shape;
  };
  const std::vector<Variant> variants = {
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", {2}},
      {"{'shape': (2,), 'descr': '<f4', 'fortran_order': False}\n", {2}},
      {"{'fortran_order':False,'shape':(2,),'descr':'<f4'}\n", {2}},
      {"{ \"descr\" : \"<f4\" ,\t'fortran_order' : False ,\n 'shape' : ( 1 , 2 ) }   \n", {1, 2}},
      {"{'descr': '=f4', 'fortran_order': False, 'shape': (2, 1,)}\n", {2, 1}},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2L,)}\n", {2}},
  };
  for (const Variant& variant : variants) {
    INFO(variant.header);
    const NpyArray array = parse_npy(npy_image(1, variant.header, to_bytes(two_floats)), "variant.npy");
    CHECK(array.shape == variant.shape);
    CHECK(values_of<float>(array) == two_floats);
  }
  const NpyArray scalar =
      parse_npy(npy_image(1, dict("<f2", "False", "()"), to_bytes(std::vector<std::uint16_t>{0x3c00})), "s");
  CHECK(scalar.shape.empty());
  CHECK(scalar.size() == 1);
  CHECK(values_of<std::uint16_t>(scalar) == std::vector<std::uint16_t>{0x3c00});
}

TEST_CASE("npy: Fortran order 2-D is converted to C order") {
  // Matrix [[0, 1, 2], [10, 11, 12]] stored column by column.
  const std::vector<float> fortran = {0, 10, 1, 11, 2, 12};
  const NpyArray array = parse_npy(npy_image(1, dict("<f4", "True", "(2, 3)"), to_bytes(fortran)), "f.npy");
  CHECK(array.shape == std::vector<std::int64_t>{2, 3});
  CHECK(values_of<float>(array) == std::vector<float>{0, 1, 2, 10, 11, 12});

  // Rank 1 is the same in both orders.
  const NpyArray flat = parse_npy(npy_image(1, dict("<f4", "True", "(2,)"), to_bytes(two_floats)), "f.npy");
  CHECK(values_of<float>(flat) == two_floats);
}

TEST_CASE("npy: Fortran order 3-D is converted to C order") {
  // Element (i, j, k) of shape (2, 3, 2) is 100i + 10j + k; in Fortran order i varies fastest, then j, then k.
  const std::vector<std::int64_t> fortran = {0, 100, 10, 110, 20, 120, 1, 101, 11, 111, 21, 121};
  const NpyArray array = parse_npy(npy_image(3, dict("<i8", "True", "(2, 3, 2)"), to_bytes(fortran)), "f.npy");
  CHECK(array.shape == std::vector<std::int64_t>{2, 3, 2});
  CHECK(values_of<std::int64_t>(array) ==
        std::vector<std::int64_t>{0, 1, 10, 11, 20, 21, 100, 101, 110, 111, 120, 121});

  const NpyArray empty = parse_npy(npy_image(1, dict("<i8", "True", "(2, 0, 3)")), "f.npy");
  CHECK(empty.size() == 0);
  CHECK(empty.data.empty());
}

TEST_CASE("npy: rejects bad framing") {
  const std::vector<std::byte> payload = to_bytes(two_floats);
  const std::string header = dict("<f4", "False", "(2,)");
  require_parse_error({}, "bad magic");
  std::vector<std::byte> wrong_magic = npy_image(1, header, payload);
  wrong_magic[1] = std::byte{'n'};
  require_parse_error(wrong_magic, "bad magic");

  for (auto [major, minor] : {std::pair{0u, 0u}, std::pair{4u, 0u}, std::pair{1u, 1u}}) {
    std::vector<std::byte> bytes = npy_image(1, header, payload);
    bytes[6] = static_cast<std::byte>(major);
    bytes[7] = static_cast<std::byte>(minor);
    require_parse_error(bytes, "unsupported npy format version");
  }

  std::vector<std::byte> cut_prefix = npy_image(2, header);
  cut_prefix.resize(10);  // the 2.0 length field needs 4 bytes, only 2 are left
  require_parse_error(cut_prefix, "ends inside the npy prefix");
  std::vector<std::byte> short_header = npy_image(1, header);
  short_header[8] = std::byte{0xff};  // claims 0x..ff bytes but the file is shorter
  require_parse_error(short_header, "runs past the end of the file");
  std::vector<std::byte> huge_header = npy_image(2, header);
  huge_header[10] = std::byte{0x20};  // 2 MiB + original length
  require_parse_error(huge_header, "1 MiB limit");
  require_parse_error(npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}  ", payload),
                      "not terminated by a newline");
}

TEST_CASE("npy: rejects malformed header dicts") {
  require_header_error("\n", "expected '{'");
  require_header_error("['descr']\n", "expected '{'");
  require_header_error("{'descr': '<f4', 'fortran_order': False}\n", "missing key 'shape'");
  require_header_error("{'shape': (2,), 'fortran_order': False}\n", "missing key 'descr'");
  require_header_error("{'descr': '<f4', 'shape': (2,)}\n", "missing key 'fortran_order'");
  require_header_error("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n", "duplicate key");
  require_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}\n", "unknown key");
  require_header_error("{'descr: '<f4', 'fortran_order': False, 'shape': (2,)}\n", "expected ':'");
  require_header_error("{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}\n", "expected '}'");
  require_header_error("{'descr': '<f4}\n", "unterminated string");
  require_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)\n", "expected '}'");
  require_header_error("{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}\n", "expected '}'");
  require_header_error("{descr: '<f4', 'fortran_order': False, 'shape': (2,)}\n", "expected a quoted string");
  require_header_error("{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}\n", "True or False");
  require_header_error("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}\n", "True or False");
  require_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': [2]}\n", "expected '('");
  require_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}\n", "trailing comma");
  require_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,}\n", "non-numeric dimension");
  require_header_error(dict("<f4", "False", "(-2,)"), "negative dimension");
  require_header_error(dict("<f4", "False", "(two,)"), "non-numeric dimension");
  require_header_error(dict("<f4", "False", "(2.0,)"), "expected ')'");
  require_header_error(dict("<f4", "False", "(,)"), "non-numeric dimension");
  require_header_error(dict("<f4", "False", "(99999999999999999999,)"), "dimension too large");
  require_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x\n", "unexpected text after");
}

TEST_CASE("npy: rejects unsupported dtypes and byte orders") {
  for (const std::string descr : {"|u1", "O", "|O", "<i4", "<u8", "f4", "<c8", ""}) {
    const std::string shown = descr.empty() ? "\"\"" : descr;  // an empty value is shown as ""
    require_header_error(dict(descr, "False", "(2,)"), "= " + shown + ": unsupported npy dtype");
  }
  for (const std::string descr : {">f4", ">i8", ">f8", "!f2"}) {
    require_header_error(dict(descr, "False", "(2,)"), "= " + descr + ": unsupported byte order");
  }
  require_header_error("{'descr': [('x', '<f4'), ('y', '<f4')], 'fortran_order': False, 'shape': (1,)}\n",
                       "= [('x', '<f4'), ('y', '<f4')], 'fortran_order': F...: unsupported npy dtype: structured");
}

TEST_CASE("npy: rejects data that does not match the shape") {
  require_header_error(dict("<f4", "False", "(3,)"), "truncated");
  require_header_error(dict("<f4", "False", "(1,)"), "4 trailing bytes");
  require_header_error(dict("<f4", "False", "(0,)"), "8 trailing bytes");
  require_header_error(dict("<f4", "False", "()"), "4 trailing bytes");
  require_header_error(dict("<i8", "False", "(2,)"), "truncated");
  // Claims of huge arrays fail on the byte count, before anything is allocated for them.
  require_header_error(dict("<f4", "False", "(1099511627776,)"), "truncated");
  require_header_error(dict("<f4", "False", "(9223372036854775807,)"), "truncated");
  require_header_error(dict("<f4", "False", "(4294967296, 4294967296)"), "overflows");
  CHECK(parse_npy(npy_image(1, dict("<f4", "False", "(0, 9223372036854775807, 9223372036854775807)")), "z").size() ==
        0);
}

TEST_CASE("npy: values<T> checks the element type") {
  const NpyArray array = parse_npy(npy_image(1, dict("<f4", "False", "(2,)"), to_bytes(two_floats)), "t.npy");
  CHECK(array.values<float>().size() == 2);
  REQUIRE_THROWS_AS(array.values<std::int64_t>(), tokenprune::Error);
  REQUIRE_THROWS_AS(array.values<std::uint16_t>(), tokenprune::Error);
}

TEST_CASE("npy: read_npy reports missing files and directories by path") {
  TempDir dir;
  const std::string missing = dir.file("missing.npy");
  require_path_error([&] { read_npy(missing); }, missing, "does not exist");
  require_path_error([&] { read_npy(dir.path.string()); }, dir.path.string(), "directory");

  const std::string garbage = dir.file("garbage.npy");
  std::ofstream(garbage) << "not numpy";
  require_path_error([&] { read_npy(garbage); }, garbage, "bad magic");
}

TEST_CASE("npy: truncated and bit-flipped files only ever throw tokenprune::Error") {
  const std::vector<float> fortran = {0, 10, 1, 11, 2, 12};
  const std::vector<std::vector<std::byte>> seeds = {
      npy_image(1, dict("<f4", "True", "(2, 3)"), to_bytes(fortran)),
      npy_image(3, "{'shape': (3,), 'descr': '<i8', 'fortran_order': False}\n",
                to_bytes(std::vector<std::int64_t>{1, 2, 3})),
  };
  const auto outcome = [](const std::vector<std::byte>& bytes) {
    try {
      parse_npy(bytes, "mutant.npy");
      return std::string("ok");
    } catch (const tokenprune::Error&) {
      return std::string("error");
    } catch (const std::exception& other) {
      return std::string("wrong exception: ") + other.what();
    }
  };
  std::mt19937 random(12345);
  int accepted = 0;
  for (const auto& seed : seeds) {
    REQUIRE(outcome(seed) == "ok");
    for (std::size_t length = 0; length < seed.size(); ++length) {
      INFO("truncated to " << length);
      CHECK(outcome(std::vector<std::byte>(seed.begin(), seed.begin() + static_cast<std::ptrdiff_t>(length))) ==
            "error");
    }
    for (int flip = 0; flip < 5000; ++flip) {
      std::vector<std::byte> mutant = seed;
      const std::size_t position = random() % mutant.size();
      mutant[position] ^= static_cast<std::byte>(1 + random() % 255);
      INFO("byte " << position << " flipped to " << std::to_integer<int>(mutant[position]));
      const std::string result = outcome(mutant);
      if (result != "ok" && result != "error") FAIL_CHECK(result);
      accepted += result == "ok";
    }
  }
  CHECK(accepted > 0);  // flips in the element data stay valid files
}

TEST_CASE("npy: shared reference fixtures parse") {
#ifdef TOKENPRUNE_SHARED_FIXTURES_DIR
  const fs::path root = TOKENPRUNE_SHARED_FIXTURES_DIR;
  if (!fs::is_directory(root)) {
    WARN("shared fixtures not found at " << root.string() << "; skipped");
    return;
  }
  int parsed = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.path().extension() != ".npy") continue;
    INFO(entry.path().string());
    const NpyArray array = read_npy(entry.path().string());
    CHECK(array.data.size() ==
          static_cast<std::size_t>(array.size()) * tokenprune::io::detail::npy_item_size(array.type));
    ++parsed;
  }
  CHECK(parsed > 0);
#else
  WARN("TOKENPRUNE_SHARED_FIXTURES_DIR is not defined; skipped");
#endif
}

TEST_CASE("npy: size() of a zero-size array with huge other dimensions does not overflow", "[npy]") {
  // Found by fuzz_npy: the header's other dimensions multiply past int64 before the zero is reached.
  const std::string header =
      "{'descr': '<f2', 'fortran_order': False, 'shape': (5, 33333333333333333, 818, 0, 1), }";
  std::string file = std::string("\x93NUMPY\x01\x00", 8);
  std::string padded = header;
  while ((10 + padded.size() + 1) % 64 != 0) padded += ' ';
  padded += '\n';
  file += static_cast<char>(padded.size() & 0xff);
  file += static_cast<char>(padded.size() >> 8);
  file += padded;
  const auto array = tokenprune::io::parse_npy({reinterpret_cast<const std::byte*>(file.data()), file.size()}, "zero.npy");
  CHECK(array.size() == 0);
  CHECK(array.data.empty());
}

TEST_CASE("npy: float64 (numpy's default) is read as float32, C and Fortran order", "[npy]") {
  const std::vector<double> values = {0.1, -2.5, 1e-3, 3.0e38, 7.0, 1.0 / 3.0};  // 2 x 3, row-major
  std::vector<std::byte> payload(values.size() * sizeof(double));
  std::memcpy(payload.data(), values.data(), payload.size());
  const NpyArray c = parse_npy(npy_image(1, dict("<f8", "False", "(2, 3)"), payload), "c.npy");
  CHECK(c.type == tokenprune::io::NpyType::f32);
  CHECK(c.shape == std::vector<std::int64_t>{2, 3});
  const std::vector<float> expected = {0.1f, -2.5f, 1e-3f, 3.0e38f, 7.0f, 1.0f / 3.0f};  // each rounded once
  CHECK(values_of<float>(c) == expected);
  // The same matrix stored column-major.
  const std::vector<double> columns = {0.1, 3.0e38, -2.5, 7.0, 1e-3, 1.0 / 3.0};
  std::memcpy(payload.data(), columns.data(), payload.size());
  const NpyArray f = parse_npy(npy_image(1, dict("<f8", "True", "(2, 3)"), payload), "f.npy");
  CHECK(values_of<float>(f) == expected);
  // A short payload is still an error, sized in float64 elements.
  payload.resize(5 * sizeof(double));
  require_parse_error(npy_image(1, dict("<f8", "False", "(2, 3)"), payload), "npy data is truncated");
}
