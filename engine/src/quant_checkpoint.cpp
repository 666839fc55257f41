// The AWQ, GPTQ and Hugging Face fp8 readers (quant_checkpoint.hpp): dtype and shape checks, then
// a naive dequantization element by element (these run once at load; clarity over speed).
#include "ridgeline/engine/quant_checkpoint.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "checkpoint_json.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/kernels/numeric.hpp"

namespace ridgeline {
namespace {

using nlohmann::json;
static_assert(std::endian::native == std::endian::little, "checkpoint data is little-endian");

[[noreturn]] void fail(const std::string& source, const stored_tensor& t, const std::string& what) {
  throw std::invalid_argument(source + ": tensor '" + t.name + "' " + what);
}

std::string dtype_shape(const stored_tensor& t) {
  return t.dtype + " " + shape_text(t.shape);
}

// The bytes must match dtype x shape (a stored_tensor built by hand could disagree).
void check_bytes(const stored_tensor& t, const std::string& source) {
  std::uint64_t n = safetensors_dtype_bytes(t.dtype);
  for (const auto d : t.shape) {
    if (d < 0 || d > (std::int64_t{1} << 40)) fail(source, t, "has shape " + shape_text(t.shape));
    n *= static_cast<std::uint64_t>(d);
  }
  if (n != t.bytes.size()) {
    fail(source, t,
         "holds " + std::to_string(t.bytes.size()) + " bytes but " + dtype_shape(t) + " needs " +
             std::to_string(n));
  }
}

void check_dtype(const stored_tensor& t, std::initializer_list<const char*> allowed,
                 const std::string& source) {
  std::string list;
  for (const char* a : allowed) {
    if (t.dtype == a) return check_bytes(t, source);
    list += (list.empty() ? "" : " or ") + std::string(a);
  }
  fail(source, t, "has dtype " + t.dtype + "; the format stores it as " + list);
}

void check_shape(const stored_tensor& t, const std::vector<std::int64_t>& want,
                 const std::string& why, const std::string& source) {
  if (t.shape != want) {
    fail(source, t,
         "has shape " + shape_text(t.shape) + "; expected " + shape_text(want) + " " + why);
  }
}

void check_rank2(const stored_tensor& t, const std::string& source) {
  if (t.shape.size() != 2 || t.shape[0] < 1 || t.shape[1] < 1) {
    fail(source, t, "has shape " + shape_text(t.shape) + "; expected 2 non-zero dims");
  }
}

std::uint32_t word(const stored_tensor& t, std::size_t index) {
  std::uint32_t w;
  std::memcpy(&w, t.bytes.data() + 4 * index, 4);
  return w;
}
int nibble(std::uint32_t w, int k) {
  return static_cast<int>((w >> (4 * k)) & 0xf);
}

float scale_at(const stored_tensor& t, std::size_t index) {
  if (t.dtype == "F32") {
    float f;
    std::memcpy(&f, t.bytes.data() + 4 * index, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, t.bytes.data() + 2 * index, 2);
  return t.dtype == "F16" ? cpu::fp16_to_float(h) : cpu::bf16_to_float(h);
}

void check_scales_finite(const stored_tensor& t, const std::string& source) {
  const std::size_t n = t.bytes.size() / safetensors_dtype_bytes(t.dtype);
  for (std::size_t k = 0; k < n; ++k) {
    if (!std::isfinite(scale_at(t, k))) {
      fail(source, t, "holds a non-finite scale at element " + std::to_string(k));
    }
  }
}

int int_of(std::int64_t v, const stored_tensor& t, const std::string& source) {
  if (v > std::numeric_limits<int>::max()) fail(source, t, "is too large: " + shape_text(t.shape));
  return static_cast<int>(v);
}

}  // namespace

dequantized_linear dequantize_awq(const stored_tensor& qweight, const stored_tensor& qzeros,
                                  const stored_tensor& scales, int group_size,
                                  const std::string& source) {
  check_dtype(qweight, {"I32"}, source);
  check_dtype(qzeros, {"I32"}, source);
  check_dtype(scales, {"F16", "BF16", "F32"}, source);
  check_rank2(qweight, source);
  const std::int64_t in = qweight.shape[0], out8 = qweight.shape[1], out = out8 * 8;
  if (group_size <= 0 || in % group_size != 0) {
    fail(source, qweight,
         "has " + std::to_string(in) + " input rows, not a multiple of the AWQ group size " +
             std::to_string(group_size));
  }
  const std::int64_t groups = in / group_size;
  check_shape(qzeros, {groups, out8},
              "([in / group_size, out / 8] for qweight " + shape_text(qweight.shape) + ")", source);
  check_shape(scales, {groups, out},
              "([in / group_size, out] for qweight " + shape_text(qweight.shape) + ")", source);
  check_scales_finite(scales, source);

  dequantized_linear l;
  l.out_features = int_of(out, qweight, source);
  l.in_features = int_of(in, qweight, source);
  l.weight.resize(static_cast<std::size_t>(out * in));
  for (std::int64_t i = 0; i < in; ++i) {
    const std::int64_t g = i / group_size;
    for (std::int64_t o = 0; o < out; ++o) {
      const int k = k_awq_nibble_of_column[static_cast<std::size_t>(o % 8)];
      const int q = nibble(word(qweight, static_cast<std::size_t>(i * out8 + o / 8)), k);
      const int z = nibble(word(qzeros, static_cast<std::size_t>(g * out8 + o / 8)), k);
      const float s = scale_at(scales, static_cast<std::size_t>(g * out + o));
      l.weight[static_cast<std::size_t>(o * in + i)] = s * static_cast<float>(q - z);
    }
  }
  return l;
}

dequantized_linear dequantize_gptq(const stored_tensor& qweight, const stored_tensor& qzeros,
                                   const stored_tensor& scales, const stored_tensor* g_idx,
                                   int group_size, gptq_zero_format zeros,
                                   const std::string& source) {
  check_dtype(qweight, {"I32"}, source);
  check_dtype(qzeros, {"I32"}, source);
  check_dtype(scales, {"F16", "BF16", "F32"}, source);
  check_rank2(qweight, source);
  check_rank2(scales, source);
  const std::int64_t in = qweight.shape[0] * 8, out = qweight.shape[1];
  const std::int64_t groups = scales.shape[0];
  if (out % 8 != 0) {
    fail(source, qweight,
         "has " + std::to_string(out) +
             " output columns; GPTQ packs qzeros by 8, so it must be a multiple of 8");
  }
  check_shape(scales, {groups, out},
              "([groups, out] for qweight " + shape_text(qweight.shape) + ")", source);
  check_shape(qzeros, {groups, out / 8},
              "([groups, out / 8] for scales " + shape_text(scales.shape) + ")", source);
  check_scales_finite(scales, source);
  std::vector<std::int64_t> group_of(static_cast<std::size_t>(in));
  if (g_idx) {
    check_dtype(*g_idx, {"I32", "I64"}, source);
    check_shape(*g_idx, {in}, "([in] for qweight " + shape_text(qweight.shape) + ")", source);
    for (std::int64_t i = 0; i < in; ++i) {
      std::int64_t g;
      if (g_idx->dtype == "I32") {
        std::int32_t v;
        std::memcpy(&v, g_idx->bytes.data() + 4 * i, 4);
        g = v;
      } else {
        std::memcpy(&g, g_idx->bytes.data() + 8 * i, 8);
      }
      if (g < 0 || g >= groups) {
        fail(source, *g_idx,
             "sends input row " + std::to_string(i) + " to group " + std::to_string(g) +
                 "; scales has " + std::to_string(groups) + " groups");
      }
      group_of[static_cast<std::size_t>(i)] = g;
    }
  } else {
    const std::int64_t want = group_size <= 0 ? 1 : (in + group_size - 1) / group_size;
    if (groups != want) {
      fail(source, scales,
           "has " + std::to_string(groups) + " groups; " + std::to_string(in) +
               " input rows in groups of " +
               (group_size <= 0 ? std::string("all rows") : std::to_string(group_size)) + " make " +
               std::to_string(want) + " (without g_idx)");
    }
    for (std::int64_t i = 0; i < in; ++i) {
      group_of[static_cast<std::size_t>(i)] = group_size <= 0 ? 0 : i / group_size;
    }
  }

  const int zero_offset = zeros == gptq_zero_format::v1 ? 1 : 0;
  dequantized_linear l;
  l.out_features = int_of(out, qweight, source);
  l.in_features = int_of(in, qweight, source);
  l.weight.resize(static_cast<std::size_t>(out * in));
  for (std::int64_t i = 0; i < in; ++i) {
    const std::int64_t g = group_of[static_cast<std::size_t>(i)];
    for (std::int64_t o = 0; o < out; ++o) {
      const int q = nibble(word(qweight, static_cast<std::size_t>((i / 8) * out + o)),
                           static_cast<int>(i % 8));
      const int z = nibble(word(qzeros, static_cast<std::size_t>(g * (out / 8) + o / 8)),
                           static_cast<int>(o % 8)) +
                    zero_offset;
      const float s = scale_at(scales, static_cast<std::size_t>(g * out + o));
      l.weight[static_cast<std::size_t>(o * in + i)] = s * static_cast<float>(q - z);
    }
  }
  return l;
}

dequantized_linear dequantize_hf_fp8(const stored_tensor& weight, const stored_tensor& scale,
                                     std::optional<std::array<int, 2>> block,
                                     const std::string& source) {
  if (weight.dtype == "F8_E5M2") {
    fail(source, weight, "has dtype F8_E5M2; fp8 weights are read as F8_E4M3 only");
  }
  check_dtype(weight, {"F8_E4M3"}, source);
  check_dtype(scale, {"F32", "BF16", "F16"}, source);
  check_rank2(weight, source);
  check_scales_finite(scale, source);
  const std::int64_t out = weight.shape[0], in = weight.shape[1];
  std::int64_t n_scale = 1;
  for (const auto d : scale.shape) n_scale *= d;
  // Which scale each element takes: per tensor, per output row, or per [bo][bi] block.
  std::int64_t bo = out, bi = in;  // per tensor: one block covering everything
  if (block) {
    const auto [r, c] = *block;
    if (r < 1 || c < 1) fail(source, scale, "weight_block_size must be positive");
    bo = r;
    bi = c;
    check_shape(scale, {(out + r - 1) / r, (in + c - 1) / c},
                "(one scale per " + std::to_string(r) + " x " + std::to_string(c) +
                    " block of weight " + shape_text(weight.shape) + ")",
                source);
  } else if (n_scale == 1 && scale.shape.size() <= 2) {
    // per tensor: [], [1] or [1, 1]
  } else if (scale.shape == std::vector<std::int64_t>{out} ||
             scale.shape == std::vector<std::int64_t>{out, 1}) {
    bo = 1;
  } else {
    fail(source, scale,
         "has shape " + shape_text(scale.shape) + "; for weight " + shape_text(weight.shape) +
             " expected [] or [1] (per tensor), [" + std::to_string(out) + "] or [" +
             std::to_string(out) + ", 1] (per channel), or a block grid with weight_block_size");
  }
  const std::int64_t blocks_per_row = (in + bi - 1) / bi;
  dequantized_linear l;
  l.out_features = int_of(out, weight, source);
  l.in_features = int_of(in, weight, source);
  l.weight.resize(static_cast<std::size_t>(out * in));
  for (std::int64_t r = 0; r < out; ++r) {
    for (std::int64_t c = 0; c < in; ++c) {
      const std::uint8_t code = weight.bytes[static_cast<std::size_t>(r * in + c)];
      if ((code & 0x7f) == 0x7f) {
        fail(source, weight,
             "holds the NaN code 0x" + std::string(code == 0xff ? "ff" : "7f") + " at [" +
                 std::to_string(r) + ", " + std::to_string(c) + "]");
      }
      const float s = scale_at(scale, static_cast<std::size_t>((r / bo) * blocks_per_row + c / bi));
      l.weight[static_cast<std::size_t>(r * in + c)] = cpu::fp8_e4m3_to_float(code) * s;
    }
  }
  return l;
}

quantization_config read_quantization_config(const std::filesystem::path& json_file) {
  const std::string src = json_file.string();
  const json top = detail::parse_json(read_text_file(json_file), src, "the config");
  if (!top.is_object()) throw std::invalid_argument(src + ": not a JSON object");
  const bool nested = top.contains("quantization_config");
  const json& j = nested ? top["quantization_config"] : top;
  const std::string where = nested ? "quantization_config." : "";
  const auto fail_field = [&](const std::string& field, const std::string& what) {
    throw std::invalid_argument(src + ": " + where + field + " " + what);
  };
  if (!j.is_object()) fail_field("", "is not an object");
  quantization_config q;
  const auto method = j.find("quant_method");
  if (method == j.end() || !method->is_string()) {
    fail_field("quant_method", nested || top.contains("bits")
                                   ? "is missing (awq, gptq or fp8)"
                                   : "is missing: no quantization_config in this config.json");
  }
  q.method = method->get<std::string>();
  if (q.method != "awq" && q.method != "gptq" && q.method != "fp8") {
    fail_field("quant_method", "'" + printable(q.method, 32) + "' is not read (awq, gptq or fp8)");
  }
  const auto get_int = [&](const char* field, int fallback) {
    const auto it = j.find(field);
    if (it == j.end()) return fallback;
    if (!it->is_number_integer())
      fail_field(field, "must be an integer, got " + detail::quoted(*it));
    return it->get<int>();
  };
  if (q.method == "fp8") {
    if (const auto it = j.find("weight_block_size"); it != j.end() && !it->is_null()) {
      if (!it->is_array() || it->size() != 2 || !(*it)[0].is_number_integer() ||
          !(*it)[1].is_number_integer() || (*it)[0].get<int>() < 1 || (*it)[1].get<int>() < 1) {
        fail_field("weight_block_size",
                   "must be [rows, cols] of positive integers, got " + detail::quoted(*it));
      }
      q.fp8_block = std::array<int, 2>{(*it)[0].get<int>(), (*it)[1].get<int>()};
    }
    return q;
  }
  q.bits = get_int(j.contains("w_bit") ? "w_bit" : "bits", 4);
  if (q.bits != 4) fail_field("bits", std::to_string(q.bits) + " is not read (4 only)");
  q.group_size = get_int(j.contains("q_group_size") ? "q_group_size" : "group_size", 128);
  if (q.method == "awq") {
    if (q.group_size <= 0) fail_field("group_size", "must be positive for AWQ");
    if (const auto it = j.find("version"); it != j.end()) {
      const std::string v = it->is_string() ? it->get<std::string>() : detail::quoted(*it);
      if (v != "gemm" && v != "GEMM") {
        fail_field("version", "'" + printable(v, 32) +
                                  "' is not read (AWQ's gemm layout only; gemv packs differently)");
      }
    }
    if (const auto it = j.find("zero_point");
        it != j.end() && !(it->is_boolean() && it->get<bool>())) {
      fail_field("zero_point", "must be true (AWQ without zero points is not read)");
    }
    return q;
  }
  if (q.group_size == 0 || q.group_size < -1) {
    fail_field("group_size", std::to_string(q.group_size) + " must be positive or -1");
  }
  if (const auto it = j.find("desc_act"); it != j.end()) {
    if (!it->is_boolean()) fail_field("desc_act", "must be true or false");
    q.desc_act = it->get<bool>();
  }
  if (const auto it = j.find("checkpoint_format"); it != j.end()) {
    const std::string f = it->is_string() ? it->get<std::string>() : detail::quoted(*it);
    if (f == "gptq") {
      q.gptq_zeros = gptq_zero_format::v1;
    } else if (f == "gptq_v2") {
      q.gptq_zeros = gptq_zero_format::v2;
    } else {
      fail_field("checkpoint_format", "'" + printable(f, 32) +
                                          "' is not read (gptq or gptq_v2; marlin and others "
                                          "repack the weights)");
    }
  }
  return q;
}

dequantized_linear read_quantized_linear(safetensors_reader& r, const std::string& prefix,
                                         const quantization_config& q) {
  const auto get = [&](const std::string& name, bool required) -> std::optional<stored_tensor> {
    const safetensors_tensor* t = r.find(name);
    if (!t) {
      if (required) r.missing(name);
      return std::nullopt;
    }
    return stored_tensor{name, t->dtype, t->shape, r.read_bytes(name)};
  };
  if (q.method == "fp8") {
    const auto w = get(prefix + ".weight", true);
    auto s = get(prefix + ".weight_scale_inv", false);
    if (!s) s = get(prefix + ".weight_scale", true);
    return dequantize_hf_fp8(*w, *s, q.fp8_block, r.file_of(prefix + ".weight").string());
  }
  const auto qweight = get(prefix + ".qweight", true);
  const auto qzeros = get(prefix + ".qzeros", true);
  const auto scales = get(prefix + ".scales", true);
  const std::string source = r.file_of(prefix + ".qweight").string();
  if (q.method == "awq") return dequantize_awq(*qweight, *qzeros, *scales, q.group_size, source);
  const auto g_idx = get(prefix + ".g_idx", q.desc_act);
  return dequantize_gptq(*qweight, *qzeros, *scales, g_idx ? &*g_idx : nullptr, q.group_size,
                         q.gptq_zeros, source);
}

namespace {

// quant.hpp's int4_group layout: element c of a row is nibble c % 8 of word c / 8 (little-endian).
void put_nibble(std::vector<std::uint8_t>& words, std::size_t word_base, std::size_t i, int v) {
  std::uint8_t& b = words[(word_base + i / 8) * 4 + (i % 8) / 2];
  const int shift = 4 * static_cast<int>(i % 2);
  b = static_cast<std::uint8_t>((b & ~(0xf << shift)) | ((v & 0xf) << shift));
}

cpu::quantized_matrix int4_shell(int out, int in, int group_size, const stored_tensor& t,
                                 const std::string& source) {
  if (group_size % 8 != 0 || in % group_size != 0) {
    fail(source, t,
         "has groups of " + std::to_string(group_size) + " over " + std::to_string(in) +
             " inputs, which the packed int4 layout cannot hold (whole groups, a multiple of 8; "
             "--weights bf16 runs it dequantized)");
  }
  cpu::quantized_matrix q;
  q.format = cpu::quant_format::int4_group;
  q.rows = out;
  q.cols = in;
  q.group_size = group_size;
  const std::size_t groups = static_cast<std::size_t>(in / group_size);
  q.data.assign(static_cast<std::size_t>(out) * static_cast<std::size_t>(in / 8) * 4, 0);
  q.scales.assign(static_cast<std::size_t>(out) * groups, 0.0f);
  q.zeros.assign(static_cast<std::size_t>(out) * ((groups + 7) / 8) * 4, 0);
  return q;
}

}  // namespace

cpu::quantized_matrix quantized_awq_codes(const stored_tensor& qweight, const stored_tensor& qzeros,
                                          const stored_tensor& scales, int group_size,
                                          const std::string& source) {
  // The dequantizer's checks (dtypes, shapes, finite scales) first.
  const dequantized_linear checked = dequantize_awq(qweight, qzeros, scales, group_size, source);
  const int out = checked.out_features, in = checked.in_features;
  const std::int64_t out8 = out / 8;
  cpu::quantized_matrix q = int4_shell(out, in, group_size, qweight, source);
  const std::size_t groups = static_cast<std::size_t>(in / group_size);
  const std::size_t zero_words = (groups + 7) / 8;
  for (std::int64_t i = 0; i < in; ++i) {
    for (std::int64_t o = 0; o < out; ++o) {
      const int k = k_awq_nibble_of_column[static_cast<std::size_t>(o % 8)];
      put_nibble(q.data, static_cast<std::size_t>(o) * static_cast<std::size_t>(in / 8),
                 static_cast<std::size_t>(i),
                 nibble(word(qweight, static_cast<std::size_t>(i * out8 + o / 8)), k));
    }
  }
  for (std::size_t g = 0; g < groups; ++g) {
    for (std::int64_t o = 0; o < out; ++o) {
      const int k = k_awq_nibble_of_column[static_cast<std::size_t>(o % 8)];
      const auto row = static_cast<std::size_t>(o);
      q.scales[row * groups + g] = scale_at(scales, g * static_cast<std::size_t>(out) + row);
      put_nibble(q.zeros, row * zero_words, g,
                 nibble(word(qzeros, g * static_cast<std::size_t>(out8) + row / 8), k));
    }
  }
  return q;
}

cpu::quantized_matrix quantized_gptq_codes(const stored_tensor& qweight,
                                           const stored_tensor& qzeros,
                                           const stored_tensor& scales,
                                           const stored_tensor* g_idx, int group_size,
                                           gptq_zero_format zeros, const std::string& source) {
  const dequantized_linear checked =
      dequantize_gptq(qweight, qzeros, scales, g_idx, group_size, zeros, source);
  const int out = checked.out_features, in = checked.in_features;
  const int G = group_size <= 0 ? in : group_size;
  if (g_idx) {
    for (std::int64_t i = 0; i < in; ++i) {
      std::int64_t g;
      if (g_idx->dtype == "I32") {
        std::int32_t v;
        std::memcpy(&v, g_idx->bytes.data() + 4 * i, 4);
        g = v;
      } else {
        std::memcpy(&g, g_idx->bytes.data() + 8 * i, 8);
      }
      if (g != i / G) {
        fail(source, *g_idx,
             "sends input row " + std::to_string(i) + " to group " + std::to_string(g) +
                 " (act-order); the packed int4 layout needs groups of consecutive rows "
                 "(--weights bf16 runs it dequantized)");
      }
    }
  }
  cpu::quantized_matrix q = int4_shell(out, in, G, qweight, source);
  const std::size_t groups = static_cast<std::size_t>(in / G);
  const std::size_t zero_words = (groups + 7) / 8;
  const int zero_offset = zeros == gptq_zero_format::v1 ? 1 : 0;
  for (std::int64_t i = 0; i < in; ++i) {
    for (std::int64_t o = 0; o < out; ++o) {
      put_nibble(q.data, static_cast<std::size_t>(o) * static_cast<std::size_t>(in / 8),
                 static_cast<std::size_t>(i),
                 nibble(word(qweight, static_cast<std::size_t>((i / 8) * out + o)),
                        static_cast<int>(i % 8)));
    }
  }
  for (std::size_t g = 0; g < groups; ++g) {
    for (std::int64_t o = 0; o < out; ++o) {
      const auto row = static_cast<std::size_t>(o);
      const int z = nibble(word(qzeros, g * static_cast<std::size_t>(out / 8) + row / 8),
                           static_cast<int>(o % 8)) +
                    zero_offset;
      if (z > 15) {
        fail(source, qzeros,
             "holds the zero point 16 (a stored 15 in checkpoint_format gptq) for output " +
                 std::to_string(o) + ", group " + std::to_string(g) +
                 "; the packed int4 layout holds 0 ... 15 (--weights bf16 runs it dequantized)");
      }
      q.scales[row * groups + g] = scale_at(scales, g * static_cast<std::size_t>(out) + row);
      put_nibble(q.zeros, row * zero_words, g, z);
    }
  }
  return q;
}

cpu::quantized_matrix quantized_hf_fp8_codes(const stored_tensor& weight,
                                             const stored_tensor& scale,
                                             std::optional<std::array<int, 2>> block,
                                             const std::string& source) {
  const dequantized_linear checked = dequantize_hf_fp8(weight, scale, block, source);
  if (block) {
    fail(source, scale,
         "holds block-wise scales (weight_block_size); the engine's fp8 weights take one scale "
         "per output channel (--weights bf16 runs them dequantized)");
  }
  const int out = checked.out_features, in = checked.in_features;
  std::int64_t n_scale = 1;
  for (const auto d : scale.shape) n_scale *= d;
  cpu::quantized_matrix q;
  q.format = cpu::quant_format::fp8_e4m3_channel;
  q.rows = out;
  q.cols = in;
  q.data = weight.bytes;
  q.scales.resize(static_cast<std::size_t>(out));
  for (int r = 0; r < out; ++r) {
    q.scales[static_cast<std::size_t>(r)] =
        scale_at(scale, n_scale == 1 ? 0 : static_cast<std::size_t>(r));
  }
  return q;
}

cpu::quantized_matrix read_quantized_linear_codes(safetensors_reader& r, const std::string& prefix,
                                                  const quantization_config& q) {
  const auto get = [&](const std::string& name, bool required) -> std::optional<stored_tensor> {
    const safetensors_tensor* t = r.find(name);
    if (!t) {
      if (required) r.missing(name);
      return std::nullopt;
    }
    return stored_tensor{name, t->dtype, t->shape, r.read_bytes(name)};
  };
  if (q.method == "fp8") {
    const auto w = get(prefix + ".weight", true);
    auto s = get(prefix + ".weight_scale_inv", false);
    if (!s) s = get(prefix + ".weight_scale", true);
    return quantized_hf_fp8_codes(*w, *s, q.fp8_block, r.file_of(prefix + ".weight").string());
  }
  const auto qweight = get(prefix + ".qweight", true);
  const auto qzeros = get(prefix + ".qzeros", true);
  const auto scales = get(prefix + ".scales", true);
  const std::string source = r.file_of(prefix + ".qweight").string();
  if (q.method == "awq") {
    return quantized_awq_codes(*qweight, *qzeros, *scales, q.group_size, source);
  }
  const auto g_idx = get(prefix + ".g_idx", q.desc_act);
  return quantized_gptq_codes(*qweight, *qzeros, *scales, g_idx ? &*g_idx : nullptr,
                              q.group_size, q.gptq_zeros, source);
}

}  // namespace ridgeline
