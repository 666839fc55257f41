// GGUF files of the tiny Llama presets written by the independent test writer
// (tests/support/gguf_writer.hpp) in F32, F16, Q8_0 and Q4_0, read back by engine/gguf.hpp: the
// header, every metadata key, the tensor table and every tensor's values, which must equal the
// writer's own quantize-then-dequantize reference bit for bit. Then the malformed files (cut,
// wrong magic, mistyped metadata, data out of bounds, unsupported types): one line each.
//   build-quant/tests/ridgeline_unit_tests --gtest_filter='GgufWriter*'
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../support/gguf_writer.hpp"
#include "../support/temp_dir.hpp"
#include "ridgeline/engine/gguf.hpp"
#include "ridgeline/kernels/numeric.hpp"

using namespace ridgeline;
namespace fs = std::filesystem;
namespace t = ridgeline::test;

namespace {

struct temp_dir : t::temp_dir {
  temp_dir() : t::temp_dir("gguf_writer_test") {}
};

const char* type_name(std::uint32_t type) {
  switch (type) {
    case t::ggml::f32:
      return "F32";
    case t::ggml::f16:
      return "F16";
    case t::ggml::q8_0:
      return "Q8_0";
    case t::ggml::q4_0:
      return "Q4_0";
  }
  return "?";
}

// One line naming the file and containing `fragment`.
void expect_one_line(const std::string& what, const fs::path& file, const std::string& fragment) {
  EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  EXPECT_NE(what.find(file.string()), std::string::npos) << what;
  EXPECT_NE(what.find(fragment), std::string::npos) << what;
}

void expect_open_fails(const fs::path& file, const std::string& fragment) {
  try {
    const gguf_file f(file);
    FAIL() << "no error for " << file << " (expected: " << fragment << ")";
  } catch (const std::invalid_argument& e) {
    expect_one_line(e.what(), file, fragment);
  }
}

}  // namespace

TEST(GgufWriter, HalfCodecAgreesWithTheKernelsOne) {
  // Two independent fp16 codecs: every half decodes alike, and every decoded half (and the
  // midpoints between neighbours, the rounding ties) encodes alike.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float a = t::half_to_float(static_cast<std::uint16_t>(h));
    const float b = cpu::fp16_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(a) || std::isnan(b)) {
      EXPECT_TRUE(std::isnan(a) && std::isnan(b)) << h;
      continue;
    }
    ASSERT_EQ(std::bit_cast<std::uint32_t>(a), std::bit_cast<std::uint32_t>(b)) << h;
    ASSERT_EQ(t::half_from_float(a), cpu::float_to_fp16(a)) << h;
    if ((h & 0x7fff) < 0x7bff) {
      const float next = t::half_to_float(static_cast<std::uint16_t>(h + 1));
      const float mid = static_cast<float>((static_cast<double>(a) + next) / 2);
      ASSERT_EQ(t::half_from_float(mid), cpu::float_to_fp16(mid)) << h;
    }
  }
  EXPECT_EQ(t::half_from_float(65520.0f), 0x7c00);  // rounds past the largest half: infinity
  EXPECT_EQ(t::half_from_float(65504.0f), 0x7bff);
}

TEST(GgufWriter, TinyLlamaFilesLoadAndDequantizeExactly) {
  temp_dir dir;
  for (const char* preset : {"tiny", "tiny-mha"}) {
    const model_preset m = model_preset_by_name(preset);
    for (const std::uint32_t type : {t::ggml::f32, t::ggml::f16, t::ggml::q8_0, t::ggml::q4_0}) {
      for (const std::uint32_t version : {2u, 3u}) {
        SCOPED_TRACE(std::string(preset) + " " + type_name(type) + " v" + std::to_string(version));
        const t::tiny_llama_gguf g = t::make_tiny_llama_gguf(m, type, 11, version);
        const fs::path file = dir.path / (std::string(preset) + ".gguf");
        g.writer.write(file);

        const gguf_file f(file);
        EXPECT_EQ(f.version(), version);
        EXPECT_EQ(f.alignment(), 32u);
        EXPECT_EQ(f.data_offset(), g.writer.data_offset());
        EXPECT_EQ(f.file_bytes(), fs::file_size(file));
        EXPECT_EQ(f.metadata().size(), 31u);
        EXPECT_EQ(f.find("ridgeline.test.u64")->u, 18000000000000000000ULL);
        EXPECT_EQ(f.find("ridgeline.test.i64")->i, -9000000000000000000LL);
        EXPECT_EQ(f.find("ridgeline.test.i16")->i, -30000);
        EXPECT_EQ(f.find("ridgeline.test.f64")->f, -1.0e300);
        EXPECT_FALSE(f.find("ridgeline.test.false")->b);
        EXPECT_EQ(f.find("ridgeline.test.nested")->elements.at(2).elements.at(0).u, 255u);
        EXPECT_EQ(f.find("general.name")->s, m.name);
        EXPECT_EQ(f.find("tokenizer.ggml.scores")->elements.at(3).f, -0.75);
        EXPECT_EQ(f.find("tokenizer.ggml.token_type")->elements.at(0).i, 3);
        EXPECT_TRUE(f.find("tokenizer.ggml.add_bos_token")->b);

        const gguf_llama_params p = read_gguf_llama_params(f);
        EXPECT_EQ(p.architecture, "llama");
        EXPECT_EQ(p.block_count, m.layers);
        EXPECT_EQ(p.embedding_length, m.hidden);
        EXPECT_EQ(p.head_count, m.heads);
        EXPECT_EQ(p.head_count_kv, m.kv_heads);
        EXPECT_EQ(p.feed_forward_length, m.intermediate);
        EXPECT_EQ(p.context_length, m.max_context);
        EXPECT_EQ(p.vocab_size, m.vocab);

        ASSERT_EQ(f.tensors().size(), g.reference.size());
        EXPECT_EQ(f.tensors().size(), std::size_t(2 + 9 * m.layers + 1));
        for (const auto& info : f.tensors()) {
          SCOPED_TRACE(info.name);
          ASSERT_TRUE(g.reference.count(info.name));
          EXPECT_EQ(static_cast<std::uint32_t>(info.type), g.types.at(info.name));
          const std::vector<float> got = f.tensor_f32(info.name);
          const std::vector<float>& want = g.reference.at(info.name);
          ASSERT_EQ(got.size(), want.size());
          ASSERT_EQ(info.elements, want.size());
          for (std::size_t k = 0; k < got.size(); ++k) {
            ASSERT_EQ(std::bit_cast<std::uint32_t>(got[k]), std::bit_cast<std::uint32_t>(want[k]))
                << "element " << k << ": " << got[k] << " vs " << want[k];
          }
        }
        const auto& q = f.tensor("blk.0.attn_q.weight");
        EXPECT_EQ(q.dims, (std::vector<std::uint64_t>{std::uint64_t(m.hidden),
                                                      std::uint64_t(m.heads * m.head_dim)}));
        // tiny's intermediate (176) is not a multiple of 32: its ffn_down falls back to F16.
        if (std::string(preset) == "tiny" && (type == t::ggml::q8_0 || type == t::ggml::q4_0)) {
          EXPECT_EQ(f.tensor("blk.1.ffn_down.weight").type, ggml_type::f16);
        }
      }
    }
  }
}

TEST(GgufWriter, QuantizedValuesAreCloseToTheSource) {
  // The writer's quantizers themselves: within their formats' bounds of what they quantized.
  std::vector<float> x(32 * 40);
  for (std::size_t k = 0; k < x.size(); ++k) x[k] = std::sin(0.37f * float(k)) * float(1 + k % 7);
  const auto q8 = t::dequantize_q8_0_reference(t::quantize_q8_0(x));
  const auto q4 = t::dequantize_q4_0_reference(t::quantize_q4_0(x));
  for (std::size_t k = 0; k < x.size(); ++k) {
    // amax <= 7 per block; d's fp16 rounding (2^-11 relative) times |q| <= 127 adds 0.07 d.
    EXPECT_NEAR(q8[k], x[k], 7.0 / 127 * 0.57) << k;
    EXPECT_NEAR(q4[k], x[k], 7.0 / 8 * 1.01) << k;
  }
}

TEST(GgufWriter, AlignmentOtherThan32) {
  temp_dir dir;
  t::gguf_writer w(3, 256);
  w.add_u32("general.alignment", 256);
  std::vector<float> x(64, 0.5f);
  std::vector<std::uint8_t> bytes(x.size() * 4);
  std::memcpy(bytes.data(), x.data(), bytes.size());
  w.add_tensor("a", {64}, t::ggml::f32, bytes);
  w.add_tensor("b", {32, 2}, t::ggml::q8_0, t::quantize_q8_0(x));
  const fs::path file = dir.path / "a.gguf";
  w.write(file);
  const gguf_file f(file);
  EXPECT_EQ(f.alignment(), 256u);
  EXPECT_EQ(f.data_offset() % 256, 0u);
  EXPECT_EQ(f.tensor("b").offset, 256u);
  EXPECT_EQ(f.tensor_f32("a"), x);
  EXPECT_EQ(f.tensor_f32("b"), t::dequantize_q8_0_reference(t::quantize_q8_0(x)));
}

TEST(GgufWriter, TruncatedFilesGiveOneLine) {
  temp_dir dir;
  const t::tiny_llama_gguf g = t::make_tiny_llama_gguf(model_preset_by_name("tiny"), t::ggml::q4_0);
  const std::string full = g.writer.bytes();
  const std::size_t infos_end = g.writer.data_offset();
  // Every cut inside the header, metadata and tensor infos, then a stride through the data.
  std::vector<std::size_t> cuts;
  for (std::size_t n = 0; n < infos_end; ++n) cuts.push_back(n);
  for (std::size_t n = infos_end; n < full.size(); n += 97) cuts.push_back(n);
  cuts.push_back(full.size() - 1);
  for (const std::size_t n : cuts) {
    const fs::path file = dir.write("cut.gguf", full.substr(0, n));
    try {
      const gguf_file f(file);
      FAIL() << "a file cut at " << n << " of " << full.size() << " bytes opened";
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      ASSERT_EQ(what.find('\n'), std::string::npos) << what;
      ASSERT_NE(what.find(file.string()), std::string::npos) << what;
      ASSERT_TRUE(what.find("truncated file") != std::string::npos ||
                  what.find("runs past the end of the file") != std::string::npos)
          << n << ": " << what;
    }
  }
}

TEST(GgufWriter, WrongMagic) {
  temp_dir dir;
  std::string b =
      t::make_tiny_llama_gguf(model_preset_by_name("tiny"), t::ggml::q8_0).writer.bytes();
  b.replace(0, 4, "GGML");
  expect_open_fails(dir.write("magic.gguf", b), "bad magic 0x4c4d4747");
  // A safetensors file handed to the GGUF reader.
  expect_open_fails(dir.write("st.gguf", std::string("\x10\0\0\0\0\0\0\0{}", 10)), "bad magic");
}

TEST(GgufWriter, MistypedMetadata) {
  temp_dir dir;
  {  // block_count as a string: the file opens, the Llama parameters name the key and the type
    t::gguf_writer w;
    w.add_string("general.architecture", "llama");
    w.add_string("llama.block_count", "2");
    const fs::path file = dir.path / "count.gguf";
    w.write(file);
    try {
      (void)read_gguf_llama_params(gguf_file(file));
      FAIL();
    } catch (const std::invalid_argument& e) {
      expect_one_line(e.what(), file, "metadata llama.block_count must be an integer, got string");
    }
  }
  {  // rope.freq_base as an integer
    t::gguf_writer w;
    w.add_string("general.architecture", "llama");
    for (const char* k :
         {"llama.block_count", "llama.embedding_length", "llama.attention.head_count",
          "llama.feed_forward_length", "llama.context_length", "llama.rope.freq_base"}) {
      w.add_u32(k, 2);
    }
    w.add_string_array("tokenizer.ggml.tokens", {"a"});
    const fs::path file = dir.path / "rope.gguf";
    w.write(file);
    try {
      (void)read_gguf_llama_params(gguf_file(file));
      FAIL();
    } catch (const std::invalid_argument& e) {
      expect_one_line(e.what(), file, "llama.rope.freq_base must be a float, got uint32");
    }
  }
  {  // general.alignment as a uint64: refused when the file opens
    t::gguf_writer w;
    w.add_u64("general.alignment", 32);
    const fs::path file = dir.path / "align.gguf";
    w.write(file);
    expect_open_fails(file, "general.alignment must be a uint32 power of two, got uint64");
  }
  {  // a bool stored as 2, and an unknown value type 13
    t::gguf_writer w;
    w.add_raw("flag", t::gguf_type::boolean, std::string(1, '\x02'));
    const fs::path file = dir.path / "bool.gguf";
    w.write(file);
    expect_open_fails(file, "metadata flag: bool value 2 is not 0 or 1");
    t::gguf_writer w2;
    w2.add_raw("odd", 13, std::string(8, '\0'));
    w2.write(file);
    expect_open_fails(file, "metadata odd: unknown value type 13");
  }
  {  // tokenizer.ggml.tokens as an array of int32
    t::gguf_writer w;
    w.add_string("general.architecture", "llama");
    for (const char* k :
         {"llama.block_count", "llama.embedding_length", "llama.attention.head_count",
          "llama.feed_forward_length", "llama.context_length"}) {
      w.add_u32(k, 2);
    }
    w.add_i32_array("tokenizer.ggml.tokens", {1, 2});
    const fs::path file = dir.path / "tokens.gguf";
    w.write(file);
    try {
      (void)read_gguf_llama_params(gguf_file(file));
      FAIL();
    } catch (const std::invalid_argument& e) {
      expect_one_line(e.what(), file, "tokenizer.ggml.tokens must be an array of strings");
    }
  }
}

TEST(GgufWriter, TensorOutOfBounds) {
  temp_dir dir;
  // The last tensor's data cut short by one byte (the header is intact).
  const auto g = t::make_tiny_llama_gguf(model_preset_by_name("tiny"), t::ggml::q8_0);
  std::string b = g.writer.bytes();
  const std::uint64_t last_end = [&] {
    const fs::path ok = dir.write("ok.gguf", b);
    const gguf_file f(ok);
    const auto& t = f.tensors().back();
    return f.data_offset() + t.offset + t.bytes;
  }();
  expect_open_fails(dir.write("short.gguf", b.substr(0, last_end - 1)),
                    "tensor output.weight: data [");
  // A tensor whose offset points beyond the file.
  t::gguf_writer w;
  w.add_tensor("t", {32}, t::ggml::f32, std::vector<std::uint8_t>(128));
  std::string one = w.bytes();
  // The offset field ends the (only) tensor info: find the info by its name.
  const std::size_t name_at = one.find(std::string("\x01\0\0\0\0\0\0\0t", 9));
  ASSERT_NE(name_at, std::string::npos);
  const std::size_t field = name_at + 9 + 4 + 8 + 4;  // name, n_dims, ne[0], type
  const std::uint64_t far = 1ULL << 20;
  std::memcpy(one.data() + field, &far, 8);
  expect_open_fails(dir.write("far.gguf", one), "runs past the end of the file");
}

TEST(GgufWriter, UnsupportedTypes) {
  temp_dir dir;
  {  // Q4_1 is a known ggml type: the file opens, reading its data is refused by name
    t::gguf_writer w;
    w.add_tensor("blk.0.attn_q.weight", {32, 2}, 3, std::vector<std::uint8_t>(40));
    const fs::path file = dir.path / "q41.gguf";
    w.write(file);
    const gguf_file f(file);
    try {
      (void)f.tensor_f32("blk.0.attn_q.weight");
      FAIL();
    } catch (const std::invalid_argument& e) {
      expect_one_line(e.what(), file,
                      "tensor blk.0.attn_q.weight has ggml type Q4_1, which is not supported yet");
    }
  }
  {  // IQ2_XXS (16) is not read at all
    t::gguf_writer w;
    w.add_tensor("t", {256}, 16, std::vector<std::uint8_t>(66));
    const fs::path file = dir.path / "iq.gguf";
    w.write(file);
    expect_open_fails(file, "tensor t: unknown ggml type 16");
  }
  {  // version 1 (32-bit counts) is refused by name
    const auto g = t::make_tiny_llama_gguf(model_preset_by_name("tiny"), t::ggml::f32, 1, 1);
    const fs::path file = dir.path / "v1.gguf";
    g.writer.write(file);
    expect_open_fails(file, "unsupported GGUF version 1");
  }
}
