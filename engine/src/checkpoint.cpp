// Hugging Face checkpoints (see checkpoint.hpp): config.json, and the mapping from Hugging Face
// Llama tensor names to the engine's fused tensors, for reading and writing. The safetensors
// format itself is safetensors.cpp.
#include "ridgeline/engine/checkpoint.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "checkpoint_gguf.hpp"
#include "checkpoint_json.hpp"
#include "checkpoint_quant.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/kernels/numeric.hpp"

namespace ridgeline {
namespace fs = std::filesystem;
using json = nlohmann::json;
using detail::parse_json;
using detail::quoted;

namespace {

constexpr std::int32_t k_max_int = std::numeric_limits<std::int32_t>::max();

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

std::vector<bf16_bits> load_checkpoint_weights(const fs::path& dir_or_file, const model_preset& m,
                                               std::optional<bool> tie_word_embeddings) {
  if (is_gguf_checkpoint(dir_or_file)) {
    return detail::load_gguf_weights(dir_or_file, m, tie_word_embeddings);
  }
  validate(m);
  safetensors_reader reader(dir_or_file);
  const bool tied =
      tie_word_embeddings ? *tie_word_embeddings : tie_from_config_beside(reader.folder());
  return detail::gather_weights(
      m, tied, [&m](const weight_tensor& t) { return hf_parts(t, m); },
      [&reader](const hf_part& part) {
        const safetensors_tensor* st = reader.find(part.name);
        if (!st) reader.missing(part.name);
        if (st->shape != part.shape) {
          throw std::invalid_argument(reader.file_of(part.name).string() + ": " + part.name +
                                      " has shape " + shape_text(st->shape) + "; the config says " +
                                      shape_text(part.shape));
        }
      },
      [](const hf_part& part) { return elements_of(part); },
      [&reader](const hf_part& part, bf16_bits* dst) { reader.read(part.name, dst); });
}

namespace detail {

cpu::quantized_matrix stack_rows(const std::vector<cpu::quantized_matrix>& parts) {
  if (parts.empty()) throw std::logic_error("stack_rows: no parts");
  cpu::quantized_matrix out;
  out.format = parts.front().format;
  out.cols = parts.front().cols;
  out.group_size = parts.front().group_size;
  for (const cpu::quantized_matrix& q : parts) {
    if (q.format != out.format || q.cols != out.cols || q.group_size != out.group_size) {
      throw std::invalid_argument("checkpoint: the parts of one fused tensor are stored in " +
                                  cpu::quant_format_name(out.format) + " [" +
                                  std::to_string(out.cols) + " columns] and " +
                                  cpu::quant_format_name(q.format) + " [" +
                                  std::to_string(q.cols) + " columns]");
    }
    // Every array of quant.hpp's formats is row-major with a fixed stride per row.
    out.rows += q.rows;
    out.data.insert(out.data.end(), q.data.begin(), q.data.end());
    out.scales.insert(out.scales.end(), q.scales.begin(), q.scales.end());
    out.zeros.insert(out.zeros.end(), q.zeros.begin(), q.zeros.end());
  }
  return out;
}

std::optional<quantization_config> hf_quantization(const fs::path& dir_or_file) {
  std::error_code ec;
  const fs::path folder = fs::is_directory(dir_or_file, ec) ? dir_or_file : dir_or_file.parent_path();
  const fs::path cfg = folder / "config.json";
  if (fs::exists(cfg, ec)) {
    const json j = parse_json(read_text_file(cfg), cfg.string(), "the file");
    if (j.is_object() && j.contains("quantization_config")) return read_quantization_config(cfg);
  }
  const fs::path qcfg = folder / "quantize_config.json";
  if (fs::exists(qcfg, ec)) return read_quantization_config(qcfg);
  return std::nullopt;
}

std::vector<loaded_tensor> load_hf_quantized_for_engine(const fs::path& dir_or_file,
                                                        const model_preset& m,
                                                        const quantization_config& q,
                                                        planner::weight_format f,
                                                        std::optional<bool> tie_word_embeddings) {
  validate(m);
  safetensors_reader reader(dir_or_file, safetensors_dtypes::any);
  const bool tied =
      tie_word_embeddings ? *tie_word_embeddings : tie_from_config_beside(reader.folder());
  auto shape_error = [&](const std::string& name, std::int64_t rows, std::int64_t cols,
                         const std::vector<std::int64_t>& want) {
    throw std::invalid_argument(reader.file_of(name).string() + ": " + name + " holds [" +
                                std::to_string(rows) + ", " + std::to_string(cols) +
                                "] (out, in); the config says " + shape_text(want));
  };
  const auto tensors = weight_tensors(m);
  std::vector<loaded_tensor> out(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const weight_tensor& t = tensors[i];
    loaded_tensor& lt = out[i];
    if (t.name == "lm_head" && tied) {
      lt.bf16 = out[0].bf16;  // the embedding
      continue;
    }
    const std::vector<hf_part> parts = hf_parts(t, m);
    if (!is_block_linear(t)) {
      lt.bf16.resize(static_cast<std::size_t>(t.elements));
      std::int64_t at = 0;
      for (const hf_part& part : parts) {
        const safetensors_tensor* st = reader.find(part.name);
        if (!st) reader.missing(part.name);
        if (st->shape != part.shape) {
          throw std::invalid_argument(reader.file_of(part.name).string() + ": " + part.name +
                                      " has shape " + shape_text(st->shape) +
                                      "; the config says " + shape_text(part.shape));
        }
        reader.read(part.name, lt.bf16.data() + at);
        at += elements_of(part);
      }
      continue;
    }
    // A quantized linear: <prefix>.qweight ... or <prefix>.weight + scale (fp8).
    std::vector<cpu::quantized_matrix> codes;
    for (const hf_part& part : parts) {
      const std::string prefix = part.name.substr(0, part.name.size() - std::string(".weight").size());
      if (f == planner::weight_format::bf16) {
        const dequantized_linear d = read_quantized_linear(reader, prefix, q);
        if (d.out_features != part.shape[0] || d.in_features != part.shape[1]) {
          shape_error(part.name, d.out_features, d.in_features, part.shape);
        }
        for (const float v : d.weight) lt.bf16.push_back(cpu::float_to_bf16(v));
        continue;
      }
      cpu::quantized_matrix c = read_quantized_linear_codes(reader, prefix, q);
      if (c.rows != part.shape[0] || c.cols != part.shape[1]) {
        shape_error(part.name, c.rows, c.cols, part.shape);
      }
      codes.push_back(std::move(c));
    }
    if (f != planner::weight_format::bf16) {
      const cpu::quantized_matrix whole = stack_rows(codes);
      try {
        cpu::check_packable(whole.format, whole.rows, whole.cols, whole.group_size);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(reader.folder().string() + ": " + parts.front().name + ": " +
                                    e.what() + " (--weights bf16 runs it dequantized)");
      }
      lt.packed = cpu::pack_quantized(whole.view());
    }
  }
  return out;
}

}  // namespace detail

void save_checkpoint(const fs::path& file, const model_preset& m,
                     std::span<const bf16_bits> weights, bool tie_embeddings) {
  validate(m);
  const std::vector<weight_tensor> tensors = weight_tensors(m);
  const std::int64_t total = total_weight_elements(m);
  if (total != std::int64_t(weights.size())) {
    throw std::invalid_argument("save_checkpoint " + file.string() + ": model " + m.name + " has " +
                                std::to_string(total) + " weight elements, got " +
                                std::to_string(weights.size()));
  }
  std::vector<safetensors_entry> entries;
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
      entries.push_back({std::move(part.name), std::move(part.shape), weights.data() + at});
      at += n;
    }
  }
  write_bf16_safetensors(file, entries);
}

}  // namespace ridgeline
