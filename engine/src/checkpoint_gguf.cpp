// GGUF checkpoints (see checkpoint.hpp): a llama.cpp Llama-family file's metadata as a
// decoder_config, and its tensors (llama.cpp's names, ne[0] first, Q/K rows in llama.cpp's RoPE
// order) as the engine's bf16 weights. The container is read by gguf.cpp; docs/checkpoints.md
// ("GGUF through --checkpoint") has the mapping and the errors.
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "checkpoint_gguf.hpp"
#include "checkpoint_quant.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/gguf.hpp"
#include "ridgeline/kernels/numeric.hpp"

namespace ridgeline {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const gguf_file& f, const std::string& what) {
  throw std::invalid_argument(f.path().string() + ": " + what);
}

// The decoder a file describes and whether its lm head is the embedding (no output.weight).
struct gguf_model {
  decoder_config decoder;
  bool output_tied = false;
};

gguf_model read_gguf_model(const gguf_file& f, int block_tokens) {
  // The architecture first: another one's keys are not llama.*, and its math is not the engine's.
  if (const gguf_value* arch = f.find("general.architecture");
      arch && arch->type == gguf_value_type::string && arch->s != "llama") {
    fail(f, "general.architecture '" + printable(arch->s, 64) +
                "' is not supported (llama: Llama, Mistral and other Llama-family files)");
  }
  const gguf_llama_params p = read_gguf_llama_params(f);
  const std::string a = p.architecture + ".";
  model_preset m;
  m.name = f.path().stem().string();
  if (m.name.empty()) m.name = "gguf-model";
  m.layers = p.block_count;
  m.hidden = p.embedding_length;
  m.heads = p.head_count;
  m.kv_heads = p.head_count_kv;
  if (p.key_length) {
    m.head_dim = *p.key_length;
  } else if (m.hidden % m.heads != 0) {
    fail(f, a + "embedding_length (" + std::to_string(m.hidden) + ") is not a multiple of " + a +
                "attention.head_count (" + std::to_string(m.heads) +
                ") and attention.key_length is not given");
  } else {
    m.head_dim = m.hidden / m.heads;
  }
  if (p.value_length && *p.value_length != m.head_dim) {
    fail(f, "metadata " + a + "attention.value_length " + std::to_string(*p.value_length) +
                " differs from the key length " + std::to_string(m.head_dim) +
                " (the engine has one head_dim)");
  }
  if (p.rope_dimension_count && *p.rope_dimension_count != m.head_dim) {
    fail(f, "metadata " + a + "rope.dimension_count " + std::to_string(*p.rope_dimension_count) +
                " differs from head_dim " + std::to_string(m.head_dim) +
                " (partial rotary embeddings are not supported)");
  }
  if (m.head_dim % 2 != 0) {
    fail(f, "head_dim (" + std::to_string(m.head_dim) + ") must be even for rotary embeddings");
  }
  m.intermediate = p.feed_forward_length;
  m.vocab = p.vocab_size;
  m.max_context = p.context_length;
  try {
    validate(m);
  } catch (const std::invalid_argument& e) {
    fail(f, e.what());
  }
  if (!p.rope_scaling_type.empty() && p.rope_scaling_type != "none") {
    fail(f, "metadata " + a + "rope.scaling.type '" + printable(p.rope_scaling_type, 64) +
                "' is not supported (none)");
  }
  if (std::any_of(f.tensors().begin(), f.tensors().end(),
                  [](const gguf_tensor_info& t) { return t.name == "rope_freqs.weight"; })) {
    fail(f,
         "tensor rope_freqs.weight (per-frequency RoPE scaling, as Llama 3.1 files carry) is "
         "not supported yet");
  }
  if (!p.rms_eps) fail(f, "metadata " + a + "attention.layer_norm_rms_epsilon is missing");
  if (!(*p.rms_eps > 0) || !std::isfinite(*p.rms_eps)) {
    fail(f, "metadata " + a + "attention.layer_norm_rms_epsilon must be a positive number");
  }
  if (!(p.rope_freq_base > 0) || !std::isfinite(p.rope_freq_base) ||
      p.rope_freq_base > double(std::numeric_limits<float>::max())) {
    fail(f, "metadata " + a + "rope.freq_base must be a positive number");
  }

  gguf_model out;
  decoder_config& c = out.decoder;
  c.model = m;
  c.block_tokens = block_tokens;
  c.rms_eps = static_cast<float>(*p.rms_eps);
  c.rope = rope_params{};
  c.rope.theta = static_cast<float>(p.rope_freq_base);
  out.output_tied =
      std::none_of(f.tensors().begin(), f.tensors().end(),
                   [](const gguf_tensor_info& t) { return t.name == "output.weight"; });
  return out;
}

// A file's shape against the model it is loaded as (a preset for serve and replay).
void check_shape(const gguf_file& f, const model_preset& file_m, const model_preset& m) {
  const std::array<std::tuple<const char*, int, int>, 7> fields{{
      {"llama.block_count", file_m.layers, m.layers},
      {"llama.embedding_length", file_m.hidden, m.hidden},
      {"llama.attention.head_count", file_m.heads, m.heads},
      {"llama.attention.head_count_kv", file_m.kv_heads, m.kv_heads},
      {"head_dim (llama.attention.key_length)", file_m.head_dim, m.head_dim},
      {"llama.feed_forward_length", file_m.intermediate, m.intermediate},
      {"vocabulary (tokenizer.ggml.tokens)", file_m.vocab, m.vocab},
  }};
  for (const auto& [key, got, want] : fields) {
    if (got != want) {
      fail(f, std::string(key) + " is " + std::to_string(got) + "; the model " + m.name + " has " +
                  std::to_string(want));
    }
  }
}

// One GGUF tensor that makes up (part of) an engine tensor.
struct gguf_part {
  std::string name;
  std::vector<std::uint64_t> dims;  // ne[0] first: {cols, rows}, norms {hidden}
  bool unpermute = false;           // Q or K: llama.cpp's RoPE row order
};

std::vector<gguf_part> gguf_parts(const weight_tensor& t, const model_preset& m) {
  const std::uint64_t H = m.hidden, Q = std::uint64_t(m.heads) * m.head_dim,
                      KV = std::uint64_t(m.kv_heads) * m.head_dim, I = m.intermediate, V = m.vocab;
  if (t.name == "embedding") return {{"token_embd.weight", {H, V}}};
  if (t.name == "final_norm") return {{"output_norm.weight", {H}}};
  if (t.name == "lm_head") return {{"output.weight", {H, V}}};
  const std::size_t dot = t.name.find('.', 7);
  if (!t.name.starts_with("layers.") || dot == std::string::npos) {
    throw std::logic_error("gguf checkpoint: no GGUF mapping for engine tensor " + t.name);
  }
  const std::string p = "blk." + t.name.substr(7, dot - 7) + ".";
  const std::string kind = t.name.substr(dot + 1);
  if (kind == "attn_norm") return {{p + "attn_norm.weight", {H}}};
  if (kind == "qkv") {
    return {{p + "attn_q.weight", {H, Q}, true},
            {p + "attn_k.weight", {H, KV}, true},
            {p + "attn_v.weight", {H, KV}}};
  }
  if (kind == "o") return {{p + "attn_output.weight", {Q, H}}};
  if (kind == "mlp_norm") return {{p + "ffn_norm.weight", {H}}};
  if (kind == "gate_up") return {{p + "ffn_gate.weight", {H, I}}, {p + "ffn_up.weight", {H, I}}};
  if (kind == "down") return {{p + "ffn_down.weight", {I, H}}};
  throw std::logic_error("gguf checkpoint: no GGUF mapping for engine tensor " + t.name);
}

std::string dims_text(const std::vector<std::uint64_t>& dims) {
  std::string s = "[";
  for (std::size_t k = 0; k < dims.size(); ++k) s += (k ? ", " : "") + std::to_string(dims[k]);
  return s + "]";
}

// Trailing 1s do not change a tensor (llama.cpp writes norms as 1-D, a writer may not).
std::vector<std::uint64_t> squeezed(std::vector<std::uint64_t> dims) {
  while (dims.size() > 1 && dims.back() == 1) dims.pop_back();
  return dims;
}

// llama.cpp's converter stores Q and K with each head's rows interleaved for its "adjacent pairs"
// RoPE: within a head of d rows, the Hugging Face (rotate-half) row i * d/2 + j (i in {0, 1},
// j < d/2) is stored as row 2j + i. The engine uses rotate-half, so row i * d/2 + j of each head
// takes the file's row 2j + i. Rows are copied whole; `rows` is a multiple of d.
void unpermute_rope_rows(const float* file_rows, std::uint16_t* out, std::int64_t rows,
                         std::int64_t cols, int head_dim) {
  const std::int64_t half = head_dim / 2;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t head = r / head_dim, within = r % head_dim;
    const std::int64_t i = within / half, j = within % half;
    const std::int64_t src = head * head_dim + 2 * j + i;
    for (std::int64_t c = 0; c < cols; ++c) {
      out[r * cols + c] = cpu::float_to_bf16(file_rows[src * cols + c]);
    }
  }
}

}  // namespace

bool is_gguf_checkpoint(const fs::path& checkpoint) {
  std::string ext = checkpoint.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (ext == ".gguf") return true;
  std::error_code ec;
  if (!fs::is_regular_file(checkpoint, ec)) return false;
  std::ifstream in(checkpoint, std::ios::binary);
  std::array<char, 4> magic{};
  return in.read(magic.data(), 4) && std::string_view(magic.data(), 4) == "GGUF";
}

decoder_config decoder_config_from_gguf(const fs::path& file, int block_tokens) {
  return read_gguf_model(gguf_file(file), block_tokens).decoder;
}

decoder_config read_checkpoint_config(const fs::path& checkpoint, int block_tokens) {
  if (is_gguf_checkpoint(checkpoint)) return decoder_config_from_gguf(checkpoint, block_tokens);
  std::error_code ec;
  const fs::path folder = fs::is_directory(checkpoint, ec) ? checkpoint : checkpoint.parent_path();
  return read_hf_config(folder / "config.json", block_tokens).decoder;
}

namespace detail {

std::vector<bf16_bits> load_gguf_weights(const fs::path& file, const model_preset& m,
                                         std::optional<bool> tie_word_embeddings) {
  validate(m);
  const gguf_file f(file);
  const gguf_model described = read_gguf_model(f, 16);
  check_shape(f, described.decoder.model, m);
  const bool tied = tie_word_embeddings ? *tie_word_embeddings : described.output_tied;

  auto count = [](const gguf_part& part) {
    std::int64_t n = 1;
    for (const auto d : part.dims) n *= static_cast<std::int64_t>(d);
    return n;
  };
  return gather_weights(
      m, tied, [&m](const weight_tensor& t) { return gguf_parts(t, m); },
      [&f](const gguf_part& part) {
        const auto it =
            std::find_if(f.tensors().begin(), f.tensors().end(),
                         [&](const gguf_tensor_info& i) { return i.name == part.name; });
        if (it == f.tensors().end()) fail(f, "missing tensor " + part.name);
        if (squeezed(it->dims) != squeezed(part.dims)) {
          fail(f, "tensor " + part.name + " has dims " + dims_text(it->dims) +
                      " (ne[0] first); the model says " + dims_text(part.dims));
        }
        if (!ggml_type_supported(it->type)) {
          fail(f, "tensor " + part.name + " has ggml type " + ggml_type_name(it->type) +
                      ", which is not supported yet (supported: F32, F16, BF16, Q8_0, Q4_0)");
        }
      },
      count,
      [&f, &m, &count](const gguf_part& part, bf16_bits* dst) {
        const std::vector<float> x = f.tensor_f32(part.name);
        if (part.unpermute) {
          const auto cols = static_cast<std::int64_t>(part.dims[0]);
          unpermute_rope_rows(x.data(), dst, count(part) / cols, cols, m.head_dim);
        } else {
          std::transform(x.begin(), x.end(), dst, cpu::float_to_bf16);
        }
      });
}

namespace {

bool is_linear_name(const std::string& n) {
  for (const char* k : {".attn_q.weight", ".attn_k.weight", ".attn_v.weight",
                        ".attn_output.weight", ".ffn_gate.weight", ".ffn_up.weight",
                        ".ffn_down.weight"}) {
    const std::string_view tail(k);
    if (n.rfind("blk.", 0) == 0 && n.size() > tail.size() &&
        n.compare(n.size() - tail.size(), tail.size(), tail) == 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::optional<planner::weight_format> gguf_weight_format(const fs::path& file) {
  const gguf_file f(file);
  bool q4 = false, q8 = false;
  for (const gguf_tensor_info& t : f.tensors()) {
    if (!is_linear_name(t.name)) continue;
    q4 = q4 || t.type == ggml_type::q4_0;
    q8 = q8 || t.type == ggml_type::q8_0;
  }
  if (q4 && q8) {
    fail(f, "its linear tensors mix Q4_0 and Q8_0; the engine runs one quantized format at a time "
            "(--weights bf16 runs the file dequantized)");
  }
  if (q4) return planner::weight_format::int4;
  if (q8) return planner::weight_format::int8;
  return std::nullopt;
}

std::vector<loaded_tensor> load_gguf_for_engine(const fs::path& file, const model_preset& m,
                                                planner::weight_format target,
                                                std::optional<bool> tie_word_embeddings) {
  // Every check of the bf16 load (shapes, types, metadata) and the bf16 values of the tensors
  // that stay bf16. The packed tensors' bf16 copies are dropped below.
  const std::vector<bf16_bits> all = load_gguf_weights(file, m, tie_word_embeddings);
  const gguf_file f(file);
  const ggml_type want = target == planner::weight_format::int4   ? ggml_type::q4_0
                         : target == planner::weight_format::int8 ? ggml_type::q8_0
                                                                  : ggml_type::f32;
  if (want == ggml_type::f32 && target != planner::weight_format::bf16) {
    fail(f, "GGUF files hold no " + std::string(planner::name(target)) +
                " weights (Q4_0 runs as int4, Q8_0 as int8; --weights bf16 dequantizes)");
  }
  const auto tensors = weight_tensors(m);
  std::vector<loaded_tensor> out(tensors.size());
  std::size_t at = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const weight_tensor& t = tensors[i];
    const auto n = static_cast<std::size_t>(t.elements);
    bool packed = false;
    if (target != planner::weight_format::bf16 && is_block_linear(t)) {
      const std::vector<gguf_part> parts = gguf_parts(t, m);
      std::size_t matching = 0;
      for (const gguf_part& part : parts) {
        const auto it =
            std::find_if(f.tensors().begin(), f.tensors().end(),
                         [&](const gguf_tensor_info& x) { return x.name == part.name; });
        if (it->type == want) {
          ++matching;
        } else if (it->type == ggml_type::q4_0 || it->type == ggml_type::q8_0) {
          fail(f, "tensor " + part.name + " has ggml type " + ggml_type_name(it->type) +
                      "; --weights " + std::string(planner::name(target)) + " runs " +
                      ggml_type_name(want) + " (--weights bf16 dequantizes every tensor)");
        }
      }
      if (matching == parts.size()) {
        packed = true;
        const cpu::quant_format qf =
            want == ggml_type::q4_0 ? cpu::quant_format::q4_0 : cpu::quant_format::q8_0;
        const int block_bytes = want == ggml_type::q4_0 ? cpu::k_q4_0_block_bytes
                                                        : cpu::k_q8_0_block_bytes;
        std::vector<cpu::quantized_matrix> stacked;
        for (const gguf_part& part : parts) {
          const auto cols = static_cast<int>(part.dims[0]);
          const auto rows = static_cast<int>(part.dims[1]);
          const std::span<const std::uint8_t> bytes = f.tensor_bytes(part.name);
          const std::size_t row_bytes = static_cast<std::size_t>(cols / 32) * block_bytes;
          cpu::quantized_matrix q;
          q.format = qf;
          q.rows = rows;
          q.cols = cols;
          q.data.resize(static_cast<std::size_t>(rows) * row_bytes);
          const int half = m.head_dim / 2;
          for (int r = 0; r < rows; ++r) {
            // Q and K: the file's rows in llama.cpp's RoPE order, moved whole (unpermute_rope_rows).
            int src = r;
            if (part.unpermute) {
              const int head = r / m.head_dim, within = r % m.head_dim;
              src = head * m.head_dim + 2 * (within % half) + within / half;
            }
            std::copy_n(bytes.data() + static_cast<std::size_t>(src) * row_bytes, row_bytes,
                        q.data.data() + static_cast<std::size_t>(r) * row_bytes);
          }
          stacked.push_back(std::move(q));
        }
        const cpu::quantized_matrix whole = stack_rows(stacked);
        cpu::check_packable(whole.format, whole.rows, whole.cols, cpu::k_ggml_block_elements);
        out[i].packed = cpu::pack_quantized(whole.view());
      }
    }
    if (!packed) {
      out[i].bf16.assign(all.begin() + static_cast<std::ptrdiff_t>(at),
                         all.begin() + static_cast<std::ptrdiff_t>(at + n));
    }
    at += n;
  }
  return out;
}

}  // namespace detail
}  // namespace ridgeline
