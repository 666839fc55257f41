// The GGUF reader (engine/gguf.hpp): small files written here by a tiny writer of the test's own,
// read back (metadata of every value type, tensors of every supported ggml type, the Llama
// parameters), and one test per malformed-file error.
//   build-quant/tests/ridgeline_unit_tests --gtest_filter='Gguf*'
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "../support/temp_dir.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/engine/gguf.hpp"
#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/quant.hpp"

using namespace ridgeline;
namespace fs = std::filesystem;
namespace t = ridgeline::test;

namespace {

// Builds a GGUF file byte by byte, independently of the reader.
struct writer {
  std::string b;
  template <class T>
  void put(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void str(const std::string& s) {
    put<std::uint64_t>(s.size());
    b += s;
  }
  void header(std::uint64_t tensors, std::uint64_t kvs, std::uint32_t version = 3) {
    put<std::uint32_t>(0x46554747);
    put<std::uint32_t>(version);
    put<std::uint64_t>(tensors);
    put<std::uint64_t>(kvs);
  }
  void kv_u32(const std::string& k, std::uint32_t v) {
    str(k);
    put<std::uint32_t>(4);
    put(v);
  }
  void kv_str(const std::string& k, const std::string& v) {
    str(k);
    put<std::uint32_t>(8);
    str(v);
  }
  void tensor_info(const std::string& name, std::vector<std::uint64_t> dims, std::uint32_t type,
                   std::uint64_t offset) {
    str(name);
    put<std::uint32_t>(static_cast<std::uint32_t>(dims.size()));
    for (auto d : dims) put(d);
    put(type);
    put(offset);
  }
  void pad(std::size_t alignment) {
    while (b.size() % alignment) b += '\0';
  }
  void bytes(const void* p, std::size_t n) { b.append(static_cast<const char*>(p), n); }
};

struct temp_dir : t::temp_dir {
  temp_dir() : t::temp_dir("gguf_test") {}
};

// A file with one tensor [2][32] of ggml type `type` holding `data`, minimal metadata.
std::string one_tensor_file(std::uint32_t type, const std::vector<std::uint8_t>& data,
                            std::vector<std::uint64_t> dims = {32, 2}, std::uint64_t offset = 0,
                            std::uint32_t version = 3) {
  writer w;
  w.header(1, 1, version);
  w.kv_str("general.architecture", "llama");
  w.tensor_info("t", dims, type, offset);
  w.pad(32);
  w.b.resize(w.b.size() + std::min<std::uint64_t>(offset, 4096), '\0');  // far offsets: cut
  w.bytes(data.data(), data.size());
  return w.b;
}

void expect_invalid(const fs::path& file, const std::string& fragment) {
  try {
    gguf_file f(file);
    FAIL() << "no throw for " << fragment;
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(file.string()), std::string::npos) << what;
    EXPECT_NE(what.find(fragment), std::string::npos) << what;
  }
}

std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace

TEST(Gguf, ReadsMetadataOfEveryTypeAndLlamaParams) {
  temp_dir dir;
  writer w;
  w.header(0, 20, 2);
  w.str("u8");
  w.put<std::uint32_t>(0);
  w.put<std::uint8_t>(200);
  w.str("i8");
  w.put<std::uint32_t>(1);
  w.put<std::int8_t>(-100);
  w.str("u16");
  w.put<std::uint32_t>(2);
  w.put<std::uint16_t>(60000);
  w.str("i16");
  w.put<std::uint32_t>(3);
  w.put<std::int16_t>(-30000);
  w.str("u32");
  w.put<std::uint32_t>(4);
  w.put<std::uint32_t>(4000000000u);
  w.str("i32");
  w.put<std::uint32_t>(5);
  w.put<std::int32_t>(-2000000000);
  w.str("f32");
  w.put<std::uint32_t>(6);
  w.put<float>(0.25f);
  w.str("yes");
  w.put<std::uint32_t>(7);
  w.put<std::uint8_t>(1);
  w.str("u64");
  w.put<std::uint32_t>(10);
  w.put<std::uint64_t>(1ULL << 60);
  w.str("i64");
  w.put<std::uint32_t>(11);
  w.put<std::int64_t>(-(1LL << 60));
  w.str("f64");
  w.put<std::uint32_t>(12);
  w.put<double>(-1e300);
  w.str("ints");
  w.put<std::uint32_t>(9);
  w.put<std::uint32_t>(5);
  w.put<std::uint64_t>(3);
  for (std::int32_t v : {7, -8, 9}) w.put(v);
  w.str("nested");
  w.put<std::uint32_t>(9);
  w.put<std::uint32_t>(9);
  w.put<std::uint64_t>(1);
  w.put<std::uint32_t>(7);
  w.put<std::uint64_t>(2);
  w.put<std::uint8_t>(0);
  w.put<std::uint8_t>(1);
  w.kv_str("general.architecture", "llama");
  w.kv_u32("llama.block_count", 2);
  w.str("llama.embedding_length");
  w.put<std::uint32_t>(11);
  w.put<std::int64_t>(64);
  w.kv_u32("llama.attention.head_count", 4);
  w.kv_u32("llama.feed_forward_length", 160);
  w.kv_u32("llama.context_length", 4096);
  // 20th: the tokens (head_count_kv and rope.freq_base are absent: their defaults apply)
  w.str("tokenizer.ggml.tokens");
  w.put<std::uint32_t>(9);
  w.put<std::uint32_t>(8);
  w.put<std::uint64_t>(3);
  for (const char* t : {"<s>", "", "h\xc3\xa9llo"}) w.str(t);
  const auto path = dir.write("meta.gguf", w.b);

  const gguf_file f(path);
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.metadata().size(), 20u);
  EXPECT_EQ(f.find("u8")->u, 200u);
  EXPECT_EQ(f.find("i8")->i, -100);
  EXPECT_EQ(f.find("u16")->u, 60000u);
  EXPECT_EQ(f.find("i16")->i, -30000);
  EXPECT_EQ(f.find("u32")->u, 4000000000u);
  EXPECT_EQ(f.find("i32")->i, -2000000000);
  EXPECT_EQ(f.find("f32")->f, 0.25);
  EXPECT_EQ(f.find("f32")->type, gguf_value_type::float32);
  EXPECT_TRUE(f.find("yes")->b);
  EXPECT_EQ(f.find("u64")->u, 1ULL << 60);
  EXPECT_EQ(f.find("i64")->i, -(1LL << 60));
  EXPECT_EQ(f.find("f64")->f, -1e300);
  const gguf_value& ints = *f.find("ints");
  ASSERT_EQ(ints.elements.size(), 3u);
  EXPECT_EQ(ints.element_type, gguf_value_type::int32);
  EXPECT_EQ(ints.elements[1].i, -8);
  const gguf_value& nested = *f.find("nested");
  ASSERT_EQ(nested.elements.size(), 1u);
  ASSERT_EQ(nested.elements[0].elements.size(), 2u);
  EXPECT_TRUE(nested.elements[0].elements[1].b);
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->elements[2].s, "h\xc3\xa9llo");
  EXPECT_EQ(f.find("absent"), nullptr);
  EXPECT_TRUE(f.tensors().empty());

  const gguf_llama_params p = read_gguf_llama_params(f);
  EXPECT_EQ(p.architecture, "llama");
  EXPECT_EQ(p.block_count, 2);
  EXPECT_EQ(p.embedding_length, 64);
  EXPECT_EQ(p.head_count, 4);
  EXPECT_EQ(p.head_count_kv, 4);
  EXPECT_EQ(p.feed_forward_length, 160);
  EXPECT_EQ(p.context_length, 4096);
  EXPECT_EQ(p.rope_freq_base, 10000.0);
  EXPECT_EQ(p.vocab_size, 3);
}

TEST(Gguf, LlamaParamsNameTheMissingKey) {
  temp_dir dir;
  writer w;
  w.header(0, 2);
  w.kv_str("general.architecture", "llama");
  w.kv_str("llama.block_count", "two");
  const gguf_file f(dir.write("m.gguf", w.b));
  try {
    (void)read_gguf_llama_params(f);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("llama.block_count must be an integer"), std::string::npos)
        << e.what();
  }
}

TEST(Gguf, LlamaParamsReadGqaAndRopeBase) {
  temp_dir dir;
  writer w;
  w.header(0, 9);
  w.kv_str("general.architecture", "mistral");
  w.kv_u32("mistral.block_count", 3);
  w.kv_u32("mistral.embedding_length", 128);
  w.kv_u32("mistral.attention.head_count", 8);
  w.kv_u32("mistral.attention.head_count_kv", 2);
  w.kv_u32("mistral.feed_forward_length", 384);
  w.kv_u32("mistral.context_length", 32768);
  w.str("mistral.rope.freq_base");
  w.put<std::uint32_t>(6);
  w.put<float>(1000000.0f);
  w.str("tokenizer.ggml.tokens");
  w.put<std::uint32_t>(9);
  w.put<std::uint32_t>(8);
  w.put<std::uint64_t>(5);
  for (const char* t : {"a", "b", "c", "d", "e"}) w.str(t);
  const gguf_llama_params p = read_gguf_llama_params(gguf_file(dir.write("m.gguf", w.b)));
  EXPECT_EQ(p.architecture, "mistral");
  EXPECT_EQ(p.block_count, 3);
  EXPECT_EQ(p.head_count, 8);
  EXPECT_EQ(p.head_count_kv, 2);
  EXPECT_EQ(p.feed_forward_length, 384);
  EXPECT_EQ(p.context_length, 32768);
  EXPECT_EQ(p.rope_freq_base, 1000000.0);
  EXPECT_EQ(p.vocab_size, 5);
}

TEST(Gguf, ReadsTensorsOfEverySupportedType) {
  temp_dir dir;
  const std::size_t rows = 3, cols = 64, n = rows * cols;
  const auto src = random_floats(n, 7);
  std::vector<std::uint16_t> f16(n), bf16(n);
  for (std::size_t k = 0; k < n; ++k) {
    f16[k] = cpu::float_to_fp16(src[k]);
    bf16[k] = cpu::float_to_bf16(src[k]);
  }
  const auto q8 = cpu::quantize(cpu::quant_format::q8_0, int(rows), int(cols), src);
  const auto q4 = cpu::quantize(cpu::quant_format::q4_0, int(rows), int(cols), src);

  struct item {
    std::string name;
    std::uint32_t type;
    const void* p;
    std::size_t bytes;
  };
  const std::vector<item> items = {{"f32", 0, src.data(), n * 4},
                                   {"f16", 1, f16.data(), n * 2},
                                   {"bf16", 30, bf16.data(), n * 2},
                                   {"q8_0", 8, q8.data.data(), q8.data.size()},
                                   {"q4_0", 2, q4.data.data(), q4.data.size()}};
  const std::uint64_t alignment = 64;
  writer w;
  w.header(items.size(), 1);
  w.kv_u32("general.alignment", alignment);
  std::uint64_t offset = 0;
  std::vector<std::uint64_t> offsets;
  for (const auto& it : items) {
    offsets.push_back(offset);
    w.tensor_info(it.name, {cols, rows}, it.type, offset);
    offset = (offset + it.bytes + alignment - 1) / alignment * alignment;
  }
  w.pad(alignment);
  const std::size_t data_start = w.b.size();
  for (std::size_t k = 0; k < items.size(); ++k) {
    w.b.resize(data_start + offsets[k], '\0');
    w.bytes(items[k].p, items[k].bytes);
  }
  const gguf_file f(dir.write("t.gguf", w.b));
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.data_offset(), data_start);
  ASSERT_EQ(f.tensors().size(), items.size());
  EXPECT_EQ(f.tensor("q8_0").dims, (std::vector<std::uint64_t>{cols, rows}));
  EXPECT_EQ(f.tensor("q4_0").bytes, rows * 2 * 18);
  EXPECT_EQ(f.tensor("f16").offset, offsets[1]);

  EXPECT_EQ(f.tensor_f32("f32"), src);
  const auto q8_ref = cpu::dequantize(q8.view());
  const auto q4_ref = cpu::dequantize(q4.view());
  const auto got_f16 = f.tensor_f32("f16"), got_bf16 = f.tensor_f32("bf16");
  const auto got_q8 = f.tensor_f32("q8_0"), got_q4 = f.tensor_f32("q4_0");
  for (std::size_t k = 0; k < n; ++k) {
    EXPECT_EQ(got_f16[k], cpu::fp16_to_float(f16[k])) << k;
    EXPECT_NEAR(got_f16[k], src[k], std::fabs(src[k]) * std::ldexp(1.0, -11) + 1e-7) << k;
    EXPECT_EQ(got_bf16[k], cpu::bf16_to_float(bf16[k])) << k;
    EXPECT_NEAR(got_bf16[k], src[k], std::fabs(src[k]) * std::ldexp(1.0, -8)) << k;
    EXPECT_EQ(got_q8[k], q8_ref[k]) << k;
    EXPECT_EQ(got_q4[k], q4_ref[k]) << k;
    // Loose per-format bounds (the exact ones are checked in quant_test): amax of a normal
    // block of 32 stays below 4.5 here, so q8_0's d < 0.036 and q4_0's |d| < 0.57.
    EXPECT_NEAR(got_q8[k], src[k], 0.018) << k;
    EXPECT_NEAR(got_q4[k], src[k], 0.57) << k;
  }
  EXPECT_THROW((void)f.tensor_f32("absent"), std::invalid_argument);
}

TEST(Gguf, UnreadableFileIsIoError) {
  temp_dir dir;
  EXPECT_THROW(gguf_file(dir.path / "missing.gguf"), io_error);
  EXPECT_THROW(gguf_file{dir.path}, io_error);  // a directory
}

TEST(Gguf, BadMagic) {
  temp_dir dir;
  auto b = one_tensor_file(0, std::vector<std::uint8_t>(256));
  b[0] = 'X';
  expect_invalid(dir.write("m.gguf", b), "bad magic");
}

TEST(Gguf, UnsupportedVersion) {
  temp_dir dir;
  const std::vector<std::uint8_t> data(256);
  expect_invalid(dir.write("v1.gguf", one_tensor_file(0, data, {32, 2}, 0, 1)),
                 "unsupported GGUF version 1");
  expect_invalid(dir.write("v4.gguf", one_tensor_file(0, data, {32, 2}, 0, 4)),
                 "unsupported GGUF version 4");
}

TEST(Gguf, EveryTruncationIsRejected) {
  temp_dir dir;
  const auto full = one_tensor_file(0, std::vector<std::uint8_t>(256, 1));
  EXPECT_NO_THROW(gguf_file(dir.write("full.gguf", full)));
  for (std::size_t len = 0; len < full.size(); ++len) {
    EXPECT_THROW(gguf_file(dir.write("cut.gguf", full.substr(0, len))), std::invalid_argument)
        << len;
  }
  expect_invalid(dir.write("cut.gguf", full.substr(0, 30)), "truncated file");
}

TEST(Gguf, TensorPastTheEndOfTheFile) {
  temp_dir dir;
  // 64 F32 elements need 256 bytes; the data region holds 255.
  expect_invalid(dir.write("short.gguf", one_tensor_file(0, std::vector<std::uint8_t>(255))),
                 "runs past the end of the file");
  // An offset far beyond the file.
  expect_invalid(
      dir.write(
          "far.gguf",
          one_tensor_file(0, std::vector<std::uint8_t>(256), {32, 2}, 1ULL << 40).substr(0, 400)),
      "runs past the end of the file");
}

TEST(Gguf, OverlappingTensors) {
  temp_dir dir;
  writer w;
  w.header(2, 0);
  w.tensor_info("a", {32, 2}, 0, 0);  // [0, 256)
  w.tensor_info("b", {32}, 0, 224);   // [224, 352)
  w.pad(32);
  w.b.resize(w.b.size() + 352, '\0');
  expect_invalid(dir.write("o.gguf", w.b), "overlap");
}

TEST(Gguf, DimsProductOverflow) {
  temp_dir dir;
  expect_invalid(dir.write("big.gguf", one_tensor_file(0, std::vector<std::uint8_t>(256),
                                                       {1ULL << 32, 1ULL << 32})),
                 "the product of its dims overflows");
}

TEST(Gguf, UnknownAndUnsupportedTypes) {
  temp_dir dir;
  expect_invalid(dir.write("unknown.gguf", one_tensor_file(99, std::vector<std::uint8_t>(256))),
                 "unknown ggml type 99");
  // Q4_K is recognised (256 elements in 144 bytes): the file opens, its data is refused by name.
  const gguf_file f(
      dir.write("q4k.gguf", one_tensor_file(12, std::vector<std::uint8_t>(144), {256})));
  EXPECT_EQ(f.tensor("t").type, ggml_type::q4_k);
  try {
    (void)f.tensor_f32("t");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("ggml type Q4_K, which is not supported"),
              std::string::npos)
        << e.what();
  }
  // ne[0] off the block of its type.
  expect_invalid(dir.write("odd.gguf", one_tensor_file(8, std::vector<std::uint8_t>(256), {33})),
                 "is not a multiple of Q8_0's block of 32");
}

TEST(Gguf, MisalignedOffsetAndBadAlignment) {
  temp_dir dir;
  expect_invalid(
      dir.write("mis.gguf", one_tensor_file(0, std::vector<std::uint8_t>(300), {32, 2}, 4)),
      "is not a multiple of the alignment 32");
  writer w;
  w.header(0, 1);
  w.kv_u32("general.alignment", 48);
  expect_invalid(dir.write("align.gguf", w.b), "general.alignment must be a uint32 power of two");
}
