// Quantized weight formats: naive CPU references that dequantize them to float, the matching
// quantizers (float -> format; for test data and random quantized weights), and the reference of a
// quantized linear layer (dequantize, then y = W x in double). Written from the format
// definitions; a future GPU kernel checks itself against quantized_matvec_ref / linear_ref.
//   quantized_matrix q = quantize(quant_format::q4_0, rows, cols, w);   // w: [rows][cols] floats
//   std::vector<float> back = dequantize(q.view());
//   quantized_matvec_ref(q.view(), x, y);                                // x: [cols], y: [rows]
// A matrix is W[rows][cols] (rows = output channels, cols = input features, row-major), the same
// orientation as a GGUF tensor with ne[0] = cols. Formats and their exact layouts:
//
//   q8_0 (ggml GGML_TYPE_Q8_0): each row is cols / 32 blocks of 34 bytes:
//     [fp16 d, little-endian][32 x int8 q];  w[i] = d * q[i].
//   q4_0 (ggml GGML_TYPE_Q4_0): each row is cols / 32 blocks of 18 bytes:
//     [fp16 d][16 bytes b];  q[i] = b[i] & 0x0f and q[i + 16] = b[i] >> 4 for i < 16
//     (low nibbles are elements 0..15, high nibbles 16..31);  w[i] = d * (q[i] - 8).
//   int4_group (AWQ/GPTQ-style weight-only int4, asymmetric, group_size input columns per group,
//     default 128; ridgeline's own packing, documented here): data holds uint32 words
//     (little-endian) [rows][cols / 8]; element c of a row is nibble (c % 8) of word c / 8, nibble
//     k being bits 4k..4k+3. scales: float [rows][cols / group_size]. zeros: uint32 words
//     [rows][ceil(groups / 8)], the zero point of group g in nibble (g % 8) of word g / 8.
//     w[r][c] = scales[r][g] * (q[r][c] - zero[r][g]), g = c / group_size.
//   int8_channel (weight-only int8, one scale per output channel): data int8 [rows][cols],
//     scales float [rows];  w[r][c] = scales[r] * q[r][c].
//   fp8_e4m3_channel: data OCP fp8 E4M3 codes [rows][cols] (cpu::fp8_e4m3_to_float: bias 7, no
//     infinities, 0x7f/0xff NaN, max 448), scales float [rows];  w[r][c] = scales[r] * e4m3(q).
//
// Tails: the block formats need cols to be a multiple of their block (32 for q8_0/q4_0,
// group_size for int4_group, group_size itself a positive multiple of 8); anything else throws
// std::invalid_argument naming the values. rows may be anything >= 1; the per-channel formats take
// any cols >= 1. Real checkpoints meet these (hidden sizes are multiples of 128).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ridgeline::cpu {

enum class quant_format { q8_0, q4_0, int4_group, int8_channel, fp8_e4m3_channel };

// "q8_0", "q4_0", "int4_group", "int8_channel", "fp8_e4m3_channel".
std::string quant_format_name(quant_format f);

inline constexpr int k_ggml_block_elements = 32;  // q8_0 and q4_0
inline constexpr int k_q8_0_block_bytes = 34;     // fp16 d + 32 int8
inline constexpr int k_q4_0_block_bytes = 18;     // fp16 d + 16 bytes of nibbles
inline constexpr int k_default_group_size = 128;  // int4_group

// Non-owning view of one quantized matrix; the reference and a GPU kernel read the same layout.
struct quantized_matrix_view {
  quant_format format = quant_format::q8_0;
  int rows = 0, cols = 0;                 // W[rows][cols]; y[rows] = W x[cols]
  const std::uint8_t* data = nullptr;     // codes, format_bytes() bytes (layouts above)
  const float* scales = nullptr;          // int4_group [rows][groups]; *_channel [rows]; else null
  const std::uint8_t* zeros = nullptr;    // int4_group: packed uint32 words [rows][ceil(groups/8)]
  int group_size = k_default_group_size;  // int4_group only
};

// The owner of a quantized matrix (what quantize returns); view() borrows it.
struct quantized_matrix {
  quant_format format = quant_format::q8_0;
  int rows = 0, cols = 0, group_size = k_default_group_size;
  std::vector<std::uint8_t> data;
  std::vector<float> scales;
  std::vector<std::uint8_t> zeros;
  quantized_matrix_view view() const;
};

// Throws std::invalid_argument (with the values) unless rows/cols/group_size fit the format.
void check_quant_shape(quant_format f, int rows, int cols, int group_size = k_default_group_size);
// Bytes of `data` for a matrix of this shape (after check_quant_shape).
std::size_t quant_data_bytes(quant_format f, int rows, int cols);

// Flat ggml blocks: n elements (a multiple of 32) from n / 32 blocks.
void dequantize_q8_0(std::span<const std::uint8_t> blocks, std::span<float> out);
void dequantize_q4_0(std::span<const std::uint8_t> blocks, std::span<float> out);

// float -> format. q8_0: d = amax / 127 rounded to fp16, q = clamp(round(x / d), -127, 127).
// q4_0: m = the element of largest magnitude (signed), d = fp16(m / -8),
// q = clamp(round(x / d) + 8, 0, 15). int4_group: per group lo = min(min, 0), hi = max(max, 0),
// s = (hi - lo) / 15, z = clamp(round(-lo / s), 0, 15), q = clamp(round(x / s) + z, 0, 15)
// (s = 1, z = 0 for an all-zero group). int8_channel: s = amax / 127, q = round(x / s).
// fp8_e4m3_channel: s = amax / 448, q = e4m3(x / s) (nearest even). All-zero rows get s = 1
// (q8_0/q4_0: d = 0). Rounding is to nearest, ties away from zero, except e4m3.
// Error bounds per element (tests check them; the small factors cover d's fp16 rounding and
// float arithmetic): q8_0 0.5 * |d| * (1 + 2^-9); q4_0 |d| * (1 + 2^-7) (values of the sign
// opposite to m may need q = 16 and clamp at 15); int4_group and int8_channel 0.5 * s * (1 + 2^-9);
// fp8 |x| * 2^-4 + s * 2^-10 (3 mantissa bits; the subnormal step is 2^-9).
quantized_matrix quantize(quant_format f, int rows, int cols, std::span<const float> w,
                          int group_size = k_default_group_size);

// W as floats, [rows][cols].
std::vector<float> dequantize(const quantized_matrix_view& q);
// One row of W into out[cols].
void dequantize_row(const quantized_matrix_view& q, int row, std::span<float> out);

// y[rows] = W x[cols]: each row dequantized, products summed in double, rounded to float once.
void quantized_matvec_ref(const quantized_matrix_view& q, std::span<const float> x,
                          std::span<float> y);
// y[tokens][rows] = x[tokens][cols] W^T, quantized_matvec_ref per token.
void linear_ref(const quantized_matrix_view& q, std::span<const float> x, std::span<float> y,
                int tokens);

}  // namespace ridgeline::cpu
