// libFuzzer target for the safetensors header parser (engine/checkpoint.hpp): the first 4 input
// bytes give the data-section size, the rest is the JSON header. Malformed input must end in
// std::invalid_argument with a one-line message; anything else (crash, other exception,
// sanitizer report) is a bug.
//   scripts/fuzz.sh [seconds per target]
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "ridgeline/engine/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  std::uint64_t data_bytes = 0;
  for (int i = 3; i >= 0; --i) data_bytes = (data_bytes << 8) | data[i];
  const std::string_view header(reinterpret_cast<const char*>(data + 4), size - 4);
  try {
    const auto h = ridgeline::parse_safetensors_header(header, data_bytes, "fuzz.safetensors");
    for (const auto& [name, t] : h.tensors) {
      if (t.end > data_bytes || t.begin > t.end) __builtin_trap();  // the parser's promise
    }
  } catch (const std::invalid_argument& e) {
    if (std::string(e.what()).find('\n') != std::string::npos) __builtin_trap();  // one line
  }
  return 0;
}
