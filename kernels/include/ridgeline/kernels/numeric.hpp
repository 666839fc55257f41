// Bit-exact conversions between float and the narrow types, written from the formats' definitions
// (round to nearest even, saturating fp8) so the CPU references need no CUDA headers.
#pragma once

#include <cstdint>

namespace ridgeline::cpu {

std::uint16_t float_to_bf16(float x);
float bf16_to_float(std::uint16_t b);
std::uint16_t float_to_fp16(float x);
float fp16_to_float(std::uint16_t h);
// OCP fp8 E4M3 (the "fn" variant: no infinities, max 448, 0x7f/0xff are NaN); saturates.
std::uint8_t float_to_fp8_e4m3(float x);
float fp8_e4m3_to_float(std::uint8_t v);
// fp32 rounded to tf32 (10 mantissa bits), nearest even.
float round_to_tf32(float x);

}  // namespace ridgeline::cpu
