// The safetensors format, with no knowledge of any model: the header parser, a reader of the
// tensors of one file or of shards listed by a Hugging Face *.index.json (converted to bf16 on
// read), and a writer of BF16 files. checkpoint.hpp maps Hugging Face Llama names onto the
// engine's tensors on top of it.
//
// A file: [8-byte little-endian header length N][N bytes of JSON][data section]; the JSON maps
// each tensor name to {dtype, shape, data_offsets: [begin, end]} (bytes from the start of the
// data section), plus an optional "__metadata__" of strings.
//   safetensors_reader r("Llama-3.1-8B");               // folder, file or *.index.json
//   if (const safetensors_tensor* t = r.find("model.norm.weight")) r.read("model.norm.weight",
//   dst);
// Bad input throws std::invalid_argument, unreadable files io_error; one line naming the file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ridgeline/kernels/ops.hpp"  // bf16_bits

namespace ridgeline {

// Which dtypes a header may hold: the float ones the bf16 reader converts (BF16, F16, F32), or
// every safetensors dtype (for the quantized formats of quant_checkpoint.hpp, read as raw bytes).
enum class safetensors_dtypes { floats, any };

// Bytes per element of a safetensors dtype (BOOL, U8, I8, F8_E4M3, F8_E5M2, I16, U16, F16, BF16,
// I32, U32, F32, I64, U64, F64); 0 for anything else.
std::uint64_t safetensors_dtype_bytes(std::string_view dtype);

// One tensor of a safetensors header.
struct safetensors_tensor {
  std::string dtype;  // "BF16", "F16", "F32" (others are rejected unless safetensors_dtypes::any)
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte range in the data section
};

struct safetensors_header {
  std::uint64_t data_offset = 0;  // where the data section starts in the file: 8 + header length
  std::uint64_t data_bytes = 0;   // bytes of the data section present in the file
  std::map<std::string, safetensors_tensor> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__" (string values)
};

// Parses and checks the JSON header of a safetensors file whose data section holds data_bytes
// bytes: every tensor has a supported dtype, a shape of non-negative integers and data_offsets
// [begin, end] with end - begin = elements * dtype size and end <= data_bytes (else: truncated).
// `source` names the file in messages. For tests and fuzzing; read_safetensors_header uses it.
safetensors_header parse_safetensors_header(std::string_view header_json, std::uint64_t data_bytes,
                                            const std::string& source,
                                            safetensors_dtypes dtypes = safetensors_dtypes::floats);
// Reads the 8-byte little-endian header length and the header of a file, then parses it.
safetensors_header read_safetensors_header(const std::filesystem::path& file,
                                           safetensors_dtypes dtypes = safetensors_dtypes::floats);

// "[4096, 11008]", for messages.
std::string shape_text(const std::vector<std::int64_t>& shape);

// The tensors of a checkpoint by name: a folder (model.safetensors.index.json if present, else
// model.safetensors), a .safetensors file or an .index.json file (its weight_map names the shard
// of every tensor; each shard's header is read and checked up front).
class safetensors_reader {
 public:
  explicit safetensors_reader(const std::filesystem::path& dir_or_file,
                              safetensors_dtypes dtypes = safetensors_dtypes::floats);

  // The folder the checkpoint lives in.
  const std::filesystem::path& folder() const { return m_folder; }
  // The tensor's header entry, or null when the checkpoint has no such tensor.
  const safetensors_tensor* find(const std::string& name) const;
  const std::filesystem::path& file_of(const std::string& name) const;
  // Throws std::invalid_argument "<checkpoint>: missing tensor <name>".
  [[noreturn]] void missing(const std::string& name) const;
  // Reads a tensor into dst (its element count), converted to bf16: BF16 copied, F16 and F32
  // rounded to nearest even.
  // Throws std::invalid_argument for a dtype other than those three.
  void read(const std::string& name, bf16_bits* dst);
  // A tensor's bytes as stored (little-endian, row-major), of any dtype the header accepted.
  std::vector<std::uint8_t> read_bytes(const std::string& name);

 private:
  struct shard {
    std::filesystem::path file;
    safetensors_header header;
    std::ifstream in;  // opened on first read
  };
  std::size_t add_shard(const std::filesystem::path& file);
  void open_index(const std::filesystem::path& index);
  std::ifstream& seek_to(shard& s, const safetensors_tensor& t);

  safetensors_dtypes m_dtypes = safetensors_dtypes::floats;
  std::filesystem::path m_folder;
  std::string m_source;  // the file named in "missing tensor" messages
  std::vector<shard> m_shards;
  std::map<std::string, std::size_t> m_where;  // tensor name -> shard
};

// One tensor to write: BF16 data of shape's element count.
struct safetensors_entry {
  std::string name;
  std::vector<std::int64_t> shape;
  const bf16_bits* data = nullptr;
};
// Writes a BF16 safetensors file (atomically: a temporary file renamed over `file`), tensors in
// the given order, the data section 8-byte aligned, with "__metadata__" {"format": "pt"} (what
// Hugging Face transformers expects of PyTorch weights).
void write_bf16_safetensors(const std::filesystem::path& file,
                            std::span<const safetensors_entry> entries);

}  // namespace ridgeline
