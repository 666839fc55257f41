// The safetensors format (see safetensors.hpp): header parsing and checks, the reader of single
// and sharded checkpoints with conversion to bf16, and the BF16 writer.
#include "ridgeline/engine/safetensors.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "checkpoint_json.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/kernels/numeric.hpp"

namespace ridgeline {
namespace fs = std::filesystem;
using json = nlohmann::json;
using detail::parse_json;
using detail::quoted;

static_assert(std::endian::native == std::endian::little,
              "tensor data is copied as is: safetensors is little-endian, so is the host");

namespace {

constexpr std::uint64_t k_max_header_bytes = 100ULL << 20;  // the format's own limit

std::uint64_t dtype_bytes(std::string_view dtype) {
  if (dtype == "BF16" || dtype == "F16") return 2;
  if (dtype == "F32") return 4;
  return 0;
}

bool is_float_dtype(std::string_view dtype) {
  return dtype_bytes(dtype) != 0;
}

std::uint64_t element_count(const safetensors_tensor& t) {
  std::uint64_t n = 1;
  for (const auto d : t.shape) n *= static_cast<std::uint64_t>(d);  // checked by the parser
  return n;
}

std::uint64_t element_count(const std::vector<std::int64_t>& shape) {
  std::uint64_t n = 1;
  for (const auto d : shape) n *= static_cast<std::uint64_t>(d);
  return n;
}

}  // namespace

std::uint64_t safetensors_dtype_bytes(std::string_view dtype) {
  if (dtype == "BOOL" || dtype == "U8" || dtype == "I8" || dtype == "F8_E4M3" ||
      dtype == "F8_E5M2") {
    return 1;
  }
  if (dtype == "I16" || dtype == "U16" || dtype == "F16" || dtype == "BF16") return 2;
  if (dtype == "I32" || dtype == "U32" || dtype == "F32") return 4;
  if (dtype == "I64" || dtype == "U64" || dtype == "F64") return 8;
  return 0;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

safetensors_header parse_safetensors_header(std::string_view header_json, std::uint64_t data_bytes,
                                            const std::string& source, safetensors_dtypes dtypes) {
  const json j = parse_json(header_json, source, "the safetensors header");
  if (!j.is_object()) {
    throw std::invalid_argument(source + ": the safetensors header is not a JSON object");
  }
  auto fail = [&](const std::string& name, const std::string& what) {
    throw std::invalid_argument(source + ": tensor '" + printable(name, 64) + "' " + what);
  };
  safetensors_header h;
  h.data_bytes = data_bytes;
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) {
        throw std::invalid_argument(source + ": __metadata__ is not an object of strings");
      }
      for (const auto& [k, s] : v.items()) {
        if (s.is_string()) h.metadata[k] = s.get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail(name, "is not described by an object");
    safetensors_tensor t;
    const auto dtype = v.find("dtype");
    const auto shape = v.find("shape");
    const auto offsets = v.find("data_offsets");
    if (dtype == v.end() || !dtype->is_string()) fail(name, "has no dtype string");
    t.dtype = dtype->get<std::string>();
    const std::uint64_t width =
        dtypes == safetensors_dtypes::any ? safetensors_dtype_bytes(t.dtype) : dtype_bytes(t.dtype);
    if (width == 0) {
      fail(name, "has dtype " + printable(t.dtype, 64) +
                     (dtypes == safetensors_dtypes::any
                          ? std::string("; not a safetensors dtype")
                          : std::string("; ridgeline reads BF16, F16 and F32")));
    }
    if (shape == v.end() || !shape->is_array()) fail(name, "has no shape list");
    std::uint64_t elements = 1;
    bool overflow = false;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned() ||
          d.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<std::int64_t>::max())) {
        fail(name, "has a shape entry that is not a non-negative integer: " + quoted(d));
      }
      const std::uint64_t n = d.get<std::uint64_t>();
      t.shape.push_back(static_cast<std::int64_t>(n));
      if (n != 0 && elements > std::numeric_limits<std::uint64_t>::max() / width / n) {
        overflow = true;
      }
      elements *= n;
    }
    if (offsets == v.end() || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned() ||
        (*offsets)[0].get<std::uint64_t>() > (*offsets)[1].get<std::uint64_t>()) {
      fail(name, "needs data_offsets [begin, end] with 0 <= begin <= end");
    }
    t.begin = (*offsets)[0].get<std::uint64_t>();
    t.end = (*offsets)[1].get<std::uint64_t>();
    const std::uint64_t bytes = elements * width;
    if (overflow || bytes != t.end - t.begin) {
      fail(name, "has data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                     "] (" + std::to_string(t.end - t.begin) + " bytes) but " + t.dtype + " " +
                     shape_text(t.shape) + " needs " +
                     (overflow ? std::string("more than 2^64") : std::to_string(bytes)));
    }
    if (t.end > data_bytes) {
      fail(name, "needs data bytes [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                     ") but the file holds only " + std::to_string(data_bytes) +
                     " (truncated file?)");
    }
    h.tensors.emplace(name, std::move(t));
  }
  return h;
}

safetensors_header read_safetensors_header(const fs::path& file, safetensors_dtypes dtypes) {
  const std::string src = file.string();
  std::ifstream in(file, std::ios::binary);
  if (!in) throw io_error("cannot read " + src + ": " + std::strerror(errno));
  std::error_code ec;
  const std::uint64_t size = fs::file_size(file, ec);
  if (ec) throw io_error("cannot read " + src + ": " + ec.message());
  if (size < 8) {
    throw std::invalid_argument(src + ": " + std::to_string(size) +
                                " bytes, too short for a safetensors file");
  }
  std::array<unsigned char, 8> len{};
  in.read(reinterpret_cast<char*>(len.data()), 8);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[static_cast<std::size_t>(i)];
  if (n > size - 8 || n > k_max_header_bytes || n < 2) {
    throw std::invalid_argument(src + ": header length " + std::to_string(n) +
                                " does not fit a file of " + std::to_string(size) +
                                " bytes (at most 100 MiB; corrupt or not a safetensors file?)");
  }
  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  if (!in) throw io_error("cannot read " + src + ": the header ends early");
  safetensors_header h = parse_safetensors_header(header, size - 8 - n, src, dtypes);
  h.data_offset = 8 + n;
  return h;
}

// ---------------------------------------------------------------------------------------------
// The reader

safetensors_reader::safetensors_reader(const fs::path& dir_or_file, safetensors_dtypes dtypes)
    : m_dtypes(dtypes) {
  std::error_code ec;
  fs::path index, single;
  if (fs::is_directory(dir_or_file, ec)) {
    m_folder = dir_or_file;
    if (fs::exists(dir_or_file / "model.safetensors.index.json", ec)) {
      index = dir_or_file / "model.safetensors.index.json";
    } else if (fs::exists(dir_or_file / "model.safetensors", ec)) {
      single = dir_or_file / "model.safetensors";
    } else {
      throw io_error("cannot read a checkpoint in " + dir_or_file.string() +
                     ": it has neither model.safetensors nor model.safetensors.index.json");
    }
  } else {
    m_folder = dir_or_file.parent_path();
    const std::string name = dir_or_file.filename().string();
    const std::string_view suffix = ".index.json";
    if (name.size() > suffix.size() && name.ends_with(suffix)) {
      index = dir_or_file;
    } else {
      single = dir_or_file;
    }
  }
  if (!index.empty()) {
    open_index(index);
  } else {
    add_shard(single);
    for (const auto& [name, t] : m_shards[0].header.tensors) m_where[name] = 0;
  }
  m_source = (index.empty() ? single : index).string();
}

const safetensors_tensor* safetensors_reader::find(const std::string& name) const {
  const auto it = m_where.find(name);
  return it == m_where.end() ? nullptr : &m_shards[it->second].header.tensors.at(name);
}

const fs::path& safetensors_reader::file_of(const std::string& name) const {
  return m_shards[m_where.at(name)].file;
}

void safetensors_reader::missing(const std::string& name) const {
  throw std::invalid_argument(m_source + ": missing tensor " + name);
}

std::ifstream& safetensors_reader::seek_to(shard& s, const safetensors_tensor& t) {
  if (!s.in.is_open()) {
    s.in.open(s.file, std::ios::binary);
    if (!s.in) throw io_error("cannot read " + s.file.string() + ": " + std::strerror(errno));
  }
  s.in.clear();
  s.in.seekg(static_cast<std::streamoff>(s.header.data_offset + t.begin));
  return s.in;
}

std::vector<std::uint8_t> safetensors_reader::read_bytes(const std::string& name) {
  shard& s = m_shards[m_where.at(name)];
  const safetensors_tensor& t = s.header.tensors.at(name);
  std::vector<std::uint8_t> out(static_cast<std::size_t>(t.end - t.begin));
  seek_to(s, t).read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
  if (!s.in) {
    throw io_error(s.file.string() + ": could not read tensor " + name +
                   " (the file is shorter than its header says; changed while reading?)");
  }
  return out;
}

void safetensors_reader::read(const std::string& name, bf16_bits* dst) {
  shard& s = m_shards[m_where.at(name)];
  const safetensors_tensor& t = s.header.tensors.at(name);
  if (!is_float_dtype(t.dtype)) {
    throw std::invalid_argument(s.file.string() + ": tensor '" + printable(name, 64) +
                                "' has dtype " + t.dtype + "; ridgeline reads BF16, F16 and F32");
  }
  seek_to(s, t);
  const std::uint64_t n = element_count(t);
  if (t.dtype == "BF16") {
    s.in.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(n * 2));
  } else {
    // F16 and F32: through a bounded buffer, rounded to bf16 (round to nearest even).
    const std::uint64_t width = dtype_bytes(t.dtype);
    std::vector<char> buf(std::min<std::uint64_t>(n, 1 << 20) * width);
    for (std::uint64_t at = 0; at < n && s.in;) {
      const std::uint64_t chunk = std::min<std::uint64_t>(n - at, 1 << 20);
      s.in.read(buf.data(), static_cast<std::streamsize>(chunk * width));
      for (std::uint64_t i = 0; i < chunk; ++i) {
        if (width == 2) {
          std::uint16_t h;
          std::memcpy(&h, buf.data() + i * 2, 2);
          dst[at + i] = cpu::float_to_bf16(cpu::fp16_to_float(h));
        } else {
          float f;
          std::memcpy(&f, buf.data() + i * 4, 4);
          dst[at + i] = cpu::float_to_bf16(f);
        }
      }
      at += chunk;
    }
  }
  if (!s.in) {
    throw io_error(s.file.string() + ": could not read tensor " + name +
                   " (the file is shorter than its header says; changed while reading?)");
  }
}

std::size_t safetensors_reader::add_shard(const fs::path& file) {
  shard s;
  s.file = file;
  s.header = read_safetensors_header(file, m_dtypes);
  m_shards.push_back(std::move(s));
  return m_shards.size() - 1;
}

void safetensors_reader::open_index(const fs::path& index) {
  const std::string src = index.string();
  const json j = parse_json(read_text_file(index), src, "the index");
  const auto map = j.is_object() ? j.find("weight_map") : j.end();
  if (map == j.end() || !map->is_object()) {
    throw std::invalid_argument(src + ": no \"weight_map\" object (tensor name -> shard file)");
  }
  std::map<std::string, std::size_t> shard_of_file;
  for (const auto& [name, file] : map->items()) {
    const std::string f = file.is_string() ? file.get<std::string>() : std::string();
    if (f.empty() || f == "." || f == ".." || fs::path(f).filename().string() != f) {
      throw std::invalid_argument(src + ": weight_map sends " + printable(name, 64) + " to " +
                                  quoted(file) + ", not a file name in the index's folder");
    }
    auto it = shard_of_file.find(f);
    if (it == shard_of_file.end()) {
      it = shard_of_file.emplace(f, add_shard(index.parent_path() / f)).first;
    }
    if (!m_shards[it->second].header.tensors.contains(name)) {
      throw std::invalid_argument(src + ": weight_map puts " + printable(name, 64) + " in " +
                                  printable(f, 64) + ", whose header has no such tensor");
    }
    m_where[name] = it->second;
  }
}

// ---------------------------------------------------------------------------------------------
// The writer

void write_bf16_safetensors(const fs::path& file, std::span<const safetensors_entry> entries) {
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};  // what transformers expects of PyTorch weights
  std::uint64_t offset = 0;
  for (const auto& e : entries) {
    const std::uint64_t bytes = element_count(e.shape) * 2;
    header[e.name] = {
        {"dtype", "BF16"}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');  // data section 8-byte aligned, as the spec advises

  const fs::path tmp = file.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw io_error("cannot write " + file.string() + ": " + std::strerror(errno));
    std::array<unsigned char, 8> len{};
    for (std::size_t i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(text.size() >> (8 * i));
    out.write(reinterpret_cast<const char*>(len.data()), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& e : entries) {
      out.write(reinterpret_cast<const char*>(e.data),
                static_cast<std::streamsize>(element_count(e.shape) * 2));
    }
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw io_error("cannot write " + file.string() + ": write failed (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw io_error("cannot replace " + file.string() + ": " + ec.message());
  }
}

}  // namespace ridgeline
