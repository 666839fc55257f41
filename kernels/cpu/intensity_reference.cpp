// Plans and naive references for the intensity-sweep kernels (see intensity_reference.hpp).
#include "ridgeline/kernels/intensity_reference.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

#include "ridgeline/kernels/numeric.hpp"

namespace ridgeline {
namespace {

bool is_pow2(std::uint64_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

[[noreturn]] void fail(const std::string& why) {
  throw std::invalid_argument("intensity kernel: " + why);
}

}  // namespace

std::string_view name(intensity_kernel k) {
  switch (k) {
    case intensity_kernel::ffma_fp32:
      return "ffma_fp32";
    case intensity_kernel::hfma2_bf16:
      return "hfma2_bf16";
    case intensity_kernel::hfma2_fp16:
      return "hfma2_fp16";
    case intensity_kernel::mma_bf16:
      return "mma_bf16";
    case intensity_kernel::mma_fp8:
      return "mma_fp8";
  }
  return "?";
}

intensity_kernel parse_intensity_kernel(std::string_view s) {
  for (auto k : k_all_intensity_kernels) {
    if (name(k) == s) return k;
  }
  throw std::invalid_argument("unknown intensity kernel '" + std::string(s) +
                              "' (ffma_fp32, hfma2_bf16, hfma2_fp16, mma_bf16, mma_fp8)");
}

bool is_mma(intensity_kernel k) {
  return k == intensity_kernel::mma_bf16 || k == intensity_kernel::mma_fp8;
}

void validate(const intensity_plan& p) {
  if (p.bytes == 0 || p.bytes % k_intensity_chunk_bytes != 0) {
    fail("bytes must be a positive multiple of 16 KiB, got " + std::to_string(p.bytes));
  }
  if (p.grid < 1) fail("grid must be positive, got " + std::to_string(p.grid));
  if (is_mma(p.kernel)) {
    if (p.mma_n != 8 && p.mma_n != 64 && p.mma_n != 256) {
      fail("mma_n must be 8, 64 or 256, got " + std::to_string(p.mma_n));
    }
    if (!is_pow2(p.chunks_per_mma)) {
      fail("chunks_per_mma must be a power of two, got " + std::to_string(p.chunks_per_mma));
    }
    if (p.mma_per_chunk == 0) fail("mma_per_chunk must be positive");
  } else if (p.fma_per_vector == 0 || (p.fma_per_vector != 1 && p.fma_per_vector % 2 != 0)) {
    fail("fma_per_vector must be 1 or even, got " + std::to_string(p.fma_per_vector));
  }
}

std::uint64_t chunks(const intensity_plan& p) {
  return p.bytes / k_intensity_chunk_bytes;
}

std::uint64_t flops_per_instruction(const intensity_plan& p) {
  switch (p.kernel) {
    case intensity_kernel::ffma_fp32:
      return 2;
    case intensity_kernel::hfma2_bf16:
    case intensity_kernel::hfma2_fp16:
      return 4;
    case intensity_kernel::mma_bf16:
    case intensity_kernel::mma_fp8:
      // K = 16 bf16 or 32 e4m3: K = 32 bytes / element size.
      return 2ULL * k_mma_m * static_cast<std::uint64_t>(p.mma_n) *
             (p.kernel == intensity_kernel::mma_bf16 ? 16 : 32);
  }
  return 0;
}

std::uint64_t flops(const intensity_plan& p) {
  if (is_mma(p.kernel)) {
    return chunks(p) / p.chunks_per_mma * p.mma_per_chunk * flops_per_instruction(p);
  }
  return p.bytes / 16 * p.fma_per_vector * flops_per_instruction(p);
}

double flop_per_byte(const intensity_plan& p) {
  return static_cast<double>(flops(p)) / static_cast<double>(p.bytes);
}

intensity_plan make_intensity_plan(intensity_kernel k, double intensity, std::uint64_t bytes,
                                   int grid, int mma_n) {
  int e = 0;
  if (!(intensity > 0) || !std::isfinite(intensity) || std::frexp(intensity, &e) != 0.5) {
    fail("intensity must be a power of two, got " + std::to_string(intensity));
  }
  intensity_plan p;
  p.kernel = k;
  p.bytes = bytes;
  p.grid = grid;
  p.mma_n = mma_n;
  if (is_mma(k)) {
    if (mma_n != 8 && mma_n != 64 && mma_n != 256) {
      fail("mma_n must be 8, 64 or 256, got " + std::to_string(mma_n));
    }
    // MMAs per chunk = intensity * chunk bytes / FLOPs per MMA: a power of two either way.
    const double ratio = intensity * static_cast<double>(k_intensity_chunk_bytes) /
                         static_cast<double>(flops_per_instruction(p));
    if (ratio >= 1) {
      if (ratio > 1 << 20) fail("intensity " + std::to_string(intensity) + " is too high");
      p.mma_per_chunk = static_cast<std::uint32_t>(ratio);
    } else {
      if (1 / ratio > double(1u << 30))
        fail("intensity " + std::to_string(intensity) + " is too low");
      p.chunks_per_mma = static_cast<std::uint32_t>(1 / ratio);
    }
  } else {
    const double f = intensity * 16 / static_cast<double>(flops_per_instruction(p));
    if (f < 1 || f > double(1u << 30)) {
      fail(std::string(name(k)) + " cannot run intensity " + std::to_string(intensity) +
           " (FMAs per 16-byte vector would be " + std::to_string(f) + ")");
    }
    p.fma_per_vector = static_cast<std::uint32_t>(f);
  }
  validate(p);
  return p;
}

std::size_t output_floats(const intensity_plan& p) {
  const auto g = static_cast<std::size_t>(p.grid);
  if (!is_mma(p.kernel)) return g * k_scalar_threads;
  return p.store_tile ? g * k_mma_m * static_cast<std::size_t>(p.mma_n) : g * k_mma_threads;
}

std::size_t output_folds(const intensity_plan& p) {
  return is_mma(p.kernel) ? static_cast<std::size_t>(p.grid) * k_mma_threads : 0;
}

namespace cpu {
namespace {

// Rounds the exact value hi + lo (hi = fl(hi + lo), lo its rounding error, as TwoSum gives) to a
// binary format with `digits` significand bits and normal exponents emin..emax, to nearest even
// (overflowing to infinity). hi alone can sit exactly on a midpoint the exact value is not on; lo
// breaks that tie.
double round_to_format(double hi, double lo, int digits, int emin, int emax) {
  if (hi == 0 || !std::isfinite(hi)) return hi;
  int e = 0;
  std::frexp(hi, &e);  // |hi| in [2^(e-1), 2^e)
  const int lead = std::max(e - 1, emin);
  const double quantum = std::ldexp(1.0, lead - (digits - 1));
  const double r = hi / quantum;  // exact: a power-of-two scaling
  const double fl = std::floor(r);
  const double frac = r - fl;
  double q = fl;
  if (frac > 0.5) {
    q = fl + 1;
  } else if (frac == 0.5) {
    if (lo > 0)
      q = fl + 1;
    else if (lo == 0 && std::fmod(fl, 2.0) != 0)
      q = fl + 1;
  }
  const double v = q * quantum;
  return std::fabs(v) >= std::ldexp(1.0, emax + 1) ? std::copysign(INFINITY, v) : v;
}

// a * b + c with one rounding; a, b, c are bf16/fp16 values, so a * b is exact in double and
// TwoSum gives the exact sum as hi + lo.
float fma_narrow(float a, float b, float c, int digits, int emin, int emax) {
  const double prod = static_cast<double>(a) * static_cast<double>(b);
  const double cd = c;
  const double hi = prod + cd;
  const double bb = hi - prod;
  const double lo = (prod - (hi - bb)) + (cd - bb);
  return static_cast<float>(round_to_format(hi, lo, digits, emin, emax));
}

float lo_half(std::uint32_t w, bool bf16) {
  const auto h = static_cast<std::uint16_t>(w & 0xffff);
  return bf16 ? bf16_to_float(h) : fp16_to_float(h);
}
float hi_half(std::uint32_t w, bool bf16) {
  const auto h = static_cast<std::uint16_t>(w >> 16);
  return bf16 ? bf16_to_float(h) : fp16_to_float(h);
}

// One chain of the scalar kernels: fp32, or the two lanes of a bf16x2 / fp16x2 value.
struct chain {
  float lo = 0;
  float hi = 0;
};

}  // namespace

float fma_bf16(float a, float b, float c) {
  return fma_narrow(a, b, c, 8, -126, 127);
}
float fma_fp16(float a, float b, float c) {
  return fma_narrow(a, b, c, 11, -14, 15);
}

std::vector<float> intensity_scalar(const intensity_plan& p, std::span<const std::uint32_t> src) {
  validate(p);
  if (is_mma(p.kernel)) throw std::invalid_argument("intensity_scalar: not a scalar kernel");
  if (src.size() * 4 < p.bytes) throw std::invalid_argument("intensity_scalar: source too small");
  const bool fp32 = p.kernel == intensity_kernel::ffma_fp32;
  const bool bf16 = p.kernel == intensity_kernel::hfma2_bf16;
  const std::uint32_t mantissa = fp32 ? 0x007fffffu : bf16 ? 0x007f007fu : 0x03ff03ffu;
  auto fma = [&](chain& acc, std::uint32_t a, std::uint32_t b) {
    if (fp32) {
      acc.lo = std::fma(acc.lo, std::bit_cast<float>(a), std::bit_cast<float>(b));
    } else if (bf16) {
      acc.lo = fma_bf16(acc.lo, lo_half(a, true), lo_half(b, true));
      acc.hi = fma_bf16(acc.hi, hi_half(a, true), hi_half(b, true));
    } else {
      acc.lo = fma_fp16(acc.lo, lo_half(a, false), lo_half(b, false));
      acc.hi = fma_fp16(acc.hi, hi_half(a, false), hi_half(b, false));
    }
  };
  const std::uint64_t n_chunks = chunks(p);
  const std::uint64_t vectors_per_chunk = k_intensity_chunk_bytes / 16;
  std::vector<float> out(output_floats(p));
  for (int block = 0; block < p.grid; ++block) {
    for (int t = 0; t < k_scalar_threads; ++t) {
      chain pc[k_scalar_loads], qc[k_scalar_loads], cc[8];
      for (std::uint64_t c = static_cast<std::uint64_t>(block); c < n_chunks;
           c += static_cast<std::uint64_t>(p.grid)) {
        for (int u = 0; u < k_scalar_loads; ++u) {
          const std::uint64_t v =
              c * vectors_per_chunk + static_cast<std::uint64_t>(u) * k_scalar_threads + t;
          const std::uint32_t* w = &src[4 * v];
          if (p.fma_per_vector == 1) {
            fma(pc[u], w[0] ^ (w[2] & mantissa), w[1] ^ (w[3] & mantissa));
            continue;
          }
          if (p.fma_per_vector % 16 == 0) {
            for (int pair = 0; pair < 2; ++pair) {
              for (std::uint32_t r = 0; r < p.fma_per_vector / 16; ++r) {
                for (auto& k : cc) fma(k, w[2 * pair], w[2 * pair + 1]);
              }
            }
            continue;
          }
          for (std::uint32_t i = 0; i < p.fma_per_vector / 2; ++i) {
            fma(pc[u], w[0], w[1]);
            fma(qc[u], w[2], w[3]);
          }
        }
      }
      float s = 0;
      for (int u = 0; u < k_scalar_loads; ++u) {
        s += pc[u].lo;
        if (!fp32) s += pc[u].hi;
        s += qc[u].lo;
        if (!fp32) s += qc[u].hi;
      }
      for (const auto& k : cc) {
        s += k.lo;
        if (!fp32) s += k.hi;
      }
      out[static_cast<std::size_t>(block) * k_scalar_threads + t] = s;
    }
  }
  return out;
}

intensity_mma_result intensity_mma(const intensity_plan& p, std::span<const std::uint32_t> src,
                                   std::span<const std::uint8_t> a,
                                   std::span<const std::uint8_t> b) {
  validate(p);
  if (!is_mma(p.kernel)) throw std::invalid_argument("intensity_mma: not an MMA kernel");
  const auto n = static_cast<std::size_t>(p.mma_n);
  if (src.size() * 4 < p.bytes || a.size() < std::size_t{k_mma_m} * k_mma_k_bytes ||
      b.size() < n * k_mma_k_bytes) {
    throw std::invalid_argument("intensity_mma: operand too small");
  }
  const bool bf16 = p.kernel == intensity_kernel::mma_bf16;
  const std::uint32_t mantissa = bf16 ? 0x007f007fu : 0x07070707u;
  const int k_elems = bf16 ? 16 : 32;
  auto element = [&](const std::uint8_t* bytes, int k) {
    if (bf16) {
      const auto h = static_cast<std::uint16_t>(bytes[2 * k] | (bytes[2 * k + 1] << 8));
      return static_cast<double>(bf16_to_float(h));
    }
    return static_cast<double>(fp8_e4m3_to_float(bytes[k]));
  };
  // B[k][col] as doubles.
  std::vector<double> bm(static_cast<std::size_t>(k_elems) * n);
  for (std::size_t col = 0; col < n; ++col) {
    for (int k = 0; k < k_elems; ++k) bm[k * n + col] = element(&b[col * k_mma_k_bytes], k);
  }
  // Register r of thread t holds 4 bytes of A at row 16 * warp + lane / 4 + 8 * (r % 2), bytes
  // 16 * (r / 2) + 4 * (lane % 4) .. + 3 (the wgmma A fragment for both element types).
  auto reg_row = [](int t, int r) { return 16 * (t / 32) + (t % 32) / 4 + 8 * (r % 2); };
  auto reg_byte = [](int t, int r) { return 16 * (r / 2) + 4 * (t % 4); };
  const std::uint64_t n_chunks = chunks(p);
  const std::uint64_t vectors_per_chunk = k_intensity_chunk_bytes / 16;
  intensity_mma_result res;
  res.value.assign(output_floats(p), 0.0);
  res.magnitude.assign(output_floats(p), 0.0);
  res.fold.assign(output_folds(p), 0);
  for (int block = 0; block < p.grid; ++block) {
    std::uint32_t regs[k_mma_threads][4];
    std::uint32_t x[k_mma_threads] = {};
    for (int t = 0; t < k_mma_threads; ++t) {
      for (int r = 0; r < 4; ++r) {
        const std::uint8_t* q = &a[reg_row(t, r) * k_mma_k_bytes + reg_byte(t, r)];
        regs[t][r] = std::uint32_t{q[0]} | std::uint32_t{q[1]} << 8 | std::uint32_t{q[2]} << 16 |
                     std::uint32_t{q[3]} << 24;
      }
    }
    std::vector<double> d(k_mma_m * n, 0.0), mag(k_mma_m * n, 0.0);
    std::vector<std::uint8_t> tile(k_mma_m * k_mma_k_bytes);
    for (std::uint64_t c = static_cast<std::uint64_t>(block); c < n_chunks;
         c += static_cast<std::uint64_t>(p.grid)) {
      for (int t = 0; t < k_mma_threads; ++t) {
        for (int u = 0; u < k_mma_loads; ++u) {
          const std::uint64_t v =
              c * vectors_per_chunk + static_cast<std::uint64_t>(u) * k_mma_threads + t;
          x[t] ^= src[4 * v] ^ src[4 * v + 1] ^ src[4 * v + 2] ^ src[4 * v + 3];
        }
      }
      if ((c + 1) % p.chunks_per_mma != 0) continue;
      for (int t = 0; t < k_mma_threads; ++t) {
        for (int r = 0; r < 4; ++r) {
          regs[t][r] ^= x[t] & mantissa;
          for (int i = 0; i < 4; ++i) {
            tile[reg_row(t, r) * k_mma_k_bytes + reg_byte(t, r) + i] =
                static_cast<std::uint8_t>(regs[t][r] >> (8 * i));
          }
        }
        x[t] = 0;
      }
      for (int row = 0; row < k_mma_m; ++row) {
        for (int k = 0; k < k_elems; ++k) {
          const double av = element(&tile[row * k_mma_k_bytes], k);
          for (std::size_t col = 0; col < n; ++col) {
            const double prod = av * bm[k * n + col];
            d[row * n + col] += p.mma_per_chunk * prod;
            mag[row * n + col] += p.mma_per_chunk * std::fabs(prod);
          }
        }
      }
    }
    for (int t = 0; t < k_mma_threads; ++t) {
      res.fold[static_cast<std::size_t>(block) * k_mma_threads + t] = x[t];
    }
    if (p.store_tile) {
      for (std::size_t i = 0; i < d.size(); ++i) {
        res.value[block * d.size() + i] = d[i];
        res.magnitude[block * d.size() + i] = mag[i];
      }
      continue;
    }
    // Accumulator register 4 j + i of thread t: row 16 * warp + lane / 4 + 8 * (i / 2), column
    // 8 j + 2 (lane % 4) + i % 2; the kernel sums them in register order.
    for (int t = 0; t < k_mma_threads; ++t) {
      double s = 0, m = 0;
      for (std::size_t j = 0; j < n / 8; ++j) {
        for (int i = 0; i < 4; ++i) {
          const std::size_t row = 16 * (t / 32) + (t % 32) / 4 + 8 * (i / 2);
          const std::size_t col = 8 * j + 2 * (t % 4) + i % 2;
          s += d[row * n + col];
          m += mag[row * n + col];
        }
      }
      res.value[static_cast<std::size_t>(block) * k_mma_threads + t] = s;
      res.magnitude[static_cast<std::size_t>(block) * k_mma_threads + t] = m;
    }
  }
  return res;
}

}  // namespace cpu
}  // namespace ridgeline
