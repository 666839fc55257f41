// A reader of GGUF files (llama.cpp's single-file checkpoint format, versions 2 and 3): header,
// metadata key/values of every GGUF value type, tensor infos, alignment and the data region,
// memory-mapped. Tensors of the supported ggml types (F32, F16, BF16, Q8_0, Q4_0) dequantize to
// float through the CPU references of kernels/quant.hpp. docs/checkpoints.md ("Quantized formats")
// has the layout.
//   const gguf_file f("model.gguf");
//   const gguf_llama_params p = read_gguf_llama_params(f);
//   std::vector<float> w = f.tensor_f32("blk.0.attn_q.weight");   // ne[0] fastest
// Malformed files throw std::invalid_argument, unreadable ones io_error; either way one line
// naming the file and what is wrong (and the tensor or key).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ridgeline {

// GGUF metadata value types, numbered as in the file.
enum class gguf_value_type : std::uint32_t {
  uint8 = 0,
  int8 = 1,
  uint16 = 2,
  int16 = 3,
  uint32 = 4,
  int32 = 5,
  float32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  uint64 = 10,
  int64 = 11,
  float64 = 12,
};

// "uint8", ..., "float64" (the names GGUF's documentation uses, lower case).
std::string gguf_value_type_name(gguf_value_type t);

// One metadata value: the field matching `type` holds it (unsigned types in u, signed in i,
// float32/float64 in f, bool in b, string in s; array: element_type and elements).
struct gguf_value {
  gguf_value_type type = gguf_value_type::uint8;
  std::uint64_t u = 0;
  std::int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  gguf_value_type element_type = gguf_value_type::uint8;  // array only
  std::vector<gguf_value> elements;                       // array only
};

// ggml tensor types that ridgeline knows by name (numbered as in ggml). Reading data is
// supported for f32, f16, bf16, q8_0 and q4_0; the others are recognised (their sizes are checked)
// and tensor_f32 refuses them by name. Any other number is rejected when the file is opened.
enum class ggml_type : std::uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q8_1 = 9,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  q8_k = 15,
  bf16 = 30,
};

// "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", ... (ggml's names).
std::string ggml_type_name(ggml_type t);
bool ggml_type_supported(ggml_type t);

struct gguf_tensor_info {
  std::string name;
  std::vector<std::uint64_t> dims;  // ne[0] (contiguous) first, as in the file; 1 to 4 dims
  ggml_type type = ggml_type::f32;
  std::uint64_t offset = 0;    // from the start of the data region (a multiple of alignment)
  std::uint64_t elements = 0;  // product of dims
  std::uint64_t bytes = 0;     // size of the data
};

class gguf_file {
 public:
  // Maps and parses `path`; every check of the header, metadata and tensor infos runs here.
  explicit gguf_file(const std::filesystem::path& path);
  ~gguf_file();
  gguf_file(gguf_file&&) noexcept;
  gguf_file& operator=(gguf_file&&) noexcept;
  gguf_file(const gguf_file&) = delete;
  gguf_file& operator=(const gguf_file&) = delete;

  const std::filesystem::path& path() const { return m_path; }
  std::uint32_t version() const { return m_version; }
  std::uint64_t alignment() const { return m_alignment; }      // general.alignment, default 32
  std::uint64_t data_offset() const { return m_data_offset; }  // file offset of the data region
  std::uint64_t file_bytes() const { return m_file_bytes; }

  const std::map<std::string, gguf_value>& metadata() const { return m_metadata; }
  const gguf_value* find(std::string_view key) const;                         // null when absent
  const std::vector<gguf_tensor_info>& tensors() const { return m_tensors; }  // file order
  const gguf_tensor_info& tensor(std::string_view name) const;                // throws when absent

  // The tensor's raw bytes (its ggml layout), mapped from the file.
  std::span<const std::uint8_t> tensor_bytes(std::string_view name) const;
  // The tensor as floats, elements() of them, ne[0] fastest. Throws std::invalid_argument naming
  // the type for types that are not supported (Q4_K and the other recognised ones).
  std::vector<float> tensor_f32(std::string_view name) const;

 private:
  struct mapping;
  std::filesystem::path m_path;
  std::unique_ptr<mapping> m_map;
  std::uint32_t m_version = 0;
  std::uint64_t m_alignment = 32, m_data_offset = 0, m_file_bytes = 0;
  std::map<std::string, gguf_value> m_metadata;
  std::vector<gguf_tensor_info> m_tensors;
  std::map<std::string, std::size_t, std::less<>> m_tensor_index;
};

// What the engine needs from a Llama-family GGUF: keys "<arch>.<field>" with <arch> from
// general.architecture. Integers of any GGUF integer type are accepted.
struct gguf_llama_params {
  std::string architecture;         // general.architecture ("llama", ...)
  int block_count = 0;              // <arch>.block_count (layers)
  int embedding_length = 0;         // <arch>.embedding_length (hidden)
  int head_count = 0;               // <arch>.attention.head_count
  int head_count_kv = 0;            // <arch>.attention.head_count_kv (head_count when absent)
  int feed_forward_length = 0;      // <arch>.feed_forward_length (intermediate)
  int context_length = 0;           // <arch>.context_length
  double rope_freq_base = 10000.0;  // <arch>.rope.freq_base (10000 when absent)
  int vocab_size = 0;               // length of tokenizer.ggml.tokens
  // Optional keys (absent: nullopt / empty), type-checked when present.
  std::optional<double> rms_eps;              // <arch>.attention.layer_norm_rms_epsilon
  std::optional<int> key_length;              // <arch>.attention.key_length (head_dim)
  std::optional<int> value_length;            // <arch>.attention.value_length
  std::optional<int> rope_dimension_count;    // <arch>.rope.dimension_count (rotated dims)
  std::string rope_scaling_type;              // <arch>.rope.scaling.type ("none", "linear", ...)
};

// Throws std::invalid_argument naming the file and the key that is missing or of the wrong type.
gguf_llama_params read_gguf_llama_params(const gguf_file& f);

}  // namespace ridgeline
