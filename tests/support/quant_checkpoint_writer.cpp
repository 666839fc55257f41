// Test writers of AWQ, GPTQ and fp8 safetensors (quant_checkpoint_writer.hpp).
#include "quant_checkpoint_writer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <stdexcept>

#include "gguf_writer.hpp"  // half_to_float / half_from_float

namespace ridgeline::test {

std::vector<std::uint8_t> as_bytes_u16(const std::vector<std::uint16_t>& v) {
  std::vector<std::uint8_t> b(v.size() * 2);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}
std::vector<std::uint8_t> as_bytes_i32(const std::vector<std::int32_t>& v) {
  std::vector<std::uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}
std::vector<std::uint8_t> as_bytes_f32(const std::vector<float>& v) {
  std::vector<std::uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

void write_safetensors(const std::filesystem::path& file, const std::vector<st_tensor>& tensors) {
  nlohmann::json h = nlohmann::json::object();
  h["__metadata__"] = {{"format", "pt"}};
  std::uint64_t at = 0;
  for (const auto& t : tensors) {
    h[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {at, at + t.bytes.size()}}};
    at += t.bytes.size();
  }
  std::string text = h.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  const std::uint64_t n = text.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << text;
  for (const auto& t : tensors) {
    out.write(reinterpret_cast<const char*>(t.bytes.data()),
              static_cast<std::streamsize>(t.bytes.size()));
  }
  if (!out) throw std::runtime_error("cannot write " + file.string());
}

int4_case make_int4_case(int out, int in, int group_size, bool act_order, std::uint32_t seed,
                         int min_zero) {
  int4_case c;
  c.out = out;
  c.in = in;
  c.group_size = group_size;
  const int g = group_size > 0 ? group_size : in;
  c.groups = (in + g - 1) / g;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> code(0, 15), zero(min_zero, 15);
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  c.q.resize(std::size_t(out) * in);
  for (auto& v : c.q) v = code(rng);
  c.z.resize(std::size_t(out) * c.groups);
  for (auto& v : c.z) v = zero(rng);
  c.scales.resize(std::size_t(c.groups) * out);
  for (auto& v : c.scales) v = half_from_float(scale(rng) * (code(rng) < 8 ? 1.0f : 3.0f));
  c.g_idx.resize(std::size_t(in));
  for (int i = 0; i < in; ++i) c.g_idx[std::size_t(i)] = i / g;
  if (act_order) std::shuffle(c.g_idx.begin(), c.g_idx.end(), rng);
  return c;
}

std::vector<float> int4_reference(const int4_case& c) {
  std::vector<float> w(std::size_t(c.out) * c.in);
  for (int o = 0; o < c.out; ++o) {
    for (int i = 0; i < c.in; ++i) {
      const int g = c.g_idx[std::size_t(i)];
      const float s = half_to_float(c.scales[std::size_t(g) * c.out + o]);
      const int q = c.q[std::size_t(o) * c.in + i], z = c.z[std::size_t(o) * c.groups + g];
      w[std::size_t(o) * c.in + i] = s * static_cast<float>(q - z);
    }
  }
  return w;
}

std::vector<st_tensor> pack_awq(const int4_case& c, const std::string& prefix) {
  static constexpr int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};  // AutoAWQ's pack order
  if (c.out % 8 || c.in % c.group_size) throw std::invalid_argument("pack_awq: shape");
  const int packs = c.out / 8;
  std::vector<std::int32_t> qweight(std::size_t(c.in) * packs),
      qzeros(std::size_t(c.groups) * packs);
  for (int i = 0; i < c.in; ++i) {
    for (int p = 0; p < packs; ++p) {
      std::uint32_t word = 0;
      for (int k = 0; k < 8; ++k) {
        word |= std::uint32_t(c.q[std::size_t(8 * p + order[k]) * c.in + i]) << (4 * k);
      }
      qweight[std::size_t(i) * packs + p] = static_cast<std::int32_t>(word);
    }
  }
  for (int g = 0; g < c.groups; ++g) {
    for (int p = 0; p < packs; ++p) {
      std::uint32_t word = 0;
      for (int k = 0; k < 8; ++k) {
        word |= std::uint32_t(c.z[std::size_t(8 * p + order[k]) * c.groups + g]) << (4 * k);
      }
      qzeros[std::size_t(g) * packs + p] = static_cast<std::int32_t>(word);
    }
  }
  return {{prefix + ".qweight", "I32", {c.in, packs}, as_bytes_i32(qweight)},
          {prefix + ".qzeros", "I32", {c.groups, packs}, as_bytes_i32(qzeros)},
          {prefix + ".scales", "F16", {c.groups, c.out}, as_bytes_u16(c.scales)}};
}

std::vector<st_tensor> pack_gptq(const int4_case& c, const std::string& prefix, bool with_g_idx,
                                 bool v2) {
  if (c.out % 8 || c.in % 8) throw std::invalid_argument("pack_gptq: shape");
  const int rows = c.in / 8, packs = c.out / 8;
  std::vector<std::int32_t> qweight(std::size_t(rows) * c.out),
      qzeros(std::size_t(c.groups) * packs);
  for (int r = 0; r < rows; ++r) {
    for (int o = 0; o < c.out; ++o) {
      std::uint32_t word = 0;
      for (int k = 0; k < 8; ++k) {
        word |= std::uint32_t(c.q[std::size_t(o) * c.in + 8 * r + k]) << (4 * k);
      }
      qweight[std::size_t(r) * c.out + o] = static_cast<std::int32_t>(word);
    }
  }
  for (int g = 0; g < c.groups; ++g) {
    for (int p = 0; p < packs; ++p) {
      std::uint32_t word = 0;
      for (int k = 0; k < 8; ++k) {
        const int z = c.z[std::size_t(8 * p + k) * c.groups + g] - (v2 ? 0 : 1);
        word |= (std::uint32_t(z) & 0xf) << (4 * k);
      }
      qzeros[std::size_t(g) * packs + p] = static_cast<std::int32_t>(word);
    }
  }
  std::vector<st_tensor> out = {
      {prefix + ".qweight", "I32", {rows, c.out}, as_bytes_i32(qweight)},
      {prefix + ".qzeros", "I32", {c.groups, packs}, as_bytes_i32(qzeros)},
      {prefix + ".scales", "F16", {c.groups, c.out}, as_bytes_u16(c.scales)}};
  if (with_g_idx) {
    std::vector<std::int32_t> g(c.g_idx.begin(), c.g_idx.end());
    out.push_back({prefix + ".g_idx", "I32", {c.in}, as_bytes_i32(g)});
  }
  return out;
}

float e4m3_value(std::uint8_t code) {
  const float sign = (code & 0x80) ? -1.0f : 1.0f;
  const int e = (code >> 3) & 0xf, m = code & 7;
  if (e == 15 && m == 7) return std::nanf("");
  if (e == 0) return sign * std::ldexp(static_cast<float>(m), -9);
  return sign * std::ldexp(static_cast<float>(8 + m), e - 10);
}

fp8_case make_fp8_case(int out, int in, const std::string& kind, std::uint32_t seed, int br,
                       int bc) {
  fp8_case c;
  c.out = out;
  c.in = in;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(1e-4f, 1e-2f);
  c.codes.resize(std::size_t(out) * in);
  for (auto& v : c.codes) {
    do v = static_cast<std::uint8_t>(byte(rng));
    while ((v & 0x7f) == 0x7f);
  }
  if (kind == "tensor" || kind == "tensor1") {
    c.scale_shape = kind == "tensor" ? std::vector<std::int64_t>{} : std::vector<std::int64_t>{1};
    c.block_rows = out;
    c.block_cols = in;
  } else if (kind == "channel" || kind == "channel2") {
    c.scale_shape =
        kind == "channel" ? std::vector<std::int64_t>{out} : std::vector<std::int64_t>{out, 1};
    c.block_rows = 1;
    c.block_cols = in;
  } else if (kind == "block") {
    c.scale_shape = {(out + br - 1) / br, (in + bc - 1) / bc};
    c.block_rows = br;
    c.block_cols = bc;
  } else {
    throw std::invalid_argument("make_fp8_case: kind " + kind);
  }
  std::int64_t n = 1;
  for (auto d : c.scale_shape) n *= d;
  c.scales.resize(std::size_t(n));
  for (auto& v : c.scales) v = scale(rng);
  return c;
}

std::vector<float> fp8_reference(const fp8_case& c) {
  const int per_row = (c.in + c.block_cols - 1) / c.block_cols;
  std::vector<float> w(std::size_t(c.out) * c.in);
  for (int r = 0; r < c.out; ++r) {
    for (int k = 0; k < c.in; ++k) {
      const float s = c.scales[std::size_t(r / c.block_rows) * per_row + k / c.block_cols];
      w[std::size_t(r) * c.in + k] = e4m3_value(c.codes[std::size_t(r) * c.in + k]) * s;
    }
  }
  return w;
}

std::vector<st_tensor> pack_fp8(const fp8_case& c, const std::string& prefix,
                                const std::string& scale_name) {
  return {{prefix + ".weight", "F8_E4M3", {c.out, c.in}, c.codes},
          {prefix + scale_name, "F32", c.scale_shape, as_bytes_f32(c.scales)}};
}

std::vector<std::pair<std::string, std::vector<std::int64_t>>> hf_tensor_parts(
    const std::string& engine_name, const model_preset& m) {
  const std::string& n = engine_name;
  const std::int64_t H = m.hidden, Q = std::int64_t(m.heads) * m.head_dim,
                     KV = std::int64_t(m.kv_heads) * m.head_dim, I = m.intermediate;
  const std::string p = n.rfind("layers.", 0) == 0
                            ? "model.layers." + n.substr(7, n.find('.', 7) - 7) + "."
                            : "";
  if (n == "embedding") return {{"model.embed_tokens.weight", {m.vocab, H}}};
  if (n == "final_norm") return {{"model.norm.weight", {H}}};
  if (n == "lm_head") return {{"lm_head.weight", {m.vocab, H}}};
  if (n.ends_with(".attn_norm")) return {{p + "input_layernorm.weight", {H}}};
  if (n.ends_with(".mlp_norm")) return {{p + "post_attention_layernorm.weight", {H}}};
  if (n.ends_with(".qkv")) {
    return {{p + "self_attn.q_proj", {Q, H}},
            {p + "self_attn.k_proj", {KV, H}},
            {p + "self_attn.v_proj", {KV, H}}};
  }
  if (n.ends_with(".o")) return {{p + "self_attn.o_proj", {H, Q}}};
  if (n.ends_with(".gate_up")) return {{p + "mlp.gate_proj", {I, H}}, {p + "mlp.up_proj", {I, H}}};
  if (n.ends_with(".down")) return {{p + "mlp.down_proj", {H, I}}};
  return {};
}

}  // namespace ridgeline::test
