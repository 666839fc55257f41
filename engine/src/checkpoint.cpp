// Hugging Face checkpoints (see checkpoint.hpp): config.json, safetensors headers and tensor data,
// the mapping from Hugging Face Llama names to the engine's fused tensors, and the writer.
//
// safetensors: [8-byte little-endian header length N][N bytes of JSON][data section]; the JSON
// maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (bytes from the start of the
// data section), plus an optional "__metadata__" of strings.
#include "ridgeline/engine/checkpoint.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/text.hpp"

namespace ridgeline {
namespace fs = std::filesystem;
using json = nlohmann::json;

static_assert(std::endian::native == std::endian::little,
              "tensor data is copied as is: safetensors is little-endian, so is the host");

namespace {

constexpr std::uint64_t k_max_header_bytes = 100ULL << 20;  // the format's own limit
constexpr std::int32_t k_max_int = std::numeric_limits<std::int32_t>::max();


// A JSON value quoted in a message (never throws on odd strings).
std::string quoted(const json& v) {
  return printable(v.dump(-1, ' ', false, json::error_handler_t::replace), 64);
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

json parse_json(std::string_view text, const std::string& source, const char* what) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    throw std::invalid_argument(source + ": " + what + " is not valid JSON (" +
                                printable(e.what(), 160) + ")");
  }
}

// ---------------------------------------------------------------------------------------------
// config.json

struct config_fields {
  const json& j;
  std::string source;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::invalid_argument(source + ": " + what);
  }
  // The value of key, or null when absent or JSON null (Hugging Face writes null for "default").
  const json* find(const json& obj, const char* key) const {
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  std::int32_t to_positive_int(const char* key, const json& v) const {
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0 ||
        v.get<std::uint64_t>() > std::uint64_t(k_max_int)) {
      fail(std::string("field '") + key + "' must be a positive integer, got " + quoted(v));
    }
    return static_cast<std::int32_t>(v.get<std::uint64_t>());
  }
  std::int32_t positive_int(const char* key, const json* obj = nullptr) const {
    const json* v = find(obj ? *obj : j, key);
    if (!v) fail(std::string("missing field '") + key + "'");
    return to_positive_int(key, *v);
  }
  std::optional<std::int32_t> optional_int(const char* key) const {
    const json* v = find(j, key);
    if (!v) return std::nullopt;
    return to_positive_int(key, *v);
  }
  double positive_number(const char* key, std::optional<double> fallback,
                         const json* obj = nullptr) const {
    const json* v = find(obj ? *obj : j, key);
    if (!v) {
      if (!fallback) fail(std::string("missing field '") + key + "'");
      return *fallback;
    }
    if (!v->is_number() || !(v->get<double>() > 0) || !std::isfinite(v->get<double>()) ||
        v->get<double>() > double(std::numeric_limits<float>::max())) {
      fail(std::string("field '") + key + "' must be a positive number, got " + quoted(*v));
    }
    return v->get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    const json* v = find(j, key);
    if (!v) return fallback;
    if (!v->is_boolean()) {
      fail(std::string("field '") + key + "' must be true or false, got " + quoted(*v));
    }
    return v->get<bool>();
  }
  std::optional<std::string> string(const char* key, const json* obj = nullptr) const {
    const json* v = find(obj ? *obj : j, key);
    if (!v) return std::nullopt;
    if (!v->is_string()) {
      fail(std::string("field '") + key + "' must be a string, got " + quoted(*v));
    }
    return v->get<std::string>();
  }
};

// The float a decimal was written from: shortest digits, so 1e-05f is written as 1e-05.
double shortest(float f) {
  std::array<char, 64> buf{};
  const auto end = std::to_chars(buf.data(), buf.data() + buf.size(), f).ptr;
  double d = 0;
  std::from_chars(buf.data(), end, d);
  return d;
}

bool tie_from_config_beside(const fs::path& folder) {
  const fs::path cfg = folder / "config.json";
  std::error_code ec;
  if (!fs::exists(cfg, ec)) return false;
  const json j = parse_json(read_text_file(cfg), cfg.string(), "the file");
  if (!j.is_object()) throw std::invalid_argument(cfg.string() + ": must hold a JSON object");
  return config_fields{j, cfg.string()}.boolean("tie_word_embeddings", false);
}

// ---------------------------------------------------------------------------------------------
// safetensors

std::uint64_t dtype_bytes(std::string_view dtype) {
  if (dtype == "BF16" || dtype == "F16") return 2;
  if (dtype == "F32") return 4;
  return 0;
}

std::uint64_t element_count(const safetensors_tensor& t) {
  std::uint64_t n = 1;
  for (const auto d : t.shape) n *= static_cast<std::uint64_t>(d);  // checked by the parser
  return n;
}

// One safetensors file: its header and a stream opened on first read.
struct shard {
  fs::path file;
  safetensors_header header;
  std::ifstream in;
};

// The tensors of a checkpoint, single file or sharded, by name.
class checkpoint_reader {
 public:
  explicit checkpoint_reader(const fs::path& dir_or_file) {
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

  const fs::path& folder() const { return m_folder; }

  // The tensor's header entry, or null when the checkpoint has no such tensor.
  const safetensors_tensor* find(const std::string& name) const {
    const auto it = m_where.find(name);
    return it == m_where.end() ? nullptr : &m_shards[it->second].header.tensors.at(name);
  }
  const fs::path& file_of(const std::string& name) const { return m_shards[m_where.at(name)].file; }
  [[noreturn]] void missing(const std::string& name) const {
    throw std::invalid_argument(m_source + ": missing tensor " + name);
  }

  // Reads a tensor into dst (its element count), converted to bf16.
  void read(const std::string& name, bf16_bits* dst) {
    shard& s = m_shards[m_where.at(name)];
    const safetensors_tensor& t = s.header.tensors.at(name);
    if (!s.in.is_open()) {
      s.in.open(s.file, std::ios::binary);
      if (!s.in) throw io_error("cannot read " + s.file.string() + ": " + std::strerror(errno));
    }
    s.in.clear();
    s.in.seekg(static_cast<std::streamoff>(s.header.data_offset + t.begin));
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

 private:
  std::size_t add_shard(const fs::path& file) {
    shard s;
    s.file = file;
    s.header = read_safetensors_header(file);
    m_shards.push_back(std::move(s));
    return m_shards.size() - 1;
  }

  void open_index(const fs::path& index) {
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

  fs::path m_folder;
  std::string m_source;  // the file named in "missing tensor" messages
  std::vector<shard> m_shards;
  std::map<std::string, std::size_t> m_where;  // tensor name -> shard
};

// ---------------------------------------------------------------------------------------------
// Hugging Face Llama names of the engine's tensors

struct hf_part {
  std::string name;
  std::vector<std::int64_t> shape;
};

// The Hugging Face tensors an engine tensor is made of, in the order they are concatenated (rows).
std::vector<hf_part> hf_parts(const weight_tensor& t, const model_preset& m) {
  const std::int64_t H = m.hidden, Q = std::int64_t(m.heads) * m.head_dim,
                     KV = std::int64_t(m.kv_heads) * m.head_dim, I = m.intermediate, V = m.vocab;
  std::vector<hf_part> parts;
  if (t.name == "embedding") {
    parts = {{"model.embed_tokens.weight", {V, H}}};
  } else if (t.name == "final_norm") {
    parts = {{"model.norm.weight", {H}}};
  } else if (t.name == "lm_head") {
    parts = {{"lm_head.weight", {V, H}}};
  } else if (t.name.starts_with("layers.")) {
    const std::size_t dot = t.name.find('.', 7);
    const std::string p = "model.layers." + t.name.substr(7, dot - 7) + ".";
    const std::string kind = dot == std::string::npos ? "" : t.name.substr(dot + 1);
    if (kind == "attn_norm") {
      parts = {{p + "input_layernorm.weight", {H}}};
    } else if (kind == "qkv") {
      parts = {{p + "self_attn.q_proj.weight", {Q, H}},
               {p + "self_attn.k_proj.weight", {KV, H}},
               {p + "self_attn.v_proj.weight", {KV, H}}};
    } else if (kind == "o") {
      parts = {{p + "self_attn.o_proj.weight", {H, Q}}};
    } else if (kind == "mlp_norm") {
      parts = {{p + "post_attention_layernorm.weight", {H}}};
    } else if (kind == "gate_up") {
      parts = {{p + "mlp.gate_proj.weight", {I, H}}, {p + "mlp.up_proj.weight", {I, H}}};
    } else if (kind == "down") {
      parts = {{p + "mlp.down_proj.weight", {H, I}}};
    }
  }
  std::int64_t elements = 0;
  for (const auto& part : parts) {
    std::int64_t n = 1;
    for (const auto d : part.shape) n *= d;
    elements += n;
  }
  if (parts.empty() || elements != t.elements) {
    throw std::logic_error("checkpoint: no Hugging Face mapping for engine tensor " + t.name);
  }
  return parts;
}

std::int64_t elements_of(const hf_part& p) {
  std::int64_t n = 1;
  for (const auto d : p.shape) n *= d;
  return n;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// config.json

hf_config read_hf_config(const fs::path& config_json, int block_tokens) {
  const std::string src = config_json.string();
  const json j = parse_json(read_text_file(config_json), src, "the file");
  if (!j.is_object()) throw std::invalid_argument(src + ": must hold a JSON object");
  const config_fields f{j, src};

  hf_config out;
  const json* arch = f.find(j, "architectures");
  if (!arch) f.fail("missing field 'architectures'");
  if (!arch->is_array() || arch->empty() || !(*arch)[0].is_string()) {
    f.fail("field 'architectures' must be a list of class names, got " + quoted(*arch));
  }
  out.architecture = (*arch)[0].get<std::string>();
  if (out.architecture != "LlamaForCausalLM" && out.architecture != "MistralForCausalLM") {
    f.fail("architecture '" + printable(out.architecture, 64) +
           "' is not supported (LlamaForCausalLM or MistralForCausalLM)");
  }

  model_preset m;
  m.name = fs::absolute(config_json).parent_path().filename().string();
  if (m.name.empty()) m.name = "hf-model";
  m.hidden = f.positive_int("hidden_size");
  m.layers = f.positive_int("num_hidden_layers");
  m.heads = f.positive_int("num_attention_heads");
  m.kv_heads = f.optional_int("num_key_value_heads").value_or(m.heads);
  if (const auto hd = f.optional_int("head_dim")) {
    m.head_dim = *hd;
  } else if (m.hidden % m.heads != 0) {
    f.fail("hidden_size (" + std::to_string(m.hidden) + ") is not a multiple of " +
           "num_attention_heads (" + std::to_string(m.heads) + ") and head_dim is not given");
  } else {
    m.head_dim = m.hidden / m.heads;
  }
  m.intermediate = f.positive_int("intermediate_size");
  m.vocab = f.positive_int("vocab_size");
  m.max_context = f.positive_int("max_position_embeddings");
  out.tie_word_embeddings = f.boolean("tie_word_embeddings", false);

  // What the engine computes: SiLU-gated MLP, no biases, full causal attention.
  if (const auto act = f.string("hidden_act"); act && *act != "silu") {
    f.fail("hidden_act '" + printable(*act, 64) + "' is not supported (silu)");
  }
  if (f.boolean("attention_bias", false)) f.fail("attention_bias is true; ridgeline has no biases");
  if (f.boolean("mlp_bias", false)) f.fail("mlp_bias is true; ridgeline has no biases");
  if (const auto window = f.optional_int("sliding_window"); window && *window < m.max_context) {
    m.max_context = *window;
  }
  if (m.head_dim % 2 != 0) {
    f.fail("head_dim (" + std::to_string(m.head_dim) + ") must be even for rotary embeddings");
  }
  try {
    validate(m);
  } catch (const std::invalid_argument& e) {
    f.fail(e.what());
  }

  decoder_config& c = out.decoder;
  c.model = m;
  c.block_tokens = block_tokens;
  c.rms_eps = static_cast<float>(f.positive_number("rms_norm_eps", 1e-6));
  c.rope = rope_params{};
  c.rope.theta = static_cast<float>(f.positive_number("rope_theta", 10000.0));
  if (const json* s = f.find(j, "rope_scaling")) {
    if (!s->is_object())
      f.fail("field 'rope_scaling' must be an object or null, got " + quoted(*s));
    auto type = f.string("rope_type", s);
    if (!type) type = f.string("type", s);  // older configs
    if (!type) f.fail("rope_scaling has no rope_type");
    if (*type == "llama3") {
      c.rope.llama3_scaling = true;
      c.rope.scaling_factor = static_cast<float>(f.positive_number("factor", std::nullopt, s));
      c.rope.low_freq_factor =
          static_cast<float>(f.positive_number("low_freq_factor", std::nullopt, s));
      c.rope.high_freq_factor =
          static_cast<float>(f.positive_number("high_freq_factor", std::nullopt, s));
      c.rope.original_max_position = f.positive_int("original_max_position_embeddings", s);
      if (!(c.rope.high_freq_factor > c.rope.low_freq_factor)) {
        f.fail("rope_scaling: high_freq_factor must be greater than low_freq_factor");
      }
    } else if (*type != "default") {
      f.fail("rope_scaling type '" + printable(*type, 64) +
             "' is not supported (only 'llama3' and 'default')");
    }
  }
  return out;
}

model_preset model_from_hf_config(const fs::path& config_json) {
  return read_hf_config(config_json).decoder.model;
}

decoder_config decoder_config_from_hf(const fs::path& config_json, int block_tokens) {
  return read_hf_config(config_json, block_tokens).decoder;
}

void write_hf_config(const fs::path& config_json, const decoder_config& c,
                     bool tie_word_embeddings) {
  const model_preset& m = c.model;
  validate(m);
  nlohmann::ordered_json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["hidden_size"] = m.hidden;
  j["intermediate_size"] = m.intermediate;
  j["num_hidden_layers"] = m.layers;
  j["num_attention_heads"] = m.heads;
  j["num_key_value_heads"] = m.kv_heads;
  j["head_dim"] = m.head_dim;
  j["vocab_size"] = m.vocab;
  j["max_position_embeddings"] = m.max_context;
  j["rms_norm_eps"] = shortest(c.rms_eps);
  j["rope_theta"] = shortest(c.rope.theta);
  if (c.rope.llama3_scaling) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", shortest(c.rope.scaling_factor)},
                         {"low_freq_factor", shortest(c.rope.low_freq_factor)},
                         {"high_freq_factor", shortest(c.rope.high_freq_factor)},
                         {"original_max_position_embeddings", c.rope.original_max_position}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["torch_dtype"] = "bfloat16";
  write_atomically(config_json, j.dump(2) + "\n");
}

// ---------------------------------------------------------------------------------------------
// safetensors

safetensors_header parse_safetensors_header(std::string_view header_json, std::uint64_t data_bytes,
                                            const std::string& source) {
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
    const std::uint64_t width = dtype_bytes(t.dtype);
    if (width == 0) {
      fail(name, "has dtype " + printable(t.dtype, 64) + "; ridgeline reads BF16, F16 and F32");
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

safetensors_header read_safetensors_header(const fs::path& file) {
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
  safetensors_header h = parse_safetensors_header(header, size - 8 - n, src);
  h.data_offset = 8 + n;
  return h;
}

std::vector<bf16_bits> load_checkpoint_weights(const fs::path& dir_or_file, const model_preset& m,
                                               std::optional<bool> tie_word_embeddings) {
  validate(m);
  checkpoint_reader reader(dir_or_file);
  const bool tied =
      tie_word_embeddings ? *tie_word_embeddings : tie_from_config_beside(reader.folder());
  // Every name and shape first, so a wrong checkpoint fails before gigabytes are read.
  struct planned {
    std::vector<hf_part> parts;
    std::int64_t offset = 0;
    bool from_embedding = false;
  };
  std::vector<planned> plan;
  std::int64_t total = 0, embedding_offset = 0;
  for (const auto& t : weight_tensors(m)) {
    planned p{hf_parts(t, m), total, tied && t.name == "lm_head"};
    if (t.name == "embedding") embedding_offset = total;
    if (!p.from_embedding) {
      for (const auto& part : p.parts) {
        const safetensors_tensor* st = reader.find(part.name);
        if (!st) reader.missing(part.name);
        if (st->shape != part.shape) {
          throw std::invalid_argument(reader.file_of(part.name).string() + ": " + part.name +
                                      " has shape " + shape_text(st->shape) + "; the config says " +
                                      shape_text(part.shape));
        }
      }
    }
    total += t.elements;
    plan.push_back(std::move(p));
  }
  std::vector<bf16_bits> out(static_cast<std::size_t>(total));
  for (const auto& p : plan) {
    std::int64_t at = p.offset;
    for (const auto& part : p.parts) {
      const std::int64_t n = elements_of(part);
      if (p.from_embedding) {
        std::copy_n(out.begin() + embedding_offset, n, out.begin() + at);
      } else {
        reader.read(part.name, out.data() + at);
      }
      at += n;
    }
  }
  return out;
}

void save_checkpoint(const fs::path& file, const model_preset& m,
                     std::span<const bf16_bits> weights, bool tie_embeddings) {
  validate(m);
  struct entry {
    hf_part part;
    const bf16_bits* data;
  };
  const std::vector<weight_tensor> tensors = weight_tensors(m);
  std::int64_t total = 0;
  for (const auto& t : tensors) total += t.elements;
  if (total != std::int64_t(weights.size())) {
    throw std::invalid_argument("save_checkpoint " + file.string() + ": model " + m.name + " has " +
                                std::to_string(total) + " weight elements, got " +
                                std::to_string(weights.size()));
  }
  std::vector<entry> entries;
  std::int64_t at = 0, embedding_offset = 0;
  for (const auto& t : tensors) {
    if (t.name == "embedding") embedding_offset = at;
    if (t.name == "lm_head" && tie_embeddings) {
      if (!std::equal(weights.begin() + at, weights.begin() + at + t.elements,
                      weights.begin() + embedding_offset)) {
        throw std::invalid_argument(
            "save_checkpoint " + file.string() +
            ": tied embeddings, but the lm head differs from the embedding");
      }
      at += t.elements;
      continue;
    }
    for (auto& part : hf_parts(t, m)) {
      const std::int64_t n = elements_of(part);
      entries.push_back({std::move(part), weights.data() + at});
      at += n;
    }
  }

  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};  // what transformers expects of PyTorch weights
  std::uint64_t offset = 0;
  for (const auto& e : entries) {
    const std::uint64_t bytes = std::uint64_t(elements_of(e.part)) * 2;
    header[e.part.name] = {
        {"dtype", "BF16"}, {"shape", e.part.shape}, {"data_offsets", {offset, offset + bytes}}};
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
                static_cast<std::streamsize>(elements_of(e.part) * 2));
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
