// libFuzzer target: the .npy reader on arbitrary bytes. It must either parse (and then describe its data
// consistently) or throw tokenprune::Error; nothing else.
#include <tokenprune/io/npy.hpp>

#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto array = tokenprune::io::parse_npy({reinterpret_cast<const std::byte*>(data), size}, "fuzz.npy");
    const auto item = tokenprune::io::detail::npy_item_size(array.type);
    if (array.data.size() != static_cast<std::size_t>(array.size()) * item) __builtin_trap();
  } catch (const tokenprune::Error&) {
  }
  return 0;
}
