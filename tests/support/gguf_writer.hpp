// A GGUF writer for tests, written from llama.cpp's published GGUF specification
// (ggml/docs/gguf.md) and independently of engine/gguf.cpp: it shares no code with the reader
// (its own fp16 codec and its own Q8_0/Q4_0 quantizers), so a reader that misreads the format
// cannot agree with it by accident.
//   gguf_writer w;                                    // version 3, alignment 32
//   w.add_string("general.architecture", "llama");
//   w.add_tensor("t", {64, 3}, ggml::q8_0, quantize_q8_0(x));   // dims: ne[0] first
//   w.write(path);
// The file: magic "GGUF", uint32 version, uint64 tensor count, uint64 key/value count; each
// key/value (string key, uint32 value type, value); each tensor info (string name, uint32 n_dims,
// uint64 ne[n_dims], uint32 ggml type, uint64 offset from the data region, a multiple of the
// alignment); zero padding to the alignment; the data region, each tensor zero-padded to the
// alignment. Strings are a uint64 length and UTF-8 bytes, no terminator; all little-endian.
// make_tiny_llama_gguf() builds a whole Llama-family file in llama.cpp's tensor names, with the
// quantize-then-dequantize reference of every tensor beside it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ridgeline/perfmodel/model.hpp"

namespace ridgeline::test {

// ggml type numbers (ggml.h's enum ggml_type) and GGUF metadata value types (gguf.md).
namespace ggml {
inline constexpr std::uint32_t f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 8, bf16 = 30;
}
namespace gguf_type {
inline constexpr std::uint32_t uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5,
                               float32 = 6, boolean = 7, string = 8, array = 9, uint64 = 10,
                               int64 = 11, float64 = 12;
}

// The writer's own IEEE half codec (round to nearest even; no code shared with kernels/).
std::uint16_t half_from_float(float x);
float half_to_float(std::uint16_t h);

// ggml block quantizers as llama.cpp's reference quantizers define them, n a multiple of 32.
// Q8_0 per block of 32: d = amax / 127, q = round(x / d) (ties away), bytes [fp16 d][32 x int8].
// Q4_0 per block of 32: m = the element of largest magnitude (signed), d = m / -8,
// q = min(15, trunc(x / d + 8.5)), bytes [fp16 d][16 bytes: q[j] | q[j + 16] << 4].
std::vector<std::uint8_t> quantize_q8_0(const std::vector<float>& x);
std::vector<std::uint8_t> quantize_q4_0(const std::vector<float>& x);
// The values those blocks stand for: fp16(d) * q and fp16(d) * (q - 8), one float multiply.
std::vector<float> dequantize_q8_0_reference(const std::vector<std::uint8_t>& blocks);
std::vector<float> dequantize_q4_0_reference(const std::vector<std::uint8_t>& blocks);

class gguf_writer {
 public:
  explicit gguf_writer(std::uint32_t version = 3, std::uint32_t alignment = 32);

  void add_u8(const std::string& key, std::uint8_t v);
  void add_i8(const std::string& key, std::int8_t v);
  void add_u16(const std::string& key, std::uint16_t v);
  void add_i16(const std::string& key, std::int16_t v);
  void add_u32(const std::string& key, std::uint32_t v);
  void add_i32(const std::string& key, std::int32_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_u64(const std::string& key, std::uint64_t v);
  void add_i64(const std::string& key, std::int64_t v);
  void add_f64(const std::string& key, double v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_i32_array(const std::string& key, const std::vector<std::int32_t>& v);
  void add_f32_array(const std::string& key, const std::vector<float>& v);
  // An array of arrays of uint8 (nesting is allowed by the spec).
  void add_nested_u8_array(const std::string& key, const std::vector<std::vector<std::uint8_t>>& v);
  // A key/value whose type field and encoded value are given as is (for malformed files).
  void add_raw(const std::string& key, std::uint32_t type, const std::string& encoded_value);

  // dims: ne[0] (contiguous) first. bytes: the tensor's data in its ggml layout.
  void add_tensor(const std::string& name, std::vector<std::uint64_t> dims, std::uint32_t type,
                  std::vector<std::uint8_t> bytes);

  // The whole file. `general.alignment` is written by the caller when it is not 32.
  std::string bytes() const;
  void write(const std::filesystem::path& path) const;

  // Where the data region starts in bytes() (after the infos and the padding).
  std::uint64_t data_offset() const;

 private:
  struct tensor {
    std::string name;
    std::vector<std::uint64_t> dims;
    std::uint32_t type;
    std::vector<std::uint8_t> bytes;
  };
  std::string header_and_infos() const;

  std::uint32_t m_version, m_alignment;
  std::vector<std::string> m_kvs;  // each key/value encoded
  std::vector<tensor> m_tensors;
};

// A Llama-family model in GGUF with llama.cpp's names (token_embd.weight, blk.N.attn_q.weight,
// ..., output_norm.weight, output.weight), its metadata (general.*, llama.*, tokenizer.ggml.*, and
// ridgeline.test.* keys of the value types a Llama file does not otherwise use) and
// seeded normal weights. Linear weights and the embedding are stored as `type` (F32, F16, Q8_0 or
// Q4_0); norms are F32 (as llama.cpp stores them); a linear weight whose ne[0] is not a multiple of
// 32 falls back to F16 for the block types. reference[name] is what each tensor stands for, as
// floats, ne[0] fastest: the writer's own quantize-then-dequantize (or the stored value).
// Q and K are stored as llama.cpp's converter stores them (convert_hf_to_gguf.py's permute: each
// head's rows reshaped to [2][d/2] and transposed to [d/2][2], so the two rotate-half halves
// become adjacent pairs; Q over head_count heads, K over head_count_kv): reference[] is that
// stored order, hf_reference[] the Hugging Face order the model was drawn in, quantized directly
// (blocks lie within rows, so quantizing before or after the row permutation gives the same
// rows). with_output = false leaves output.weight out (llama.cpp then ties it to token_embd).
struct tiny_llama_gguf {
  gguf_writer writer;
  std::map<std::string, std::vector<float>> reference;
  std::map<std::string, std::vector<float>> hf_reference;
  std::map<std::string, std::uint32_t> types;
};
tiny_llama_gguf make_tiny_llama_gguf(const model_preset& m, std::uint32_t type,
                                     std::uint32_t seed = 1, std::uint32_t version = 3,
                                     bool with_output = true);

// llama.cpp's Q/K row permutation of a [rows][cols] row-major matrix (rows a multiple of
// 2 * heads): view the rows as [heads][2][rows / heads / 2] and swap the last two row axes.
std::vector<float> llama_cpp_permute_rows(const std::vector<float>& w, std::uint64_t rows,
                                          std::uint64_t cols, std::uint64_t heads);

}  // namespace ridgeline::test
