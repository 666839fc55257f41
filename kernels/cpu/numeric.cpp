// Narrow-type conversions from the format definitions (see numeric.hpp). Rounding uses
// std::nearbyint on exactly scaled doubles, i.e. round-to-nearest-even.
#include "ridgeline/kernels/numeric.hpp"

#include <bit>
#include <cmath>

namespace ridgeline::cpu {

std::uint16_t float_to_bf16(float x) {
  const auto bits = std::bit_cast<std::uint32_t>(x);
  if (std::isnan(x)) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
  const std::uint32_t bias = 0x7fff + ((bits >> 16) & 1);
  return static_cast<std::uint16_t>((bits + bias) >> 16);
}

float bf16_to_float(std::uint16_t b) { return std::bit_cast<float>(std::uint32_t{b} << 16); }

std::uint16_t float_to_fp16(float x) {
  const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  if (std::isnan(x)) return sign | 0x7e00;
  const double f = std::fabs(static_cast<double>(x));
  if (f >= 65520.0) return sign | 0x7c00;  // rounds to infinity
  if (f < std::ldexp(1.0, -14)) {
    // subnormal: multiples of 2^-24; a result of 1024 is the smallest normal, encoded the same
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(std::nearbyint(std::ldexp(f, 24))));
  }
  int e = 0;
  std::frexp(f, &e);
  e -= 1;  // f = 1.m * 2^e
  auto m = static_cast<int>(std::nearbyint((std::ldexp(f, -e) - 1.0) * 1024.0));
  if (m == 1024) {
    m = 0;
    ++e;
  }
  if (e + 15 >= 31) return sign | 0x7c00;
  return static_cast<std::uint16_t>(sign | ((e + 15) << 10) | m);
}

float fp16_to_float(std::uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  const double s = (h & 0x8000) ? -1.0 : 1.0;
  if (exp == 0) return static_cast<float>(s * std::ldexp(mant, -24));
  if (exp == 31) return mant ? std::nanf("") : static_cast<float>(s * INFINITY);
  return static_cast<float>(s * std::ldexp(1.0 + mant / 1024.0, exp - 15));
}

std::uint8_t float_to_fp8_e4m3(float x) {
  if (std::isnan(x)) return 0x7f;
  const std::uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const double f = std::fabs(static_cast<double>(x));
  if (f >= 448.0) return sign | 0x7e;  // saturate to the largest finite value
  if (f < std::ldexp(1.0, -6)) {
    // subnormal: multiples of 2^-9; 8 is the smallest normal, encoded the same
    return static_cast<std::uint8_t>(sign | static_cast<std::uint8_t>(std::nearbyint(std::ldexp(f, 9))));
  }
  int e = 0;
  std::frexp(f, &e);
  e -= 1;
  auto m = static_cast<int>(std::nearbyint((std::ldexp(f, -e) - 1.0) * 8.0));
  if (m == 8) {
    m = 0;
    ++e;
  }
  if (e > 8 || (e == 8 && m == 7)) return sign | 0x7e;
  return static_cast<std::uint8_t>(sign | ((e + 7) << 3) | m);
}

float fp8_e4m3_to_float(std::uint8_t v) {
  const int exp = (v >> 3) & 0xf;
  const int mant = v & 7;
  const double s = (v & 0x80) ? -1.0 : 1.0;
  if (exp == 15 && mant == 7) return std::nanf("");
  if (exp == 0) return static_cast<float>(s * std::ldexp(mant, -9));
  return static_cast<float>(s * std::ldexp(1.0 + mant / 8.0, exp - 7));
}

float round_to_tf32(float x) {
  if (!std::isfinite(x)) return x;
  auto bits = std::bit_cast<std::uint32_t>(x);
  bits += 0xfff + ((bits >> 13) & 1);
  bits &= ~std::uint32_t{0x1fff};
  return std::bit_cast<float>(bits);
}

}  // namespace ridgeline::cpu
