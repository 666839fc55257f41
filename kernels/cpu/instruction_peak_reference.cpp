// Plans, operands and naive references of the instruction-peak kernels (see
// instruction_peak_reference.hpp).
#include "ridgeline/kernels/instruction_peak_reference.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

#include "ridgeline/kernels/intensity_reference.hpp"  // cpu::fma_bf16
#include "ridgeline/kernels/numeric.hpp"

namespace ridgeline {
namespace {

[[noreturn]] void fail(const std::string& why) {
  throw std::invalid_argument("instruction peak kernel: " + why);
}

constexpr std::uint64_t k_mma_flops_bf16 = 2ULL * k_mma_m * k_peak_mma_n * 16;
constexpr std::uint64_t k_mma_flops_e4m3 = 2ULL * k_mma_m * k_peak_mma_n * 32;

}  // namespace

std::string_view name(instruction_peak_kind k) {
  switch (k) {
    case instruction_peak_kind::fp32:
      return "fp32";
    case instruction_peak_kind::bf16_hfma2:
      return "bf16_hfma2";
    case instruction_peak_kind::bf16:
      return "bf16";
    case instruction_peak_kind::fp8_e4m3:
      return "fp8_e4m3";
  }
  return "?";
}

instruction_peak_kind parse_instruction_peak_kind(std::string_view s) {
  for (auto k : k_all_instruction_peak_kinds) {
    if (name(k) == s) return k;
  }
  throw std::invalid_argument("unknown instruction peak '" + std::string(s) +
                              "' (fp32, bf16_hfma2, bf16, fp8_e4m3)");
}

std::string_view instruction_name(instruction_peak_kind k) {
  switch (k) {
    case instruction_peak_kind::fp32:
      return "FFMA";
    case instruction_peak_kind::bf16_hfma2:
      return "HFMA2.BF16";
    case instruction_peak_kind::bf16:
      return "HGMMA (wgmma m64n256k16 bf16, fp32 accumulate)";
    case instruction_peak_kind::fp8_e4m3:
      return "QGMMA (wgmma m64n256k32 e4m3, fp32 accumulate)";
  }
  return "?";
}

bool is_mma(instruction_peak_kind k) {
  return k == instruction_peak_kind::bf16 || k == instruction_peak_kind::fp8_e4m3;
}

std::optional<dtype> gemm_dtype(instruction_peak_kind k) {
  switch (k) {
    case instruction_peak_kind::fp32:
      return dtype::fp32;
    case instruction_peak_kind::bf16:
      return dtype::bf16;
    case instruction_peak_kind::fp8_e4m3:
      return dtype::fp8_e4m3;
    case instruction_peak_kind::bf16_hfma2:
      break;
  }
  return std::nullopt;
}

void validate(const instruction_peak_plan& p) {
  if (p.grid < 1) fail("grid must be positive, got " + std::to_string(p.grid));
  if (p.iterations < 1) fail("iterations must be positive");
  // Keeps flops() well inside 64 bits: at most 2^23 FLOPs per iteration and block.
  if (static_cast<std::uint64_t>(p.grid) * p.iterations > (1ULL << 40)) {
    fail("grid " + std::to_string(p.grid) + " x iterations " + std::to_string(p.iterations) +
         " is absurd");
  }
}

std::uint64_t flops_per_instruction(instruction_peak_kind k) {
  switch (k) {
    case instruction_peak_kind::fp32:
      return 2;
    case instruction_peak_kind::bf16_hfma2:
      return 4;
    case instruction_peak_kind::bf16:
      return k_mma_flops_bf16;
    case instruction_peak_kind::fp8_e4m3:
      return k_mma_flops_e4m3;
  }
  return 0;
}

int threads_per_block(instruction_peak_kind k) {
  return is_mma(k) ? k_mma_threads : k_peak_scalar_threads;
}

std::uint64_t flops(const instruction_peak_plan& p) {
  const auto blocks = static_cast<std::uint64_t>(p.grid);
  const std::uint64_t per_iteration = is_mma(p.kind)
                                          ? std::uint64_t{k_peak_mma_group}
                                          : std::uint64_t{k_peak_scalar_threads} * k_peak_chains;
  return blocks * p.iterations * per_iteration * flops_per_instruction(p.kind);
}

std::size_t operand_words(const instruction_peak_plan& p) {
  if (is_mma(p.kind)) return k_peak_mma_operand_bytes / 4;
  return static_cast<std::size_t>(p.grid) * k_peak_scalar_threads * k_peak_words;
}

std::size_t output_floats(const instruction_peak_plan& p) {
  const auto g = static_cast<std::size_t>(p.grid);
  return is_mma(p.kind) ? g * k_mma_m * k_peak_mma_n : g * k_peak_scalar_threads;
}

namespace cpu {
namespace {

std::uint32_t bf16_pair(float lo, float hi) {
  return std::uint32_t{float_to_bf16(lo)} | std::uint32_t{float_to_bf16(hi)} << 16;
}

// Element k of a 32-byte row of A or B: bf16 (k < 16) or e4m3 (k < 32), as a double.
double row_element(const std::uint8_t* row, int k, bool bf16) {
  if (!bf16) return fp8_e4m3_to_float(row[k]);
  return bf16_to_float(static_cast<std::uint16_t>(row[2 * k] | row[2 * k + 1] << 8));
}

}  // namespace

std::vector<std::uint32_t> make_instruction_peak_operands(const instruction_peak_plan& p,
                                                          std::uint32_t seed) {
  validate(p);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f), slope(0.95f, 0.996f);
  std::vector<std::uint32_t> w(operand_words(p));
  if (is_mma(p.kind)) {
    std::vector<std::uint8_t> bytes(k_peak_mma_operand_bytes);
    if (p.kind == instruction_peak_kind::bf16) {
      for (std::size_t i = 0; i < bytes.size(); i += 2) {
        const std::uint16_t h = float_to_bf16(unit(rng));
        bytes[i] = static_cast<std::uint8_t>(h & 0xff);
        bytes[i + 1] = static_cast<std::uint8_t>(h >> 8);
      }
    } else {
      for (auto& b : bytes) b = float_to_fp8_e4m3(unit(rng));
    }
    std::memcpy(w.data(), bytes.data(), bytes.size());
    return w;
  }
  const bool fp32 = p.kind == instruction_peak_kind::fp32;
  for (std::size_t i = 0; i < w.size(); i += k_peak_words) {
    for (int j = 0; j < k_peak_words; ++j) {
      auto draw = [&] { return j == 0 ? slope(rng) : unit(rng); };
      if (fp32) {
        w[i + j] = std::bit_cast<std::uint32_t>(draw());
      } else {
        const float lo = draw();
        w[i + j] = bf16_pair(lo, draw());
      }
    }
  }
  return w;
}

std::vector<float> instruction_peak_scalar(const instruction_peak_plan& p,
                                           std::span<const std::uint32_t> operands) {
  validate(p);
  if (is_mma(p.kind)) throw std::invalid_argument("instruction_peak_scalar: not a scalar kind");
  if (operands.size() < operand_words(p)) {
    throw std::invalid_argument("instruction_peak_scalar: operands too small");
  }
  const bool fp32 = p.kind == instruction_peak_kind::fp32;
  auto lo = [](std::uint32_t w) { return bf16_to_float(static_cast<std::uint16_t>(w & 0xffff)); };
  auto hi = [](std::uint32_t w) { return bf16_to_float(static_cast<std::uint16_t>(w >> 16)); };
  std::vector<float> out(output_floats(p));
  for (std::size_t g = 0; g < out.size(); ++g) {
    const std::uint32_t* w = &operands[g * k_peak_words];
    float s = 0;
    for (int k = 0; k < k_peak_chains; ++k) {
      const std::uint32_t a = w[0], b = w[1], c = w[2 + k];
      if (fp32) {
        float v = std::bit_cast<float>(c);
        for (std::uint32_t i = 0; i < p.iterations; ++i) {
          v = std::fma(v, std::bit_cast<float>(a), std::bit_cast<float>(b));
        }
        s += v;
      } else {
        float vl = lo(c), vh = hi(c);
        for (std::uint32_t i = 0; i < p.iterations; ++i) {
          vl = fma_bf16(vl, lo(a), lo(b));
          vh = fma_bf16(vh, hi(a), hi(b));
        }
        s += vl;
        s += vh;
      }
    }
    out[g] = s;
  }
  return out;
}

instruction_peak_mma_result instruction_peak_mma(const instruction_peak_plan& p,
                                                 std::span<const std::uint32_t> operands) {
  validate(p);
  if (!is_mma(p.kind)) throw std::invalid_argument("instruction_peak_mma: not a tensor kind");
  if (operands.size() < operand_words(p)) {
    throw std::invalid_argument("instruction_peak_mma: operands too small");
  }
  const bool bf16 = p.kind == instruction_peak_kind::bf16;
  const int k_elems = bf16 ? 16 : 32;
  const auto* a = reinterpret_cast<const std::uint8_t*>(operands.data());
  const std::uint8_t* b = a + std::size_t{k_mma_m} * k_mma_k_bytes;
  // Every wgmma adds the same A * B: the tile is that product times the number of wgmmas.
  const double count = static_cast<double>(p.iterations) * k_peak_mma_group;
  const std::size_t tile = std::size_t{k_mma_m} * k_peak_mma_n;
  instruction_peak_mma_result r;
  r.value.resize(tile);
  r.magnitude.resize(tile);
  for (int row = 0; row < k_mma_m; ++row) {
    for (int col = 0; col < k_peak_mma_n; ++col) {
      double sum = 0, mag = 0;
      for (int k = 0; k < k_elems; ++k) {
        const double prod = row_element(a + row * k_mma_k_bytes, k, bf16) *
                            row_element(b + col * k_mma_k_bytes, k, bf16);
        sum += prod;
        mag += std::fabs(prod);
      }
      r.value[row * k_peak_mma_n + col] = count * sum;
      r.magnitude[row * k_peak_mma_n + col] = count * mag;
    }
  }
  // Every block computes the same tile.
  r.value.resize(output_floats(p));
  r.magnitude.resize(output_floats(p));
  for (std::size_t i = tile; i < r.value.size(); ++i) {
    r.value[i] = r.value[i % tile];
    r.magnitude[i] = r.magnitude[i % tile];
  }
  return r;
}

}  // namespace cpu
}  // namespace ridgeline
