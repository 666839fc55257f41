// Load-time repacker: quant.hpp's formats <-> the GPU layout of quant_packed.hpp, both ways and
// lossless (unpack(pack(q)) gives q's bytes back; tests/unit/quant_pack_test.cpp).
//   cpu::quantized_matrix q = cpu::quantize(cpu::quant_format::int4_group, rows, cols, w);
//   cpu::packed_quant_matrix p = cpu::pack_quantized(q.view());   // upload p.data/scales/zeros
//   cpu::quantized_matrix back = cpu::unpack_quantized(p);         // == q
// The GPU reference of a packed linear layer is quant.hpp's linear_ref on the source matrix.
#pragma once

#include <cstdint>
#include <vector>

#include "ridgeline/kernels/quant.hpp"
#include "ridgeline/kernels/quant_packed.hpp"

namespace ridgeline::cpu {

// The packed kind a format goes to: int4_group and q4_0 -> int4_group, q8_0 -> int8_group,
// int8_channel -> int8_channel, fp8_e4m3_channel -> fp8_channel.
packed_quant_kind packed_kind_of(quant_format f);

// The owner of a packed matrix; view() borrows it (host pointers).
struct packed_quant_matrix {
  quant_format source = quant_format::int4_group;  // what unpack_quantized gives back
  packed_quant_kind kind = packed_quant_kind::int4_group;
  int rows = 0, cols = 0, group_size = 0;  // group_size: grouped kinds only (q4_0, q8_0: 32)
  std::vector<std::uint8_t> data;
  std::vector<float> scales;
  std::vector<std::uint8_t> zeros;
  packed_quant_view view() const;
};

// Throws std::invalid_argument (with the values) unless q's shape packs: cols a multiple of 32
// and below 2^21, int4_group's group_size a multiple of 32.
void check_packable(quant_format f, int rows, int cols, int group_size = k_default_group_size);
packed_quant_matrix pack_quantized(const quantized_matrix_view& q);
// Back to p.source's layout. Throws std::invalid_argument if p cannot have come from it (a q4_0
// zero point other than 8, a q8_0/q4_0 scale that is not an fp16 value).
quantized_matrix unpack_quantized(const packed_quant_matrix& p);

// The reference of the GPU dequantizer (cuda::quant_dequantize_bf16, the prefill path of a
// quantized linear layer): W as bf16 [rows][cols] straight from the packed layout (host
// pointers), each element s * (q - z) (int4), s * q (int8) or s * e4m3(q) (fp8) in float, rounded
// to bf16 (nearest even) once. Element by element through packed_element_position; equal to
// float_to_bf16 of quant.hpp's dequantize() of the source matrix. The two e4m3 NaN codes decode to
// +-480 here as in the GPU kernels (quant_packed.hpp; the quantizers never produce them).
// Throws std::invalid_argument for a shape the packed layout cannot hold or null pointers.
std::vector<std::uint16_t> dequantize_packed_bf16(const packed_quant_view& w);

}  // namespace ridgeline::cpu
