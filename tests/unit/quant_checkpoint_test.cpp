// AWQ, GPTQ (with and without g_idx, "gptq" and "gptq_v2" zeros) and Hugging Face fp8 checkpoints
// built from known integer codes by the test writer (tests/support/quant_checkpoint_writer.hpp),
// read back by engine/quant_checkpoint.hpp and compared bit for bit with the writer's reference;
// then each malformed shape, dtype and config gives one line naming the file and the tensor.
//   build-quant/tests/ridgeline_unit_tests --gtest_filter='QuantCheckpoint*'
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../support/quant_checkpoint_writer.hpp"
#include "../support/temp_dir.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/engine/quant_checkpoint.hpp"

using namespace ridgeline;
namespace fs = std::filesystem;
namespace t = ridgeline::test;

namespace {

struct temp_dir : t::temp_dir {
  temp_dir() : t::temp_dir("quant_ckpt_test") {}
  fs::path text(const std::string& name, const std::string& content) const {
    std::ofstream(path / name) << content;
    return path / name;
  }
};

const std::string k_prefix = "model.layers.0.self_attn.q_proj";

void expect_bitwise(const dequantized_linear& got, const std::vector<float>& want, int out,
                    int in) {
  ASSERT_EQ(got.out_features, out);
  ASSERT_EQ(got.in_features, in);
  ASSERT_EQ(got.weight.size(), want.size());
  for (std::size_t k = 0; k < want.size(); ++k) {
    ASSERT_EQ(std::bit_cast<std::uint32_t>(got.weight[k]), std::bit_cast<std::uint32_t>(want[k]))
        << "[" << k / std::size_t(in) << ", " << k % std::size_t(in) << "]: " << got.weight[k]
        << " vs " << want[k];
  }
}

// Writes config.json + model.safetensors and reads the layer back through the config.
dequantized_linear round_trip(const temp_dir& dir, const std::string& config_text,
                              const std::vector<t::st_tensor>& tensors) {
  dir.text("config.json", R"({"architectures": ["LlamaForCausalLM"], "quantization_config": )" +
                              config_text + "}");
  t::write_safetensors(dir.path / "model.safetensors", tensors);
  const quantization_config q = read_quantization_config(dir.path / "config.json");
  safetensors_reader r(dir.path, safetensors_dtypes::any);
  return read_quantized_linear(r, k_prefix, q);
}

// The one line of the std::invalid_argument that f throws.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

void expect_line(const std::string& what, const std::string& fragment) {
  EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  EXPECT_NE(what.find(fragment), std::string::npos) << what;
}

}  // namespace

TEST(QuantCheckpoint, AwqPackOrderFromTheSpec) {
  // Output columns 0..7 holding codes 0..7: AWQ's order {0, 2, 4, 6, 1, 3, 5, 7} puts column
  // order[k] in nibble k, so the word reads 0x75316420 (nibble 7 first).
  t::int4_case c = t::make_int4_case(8, 128, 128, false, 1);
  for (int o = 0; o < 8; ++o) {
    for (int i = 0; i < 128; ++i) c.q[std::size_t(o) * 128 + i] = o;
  }
  const auto ts = t::pack_awq(c, "x");
  std::uint32_t w0;
  std::memcpy(&w0, ts[0].bytes.data(), 4);
  EXPECT_EQ(w0, 0x75316420u);
  const auto l = dequantize_awq({"q", ts[0].dtype, ts[0].shape, ts[0].bytes},
                                {"z", ts[1].dtype, ts[1].shape, ts[1].bytes},
                                {"s", ts[2].dtype, ts[2].shape, ts[2].bytes}, 128, "mem");
  expect_bitwise(l, t::int4_reference(c), 8, 128);
  for (std::size_t k = 0; k < 8; ++k)
    EXPECT_EQ(k_awq_pack_order[k_awq_nibble_of_column[k]], int(k));
}

TEST(QuantCheckpoint, AwqMatchesTheReference) {
  temp_dir dir;
  for (const auto& [out, in] : {std::pair{24, 256}, std::pair{8, 128}, std::pair{72, 384}}) {
    const t::int4_case c = t::make_int4_case(out, in, 128, false, 7 + out);
    const auto l = round_trip(
        dir,
        R"({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm", "zero_point": true})",
        t::pack_awq(c, k_prefix));
    expect_bitwise(l, t::int4_reference(c), out, in);
  }
  // group size 64, and the field names of llm-awq's own config (w_bit, q_group_size).
  const t::int4_case c = t::make_int4_case(16, 192, 64, false, 3);
  const auto l = round_trip(dir, R"({"quant_method": "awq", "w_bit": 4, "q_group_size": 64})",
                            t::pack_awq(c, k_prefix));
  expect_bitwise(l, t::int4_reference(c), 16, 192);
}

TEST(QuantCheckpoint, GptqWithoutGIdx) {
  temp_dir dir;
  // "gptq" (v1) stores z - 1, so its zero points are 1..15; v2 covers 0..15.
  const t::int4_case c1 = t::make_int4_case(32, 256, 128, false, 5, 1);
  expect_bitwise(round_trip(dir, R"({"quant_method": "gptq", "bits": 4, "group_size": 128,
                                     "desc_act": false, "sym": false})",
                            t::pack_gptq(c1, k_prefix, false, false)),
                 t::int4_reference(c1), 32, 256);
  const t::int4_case c2 = t::make_int4_case(40, 200, 32, false, 6, 0);  // 7 groups, last ragged
  expect_bitwise(round_trip(dir, R"({"quant_method": "gptq", "bits": 4, "group_size": 32,
                                     "checkpoint_format": "gptq_v2"})",
                            t::pack_gptq(c2, k_prefix, false, true)),
                 t::int4_reference(c2), 40, 200);
  // group_size -1: one group for all input rows; a trivial g_idx present is read the same.
  const t::int4_case c3 = t::make_int4_case(8, 64, -1, false, 8, 1);
  expect_bitwise(round_trip(dir, R"({"quant_method": "gptq", "bits": 4, "group_size": -1})",
                            t::pack_gptq(c3, k_prefix, true, false)),
                 t::int4_reference(c3), 8, 64);
}

TEST(QuantCheckpoint, GptqWithActOrderGIdx) {
  temp_dir dir;
  const t::int4_case c = t::make_int4_case(24, 384, 128, true, 9, 1);
  // The shuffled g_idx really reorders: reading it as i / 128 would differ.
  bool reordered = false;
  for (int i = 0; i < c.in; ++i) reordered |= c.g_idx[std::size_t(i)] != i / 128;
  ASSERT_TRUE(reordered);
  const auto l = round_trip(dir, R"({"quant_method": "gptq", "bits": 4, "group_size": 128,
                                     "desc_act": true, "checkpoint_format": "gptq"})",
                            t::pack_gptq(c, k_prefix, true, false));
  expect_bitwise(l, t::int4_reference(c), 24, 384);
  t::int4_case plain = c;
  for (int i = 0; i < c.in; ++i) plain.g_idx[std::size_t(i)] = i / 128;
  EXPECT_NE(l.weight, t::int4_reference(plain));
  // desc_act without g_idx in the file: the missing tensor is named.
  expect_line(error_of([&] {
                (void)round_trip(dir, R"({"quant_method": "gptq", "bits": 4, "desc_act": true})",
                                 t::pack_gptq(c, k_prefix, false, false));
              }),
              "missing tensor " + k_prefix + ".g_idx");
}

TEST(QuantCheckpoint, Fp8PerTensorChannelAndBlock) {
  temp_dir dir;
  for (const char* kind : {"tensor", "tensor1", "channel", "channel2"}) {
    SCOPED_TRACE(kind);
    const t::fp8_case c = t::make_fp8_case(37, 53, kind, 2);
    expect_bitwise(round_trip(dir, R"({"quant_method": "fp8", "activation_scheme": "dynamic"})",
                              t::pack_fp8(c, k_prefix)),
                   t::fp8_reference(c), 37, 53);
  }
  // DeepSeek-style 128 x 128 blocks with ragged edges, scale named weight_scale_inv.
  const t::fp8_case b = t::make_fp8_case(200, 300, "block", 4);
  expect_bitwise(round_trip(dir, R"({"quant_method": "fp8", "weight_block_size": [128, 128]})",
                            t::pack_fp8(b, k_prefix, ".weight_scale_inv")),
                 t::fp8_reference(b), 200, 300);
  // Every e4m3 code but NaN, against the writer's own decoder.
  t::fp8_case all = t::make_fp8_case(1, 254, "tensor", 1);
  int k = 0;
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) != 0x7f) all.codes[std::size_t(k++)] = std::uint8_t(code);
  }
  all.scales[0] = 1.0f;
  expect_bitwise(round_trip(dir, R"({"quant_method": "fp8"})", t::pack_fp8(all, k_prefix)),
                 t::fp8_reference(all), 1, 254);
  EXPECT_EQ(t::e4m3_value(0x7e), 448.0f);
  EXPECT_EQ(t::e4m3_value(0x01), 0.001953125f);
}

TEST(QuantCheckpoint, MalformedTensorsGiveOneLine) {
  const t::int4_case c = t::make_int4_case(16, 256, 128, false, 1, 1);
  const auto awq = t::pack_awq(c, "l");
  const auto gptq = t::pack_gptq(c, "l", true, false);
  const auto st = [](const t::st_tensor& x) {
    return stored_tensor{x.name, x.dtype, x.shape, x.bytes};
  };
  // AWQ: qweight as F16, qzeros of the wrong shape, in not a multiple of the group.
  auto bad = st(awq[0]);
  bad.dtype = "F16";
  bad.shape = {256, 4};
  expect_line(error_of([&] { dequantize_awq(bad, st(awq[1]), st(awq[2]), 128, "f.safetensors"); }),
              "f.safetensors: tensor 'l.qweight' has dtype F16; the format stores it as I32");
  auto zeros = st(awq[1]);
  zeros.shape = {2, 1};
  zeros.bytes.resize(8);
  expect_line(
      error_of([&] { dequantize_awq(st(awq[0]), zeros, st(awq[2]), 128, "f.safetensors"); }),
      "tensor 'l.qzeros' has shape [2, 1]; expected [2, 2]");
  expect_line(
      error_of([&] { dequantize_awq(st(awq[0]), st(awq[1]), st(awq[2]), 96, "f.safetensors"); }),
      "has 256 input rows, not a multiple of the AWQ group size 96");
  auto scales = st(awq[2]);
  scales.dtype = "I32";
  scales.bytes.resize(scales.bytes.size() * 2);
  expect_line(error_of([&] { dequantize_awq(st(awq[0]), st(awq[1]), scales, 128, "f"); }),
              "tensor 'l.scales' has dtype I32; the format stores it as F16 or BF16 or F32");
  auto short_bytes = st(awq[0]);
  short_bytes.bytes.pop_back();
  expect_line(error_of([&] { dequantize_awq(short_bytes, st(awq[1]), st(awq[2]), 128, "f"); }),
              "holds 2047 bytes but I32 [256, 2] needs 2048");

  // GPTQ: scales with the wrong group count, g_idx out of range, g_idx of the wrong length.
  expect_line(error_of([&] {
                dequantize_gptq(st(gptq[0]), st(gptq[1]), st(gptq[2]), nullptr, 64,
                                gptq_zero_format::v1, "f");
              }),
              "tensor 'l.scales' has 2 groups; 256 input rows in groups of 64 make 4");
  auto g = st(gptq[3]);
  const std::int32_t two = 2;
  std::memcpy(g.bytes.data() + 4 * 5, &two, 4);
  expect_line(error_of([&] {
                dequantize_gptq(st(gptq[0]), st(gptq[1]), st(gptq[2]), &g, 128,
                                gptq_zero_format::v1, "f");
              }),
              "tensor 'l.g_idx' sends input row 5 to group 2; scales has 2 groups");
  auto g_short = st(gptq[3]);
  g_short.shape = {255};
  g_short.bytes.resize(255 * 4);
  expect_line(error_of([&] {
                dequantize_gptq(st(gptq[0]), st(gptq[1]), st(gptq[2]), &g_short, 128,
                                gptq_zero_format::v1, "f");
              }),
              "tensor 'l.g_idx' has shape [255]; expected [256]");
  auto q_rank = st(gptq[0]);
  q_rank.shape = {32 * 16};
  expect_line(error_of([&] {
                dequantize_gptq(q_rank, st(gptq[1]), st(gptq[2]), nullptr, 128,
                                gptq_zero_format::v1, "f");
              }),
              "tensor 'l.qweight' has shape [512]; expected 2 non-zero dims");

  // fp8: E5M2 weights, a scale of a shape that fits nothing, a NaN code, a non-finite scale.
  const t::fp8_case f = t::make_fp8_case(8, 16, "channel", 3);
  const auto fp8 = t::pack_fp8(f, "l");
  auto e5 = st(fp8[0]);
  e5.dtype = "F8_E5M2";
  expect_line(error_of([&] { dequantize_hf_fp8(e5, st(fp8[1]), std::nullopt, "f"); }),
              "tensor 'l.weight' has dtype F8_E5M2; fp8 weights are read as F8_E4M3 only");
  auto odd = st(fp8[1]);
  odd.shape = {4, 2};
  expect_line(error_of([&] { dequantize_hf_fp8(st(fp8[0]), odd, std::nullopt, "f"); }),
              "tensor 'l.weight_scale' has shape [4, 2]; for weight [8, 16] expected [] or [1]");
  expect_line(error_of([&] {
                dequantize_hf_fp8(st(fp8[0]), st(fp8[1]), std::array{128, 128}, "f");
              }),
              "has shape [8]; expected [1, 1] (one scale per 128 x 128 block of weight [8, 16])");
  auto nan = st(fp8[0]);
  nan.bytes[17] = 0xff;
  expect_line(error_of([&] { dequantize_hf_fp8(nan, st(fp8[1]), std::nullopt, "f"); }),
              "tensor 'l.weight' holds the NaN code 0xff at [1, 1]");
  auto inf = st(fp8[1]);
  const float infinity = std::numeric_limits<float>::infinity();
  std::memcpy(inf.bytes.data() + 4 * 3, &infinity, 4);
  expect_line(error_of([&] { dequantize_hf_fp8(st(fp8[0]), inf, std::nullopt, "f"); }),
              "tensor 'l.weight_scale' holds a non-finite scale at element 3");
}

TEST(QuantCheckpoint, ConfigErrorsNameTheField) {
  temp_dir dir;
  const auto config_error = [&](const std::string& qc) {
    const fs::path p = dir.text("config.json", R"({"quantization_config": )" + qc + "}");
    return error_of([&] { (void)read_quantization_config(p); });
  };
  expect_line(config_error(R"({"quant_method": "gptq", "bits": 8})"),
              "config.json: quantization_config.bits 8 is not read (4 only)");
  expect_line(config_error(R"({"quant_method": "awq", "version": "gemv"})"),
              "quantization_config.version 'gemv' is not read");
  expect_line(config_error(R"({"quant_method": "gptq", "checkpoint_format": "marlin"})"),
              "quantization_config.checkpoint_format 'marlin' is not read");
  expect_line(config_error(R"({"quant_method": "bitsandbytes"})"),
              "quantization_config.quant_method 'bitsandbytes' is not read (awq, gptq or fp8)");
  expect_line(config_error(R"({"quant_method": "gptq", "group_size": "128"})"),
              "quantization_config.group_size must be an integer, got \"128\"");
  expect_line(config_error(R"({"quant_method": "fp8", "weight_block_size": [128]})"),
              "quantization_config.weight_block_size must be [rows, cols] of positive integers");
  const fs::path plain = dir.text("config.json", R"({"architectures": ["LlamaForCausalLM"]})");
  expect_line(error_of([&] { (void)read_quantization_config(plain); }),
              "quant_method is missing: no quantization_config in this config.json");
  // quantize_config.json (AutoGPTQ's own file) is read at its top level.
  const fs::path qc = dir.text("quantize_config.json",
                               R"({"bits": 4, "group_size": 64, "desc_act": true,
                                   "quant_method": "gptq", "checkpoint_format": "gptq_v2"})");
  const quantization_config q = read_quantization_config(qc);
  EXPECT_EQ(q.method, "gptq");
  EXPECT_EQ(q.group_size, 64);
  EXPECT_TRUE(q.desc_act);
  EXPECT_EQ(q.gptq_zeros, gptq_zero_format::v2);
}

TEST(QuantCheckpoint, FloatOnlyReaderStillRefusesIntDtypes) {
  // The bf16 checkpoint path keeps its strict header; the quantized readers opt in to any dtype.
  temp_dir dir;
  const t::int4_case c = t::make_int4_case(8, 128, 128, false, 1);
  t::write_safetensors(dir.path / "model.safetensors", t::pack_awq(c, "l"));
  expect_line(error_of([&] { safetensors_reader r(dir.path); }),
              "has dtype I32; ridgeline reads BF16, F16 and F32");
  safetensors_reader any(dir.path, safetensors_dtypes::any);
  std::vector<bf16_bits> dst(1024);
  expect_line(error_of([&] { any.read("l.qweight", dst.data()); }),
              "tensor 'l.qweight' has dtype I32; ridgeline reads BF16, F16 and F32");
  expect_line(error_of([&] {
                (void)parse_safetensors_header(
                    R"({"x":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", 1, "h",
                    safetensors_dtypes::any);
              }),
              "h: tensor 'x' has dtype Q4; not a safetensors dtype");
}
