// Quantized weight formats (quant.hpp): dequantizers, quantizers and the quantized linear
// reference, written from the layouts documented in the header. Naive on purpose.
#include "ridgeline/kernels/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "ridgeline/kernels/numeric.hpp"

namespace ridgeline::cpu {
namespace {

int groups_of(int cols, int group_size) {
  return cols / group_size;
}
int zero_words_of(int groups) {
  return (groups + 7) / 8;
}

std::uint16_t load_u16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
void store_u16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v & 0xff);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}
std::uint32_t load_u32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
// Nibble k of the little-endian uint32 word at word index w of a byte array.
int nibble(const std::uint8_t* words, std::size_t index) {
  const std::uint32_t word = load_u32(words + 4 * (index / 8));
  return static_cast<int>((word >> (4 * (index % 8))) & 0xf);
}
void set_nibble(std::uint8_t* words, std::size_t index, int v) {
  // Nibble k of a little-endian word is byte k / 2, low half for even k.
  std::uint8_t& b = words[4 * (index / 8) + (index % 8) / 2];
  if (index % 2 == 0) {
    b = static_cast<std::uint8_t>((b & 0xf0) | (v & 0xf));
  } else {
    b = static_cast<std::uint8_t>((b & 0x0f) | ((v & 0xf) << 4));
  }
}

float q8_0_element(const std::uint8_t* block, int i) {
  const float d = fp16_to_float(load_u16(block));
  return d * static_cast<float>(static_cast<std::int8_t>(block[2 + i]));
}
float q4_0_element(const std::uint8_t* block, int i) {
  const float d = fp16_to_float(load_u16(block));
  const int q = i < 16 ? (block[2 + i] & 0x0f) : (block[2 + i - 16] >> 4);
  return d * static_cast<float>(q - 8);
}

int clamp_round(float v, int lo, int hi) {
  return static_cast<int>(
      std::clamp(std::round(v), static_cast<float>(lo), static_cast<float>(hi)));
}

void quantize_q8_0_block(const float* x, std::uint8_t* block) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const std::uint16_t d_bits = float_to_fp16(amax / 127.0f);
  const float d = fp16_to_float(d_bits);
  store_u16(block, d_bits);
  for (int i = 0; i < 32; ++i) {
    const int q = d == 0.0f ? 0 : clamp_round(x[i] / d, -127, 127);
    block[2 + i] = static_cast<std::uint8_t>(static_cast<std::int8_t>(q));
  }
}

void quantize_q4_0_block(const float* x, std::uint8_t* block) {
  float m = 0.0f;
  for (int i = 0; i < 32; ++i) {
    if (std::fabs(x[i]) > std::fabs(m)) m = x[i];
  }
  const std::uint16_t d_bits = float_to_fp16(m / -8.0f);
  const float d = fp16_to_float(d_bits);
  store_u16(block, d_bits);
  std::memset(block + 2, 0, 16);
  for (int i = 0; i < 32; ++i) {
    const int q = d == 0.0f ? 8 : clamp_round(x[i] / d, -8, 7) + 8;
    if (i < 16) {
      block[2 + i] = static_cast<std::uint8_t>(block[2 + i] | q);
    } else {
      block[2 + i - 16] = static_cast<std::uint8_t>(block[2 + i - 16] | (q << 4));
    }
  }
}

void check_view(const quantized_matrix_view& q) {
  check_quant_shape(q.format, q.rows, q.cols, q.group_size);
  if (!q.data) throw std::invalid_argument("quantized matrix: data is null");
  const bool needs_scales = q.format == quant_format::int4_group ||
                            q.format == quant_format::int8_channel ||
                            q.format == quant_format::fp8_e4m3_channel;
  if (needs_scales && !q.scales) {
    throw std::invalid_argument("quantized matrix (" + quant_format_name(q.format) +
                                "): scales is null");
  }
  if (q.format == quant_format::int4_group && !q.zeros) {
    throw std::invalid_argument("quantized matrix (int4_group): zeros is null");
  }
}

}  // namespace

std::string quant_format_name(quant_format f) {
  switch (f) {
    case quant_format::q8_0:
      return "q8_0";
    case quant_format::q4_0:
      return "q4_0";
    case quant_format::int4_group:
      return "int4_group";
    case quant_format::int8_channel:
      return "int8_channel";
    case quant_format::fp8_e4m3_channel:
      return "fp8_e4m3_channel";
  }
  return "unknown";
}

quantized_matrix_view quantized_matrix::view() const {
  quantized_matrix_view v;
  v.format = format;
  v.rows = rows;
  v.cols = cols;
  v.group_size = group_size;
  v.data = data.data();
  v.scales = scales.empty() ? nullptr : scales.data();
  v.zeros = zeros.empty() ? nullptr : zeros.data();
  return v;
}

void check_quant_shape(quant_format f, int rows, int cols, int group_size) {
  const std::string what =
      quant_format_name(f) + " matrix [" + std::to_string(rows) + "][" + std::to_string(cols) + "]";
  if (rows < 1 || cols < 1) throw std::invalid_argument(what + ": rows and cols must be >= 1");
  switch (f) {
    case quant_format::q8_0:
    case quant_format::q4_0:
      if (cols % k_ggml_block_elements != 0) {
        throw std::invalid_argument(what + ": cols must be a multiple of 32 (the block size)");
      }
      break;
    case quant_format::int4_group:
      if (group_size < 8 || group_size % 8 != 0) {
        throw std::invalid_argument(what + ": group_size " + std::to_string(group_size) +
                                    " must be a positive multiple of 8");
      }
      if (cols % group_size != 0) {
        throw std::invalid_argument(what + ": cols must be a multiple of group_size " +
                                    std::to_string(group_size));
      }
      break;
    case quant_format::int8_channel:
    case quant_format::fp8_e4m3_channel:
      break;
  }
}

std::size_t quant_data_bytes(quant_format f, int rows, int cols) {
  const auto r = static_cast<std::size_t>(rows), c = static_cast<std::size_t>(cols);
  switch (f) {
    case quant_format::q8_0:
      return r * (c / 32) * k_q8_0_block_bytes;
    case quant_format::q4_0:
      return r * (c / 32) * k_q4_0_block_bytes;
    case quant_format::int4_group:
      return r * (c / 8) * 4;
    case quant_format::int8_channel:
    case quant_format::fp8_e4m3_channel:
      return r * c;
  }
  return 0;
}

void dequantize_q8_0(std::span<const std::uint8_t> blocks, std::span<float> out) {
  if (out.size() % 32 != 0 || blocks.size() != out.size() / 32 * k_q8_0_block_bytes) {
    throw std::invalid_argument("dequantize_q8_0: " + std::to_string(out.size()) +
                                " elements (must be a multiple of 32) from " +
                                std::to_string(blocks.size()) + " bytes (34 per block)");
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = q8_0_element(blocks.data() + (i / 32) * k_q8_0_block_bytes, static_cast<int>(i % 32));
  }
}

void dequantize_q4_0(std::span<const std::uint8_t> blocks, std::span<float> out) {
  if (out.size() % 32 != 0 || blocks.size() != out.size() / 32 * k_q4_0_block_bytes) {
    throw std::invalid_argument("dequantize_q4_0: " + std::to_string(out.size()) +
                                " elements (must be a multiple of 32) from " +
                                std::to_string(blocks.size()) + " bytes (18 per block)");
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = q4_0_element(blocks.data() + (i / 32) * k_q4_0_block_bytes, static_cast<int>(i % 32));
  }
}

quantized_matrix quantize(quant_format f, int rows, int cols, std::span<const float> w,
                          int group_size) {
  check_quant_shape(f, rows, cols, group_size);
  const auto r_count = static_cast<std::size_t>(rows), c_count = static_cast<std::size_t>(cols);
  if (w.size() != r_count * c_count) {
    throw std::invalid_argument("quantize " + quant_format_name(f) + ": " +
                                std::to_string(w.size()) + " floats for [" + std::to_string(rows) +
                                "][" + std::to_string(cols) + "]");
  }
  quantized_matrix q;
  q.format = f;
  q.rows = rows;
  q.cols = cols;
  q.group_size = group_size;
  q.data.assign(quant_data_bytes(f, rows, cols), 0);
  for (std::size_t r = 0; r < r_count; ++r) {
    const float* x = w.data() + r * c_count;
    switch (f) {
      case quant_format::q8_0:
        for (std::size_t b = 0; b < c_count / 32; ++b) {
          quantize_q8_0_block(x + 32 * b, q.data.data() + (r * (c_count / 32) + b) * 34);
        }
        break;
      case quant_format::q4_0:
        for (std::size_t b = 0; b < c_count / 32; ++b) {
          quantize_q4_0_block(x + 32 * b, q.data.data() + (r * (c_count / 32) + b) * 18);
        }
        break;
      case quant_format::int4_group: {
        const int groups = groups_of(cols, group_size);
        const int zero_words = zero_words_of(groups);
        if (q.scales.empty()) {
          q.scales.assign(r_count * static_cast<std::size_t>(groups), 0.0f);
          q.zeros.assign(r_count * static_cast<std::size_t>(zero_words) * 4, 0);
        }
        for (int g = 0; g < groups; ++g) {
          const float* xg = x + static_cast<std::size_t>(g) * group_size;
          float lo = 0.0f, hi = 0.0f;
          for (int i = 0; i < group_size; ++i) {
            lo = std::min(lo, xg[i]);
            hi = std::max(hi, xg[i]);
          }
          float s = (hi - lo) / 15.0f;
          int z = 0;
          if (s == 0.0f) {
            s = 1.0f;
          } else {
            z = clamp_round(-lo / s, 0, 15);
          }
          q.scales[r * groups + g] = s;
          set_nibble(q.zeros.data() + r * zero_words * 4, static_cast<std::size_t>(g), z);
          for (int i = 0; i < group_size; ++i) {
            set_nibble(q.data.data() + r * (c_count / 8) * 4,
                       static_cast<std::size_t>(g) * group_size + i,
                       clamp_round(xg[i] / s + static_cast<float>(z), 0, 15));
          }
        }
        break;
      }
      case quant_format::int8_channel:
      case quant_format::fp8_e4m3_channel: {
        if (q.scales.empty()) q.scales.assign(r_count, 0.0f);
        float amax = 0.0f;
        for (std::size_t c = 0; c < c_count; ++c) amax = std::max(amax, std::fabs(x[c]));
        const bool int8 = f == quant_format::int8_channel;
        const float s = amax == 0.0f ? 1.0f : amax / (int8 ? 127.0f : 448.0f);
        q.scales[r] = s;
        for (std::size_t c = 0; c < c_count; ++c) {
          q.data[r * c_count + c] = int8 ? static_cast<std::uint8_t>(static_cast<std::int8_t>(
                                               clamp_round(x[c] / s, -127, 127)))
                                         : float_to_fp8_e4m3(x[c] / s);
        }
        break;
      }
    }
  }
  return q;
}

void dequantize_row(const quantized_matrix_view& q, int row, std::span<float> out) {
  check_view(q);
  if (row < 0 || row >= q.rows || out.size() != static_cast<std::size_t>(q.cols)) {
    throw std::invalid_argument("dequantize_row: row " + std::to_string(row) + " of " +
                                std::to_string(q.rows) + ", out of " + std::to_string(out.size()) +
                                " for cols " + std::to_string(q.cols));
  }
  const auto r = static_cast<std::size_t>(row), cols = static_cast<std::size_t>(q.cols);
  switch (q.format) {
    case quant_format::q8_0:
      dequantize_q8_0({q.data + r * (cols / 32) * 34, (cols / 32) * 34}, out);
      break;
    case quant_format::q4_0:
      dequantize_q4_0({q.data + r * (cols / 32) * 18, (cols / 32) * 18}, out);
      break;
    case quant_format::int4_group: {
      const auto groups = static_cast<std::size_t>(groups_of(q.cols, q.group_size));
      const std::uint8_t* words = q.data + r * (cols / 8) * 4;
      const std::uint8_t* zeros = q.zeros + r * zero_words_of(static_cast<int>(groups)) * 4;
      for (std::size_t c = 0; c < cols; ++c) {
        const std::size_t g = c / static_cast<std::size_t>(q.group_size);
        out[c] = q.scales[r * groups + g] * static_cast<float>(nibble(words, c) - nibble(zeros, g));
      }
      break;
    }
    case quant_format::int8_channel:
      for (std::size_t c = 0; c < cols; ++c) {
        out[c] = q.scales[r] * static_cast<float>(static_cast<std::int8_t>(q.data[r * cols + c]));
      }
      break;
    case quant_format::fp8_e4m3_channel:
      for (std::size_t c = 0; c < cols; ++c) {
        out[c] = q.scales[r] * fp8_e4m3_to_float(q.data[r * cols + c]);
      }
      break;
  }
}

std::vector<float> dequantize(const quantized_matrix_view& q) {
  check_view(q);
  const auto cols = static_cast<std::size_t>(q.cols);
  std::vector<float> w(static_cast<std::size_t>(q.rows) * cols);
  for (int r = 0; r < q.rows; ++r) {
    dequantize_row(q, r, std::span<float>(w).subspan(static_cast<std::size_t>(r) * cols, cols));
  }
  return w;
}

void quantized_matvec_ref(const quantized_matrix_view& q, std::span<const float> x,
                          std::span<float> y) {
  check_view(q);
  if (x.size() != static_cast<std::size_t>(q.cols) ||
      y.size() != static_cast<std::size_t>(q.rows)) {
    throw std::invalid_argument("quantized_matvec_ref: x has " + std::to_string(x.size()) +
                                " (cols " + std::to_string(q.cols) + "), y has " +
                                std::to_string(y.size()) + " (rows " + std::to_string(q.rows) +
                                ")");
  }
  std::vector<float> w(x.size());
  for (int r = 0; r < q.rows; ++r) {
    dequantize_row(q, r, w);
    double acc = 0.0;
    for (std::size_t c = 0; c < w.size(); ++c) acc += static_cast<double>(w[c]) * x[c];
    y[static_cast<std::size_t>(r)] = static_cast<float>(acc);
  }
}

void linear_ref(const quantized_matrix_view& q, std::span<const float> x, std::span<float> y,
                int tokens) {
  const auto cols = static_cast<std::size_t>(q.cols), rows = static_cast<std::size_t>(q.rows);
  if (tokens < 0 || x.size() != static_cast<std::size_t>(tokens) * cols ||
      y.size() != static_cast<std::size_t>(tokens) * rows) {
    throw std::invalid_argument("linear_ref: " + std::to_string(tokens) + " tokens, x has " +
                                std::to_string(x.size()) + ", y has " + std::to_string(y.size()) +
                                " for W[" + std::to_string(rows) + "][" + std::to_string(cols) +
                                "]");
  }
  for (std::size_t t = 0; t < static_cast<std::size_t>(tokens); ++t) {
    quantized_matvec_ref(q, x.subspan(t * cols, cols), y.subspan(t * rows, rows));
  }
}

}  // namespace ridgeline::cpu
