// The GGUF reader (gguf.hpp): the file is mapped read-only, the header, metadata and tensor infos
// are parsed with a bounds-checked cursor, and every tensor is checked against the data region
// before anything is handed out.
#include "ridgeline/engine/gguf.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "ridgeline/core/errors.hpp"
#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/quant.hpp"

namespace ridgeline {

static_assert(std::endian::native == std::endian::little,
              "GGUF is read as little-endian; so is the host");

struct gguf_file::mapping {
  const std::uint8_t* data = nullptr;
  std::size_t bytes = 0;
  ~mapping() {
    if (data && bytes) ::munmap(const_cast<std::uint8_t*>(data), bytes);
  }
};

namespace {

constexpr std::uint32_t k_magic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr int k_max_dims = 4;
constexpr int k_max_array_depth = 8;

struct type_size {
  std::uint64_t block_elements, block_bytes;
};

// Elements and bytes per block of each recognised ggml type (ggml's block layouts).
std::optional<type_size> size_of(ggml_type t) {
  switch (t) {
    case ggml_type::f32:
      return type_size{1, 4};
    case ggml_type::f16:
    case ggml_type::bf16:
      return type_size{1, 2};
    case ggml_type::q4_0:
      return type_size{32, 18};
    case ggml_type::q4_1:
      return type_size{32, 20};
    case ggml_type::q5_0:
      return type_size{32, 22};
    case ggml_type::q5_1:
      return type_size{32, 24};
    case ggml_type::q8_0:
      return type_size{32, 34};
    case ggml_type::q8_1:
      return type_size{32, 36};
    case ggml_type::q2_k:
      return type_size{256, 84};
    case ggml_type::q3_k:
      return type_size{256, 110};
    case ggml_type::q4_k:
      return type_size{256, 144};
    case ggml_type::q5_k:
      return type_size{256, 176};
    case ggml_type::q6_k:
      return type_size{256, 210};
    case ggml_type::q8_k:
      return type_size{256, 292};
  }
  return std::nullopt;
}

class cursor {
 public:
  cursor(const std::uint8_t* data, std::uint64_t bytes, const std::string& file)
      : m_data(data), m_bytes(bytes), m_file(file) {}

  std::uint64_t pos() const { return m_pos; }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::invalid_argument(m_file + ": " + what);
  }
  void need(std::uint64_t n, const std::string& what) const {
    if (n > m_bytes - m_pos) {
      fail("truncated file: " + what + " needs " + std::to_string(n) + " bytes at offset " +
           std::to_string(m_pos) + ", the file has " + std::to_string(m_bytes) + " bytes");
    }
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, m_data + m_pos, sizeof(T));
    m_pos += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& what) {
    const auto n = read<std::uint64_t>(what + " (length)");
    need(n, what);
    std::string s(reinterpret_cast<const char*>(m_data + m_pos), static_cast<std::size_t>(n));
    m_pos += n;
    return s;
  }

 private:
  const std::uint8_t* m_data;
  std::uint64_t m_bytes, m_pos = 0;
  const std::string& m_file;
};

gguf_value read_value(cursor& c, gguf_value_type type, const std::string& key, int depth) {
  gguf_value v;
  v.type = type;
  const std::string what = "value of " + key;
  switch (type) {
    case gguf_value_type::uint8:
      v.u = c.read<std::uint8_t>(what);
      break;
    case gguf_value_type::int8:
      v.i = c.read<std::int8_t>(what);
      break;
    case gguf_value_type::uint16:
      v.u = c.read<std::uint16_t>(what);
      break;
    case gguf_value_type::int16:
      v.i = c.read<std::int16_t>(what);
      break;
    case gguf_value_type::uint32:
      v.u = c.read<std::uint32_t>(what);
      break;
    case gguf_value_type::int32:
      v.i = c.read<std::int32_t>(what);
      break;
    case gguf_value_type::uint64:
      v.u = c.read<std::uint64_t>(what);
      break;
    case gguf_value_type::int64:
      v.i = c.read<std::int64_t>(what);
      break;
    case gguf_value_type::float32:
      v.f = c.read<float>(what);
      break;
    case gguf_value_type::float64:
      v.f = c.read<double>(what);
      break;
    case gguf_value_type::boolean: {
      const auto b = c.read<std::uint8_t>(what);
      if (b > 1) c.fail("metadata " + key + ": bool value " + std::to_string(b) + " is not 0 or 1");
      v.b = b == 1;
      break;
    }
    case gguf_value_type::string:
      v.s = c.read_string(what);
      break;
    case gguf_value_type::array: {
      if (depth >= k_max_array_depth) c.fail("metadata " + key + ": arrays nested too deep");
      const auto raw = c.read<std::uint32_t>("element type of " + key);
      if (raw > static_cast<std::uint32_t>(gguf_value_type::float64)) {
        c.fail("metadata " + key + ": unknown array element type " + std::to_string(raw));
      }
      v.element_type = static_cast<gguf_value_type>(raw);
      const auto n = c.read<std::uint64_t>("length of " + key);
      // Every element takes at least one byte: a larger count cannot fit in the file.
      c.need(n, "array " + key + " of " + std::to_string(n) + " elements");
      v.elements.reserve(static_cast<std::size_t>(n));
      for (std::uint64_t k = 0; k < n; ++k) {
        v.elements.push_back(read_value(c, v.element_type, key, depth + 1));
      }
      break;
    }
    default:
      c.fail("metadata " + key + ": unknown value type");
  }
  return v;
}

bool is_integer(gguf_value_type t) {
  using enum gguf_value_type;
  return t == uint8 || t == int8 || t == uint16 || t == int16 || t == uint32 || t == int32 ||
         t == uint64 || t == int64;
}
bool is_unsigned(gguf_value_type t) {
  using enum gguf_value_type;
  return t == uint8 || t == uint16 || t == uint32 || t == uint64;
}

}  // namespace

std::string gguf_value_type_name(gguf_value_type t) {
  switch (t) {
    case gguf_value_type::uint8:
      return "uint8";
    case gguf_value_type::int8:
      return "int8";
    case gguf_value_type::uint16:
      return "uint16";
    case gguf_value_type::int16:
      return "int16";
    case gguf_value_type::uint32:
      return "uint32";
    case gguf_value_type::int32:
      return "int32";
    case gguf_value_type::float32:
      return "float32";
    case gguf_value_type::boolean:
      return "bool";
    case gguf_value_type::string:
      return "string";
    case gguf_value_type::array:
      return "array";
    case gguf_value_type::uint64:
      return "uint64";
    case gguf_value_type::int64:
      return "int64";
    case gguf_value_type::float64:
      return "float64";
  }
  return "type " + std::to_string(static_cast<std::uint32_t>(t));
}

std::string ggml_type_name(ggml_type t) {
  switch (t) {
    case ggml_type::f32:
      return "F32";
    case ggml_type::f16:
      return "F16";
    case ggml_type::bf16:
      return "BF16";
    case ggml_type::q4_0:
      return "Q4_0";
    case ggml_type::q4_1:
      return "Q4_1";
    case ggml_type::q5_0:
      return "Q5_0";
    case ggml_type::q5_1:
      return "Q5_1";
    case ggml_type::q8_0:
      return "Q8_0";
    case ggml_type::q8_1:
      return "Q8_1";
    case ggml_type::q2_k:
      return "Q2_K";
    case ggml_type::q3_k:
      return "Q3_K";
    case ggml_type::q4_k:
      return "Q4_K";
    case ggml_type::q5_k:
      return "Q5_K";
    case ggml_type::q6_k:
      return "Q6_K";
    case ggml_type::q8_k:
      return "Q8_K";
  }
  return "ggml type " + std::to_string(static_cast<std::uint32_t>(t));
}

bool ggml_type_supported(ggml_type t) {
  return t == ggml_type::f32 || t == ggml_type::f16 || t == ggml_type::bf16 ||
         t == ggml_type::q8_0 || t == ggml_type::q4_0;
}

gguf_file::gguf_file(const std::filesystem::path& path) : m_path(path) {
  const std::string file = path.string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error("cannot read " + file + ": " + std::strerror(errno));
  struct stat st {};
  const int stat_error = ::fstat(fd, &st) != 0 ? errno : 0;
  if (stat_error || !S_ISREG(st.st_mode)) {
    const int err = stat_error;
    ::close(fd);
    throw io_error("cannot read " + file + ": " + (err ? std::strerror(err) : "not a file"));
  }
  m_file_bytes = static_cast<std::uint64_t>(st.st_size);
  m_map = std::make_unique<mapping>();
  if (m_file_bytes > 0) {
    void* p = ::mmap(nullptr, m_file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw io_error("cannot map " + file + ": " + std::strerror(err));
    }
    m_map->data = static_cast<const std::uint8_t*>(p);
    m_map->bytes = m_file_bytes;
  }
  ::close(fd);

  cursor c(m_map->data, m_file_bytes, file);
  const auto magic = c.read<std::uint32_t>("the magic");
  if (magic != k_magic) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", magic);
    c.fail(std::string("bad magic ") + hex + " (a GGUF file starts with \"GGUF\")");
  }
  m_version = c.read<std::uint32_t>("the version");
  if (m_version != 2 && m_version != 3) {
    c.fail("unsupported GGUF version " + std::to_string(m_version) + " (2 and 3 are read)");
  }
  const auto tensor_count = c.read<std::uint64_t>("the tensor count");
  const auto kv_count = c.read<std::uint64_t>("the metadata count");
  // A key/value takes at least 13 bytes and a tensor info at least 29: larger counts are lies.
  c.need(kv_count > m_file_bytes / 13 ? m_file_bytes + 1 : kv_count * 13,
         std::to_string(kv_count) + " metadata entries");

  for (std::uint64_t k = 0; k < kv_count; ++k) {
    std::string key = c.read_string("metadata key " + std::to_string(k));
    const auto raw = c.read<std::uint32_t>("the value type of " + key);
    if (raw > static_cast<std::uint32_t>(gguf_value_type::float64)) {
      c.fail("metadata " + key + ": unknown value type " + std::to_string(raw));
    }
    gguf_value v = read_value(c, static_cast<gguf_value_type>(raw), key, 0);
    if (m_metadata.count(key)) c.fail("metadata key " + key + " appears twice");
    m_metadata.emplace(std::move(key), std::move(v));
  }
  if (const gguf_value* a = find("general.alignment")) {
    if (a->type != gguf_value_type::uint32 || a->u == 0 || (a->u & (a->u - 1)) != 0) {
      c.fail("general.alignment must be a uint32 power of two, got " +
             gguf_value_type_name(a->type) + " " + std::to_string(a->u));
    }
    m_alignment = a->u;
  }

  c.need(tensor_count > m_file_bytes / 29 ? m_file_bytes + 1 : tensor_count * 29,
         std::to_string(tensor_count) + " tensor infos");
  for (std::uint64_t k = 0; k < tensor_count; ++k) {
    gguf_tensor_info t;
    t.name = c.read_string("tensor name " + std::to_string(k));
    const std::string what = "tensor " + t.name;
    const auto n_dims = c.read<std::uint32_t>("the dims count of " + t.name);
    if (n_dims < 1 || n_dims > k_max_dims) {
      c.fail(what + ": " + std::to_string(n_dims) + " dims (1 to 4 are allowed)");
    }
    t.elements = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const auto ne = c.read<std::uint64_t>("the dims of " + t.name);
      if (ne == 0) c.fail(what + ": dim " + std::to_string(d) + " is 0");
      if (t.elements > std::numeric_limits<std::uint64_t>::max() / ne ||
          t.elements * ne > (std::uint64_t{1} << 62)) {
        c.fail(what + ": the product of its dims overflows");
      }
      t.elements *= ne;
      t.dims.push_back(ne);
    }
    const auto raw_type = c.read<std::uint32_t>("the type of " + t.name);
    t.type = static_cast<ggml_type>(raw_type);
    const auto size = size_of(t.type);
    if (!size) {
      c.fail(what + ": unknown ggml type " + std::to_string(raw_type) +
             " (recognised: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K..Q8_K)");
    }
    if (t.dims[0] % size->block_elements != 0) {
      c.fail(what + ": ne[0] " + std::to_string(t.dims[0]) + " is not a multiple of " +
             ggml_type_name(t.type) + "'s block of " + std::to_string(size->block_elements));
    }
    t.bytes = t.elements / size->block_elements * size->block_bytes;
    t.offset = c.read<std::uint64_t>("the offset of " + t.name);
    if (t.offset % m_alignment != 0) {
      c.fail(what + ": offset " + std::to_string(t.offset) +
             " is not a multiple of the alignment " + std::to_string(m_alignment));
    }
    if (m_tensor_index.count(t.name)) c.fail(what + " appears twice");
    m_tensor_index.emplace(t.name, m_tensors.size());
    m_tensors.push_back(std::move(t));
  }

  m_data_offset = (c.pos() + m_alignment - 1) / m_alignment * m_alignment;
  const std::uint64_t data_bytes = m_file_bytes >= m_data_offset ? m_file_bytes - m_data_offset : 0;
  for (const auto& t : m_tensors) {
    if (t.offset > data_bytes || t.bytes > data_bytes - t.offset) {
      c.fail("tensor " + t.name + ": data [" + std::to_string(t.offset) + ", " +
             std::to_string(t.offset + t.bytes) + ") of the data region at " +
             std::to_string(m_data_offset) + " runs past the end of the file (" +
             std::to_string(m_file_bytes) + " bytes)");
    }
  }
  std::vector<const gguf_tensor_info*> by_offset;
  for (const auto& t : m_tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->offset < b->offset; });
  for (std::size_t k = 1; k < by_offset.size(); ++k) {
    const auto* a = by_offset[k - 1];
    const auto* b = by_offset[k];
    if (a->offset + a->bytes > b->offset) {
      c.fail("tensors " + a->name + " [" + std::to_string(a->offset) + ", " +
             std::to_string(a->offset + a->bytes) + ") and " + b->name + " [" +
             std::to_string(b->offset) + ", " + std::to_string(b->offset + b->bytes) + ") overlap");
    }
  }
}

gguf_file::~gguf_file() = default;
gguf_file::gguf_file(gguf_file&&) noexcept = default;
gguf_file& gguf_file::operator=(gguf_file&&) noexcept = default;

const gguf_value* gguf_file::find(std::string_view key) const {
  const auto it = m_metadata.find(std::string(key));
  return it == m_metadata.end() ? nullptr : &it->second;
}

const gguf_tensor_info& gguf_file::tensor(std::string_view name) const {
  const auto it = m_tensor_index.find(name);
  if (it == m_tensor_index.end()) {
    throw std::invalid_argument(m_path.string() + ": no tensor " + std::string(name));
  }
  return m_tensors[it->second];
}

std::span<const std::uint8_t> gguf_file::tensor_bytes(std::string_view name) const {
  const auto& t = tensor(name);
  return {m_map->data + m_data_offset + t.offset, static_cast<std::size_t>(t.bytes)};
}

std::vector<float> gguf_file::tensor_f32(std::string_view name) const {
  const auto& t = tensor(name);
  if (!ggml_type_supported(t.type)) {
    throw std::invalid_argument(m_path.string() + ": tensor " + t.name + " has ggml type " +
                                ggml_type_name(t.type) +
                                ", which is not supported yet (supported: F32, F16, BF16, "
                                "Q8_0, Q4_0)");
  }
  const auto bytes = tensor_bytes(name);
  std::vector<float> out(static_cast<std::size_t>(t.elements));
  switch (t.type) {
    case ggml_type::f32:
      std::memcpy(out.data(), bytes.data(), bytes.size());
      break;
    case ggml_type::f16:
    case ggml_type::bf16:
      for (std::size_t k = 0; k < out.size(); ++k) {
        std::uint16_t h;
        std::memcpy(&h, bytes.data() + 2 * k, 2);
        out[k] = t.type == ggml_type::f16 ? cpu::fp16_to_float(h) : cpu::bf16_to_float(h);
      }
      break;
    case ggml_type::q8_0:
      cpu::dequantize_q8_0(bytes, out);
      break;
    case ggml_type::q4_0:
      cpu::dequantize_q4_0(bytes, out);
      break;
    default:
      break;  // refused above
  }
  return out;
}

gguf_llama_params read_gguf_llama_params(const gguf_file& f) {
  const std::string file = f.path().string();
  const auto fail = [&](const std::string& key, const std::string& what) {
    throw std::invalid_argument(file + ": metadata " + key + " " + what);
  };
  const auto get = [&](const std::string& key) -> const gguf_value& {
    const gguf_value* v = f.find(key);
    if (!v) fail(key, "is missing");
    return *v;
  };
  const auto get_int = [&](const std::string& key, std::optional<int> absent) -> int {
    if (absent && !f.find(key)) return *absent;
    const gguf_value& v = get(key);
    if (!is_integer(v.type)) fail(key, "must be an integer, got " + gguf_value_type_name(v.type));
    const bool in_range =
        is_unsigned(v.type) ? v.u >= 1 && v.u <= 0x7fffffff : v.i >= 1 && v.i <= 0x7fffffff;
    if (!in_range) fail(key, "must be in [1, 2^31)");
    return static_cast<int>(is_unsigned(v.type) ? v.u : static_cast<std::uint64_t>(v.i));
  };
  gguf_llama_params p;
  const gguf_value& arch = get("general.architecture");
  if (arch.type != gguf_value_type::string || arch.s.empty()) {
    fail("general.architecture", "must be a non-empty string");
  }
  p.architecture = arch.s;
  const std::string a = arch.s + ".";
  p.block_count = get_int(a + "block_count", std::nullopt);
  p.embedding_length = get_int(a + "embedding_length", std::nullopt);
  p.head_count = get_int(a + "attention.head_count", std::nullopt);
  p.head_count_kv = get_int(a + "attention.head_count_kv", p.head_count);
  p.feed_forward_length = get_int(a + "feed_forward_length", std::nullopt);
  p.context_length = get_int(a + "context_length", std::nullopt);
  if (const gguf_value* v = f.find(a + "rope.freq_base")) {
    if (v->type != gguf_value_type::float32 && v->type != gguf_value_type::float64) {
      fail(a + "rope.freq_base", "must be a float, got " + gguf_value_type_name(v->type));
    }
    p.rope_freq_base = v->f;
  }
  if (const gguf_value* v = f.find(a + "attention.layer_norm_rms_epsilon")) {
    if (v->type != gguf_value_type::float32 && v->type != gguf_value_type::float64) {
      fail(a + "attention.layer_norm_rms_epsilon",
           "must be a float, got " + gguf_value_type_name(v->type));
    }
    p.rms_eps = v->f;
  }
  const auto optional_int = [&](const std::string& key) -> std::optional<int> {
    if (!f.find(key)) return std::nullopt;
    return get_int(key, std::nullopt);
  };
  p.key_length = optional_int(a + "attention.key_length");
  p.value_length = optional_int(a + "attention.value_length");
  p.rope_dimension_count = optional_int(a + "rope.dimension_count");
  if (const gguf_value* v = f.find(a + "rope.scaling.type")) {
    if (v->type != gguf_value_type::string) {
      fail(a + "rope.scaling.type", "must be a string, got " + gguf_value_type_name(v->type));
    }
    p.rope_scaling_type = v->s;
  }
  const gguf_value& tokens = get("tokenizer.ggml.tokens");
  if (tokens.type != gguf_value_type::array || tokens.element_type != gguf_value_type::string) {
    fail("tokenizer.ggml.tokens", "must be an array of strings");
  }
  if (tokens.elements.empty() || tokens.elements.size() > 0x7fffffff) {
    fail("tokenizer.ggml.tokens", "has " + std::to_string(tokens.elements.size()) + " tokens");
  }
  p.vocab_size = static_cast<int>(tokens.elements.size());
  return p;
}

}  // namespace ridgeline
