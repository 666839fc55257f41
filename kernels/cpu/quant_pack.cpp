// Load-time repacker between quant.hpp's formats and the GPU layout (quant_pack.hpp,
// quant_packed.hpp): element by element through packed_element_position, naive on purpose.
#include "ridgeline/kernels/quant_pack.hpp"

#include <stdexcept>
#include <string>

#include "ridgeline/kernels/numeric.hpp"

namespace ridgeline::cpu {
namespace {

std::uint16_t load_u16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
void store_u16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v & 0xff);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}
// Nibble i of a little-endian uint32 word array (quant.hpp's int4_group data and zeros).
int get_nibble(const std::uint8_t* words, std::size_t i) {
  return (words[4 * (i / 8) + (i % 8) / 2] >> (4 * (i % 2))) & 0xf;
}
void set_nibble(std::uint8_t* words, std::size_t i, int v) {
  std::uint8_t& b = words[4 * (i / 8) + (i % 8) / 2];
  const int shift = 4 * static_cast<int>(i % 2);
  b = static_cast<std::uint8_t>((b & ~(0xf << shift)) | ((v & 0xf) << shift));
}
void put_packed_nibble(std::vector<std::uint8_t>& data, packed_position at, int v) {
  std::uint8_t& b = data[at.byte];
  b = static_cast<std::uint8_t>((b & ~(0xf << at.shift)) | ((v & 0xf) << at.shift));
}
int packed_nibble(const std::vector<std::uint8_t>& data, packed_position at) {
  return (data[at.byte] >> at.shift) & 0xf;
}

// An fp16 scale widened to float must narrow back to the same bits.
std::uint16_t narrow_fp16(float s, const char* what, int row, int group) {
  const std::uint16_t h = float_to_fp16(s);
  if (fp16_to_float(h) != s) {
    throw std::invalid_argument(std::string("unpack_quantized (") + what + "): scale " +
                                std::to_string(s) + " of row " + std::to_string(row) + ", block " +
                                std::to_string(group) + " is not an fp16 value");
  }
  return h;
}

}  // namespace

packed_quant_kind packed_kind_of(quant_format f) {
  switch (f) {
    case quant_format::int4_group:
    case quant_format::q4_0:
      return packed_quant_kind::int4_group;
    case quant_format::q8_0:
      return packed_quant_kind::int8_group;
    case quant_format::int8_channel:
      return packed_quant_kind::int8_channel;
    case quant_format::fp8_e4m3_channel:
      return packed_quant_kind::fp8_channel;
  }
  throw std::invalid_argument("packed_kind_of: unknown format");
}

packed_quant_view packed_quant_matrix::view() const {
  packed_quant_view v;
  v.kind = kind;
  v.rows = rows;
  v.cols = cols;
  v.group_size = group_size;
  v.data = data.data();
  v.scales = scales.data();
  v.zeros = zeros.empty() ? nullptr : zeros.data();
  return v;
}

void check_packable(quant_format f, int rows, int cols, int group_size) {
  check_quant_shape(f, rows, cols, group_size);
  const std::string what =
      quant_format_name(f) + " [" + std::to_string(rows) + "][" + std::to_string(cols) + "]";
  if (cols % k_pack_block_cols != 0 || cols >= k_pack_max_cols) {
    throw std::invalid_argument("GPU packing of " + what +
                                ": cols must be a multiple of 32 and below 2^21");
  }
  if (f == quant_format::int4_group && group_size % k_pack_block_cols != 0) {
    throw std::invalid_argument("GPU packing of " + what + ": group_size " +
                                std::to_string(group_size) + " must be a multiple of 32");
  }
}

packed_quant_matrix pack_quantized(const quantized_matrix_view& q) {
  check_packable(q.format, q.rows, q.cols, q.group_size);
  if (!q.data) throw std::invalid_argument("pack_quantized: data is null");
  packed_quant_matrix p;
  p.source = q.format;
  p.kind = packed_kind_of(q.format);
  p.rows = q.rows;
  p.cols = q.cols;
  p.group_size = q.format == quant_format::int4_group ? q.group_size
                 : packed_is_grouped(p.kind)          ? k_ggml_block_elements
                                                      : 0;
  if (q.format != quant_format::q4_0 && q.format != quant_format::q8_0 && !q.scales) {
    throw std::invalid_argument("pack_quantized: scales are null");
  }
  if (q.format == quant_format::int4_group && !q.zeros) {
    throw std::invalid_argument("pack_quantized: zeros are null");
  }
  const packed_quant_view shape = p.view();
  p.data.assign(shape.data_bytes(), 0);
  p.scales.assign(shape.scale_count(), 0.0f);
  p.zeros.assign(shape.zero_bytes(), 0);
  const int chunks = shape.chunks(), groups = shape.groups();
  const auto cols = static_cast<std::size_t>(q.cols);
  for (int r = 0; r < q.rows; ++r) {
    const auto row = static_cast<std::size_t>(r);
    for (int c = 0; c < q.cols; ++c) {
      const packed_position at = packed_element_position(p.kind, chunks, r, c);
      const auto col = static_cast<std::size_t>(c);
      switch (q.format) {
        case quant_format::int4_group:
          put_packed_nibble(p.data, at, get_nibble(q.data + row * (cols / 8) * 4, col));
          break;
        case quant_format::q4_0: {
          const std::uint8_t* block = q.data + (row * (cols / 32) + col / 32) * k_q4_0_block_bytes;
          const std::size_t i = col % 32;
          put_packed_nibble(p.data, at, i < 16 ? block[2 + i] & 0xf : block[2 + i - 16] >> 4);
          break;
        }
        case quant_format::q8_0:
          p.data[at.byte] =
              q.data[(row * (cols / 32) + col / 32) * k_q8_0_block_bytes + 2 + col % 32];
          break;
        case quant_format::int8_channel:
        case quant_format::fp8_e4m3_channel:
          p.data[at.byte] = q.data[row * cols + col];
          break;
      }
    }
    for (int g = 0; g < groups; ++g) {
      const std::size_t s_at = packed_scale_index(groups, r, g);
      switch (q.format) {
        case quant_format::int4_group: {
          p.scales[s_at] = q.scales[row * static_cast<std::size_t>(groups) + g];
          const std::size_t zero_words = (static_cast<std::size_t>(groups) + 7) / 8;
          const int z = get_nibble(q.zeros + row * zero_words * 4, static_cast<std::size_t>(g));
          std::uint8_t& zb = p.zeros[packed_zero_index(groups, r, g)];
          zb = static_cast<std::uint8_t>(zb | (z << (r % 16 < 8 ? 0 : 4)));
          break;
        }
        case quant_format::q4_0:
        case quant_format::q8_0: {
          const int block_bytes =
              q.format == quant_format::q4_0 ? k_q4_0_block_bytes : k_q8_0_block_bytes;
          p.scales[s_at] = fp16_to_float(
              load_u16(q.data + (row * (cols / 32) + static_cast<std::size_t>(g)) * block_bytes));
          if (q.format == quant_format::q4_0) {
            std::uint8_t& zb = p.zeros[packed_zero_index(groups, r, g)];
            zb = static_cast<std::uint8_t>(zb | (8 << (r % 16 < 8 ? 0 : 4)));
          }
          break;
        }
        case quant_format::int8_channel:
        case quant_format::fp8_e4m3_channel:
          p.scales[s_at] = q.scales[row];
          break;
      }
    }
  }
  return p;
}

quantized_matrix unpack_quantized(const packed_quant_matrix& p) {
  check_packable(p.source, p.rows, p.cols,
                 p.source == quant_format::int4_group ? p.group_size : k_default_group_size);
  const packed_quant_view shape = p.view();
  if (p.kind != packed_kind_of(p.source) || p.data.size() != shape.data_bytes() ||
      p.scales.size() != shape.scale_count() || p.zeros.size() != shape.zero_bytes() ||
      (packed_is_grouped(p.kind) &&
       p.group_size !=
           (p.source == quant_format::int4_group ? p.group_size : k_ggml_block_elements))) {
    throw std::invalid_argument("unpack_quantized: the packed " + quant_format_name(p.source) +
                                " matrix [" + std::to_string(p.rows) + "][" +
                                std::to_string(p.cols) + "] has inconsistent sizes");
  }
  quantized_matrix q;
  q.format = p.source;
  q.rows = p.rows;
  q.cols = p.cols;
  q.group_size = p.source == quant_format::int4_group ? p.group_size : k_default_group_size;
  q.data.assign(quant_data_bytes(q.format, q.rows, q.cols), 0);
  const int chunks = shape.chunks(), groups = shape.groups();
  const auto cols = static_cast<std::size_t>(q.cols);
  const std::size_t zero_words = (static_cast<std::size_t>(groups) + 7) / 8;
  if (q.format == quant_format::int4_group) {
    q.scales.assign(static_cast<std::size_t>(q.rows) * groups, 0.0f);
    q.zeros.assign(static_cast<std::size_t>(q.rows) * zero_words * 4, 0);
  } else if (q.format == quant_format::int8_channel || q.format == quant_format::fp8_e4m3_channel) {
    q.scales.assign(static_cast<std::size_t>(q.rows), 0.0f);
  }
  for (int r = 0; r < q.rows; ++r) {
    const auto row = static_cast<std::size_t>(r);
    for (int g = 0; g < groups; ++g) {
      const float s = p.scales[packed_scale_index(groups, r, g)];
      const int z = p.zeros.empty()
                        ? 0
                        : (p.zeros[packed_zero_index(groups, r, g)] >> (r % 16 < 8 ? 0 : 4)) & 0xf;
      const auto group = static_cast<std::size_t>(g);
      switch (q.format) {
        case quant_format::int4_group:
          q.scales[row * static_cast<std::size_t>(groups) + group] = s;
          set_nibble(q.zeros.data() + row * zero_words * 4, group, z);
          break;
        case quant_format::q4_0:
          if (z != 8) {
            throw std::invalid_argument("unpack_quantized (q4_0): zero point " + std::to_string(z) +
                                        " of row " + std::to_string(r) + ", block " +
                                        std::to_string(g) + " is not 8");
          }
          store_u16(q.data.data() + (row * (cols / 32) + group) * k_q4_0_block_bytes,
                    narrow_fp16(s, "q4_0", r, g));
          break;
        case quant_format::q8_0:
          store_u16(q.data.data() + (row * (cols / 32) + group) * k_q8_0_block_bytes,
                    narrow_fp16(s, "q8_0", r, g));
          break;
        case quant_format::int8_channel:
        case quant_format::fp8_e4m3_channel:
          q.scales[row] = s;
          break;
      }
    }
    for (int c = 0; c < q.cols; ++c) {
      const packed_position at = packed_element_position(p.kind, chunks, r, c);
      const auto col = static_cast<std::size_t>(c);
      switch (q.format) {
        case quant_format::int4_group:
          set_nibble(q.data.data() + row * (cols / 8) * 4, col, packed_nibble(p.data, at));
          break;
        case quant_format::q4_0: {
          std::uint8_t* block = q.data.data() + (row * (cols / 32) + col / 32) * k_q4_0_block_bytes;
          const std::size_t i = col % 32;
          const int v = packed_nibble(p.data, at);
          if (i < 16)
            block[2 + i] = static_cast<std::uint8_t>((block[2 + i] & 0xf0) | v);
          else
            block[2 + i - 16] = static_cast<std::uint8_t>((block[2 + i - 16] & 0x0f) | (v << 4));
          break;
        }
        case quant_format::q8_0:
          q.data[(row * (cols / 32) + col / 32) * k_q8_0_block_bytes + 2 + col % 32] =
              p.data[at.byte];
          break;
        case quant_format::int8_channel:
        case quant_format::fp8_e4m3_channel:
          q.data[row * cols + col] = p.data[at.byte];
          break;
      }
    }
  }
  return q;
}

std::vector<std::uint16_t> dequantize_packed_bf16(const packed_quant_view& w) {
  const std::string what = "dequantize_packed_bf16 [" + std::to_string(w.rows) + "][" +
                           std::to_string(w.cols) + "]";
  if (w.rows < 1 || w.cols < k_pack_block_cols || w.cols % k_pack_block_cols != 0 ||
      w.cols >= k_pack_max_cols) {
    throw std::invalid_argument(what + ": rows must be >= 1 and cols a multiple of 32 below 2^21");
  }
  if (packed_is_grouped(w.kind) && (w.group_size < k_pack_block_cols ||
                                    w.group_size % k_pack_block_cols != 0 ||
                                    w.cols % w.group_size != 0)) {
    throw std::invalid_argument(what + ": group_size " + std::to_string(w.group_size) +
                                " must be a multiple of 32 dividing cols");
  }
  if (!w.data || !w.scales || (w.kind == packed_quant_kind::int4_group && !w.zeros)) {
    throw std::invalid_argument(what + ": null data, scales or zero points");
  }
  const int chunks = w.chunks(), groups = w.groups();
  std::vector<std::uint16_t> out(static_cast<std::size_t>(w.rows) * w.cols);
  for (int r = 0; r < w.rows; ++r) {
    for (int c = 0; c < w.cols; ++c) {
      const int g = packed_is_grouped(w.kind) ? c / w.group_size : 0;
      const float s = w.scales[packed_scale_index(groups, r, g)];
      const packed_position at = packed_element_position(w.kind, chunks, r, c);
      const std::uint8_t byte = w.data[at.byte];
      float code = 0;
      switch (w.kind) {
        case packed_quant_kind::int4_group: {
          const int q = (byte >> at.shift) & 0xf;
          const int z = (w.zeros[packed_zero_index(groups, r, g)] >> (r % 16 < 8 ? 0 : 4)) & 0xf;
          code = static_cast<float>(q - z);
          break;
        }
        case packed_quant_kind::int8_group:
        case packed_quant_kind::int8_channel:
          code = static_cast<float>(static_cast<std::int8_t>(byte));
          break;
        case packed_quant_kind::fp8_channel:
          // 0x7f / 0xff: the largest exponent and mantissa read as a number (15 * 2^5), as the
          // kernels' bit trick reads them.
          code = (byte & 0x7f) == 0x7f ? ((byte & 0x80) ? -480.0f : 480.0f)
                                       : fp8_e4m3_to_float(byte);
          break;
      }
      out[static_cast<std::size_t>(r) * w.cols + c] = float_to_bf16(s * code);
    }
  }
  return out;
}

}  // namespace ridgeline::cpu
