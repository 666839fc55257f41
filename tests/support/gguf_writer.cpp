// The GGUF test writer (gguf_writer.hpp): byte-level encoding from the GGUF spec, ggml's Q8_0 and
// Q4_0 block quantizers, and the tiny Llama builder.
#include "gguf_writer.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>
#include <utility>

namespace ridgeline::test {
namespace {

template <class T>
void put(std::string& b, T v) {
  static_assert(std::endian::native == std::endian::little);
  b.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void put_string(std::string& b, const std::string& s) {
  put<std::uint64_t>(b, s.size());
  b += s;
}
std::uint64_t round_up(std::uint64_t n, std::uint64_t a) {
  return (n + a - 1) / a * a;
}

}  // namespace

std::uint16_t half_from_float(float x) {
  const std::uint32_t f = std::bit_cast<std::uint32_t>(x);
  const std::uint16_t sign = static_cast<std::uint16_t>((f >> 16) & 0x8000);
  const std::uint32_t abs = f & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | (abs > 0x7f800000 ? 0x7e00 : 0x7c00);  // NaN, Inf
  const int e = static_cast<int>(abs >> 23) - 127;                            // unbiased exponent
  if (e > 15) return sign | 0x7c00;                                           // overflow
  // Shift the 24-bit significand so that its last kept bit is the half's unit in the last place.
  std::uint32_t mant = (abs & 0x7fffff) | (e == -127 ? 0 : 0x800000);
  int shift = e >= -14 ? 13 : 13 + (-14 - e);  // normals keep 10 bits; subnormals fewer
  if (shift > 24) return sign;                 // below half the smallest subnormal
  std::uint32_t kept = mant >> shift;
  const std::uint32_t rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rest > half || (rest == half && (kept & 1))) ++kept;  // nearest, ties to even
  std::uint32_t bits;
  if (e >= -14) {
    bits = (static_cast<std::uint32_t>(e + 15) << 10) + (kept - 0x400);  // carry bumps exponent
  } else {
    bits = kept;  // subnormal (a carry to 0x400 is the smallest normal, correctly)
  }
  if (bits >= 0x7c00) return sign | 0x7c00;
  return static_cast<std::uint16_t>(sign | bits);
}

float half_to_float(std::uint16_t h) {
  const float sign = (h & 0x8000) ? -1.0f : 1.0f;
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0x1f) return m ? std::nanf("") : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(static_cast<float>(m), -24);
  return sign * std::ldexp(static_cast<float>(1024 + m), e - 25);
}

std::vector<std::uint8_t> quantize_q8_0(const std::vector<float>& x) {
  if (x.size() % 32) throw std::invalid_argument("quantize_q8_0: n not a multiple of 32");
  std::vector<std::uint8_t> out;
  for (std::size_t b = 0; b < x.size(); b += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    const std::uint16_t dh = half_from_float(d);
    out.push_back(static_cast<std::uint8_t>(dh));
    out.push_back(static_cast<std::uint8_t>(dh >> 8));
    for (int j = 0; j < 32; ++j) {
      out.push_back(static_cast<std::uint8_t>(static_cast<std::int8_t>(std::round(x[b + j] * id))));
    }
  }
  return out;
}

std::vector<std::uint8_t> quantize_q4_0(const std::vector<float>& x) {
  if (x.size() % 32) throw std::invalid_argument("quantize_q4_0: n not a multiple of 32");
  std::vector<std::uint8_t> out;
  for (std::size_t b = 0; b < x.size(); b += 32) {
    float amax = 0, m = 0;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(x[b + j]) > amax) {
        amax = std::fabs(x[b + j]);
        m = x[b + j];
      }
    }
    const float d = m / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    const std::uint16_t dh = half_from_float(d);
    out.push_back(static_cast<std::uint8_t>(dh));
    out.push_back(static_cast<std::uint8_t>(dh >> 8));
    int q[32];
    for (int j = 0; j < 32; ++j) {
      q[j] = std::min(15, static_cast<int>(x[b + j] * id + 8.5f));  // trunc: the value is >= 0
    }
    for (int j = 0; j < 16; ++j) out.push_back(static_cast<std::uint8_t>(q[j] | (q[j + 16] << 4)));
  }
  return out;
}

std::vector<float> dequantize_q8_0_reference(const std::vector<std::uint8_t>& blocks) {
  std::vector<float> out;
  for (std::size_t b = 0; b + 34 <= blocks.size(); b += 34) {
    const float d = half_to_float(static_cast<std::uint16_t>(blocks[b] | (blocks[b + 1] << 8)));
    for (int j = 0; j < 32; ++j) {
      out.push_back(d * static_cast<float>(static_cast<std::int8_t>(blocks[b + 2 + j])));
    }
  }
  return out;
}

std::vector<float> dequantize_q4_0_reference(const std::vector<std::uint8_t>& blocks) {
  std::vector<float> out;
  for (std::size_t b = 0; b + 18 <= blocks.size(); b += 18) {
    const float d = half_to_float(static_cast<std::uint16_t>(blocks[b] | (blocks[b + 1] << 8)));
    float v[32];
    for (int j = 0; j < 16; ++j) {
      v[j] = d * static_cast<float>((blocks[b + 2 + j] & 0x0f) - 8);
      v[j + 16] = d * static_cast<float>((blocks[b + 2 + j] >> 4) - 8);
    }
    out.insert(out.end(), v, v + 32);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

gguf_writer::gguf_writer(std::uint32_t version, std::uint32_t alignment)
    : m_version(version), m_alignment(alignment) {}

#define RIDGELINE_GGUF_SCALAR(fn, T, code)            \
  void gguf_writer::fn(const std::string& key, T v) { \
    std::string b;                                    \
    put_string(b, key);                               \
    put<std::uint32_t>(b, code);                      \
    put<T>(b, v);                                     \
    m_kvs.push_back(std::move(b));                    \
  }
RIDGELINE_GGUF_SCALAR(add_u8, std::uint8_t, gguf_type::uint8)
RIDGELINE_GGUF_SCALAR(add_i8, std::int8_t, gguf_type::int8)
RIDGELINE_GGUF_SCALAR(add_u16, std::uint16_t, gguf_type::uint16)
RIDGELINE_GGUF_SCALAR(add_i16, std::int16_t, gguf_type::int16)
RIDGELINE_GGUF_SCALAR(add_u32, std::uint32_t, gguf_type::uint32)
RIDGELINE_GGUF_SCALAR(add_i32, std::int32_t, gguf_type::int32)
RIDGELINE_GGUF_SCALAR(add_f32, float, gguf_type::float32)
RIDGELINE_GGUF_SCALAR(add_u64, std::uint64_t, gguf_type::uint64)
RIDGELINE_GGUF_SCALAR(add_i64, std::int64_t, gguf_type::int64)
RIDGELINE_GGUF_SCALAR(add_f64, double, gguf_type::float64)
#undef RIDGELINE_GGUF_SCALAR

void gguf_writer::add_bool(const std::string& key, bool v) {
  std::string b;
  put_string(b, key);
  put<std::uint32_t>(b, gguf_type::boolean);
  put<std::uint8_t>(b, v ? 1 : 0);
  m_kvs.push_back(std::move(b));
}

void gguf_writer::add_string(const std::string& key, const std::string& v) {
  std::string b;
  put_string(b, key);
  put<std::uint32_t>(b, gguf_type::string);
  put_string(b, v);
  m_kvs.push_back(std::move(b));
}

void gguf_writer::add_string_array(const std::string& key, const std::vector<std::string>& v) {
  std::string b;
  put_string(b, key);
  put<std::uint32_t>(b, gguf_type::array);
  put<std::uint32_t>(b, gguf_type::string);
  put<std::uint64_t>(b, v.size());
  for (const auto& s : v) put_string(b, s);
  m_kvs.push_back(std::move(b));
}

void gguf_writer::add_i32_array(const std::string& key, const std::vector<std::int32_t>& v) {
  std::string b;
  put_string(b, key);
  put<std::uint32_t>(b, gguf_type::array);
  put<std::uint32_t>(b, gguf_type::int32);
  put<std::uint64_t>(b, v.size());
  for (auto x : v) put(b, x);
  m_kvs.push_back(std::move(b));
}

void gguf_writer::add_f32_array(const std::string& key, const std::vector<float>& v) {
  std::string b;
  put_string(b, key);
  put<std::uint32_t>(b, gguf_type::array);
  put<std::uint32_t>(b, gguf_type::float32);
  put<std::uint64_t>(b, v.size());
  for (auto x : v) put(b, x);
  m_kvs.push_back(std::move(b));
}

void gguf_writer::add_nested_u8_array(const std::string& key,
                                      const std::vector<std::vector<std::uint8_t>>& v) {
  std::string b;
  put_string(b, key);
  put<std::uint32_t>(b, gguf_type::array);
  put<std::uint32_t>(b, gguf_type::array);
  put<std::uint64_t>(b, v.size());
  for (const auto& inner : v) {
    put<std::uint32_t>(b, gguf_type::uint8);
    put<std::uint64_t>(b, inner.size());
    for (auto x : inner) put(b, x);
  }
  m_kvs.push_back(std::move(b));
}

void gguf_writer::add_raw(const std::string& key, std::uint32_t type,
                          const std::string& encoded_value) {
  std::string b;
  put_string(b, key);
  put<std::uint32_t>(b, type);
  b += encoded_value;
  m_kvs.push_back(std::move(b));
}

void gguf_writer::add_tensor(const std::string& name, std::vector<std::uint64_t> dims,
                             std::uint32_t type, std::vector<std::uint8_t> bytes) {
  m_tensors.push_back({name, std::move(dims), type, std::move(bytes)});
}

std::string gguf_writer::header_and_infos() const {
  std::string b;
  b += "GGUF";
  put<std::uint32_t>(b, m_version);
  put<std::uint64_t>(b, m_tensors.size());
  put<std::uint64_t>(b, m_kvs.size());
  for (const auto& kv : m_kvs) b += kv;
  std::uint64_t offset = 0;
  for (const auto& t : m_tensors) {
    put_string(b, t.name);
    put<std::uint32_t>(b, static_cast<std::uint32_t>(t.dims.size()));
    for (auto d : t.dims) put<std::uint64_t>(b, d);
    put<std::uint32_t>(b, t.type);
    put<std::uint64_t>(b, offset);
    offset = round_up(offset + t.bytes.size(), m_alignment);
  }
  return b;
}

std::uint64_t gguf_writer::data_offset() const {
  return round_up(header_and_infos().size(), m_alignment);
}

std::string gguf_writer::bytes() const {
  std::string b = header_and_infos();
  b.resize(round_up(b.size(), m_alignment), '\0');
  for (const auto& t : m_tensors) {
    b.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
    b.resize(round_up(b.size(), m_alignment), '\0');
  }
  return b;
}

void gguf_writer::write(const std::filesystem::path& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const std::string b = bytes();
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// ---------------------------------------------------------------------------------------------

std::vector<float> llama_cpp_permute_rows(const std::vector<float>& w, std::uint64_t rows,
                                          std::uint64_t cols, std::uint64_t heads) {
  if (heads == 0 || rows % (2 * heads) != 0 || w.size() != rows * cols) {
    throw std::invalid_argument("llama_cpp_permute_rows: " + std::to_string(rows) + " rows, " +
                                std::to_string(heads) + " heads");
  }
  const std::uint64_t half = rows / heads / 2;
  std::vector<float> out(w.size());
  // Source row index (h, a, b) in [heads][2][half] goes to (h, b, a) in [heads][half][2].
  for (std::uint64_t h = 0; h < heads; ++h) {
    for (std::uint64_t a = 0; a < 2; ++a) {
      for (std::uint64_t b = 0; b < half; ++b) {
        const std::uint64_t from = (h * 2 + a) * half + b, to = (h * half + b) * 2 + a;
        std::copy_n(w.begin() + static_cast<std::ptrdiff_t>(from * cols), cols,
                    out.begin() + static_cast<std::ptrdiff_t>(to * cols));
      }
    }
  }
  return out;
}

tiny_llama_gguf make_tiny_llama_gguf(const model_preset& m, std::uint32_t type, std::uint32_t seed,
                                     std::uint32_t version, bool with_output) {
  tiny_llama_gguf out{gguf_writer(version), {}, {}, {}};
  gguf_writer& w = out.writer;
  const std::uint32_t file_type = type == ggml::f32    ? 0
                                  : type == ggml::f16  ? 1
                                  : type == ggml::q4_0 ? 2
                                                       : 7;  // llama_ftype: MOSTLY_Q8_0 = 7
  w.add_string("general.architecture", "llama");
  w.add_string("general.name", m.name);
  w.add_u32("general.file_type", file_type);
  w.add_u32("general.quantization_version", 2);
  w.add_u32("llama.context_length", static_cast<std::uint32_t>(m.max_context));
  w.add_u32("llama.embedding_length", static_cast<std::uint32_t>(m.hidden));
  w.add_u32("llama.block_count", static_cast<std::uint32_t>(m.layers));
  w.add_u32("llama.feed_forward_length", static_cast<std::uint32_t>(m.intermediate));
  w.add_u32("llama.attention.head_count", static_cast<std::uint32_t>(m.heads));
  w.add_u32("llama.attention.head_count_kv", static_cast<std::uint32_t>(m.kv_heads));
  w.add_u32("llama.rope.dimension_count", static_cast<std::uint32_t>(m.head_dim));
  w.add_f32("llama.rope.freq_base", 10000.0f);
  w.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.add_u32("llama.vocab_size", static_cast<std::uint32_t>(m.vocab));
  w.add_string("tokenizer.ggml.model", "llama");
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<std::int32_t> token_types;
  for (int t = 0; t < m.vocab; ++t) {
    tokens.push_back(t < 3 ? std::vector<std::string>{"<unk>", "<s>", "</s>"}[t]
                           : "tok" + std::to_string(t));
    scores.push_back(-static_cast<float>(t) * 0.25f);
    token_types.push_back(t < 3 ? 3 : 1);  // 3: control, 1: normal
  }
  w.add_string_array("tokenizer.ggml.tokens", tokens);
  w.add_f32_array("tokenizer.ggml.scores", scores);
  w.add_i32_array("tokenizer.ggml.token_type", token_types);
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  w.add_bool("tokenizer.ggml.add_bos_token", true);
  // The value types a Llama file does not use otherwise (readers must still parse them).
  w.add_u8("ridgeline.test.u8", 200);
  w.add_i8("ridgeline.test.i8", -100);
  w.add_u16("ridgeline.test.u16", 60000);
  w.add_i16("ridgeline.test.i16", -30000);
  w.add_i32("ridgeline.test.i32", -2000000000);
  w.add_u64("ridgeline.test.u64", 18000000000000000000ULL);
  w.add_i64("ridgeline.test.i64", -9000000000000000000LL);
  w.add_f64("ridgeline.test.f64", -1.0e300);
  w.add_bool("ridgeline.test.false", false);
  w.add_nested_u8_array("ridgeline.test.nested", {{1, 2, 3}, {}, {255}});

  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  // x in its stored type: the bytes and what they stand for.
  const auto encode = [](const std::vector<float>& x, std::uint32_t t) {
    std::pair<std::vector<std::uint8_t>, std::vector<float>> r;
    auto& [bytes, ref] = r;
    if (t == ggml::f32) {
      bytes.resize(x.size() * 4);
      std::memcpy(bytes.data(), x.data(), bytes.size());
      ref = x;
    } else if (t == ggml::f16) {
      for (float v : x) {
        const std::uint16_t h = half_from_float(v);
        bytes.push_back(static_cast<std::uint8_t>(h));
        bytes.push_back(static_cast<std::uint8_t>(h >> 8));
        ref.push_back(half_to_float(h));
      }
    } else if (t == ggml::q8_0) {
      bytes = quantize_q8_0(x);
      ref = dequantize_q8_0_reference(bytes);
    } else if (t == ggml::q4_0) {
      bytes = quantize_q4_0(x);
      ref = dequantize_q4_0_reference(bytes);
    } else {
      throw std::invalid_argument("make_tiny_llama_gguf: type " + std::to_string(t));
    }
    return r;
  };
  // rope_heads > 0: a Q or K weight, stored permuted over that many heads.
  const auto add = [&](const std::string& name, std::uint64_t ne0, std::uint64_t ne1,
                       std::uint32_t want, std::uint64_t rope_heads = 0) {
    std::vector<float> x(ne0 * ne1);
    for (auto& v : x) v = normal(rng);
    std::uint32_t t = want;
    if ((t == ggml::q8_0 || t == ggml::q4_0) && ne0 % 32 != 0) t = ggml::f16;
    auto [bytes, ref] = encode(rope_heads ? llama_cpp_permute_rows(x, ne1, ne0, rope_heads) : x, t);
    out.hf_reference[name] = rope_heads ? encode(x, t).second : ref;
    std::vector<std::uint64_t> dims{ne0};
    if (ne1 > 1) dims.push_back(ne1);
    w.add_tensor(name, dims, t, std::move(bytes));
    out.reference[name] = std::move(ref);
    out.types[name] = t;
  };
  const std::uint64_t H = m.hidden, I = m.intermediate, V = m.vocab;
  const std::uint64_t q_rows = std::uint64_t(m.heads) * m.head_dim;
  const std::uint64_t kv_rows = std::uint64_t(m.kv_heads) * m.head_dim;
  add("token_embd.weight", H, V, type);
  for (int l = 0; l < m.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", H, 1, ggml::f32);
    add(p + "attn_q.weight", H, q_rows, type, std::uint64_t(m.heads));
    add(p + "attn_k.weight", H, kv_rows, type, std::uint64_t(m.kv_heads));
    add(p + "attn_v.weight", H, kv_rows, type);
    add(p + "attn_output.weight", q_rows, H, type);
    add(p + "ffn_norm.weight", H, 1, ggml::f32);
    add(p + "ffn_gate.weight", H, I, type);
    add(p + "ffn_up.weight", H, I, type);
    add(p + "ffn_down.weight", I, H, type);
  }
  add("output_norm.weight", H, 1, ggml::f32);
  if (with_output) add("output.weight", H, V, type);
  return out;
}

}  // namespace ridgeline::test
