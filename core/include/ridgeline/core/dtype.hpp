// Data types of the matrix work ridgeline measures: one name per type everywhere (CLI, JSON,
// profiles). tf32 is fp32 storage with tensor-core tf32 arithmetic.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace ridgeline {

enum class dtype { fp32, tf32, fp16, bf16, fp8_e4m3, int8 };

inline constexpr std::array<dtype, 6> k_all_dtypes = {dtype::fp32, dtype::tf32, dtype::fp16,
                                                      dtype::bf16, dtype::fp8_e4m3, dtype::int8};

std::string_view name(dtype t);
// Parses "fp32", "tf32", "fp16", "bf16", "fp8" / "fp8_e4m3", "int8"; throws std::invalid_argument
// naming the accepted values.
dtype parse_dtype(std::string_view s);
// Bytes per element of the A/B operands.
std::size_t operand_bytes(dtype t);
// Bytes per element of the GEMM output (fp8 writes bf16, int8 writes int32).
std::size_t output_bytes(dtype t);
// "TOPS" for integer types, "TFLOP/s" otherwise.
std::string_view rate_unit(dtype t);

}  // namespace ridgeline
