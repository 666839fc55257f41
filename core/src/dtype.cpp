// dtype names and sizes (see dtype.hpp).
#include "ridgeline/core/dtype.hpp"

#include <stdexcept>

namespace ridgeline {

std::string_view name(dtype t) {
  switch (t) {
    case dtype::fp32: return "fp32";
    case dtype::tf32: return "tf32";
    case dtype::fp16: return "fp16";
    case dtype::bf16: return "bf16";
    case dtype::fp8_e4m3: return "fp8_e4m3";
    case dtype::int8: return "int8";
  }
  return "unknown";
}

dtype parse_dtype(std::string_view s) {
  for (dtype t : k_all_dtypes) {
    if (s == name(t)) return t;
  }
  if (s == "fp8") return dtype::fp8_e4m3;
  throw std::invalid_argument("unknown dtype '" + std::string(s) +
                              "' (expected fp32, tf32, fp16, bf16, fp8_e4m3 or int8)");
}

std::size_t operand_bytes(dtype t) {
  switch (t) {
    case dtype::fp32:
    case dtype::tf32: return 4;
    case dtype::fp16:
    case dtype::bf16: return 2;
    case dtype::fp8_e4m3:
    case dtype::int8: return 1;
  }
  return 0;
}

std::size_t output_bytes(dtype t) {
  switch (t) {
    case dtype::fp32:
    case dtype::tf32:
    case dtype::int8: return 4;
    case dtype::fp16:
    case dtype::bf16:
    case dtype::fp8_e4m3: return 2;
  }
  return 0;
}

std::string_view rate_unit(dtype t) { return t == dtype::int8 ? "TOPS" : "TFLOP/s"; }

}  // namespace ridgeline
