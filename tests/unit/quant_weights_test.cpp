// The host half of the engine's quantized weights (engine/quant_weights.hpp), without a GPU:
// - formats and storage: which tensors are packed, refusals of unpackable shapes, exact bytes;
// - quantize_packed (threaded, in tile slices) equals pack_quantized(quantize()) bit for bit, and
//   random packed tensors are the seeded bf16 weights quantized;
// - the chain the GPU engine test relies on: dequantize_packed_bf16 of what the engine uploads
//   equals dequantized_weights(), the CPU decoder's weights;
// - the memory plan's correction (exact bytes, dequantize scratch) and that int4 leaves more KV;
// - --weights (cli/engine_options.hpp): the four names, nothing else, unset when absent;
// - the load rules (resolve_weight_format) and the loaders: GGUF Q4_0 / Q8_0, AWQ, GPTQ and fp8
//   folders written by the test writers (tests/support), packed values equal to the writers'
//   references, and each refusal as one line.
//   build-quant/tests/ridgeline_unit_tests --gtest_filter='QuantWeights*'
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine_options.hpp"
#include "gguf_writer.hpp"
#include "quant_checkpoint_writer.hpp"
#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/quant_weights.hpp"
#include "ridgeline/engine/random_weights.hpp"
#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"
#include "temp_dir.hpp"

using namespace ridgeline;
namespace fs = std::filesystem;
using planner::weight_format;

namespace {

// Block linears packable in every format (columns multiples of 128), rows at odd tile counts.
model_preset quant_model() {
  // name, layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, max_context
  return {"quant-e2e", 2, 256, 4, 2, 64, 384, 300, 256, false};
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

// The bf16 slice of tensor `index` in a concatenated weight vector.
std::vector<bf16_bits> slice(const model_preset& m, std::span<const bf16_bits> w,
                             std::size_t index) {
  const auto tensors = weight_tensors(m);
  std::size_t at = 0;
  for (std::size_t i = 0; i < index; ++i) at += static_cast<std::size_t>(tensors[i].elements);
  return {w.begin() + static_cast<std::ptrdiff_t>(at),
          w.begin() + static_cast<std::ptrdiff_t>(at + tensors[index].elements)};
}

void expect_same_bits(const std::vector<bf16_bits>& got, const std::vector<bf16_bits>& want,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (got[i] != want[i] && ++bad <= 3) {
      ADD_FAILURE() << what << " element " << i << ": " << got[i] << " vs " << want[i];
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

}  // namespace

TEST(QuantWeights, FormatsAndStorage) {
  EXPECT_EQ(parse_engine_weights("int4"), weight_format::int4);
  EXPECT_EQ(parse_engine_weights("fp8"), weight_format::fp8);
  EXPECT_THROW(parse_engine_weights("fp16"), std::invalid_argument);
  EXPECT_THROW(check_engine_weights(weight_format::fp32), std::invalid_argument);
  EXPECT_EQ(quant_format_for(weight_format::int8), cpu::quant_format::int8_channel);
  EXPECT_THROW(quant_format_for(weight_format::bf16), std::invalid_argument);

  const model_preset m = quant_model();
  const auto tensors = weight_tensors(m);
  for (weight_format f : {weight_format::bf16, weight_format::fp8, weight_format::int8,
                          weight_format::int4}) {
    const auto s = uniform_storage(m, f);
    ASSERT_EQ(s.size(), tensors.size());
    int packed = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      EXPECT_EQ(s[i].packed, f != weight_format::bf16 && is_block_linear(tensors[i]))
          << tensors[i].name;
      packed += s[i].packed;
    }
    EXPECT_EQ(packed, f == weight_format::bf16 ? 0 : 4 * m.layers);
  }
  EXPECT_FALSE(is_block_linear(tensors.front()));  // embedding
  EXPECT_FALSE(is_block_linear(tensors.back()));   // lm_head
  // tiny's down projection has 176 input columns: one line naming the tensor.
  const std::string e =
      error_of([] { uniform_storage(model_preset_by_name("tiny"), weight_format::int4); });
  EXPECT_NE(e.find("tiny: layers.0.qkv [128][64] cannot be stored as int4"), std::string::npos)
      << e;
}

TEST(QuantWeights, StorageBytesAreThePackedSizes) {
  const weight_tensor t{"layers.0.o", 4096LL * 4096, 4096, 4096, false};
  // int4 group 128: 4 bits a weight, fp32 scale per (row, group), 4-bit zero per (row, group).
  EXPECT_EQ(storage_bytes(t, {true, cpu::quant_format::int4_group, 128}),
            4096LL * 4096 / 2 + 4096LL * 32 * 4 + 4096LL * 32 / 2);
  EXPECT_EQ(storage_bytes(t, {true, cpu::quant_format::int8_channel, 128}),
            4096LL * 4096 + 4096LL * 4);
  EXPECT_EQ(storage_bytes(t, {true, cpu::quant_format::fp8_e4m3_channel, 128}),
            4096LL * 4096 + 4096LL * 4);
  EXPECT_EQ(storage_bytes(t, {}), 4096LL * 4096 * 2);
  // Rows padded to 16 (17 rows: 2 tiles of 2 chunks of 512 bytes), each array rounded to 256.
  const weight_tensor odd{"layers.0.o", 17LL * 128, 17, 128, false};
  EXPECT_EQ(storage_bytes(odd, {true, cpu::quant_format::int4_group, 128}), 2048 + 256 + 256);
  const model_preset m = model_preset_by_name("llama-2-7b");
  const auto s4 = uniform_storage(m, weight_format::int4);
  EXPECT_EQ(largest_packed_elements(m, s4), 2LL * 11008 * 4096);  // gate_up
  EXPECT_EQ(largest_packed_elements(m, uniform_storage(m, weight_format::bf16)), 0);
  // The planner counts the same packed bytes (perfmodel/weights.hpp, the step work's and the
  // memory model's count): the engine's allocation differs only by rounding each of a tensor's
  // arrays (data, scales, zeros; one for a bf16 tensor) up to 256 bytes.
  const auto tensors = weight_tensors(m);
  for (auto f : {weight_format::bf16, weight_format::fp8, weight_format::int8,
                 weight_format::int4}) {
    const double planned = planner::weight_memory_bytes(m, f);
    const double exact = static_cast<double>(weight_storage_bytes(m, uniform_storage(m, f)));
    EXPECT_GE(exact, planned) << planner::name(f);
    EXPECT_LE(exact - planned, 3.0 * 255 * static_cast<double>(tensors.size())) << planner::name(f);
  }
}

TEST(QuantWeights, QuantizePackedIsPackOfQuantizeInAnyThreadCount) {
  std::mt19937 rng(4);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (cpu::quant_format f : {cpu::quant_format::int4_group, cpu::quant_format::int8_channel,
                              cpu::quant_format::fp8_e4m3_channel, cpu::quant_format::q4_0,
                              cpu::quant_format::q8_0}) {
    for (int rows : {1, 17, 64, 65, 203}) {
      const int cols = 384;
      std::vector<float> w(static_cast<std::size_t>(rows) * cols);
      for (auto& x : w) x = dist(rng);
      const cpu::packed_quant_matrix want =
          cpu::pack_quantized(cpu::quantize(f, rows, cols, w, 128).view());
      for (int threads : {1, 3}) {
        const cpu::packed_quant_matrix got = quantize_packed(
            f, rows, cols, 128,
            [&](int r0, int n, float* out) {
              std::copy_n(w.data() + static_cast<std::size_t>(r0) * cols,
                          static_cast<std::size_t>(n) * cols, out);
            },
            threads);
        SCOPED_TRACE(cpu::quant_format_name(f) + " rows " + std::to_string(rows) + " threads " +
                     std::to_string(threads));
        EXPECT_EQ(got.kind, want.kind);
        EXPECT_EQ(got.group_size, want.group_size);
        EXPECT_EQ(got.data, want.data);
        EXPECT_EQ(got.scales, want.scales);
        EXPECT_EQ(got.zeros, want.zeros);
      }
    }
  }
  EXPECT_THROW(quantize_packed(cpu::quant_format::int4_group, 16, 100, 128,
                               [](int, int, float*) {}),
               std::invalid_argument);
}

// The chain behind the GPU engine test: the packed random tensors the engine uploads, through the
// dequantizer's reference, are the CPU decoder's weights (dequantized_weights) bit for bit.
TEST(QuantWeights, RandomPackedTensorsDequantizeToTheCpuDecodersWeights) {
  const model_preset m = quant_model();
  const std::vector<bf16_bits> w = random_weights(m, 3);
  const auto tensors = weight_tensors(m);
  for (weight_format f : {weight_format::fp8, weight_format::int8, weight_format::int4}) {
    const auto storage = uniform_storage(m, f);
    const std::vector<bf16_bits> ref = dequantized_weights(m, w, f);
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const std::string what = std::string(planner::name(f)) + " " + tensors[i].name;
      if (!storage[i].packed) {
        expect_same_bits(slice(m, ref, i), slice(m, w, i), what);
        continue;
      }
      const cpu::packed_quant_matrix p = random_packed_tensor(m, i, 3, storage[i], 2);
      const std::vector<bf16_bits> bf = slice(m, w, i);
      const cpu::packed_quant_matrix q = pack_bf16_tensor(tensors[i], bf.data(), storage[i], 1);
      EXPECT_EQ(p.data, q.data) << what;
      EXPECT_EQ(p.scales, q.scales) << what;
      expect_same_bits(cpu::dequantize_packed_bf16(p.view()), slice(m, ref, i), what);
    }
  }
  expect_same_bits(dequantized_weights(m, w, weight_format::bf16), w, "bf16");
}

TEST(QuantWeights, MemoryPlanCorrectionAndInt4LeavesMoreKv) {
  const model_preset m = model_preset_by_name("llama-2-7b");
  planner::memory_options mo;
  mo.context_reserve_bytes = 0;
  mo.binary_units = true;
  const double free = 79.0 * (1LL << 30);
  mo.weights = weight_format::bf16;
  const planner::memory_plan bf16 = planner::plan_memory(m, free, mo);
  mo.weights = weight_format::int4;
  const planner::memory_plan int4 = planner::plan_memory(m, free, mo);
  const auto s4 = uniform_storage(m, weight_format::int4);
  const std::int64_t exact = weight_storage_bytes(m, s4);
  const std::int64_t scratch = largest_packed_elements(m, s4) * 2;
  const std::int64_t blocks4 = corrected_kv_blocks(int4, exact, scratch, 0, "x");
  const std::int64_t blocks16 = corrected_kv_blocks(bf16, static_cast<std::int64_t>(bf16.weight_bytes),
                                                    0, 0, "x");
  EXPECT_EQ(blocks16, bf16.kv_blocks);  // no correction: the planner's blocks
  // bf16 12.6 GiB of weights against int4's 3.5 GiB and a 172 MiB scratch: over 1000 more blocks
  // of 8 MiB (16 tokens of Llama-2-7B's KV).
  EXPECT_GT(blocks4 - blocks16, 1000) << blocks4 << " vs " << blocks16;
  // Exactly the budget minus the correction, in whole blocks.
  const double budget = int4.kv_budget_bytes - (double(exact) - int4.weight_bytes) - double(scratch);
  EXPECT_EQ(blocks4, static_cast<std::int64_t>(budget) / int4.kv_bytes_per_block);
  EXPECT_EQ(corrected_kv_blocks(int4, exact, scratch, 100, "x"), 100);
  const std::string e =
      error_of([&] { corrected_kv_blocks(int4, exact, scratch, blocks4 + 1, "llama in int4"); });
  EXPECT_EQ(e.rfind("llama in int4: weights (", 0), 0u) << e;
  EXPECT_NE(e.find("dequantize scratch"), std::string::npos) << e;
  mo.weights = weight_format::bf16;
  const planner::memory_plan small = planner::plan_memory(m, 8.0 * (1LL << 30), mo);
  EXPECT_FALSE(small.fits);
  EXPECT_THROW(corrected_kv_blocks(small, exact, 0, 0, "x"), std::invalid_argument);
}

// --- Checkpoints ------------------------------------------------------------------------------

namespace {

std::vector<std::uint8_t> bf16_bytes(const std::vector<bf16_bits>& v) {
  std::vector<std::uint8_t> b(v.size() * 2);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<bf16_bits> to_bf16(const std::vector<float>& v) {
  std::vector<bf16_bits> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = cpu::float_to_bf16(v[i]);
  return out;
}

// A Hugging Face folder in one quantized layout: method "awq", "gptq", "gptq_act" (act-order
// g_idx), "fp8" (per-channel scales) or "fp8_block"; the bf16 tensors from random_weights(m, 5).
// reference: the engine's weights as bf16, block linears from the writers' references.
struct quant_folder {
  std::vector<bf16_bits> reference;
};

quant_folder write_quant_folder(const fs::path& dir, const model_preset& m,
                                const std::string& method) {
  const std::vector<bf16_bits> w = random_weights(m, 5);
  const auto tensors = weight_tensors(m);
  std::vector<test::st_tensor> st;
  quant_folder out;
  std::uint32_t seed = 10;
  std::size_t at = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const weight_tensor& t = tensors[i];
    const auto n = static_cast<std::size_t>(t.elements);
    std::vector<bf16_bits> mine(w.begin() + static_cast<std::ptrdiff_t>(at),
                                w.begin() + static_cast<std::ptrdiff_t>(at + n));
    at += n;
    const auto parts = test::hf_tensor_parts(t.name, m);
    if (!is_block_linear(t)) {
      std::size_t off = 0;
      for (const auto& [name, shape] : parts) {
        std::int64_t cnt = 1;
        for (auto d : shape) cnt *= d;
        std::vector<bf16_bits> v(mine.begin() + static_cast<std::ptrdiff_t>(off),
                                 mine.begin() + static_cast<std::ptrdiff_t>(off + cnt));
        st.push_back({name, "BF16", shape, bf16_bytes(v)});
        off += static_cast<std::size_t>(cnt);
      }
      out.reference.insert(out.reference.end(), mine.begin(), mine.end());
      continue;
    }
    for (const auto& [prefix, shape] : parts) {
      const int o = static_cast<int>(shape[0]), in = static_cast<int>(shape[1]);
      std::vector<test::st_tensor> packed;
      std::vector<float> ref;
      if (method.rfind("fp8", 0) == 0) {
        const auto c = test::make_fp8_case(o, in, method == "fp8" ? "channel" : "block", seed++);
        packed = test::pack_fp8(c, prefix);
        ref = test::fp8_reference(c);
      } else {
        const bool act = method == "gptq_act";
        const auto c = test::make_int4_case(o, in, 128, act, seed++, method == "awq" ? 0 : 1);
        packed = method == "awq" ? test::pack_awq(c, prefix)
                                 : test::pack_gptq(c, prefix, act, /*v2=*/false);
        ref = test::int4_reference(c);
      }
      st.insert(st.end(), packed.begin(), packed.end());
      const auto r = to_bf16(ref);
      out.reference.insert(out.reference.end(), r.begin(), r.end());
    }
  }
  test::write_safetensors(dir / "model.safetensors", st);
  write_hf_config(dir / "config.json", make_decoder_config(m));
  nlohmann::json j = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  if (method == "awq") {
    j["quantization_config"] = {{"quant_method", "awq"}, {"bits", 4}, {"group_size", 128},
                                {"version", "gemm"}, {"zero_point", true}};
  } else if (method.rfind("gptq", 0) == 0) {
    j["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 128},
                                {"desc_act", method == "gptq_act"},
                                {"checkpoint_format", "gptq"}};
  } else {
    j["quantization_config"] = {{"quant_method", "fp8"}, {"activation_scheme", "dynamic"}};
    if (method == "fp8_block") j["quantization_config"]["weight_block_size"] = {128, 128};
  }
  std::ofstream(dir / "config.json") << j.dump(2);
  return out;
}

// Every tensor loaded for the engine, as bf16 (packed ones through the dequantizer's reference),
// equals the reference; `packed` of them are packed.
void expect_loaded(const model_preset& m, const std::vector<loaded_tensor>& got,
                   const std::vector<bf16_bits>& reference, int packed) {
  const auto tensors = weight_tensors(m);
  ASSERT_EQ(got.size(), tensors.size());
  int n = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::vector<bf16_bits> v =
        got[i].packed ? cpu::dequantize_packed_bf16(got[i].packed->view()) : got[i].bf16;
    n += got[i].packed ? 1 : 0;
    expect_same_bits(v, slice(m, reference, i), tensors[i].name);
  }
  EXPECT_EQ(n, packed);
}

}  // namespace

TEST(QuantWeights, AwqFolderLoadsPackedAndDequantized) {
  test::temp_dir dir("quant_awq");
  const model_preset m = quant_model();
  const quant_folder q = write_quant_folder(dir.path, m, "awq");
  EXPECT_EQ(checkpoint_weight_format(dir.path), weight_format::int4);
  EXPECT_EQ(resolve_weight_format(std::nullopt, dir.path), weight_format::int4);
  EXPECT_EQ(resolve_weight_format(weight_format::bf16, dir.path), weight_format::bf16);
  const std::string e = error_of([&] { resolve_weight_format(weight_format::fp8, dir.path); });
  EXPECT_NE(e.find("the checkpoint holds int4 (awq) weights; --weights fp8"), std::string::npos)
      << e;
  expect_loaded(m, load_checkpoint_for_engine(dir.path, m, weight_format::int4), q.reference,
                4 * m.layers);
  expect_loaded(m, load_checkpoint_for_engine(dir.path, m, weight_format::bf16), q.reference, 0);
  EXPECT_THROW(load_checkpoint_for_engine(dir.path, m, weight_format::int8), std::invalid_argument);
}

TEST(QuantWeights, GptqFolderLoadsPackedAndActOrderIsRefused) {
  const model_preset m = quant_model();
  {
    test::temp_dir dir("quant_gptq");
    const quant_folder q = write_quant_folder(dir.path, m, "gptq");
    expect_loaded(m, load_checkpoint_for_engine(dir.path, m, weight_format::int4), q.reference,
                  4 * m.layers);
  }
  test::temp_dir dir("quant_gptq_act");
  const quant_folder q = write_quant_folder(dir.path, m, "gptq_act");
  const std::string e =
      error_of([&] { load_checkpoint_for_engine(dir.path, m, weight_format::int4); });
  EXPECT_NE(e.find("(act-order)"), std::string::npos) << e;
  EXPECT_NE(e.find("--weights bf16"), std::string::npos) << e;
  expect_loaded(m, load_checkpoint_for_engine(dir.path, m, weight_format::bf16), q.reference, 0);
}

TEST(QuantWeights, Fp8FolderLoadsPerChannelAndRefusesBlocks) {
  const model_preset m = quant_model();
  {
    test::temp_dir dir("quant_fp8");
    const quant_folder q = write_quant_folder(dir.path, m, "fp8");
    EXPECT_EQ(resolve_weight_format(std::nullopt, dir.path), weight_format::fp8);
    expect_loaded(m, load_checkpoint_for_engine(dir.path, m, weight_format::fp8), q.reference,
                  4 * m.layers);
  }
  test::temp_dir dir("quant_fp8_block");
  const quant_folder q = write_quant_folder(dir.path, m, "fp8_block");
  const std::string e =
      error_of([&] { load_checkpoint_for_engine(dir.path, m, weight_format::fp8); });
  EXPECT_NE(e.find("block-wise scales"), std::string::npos) << e;
  expect_loaded(m, load_checkpoint_for_engine(dir.path, m, weight_format::bf16), q.reference, 0);
}

// GGUF Q4_0 and Q8_0: the quantized linears packed as stored (Q and K rows un-permuted whole),
// the F16 fallback (tiny-gpu's ffn_down, 520 columns) and the rest bf16; every tensor equal to the
// bf16 load, which the GGUF tests check against the writer's references.
TEST(QuantWeights, GgufLoadsQ4AndQ8Packed) {
  const model_preset m = model_preset_by_name("tiny-gpu");
  for (auto [type, f] : {std::pair{test::ggml::q4_0, weight_format::int4},
                               std::pair{test::ggml::q8_0, weight_format::int8}}) {
    test::temp_dir dir("quant_gguf");
    const fs::path file = dir.path / "m.gguf";
    test::make_tiny_llama_gguf(m, type).writer.write(file);
    SCOPED_TRACE(planner::name(f));
    EXPECT_EQ(checkpoint_weight_format(file), f);
    EXPECT_EQ(resolve_weight_format(std::nullopt, file), f);
    const std::vector<bf16_bits> bf16 = load_checkpoint_weights(file, m);
    expect_loaded(m, load_checkpoint_for_engine(file, m, f), bf16, 3 * m.layers);
    expect_loaded(m, load_checkpoint_for_engine(file, m, weight_format::bf16), bf16, 0);
    const weight_format other = f == weight_format::int4 ? weight_format::int8 : weight_format::int4;
    const std::string e = error_of([&] { resolve_weight_format(other, file); });
    EXPECT_NE(e.find("the checkpoint holds"), std::string::npos) << e;
    EXPECT_THROW(resolve_weight_format(weight_format::fp8, file), std::invalid_argument);
  }
}

// A bf16 checkpoint in a quantized format is quantized at load, as random weights are.
TEST(QuantWeights, Bf16CheckpointIsQuantizedAtLoad) {
  test::temp_dir dir("quant_bf16");
  const model_preset m = quant_model();
  const std::vector<bf16_bits> w = random_weights(m, 8);
  save_checkpoint(dir.path / "model.safetensors", m, w);
  write_hf_config(dir.path / "config.json", make_decoder_config(m));
  EXPECT_EQ(checkpoint_weight_format(dir.path), std::nullopt);
  EXPECT_EQ(resolve_weight_format(std::nullopt, dir.path), weight_format::bf16);
  EXPECT_EQ(resolve_weight_format(weight_format::int8, dir.path), weight_format::int8);
  expect_loaded(m, load_checkpoint_for_engine(dir.path, m, weight_format::int8),
                dequantized_weights(m, w, weight_format::int8), 4 * m.layers);
  EXPECT_EQ(resolve_weight_format(weight_format::int4, ""), weight_format::int4);
  EXPECT_EQ(resolve_weight_format(std::nullopt, ""), weight_format::bf16);
}

TEST(QuantWeights, WeightsFlag) {
  for (const char* name : {"bf16", "fp8", "int8", "int4"}) {
    CLI::App app;
    std::string w;
    cli::add_weights_option(&app, w);
    const char* argv[] = {"x", "--weights", name};
    app.parse(3, argv);
    EXPECT_EQ(cli::engine_weights_of(w), parse_engine_weights(name));
  }
  CLI::App app;
  std::string w;
  cli::add_weights_option(&app, w);
  const char* bad[] = {"x", "--weights", "fp16"};
  EXPECT_THROW(app.parse(3, bad), CLI::ValidationError);
  EXPECT_EQ(cli::engine_weights_of(""), std::nullopt);
  EXPECT_THROW(cli::engine_weights_of("q4_0"), std::invalid_argument);
}
