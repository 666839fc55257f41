// GGUF files through --checkpoint's loader (read_checkpoint_config + load_checkpoint_weights):
// tiny Llama files written by the independent test writer (tests/support/gguf_writer.hpp) in
// Q8_0, Q4_0 and F16, Q and K permuted as llama.cpp's converter stores them, must load as the
// writer's dequantized weights in Hugging Face row order, bit for bit, and the CPU decoder must
// give bitwise the same logits from them as from those reference weights. Then the errors (cut,
// mistyped, unsupported type, wrong architecture, wrong preset), in the library and through
// `ridgeline diverge run --executor cpu --checkpoint`.
//   build-quant/tests/ridgeline_unit_tests --gtest_filter='GgufCheckpoint*'
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "../support/gguf_writer.hpp"
#include "../support/temp_dir.hpp"
#include "cli.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/cpu_engine.hpp"
#include "ridgeline/engine/step_batch.hpp"
#include "ridgeline/kernels/numeric.hpp"

using namespace ridgeline;
namespace fs = std::filesystem;
namespace t = ridgeline::test;

namespace {

struct temp_dir : t::temp_dir {
  temp_dir() : t::temp_dir("gguf_checkpoint_test") {}
};

// The engine's weights as an independent statement of the mapping (docs/checkpoints.md): for each
// engine tensor in weight_tensors() order, the GGUF tensors whose rows it concatenates.
std::vector<std::vector<std::string>> engine_layout(const model_preset& m, bool tied) {
  std::vector<std::vector<std::string>> v{{"token_embd.weight"}};
  for (int l = 0; l < m.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    v.push_back({p + "attn_norm.weight"});
    v.push_back({p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"});
    v.push_back({p + "attn_output.weight"});
    v.push_back({p + "ffn_norm.weight"});
    v.push_back({p + "ffn_gate.weight", p + "ffn_up.weight"});
    v.push_back({p + "ffn_down.weight"});
  }
  v.push_back({"output_norm.weight"});
  v.push_back({tied ? "token_embd.weight" : "output.weight"});
  return v;
}

// bf16 weights in the engine's order from a name -> floats map (rounded to nearest even).
std::vector<bf16_bits> assemble(const model_preset& m, bool tied,
                                const std::map<std::string, std::vector<float>>& tensors) {
  std::vector<bf16_bits> out;
  for (const auto& parts : engine_layout(m, tied)) {
    for (const auto& name : parts) {
      for (const float x : tensors.at(name)) out.push_back(cpu::float_to_bf16(x));
    }
  }
  EXPECT_EQ(static_cast<std::int64_t>(out.size()), total_weight_elements(m));
  return out;
}

// Logits of the last prompt token, one prefill step from an empty cache (the CPU engine, whose
// decoder_forward runs the naive references).
std::vector<float> prompt_logits(const decoder_config& c, const std::vector<bf16_bits>& weights,
                                 const std::vector<token_id>& prompt) {
  const int T = static_cast<int>(prompt.size());
  const int num_blocks = (T + c.block_tokens - 1) / c.block_tokens;
  cpu_engine engine(c, weights, num_blocks);
  std::vector<block_id> blocks(static_cast<std::size_t>(num_blocks));
  std::iota(blocks.begin(), blocks.end(), 0);
  const step_sequence seq{prompt, 0, T, blocks, true, sampling_row{}};
  return engine.step({&seq, 1}).logits;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The message of what `f` throws (invalid_argument or io_error), checked to be one line.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    return e.what();
  } catch (const io_error& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    return std::string("io_error: ") + e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

// Overwrites the 4 bytes at `at` with a little-endian uint32.
void put_u32(std::string& s, std::size_t at, std::uint32_t v) {
  for (int k = 0; k < 4; ++k) s[at + k] = static_cast<char>((v >> (8 * k)) & 0xff);
}

// Where the uint32 value type of metadata key `key` sits in the file.
std::size_t key_type_at(const std::string& file, const std::string& key) {
  const std::size_t p = file.find(key);
  EXPECT_NE(p, std::string::npos) << key;
  return p + key.size();
}

// Where the uint32 ggml type of a 2-D tensor info sits (after name, n_dims and two ne).
std::size_t tensor_type_at(const std::string& file, const std::string& name) {
  const std::size_t p = file.find(name);
  EXPECT_NE(p, std::string::npos) << name;
  return p + name.size() + 4 + 16;
}

const std::vector<token_id> k_prompt = {1, 17, 100, 5,  42, 0, 63, 99, 7,
                                        3, 88, 51,  20, 11, 2, 9,  77, 30};  // two KV blocks

}  // namespace

TEST(GgufCheckpoint, IsGgufByExtensionOrMagic) {
  temp_dir dir;
  EXPECT_TRUE(is_gguf_checkpoint(dir.path / "missing.gguf"));
  EXPECT_TRUE(is_gguf_checkpoint(dir.path / "Model.Q4_0.GGUF"));
  EXPECT_TRUE(is_gguf_checkpoint(dir.write("sha256-0123", "GGUF\x03")));
  EXPECT_FALSE(is_gguf_checkpoint(dir.write("model.safetensors", std::string(8, '\0') + "{}")));
  EXPECT_FALSE(is_gguf_checkpoint(dir.path));
}

// The Done-when check: Q8_0, Q4_0 and F16 files (and F32 for completeness) load as the writer's
// dequantized weights in Hugging Face row order, bit for bit (both sides round the same floats to
// bf16 once), so the CPU decoder's logits are bitwise equal too: exact, tighter than the bf16
// tolerance the GPU tests use.
TEST(GgufCheckpoint, QuantizedFilesLoadAsTheDequantizedReference) {
  temp_dir dir;
  for (const char* preset : {"tiny", "tiny-mha"}) {
    const model_preset& m = model_preset_by_name(preset);
    for (const std::uint32_t type : {t::ggml::q8_0, t::ggml::q4_0, t::ggml::f16, t::ggml::f32}) {
      SCOPED_TRACE(std::string(preset) + " ggml type " + std::to_string(type));
      const t::tiny_llama_gguf g = t::make_tiny_llama_gguf(m, type, 5);
      const fs::path file = dir.path / (std::string(preset) + ".gguf");
      g.writer.write(file);

      const decoder_config c = read_checkpoint_config(file);
      EXPECT_EQ(c.model.name, preset);
      EXPECT_EQ(c.model.layers, m.layers);
      EXPECT_EQ(c.model.hidden, m.hidden);
      EXPECT_EQ(c.model.heads, m.heads);
      EXPECT_EQ(c.model.kv_heads, m.kv_heads);
      EXPECT_EQ(c.model.head_dim, m.head_dim);
      EXPECT_EQ(c.model.intermediate, m.intermediate);
      EXPECT_EQ(c.model.vocab, m.vocab);
      EXPECT_EQ(c.model.max_context, m.max_context);
      EXPECT_EQ(c.rms_eps, 1e-5f);
      EXPECT_EQ(c.rope.theta, 10000.0f);
      EXPECT_FALSE(c.rope.llama3_scaling);

      const std::vector<bf16_bits> want = assemble(m, false, g.hf_reference);
      const std::vector<bf16_bits> got = load_checkpoint_weights(file, c.model);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_TRUE(got == want);
      // The preset itself loads the same (serve and replay pass a preset).
      EXPECT_TRUE(load_checkpoint_weights(file, m) == want);

      const auto ref = prompt_logits(c, want, k_prompt);
      const auto out = prompt_logits(c, got, k_prompt);
      EXPECT_TRUE(same_bits(ref, out));
      for (const float x : ref) ASSERT_TRUE(std::isfinite(x));
      EXPECT_NE(*std::min_element(ref.begin(), ref.end()),
                *std::max_element(ref.begin(), ref.end()));
      // The check can fail: Q/K in the file's (llama.cpp) row order give other logits, so a loader
      // that forgot to undo the permutation would fail above.
      const auto as_stored = assemble(m, false, g.reference);
      EXPECT_FALSE(as_stored == want);
      EXPECT_FALSE(same_bits(ref, prompt_logits(c, as_stored, k_prompt)));
    }
  }
}

TEST(GgufCheckpoint, PermutationMatchesAHandWorkedHead) {
  // One head of d = 4 rows: llama.cpp stores rows {0, 2, 1, 3} of the Hugging Face order.
  const std::vector<float> hf = {0, 1, 2, 3};
  EXPECT_EQ(t::llama_cpp_permute_rows(hf, 4, 1, 1), (std::vector<float>{0, 2, 1, 3}));
  // Two heads of d = 6: within each head, halves {0 1 2 | 3 4 5} interleave to 0 3 1 4 2 5.
  std::vector<float> two(12);
  std::iota(two.begin(), two.end(), 0.0f);
  EXPECT_EQ(t::llama_cpp_permute_rows(two, 12, 1, 2),
            (std::vector<float>{0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11}));
}

TEST(GgufCheckpoint, MissingOutputTiesTheLmHeadToTheEmbedding) {
  temp_dir dir;
  const model_preset& m = model_preset_by_name("tiny");
  const auto g = t::make_tiny_llama_gguf(m, t::ggml::q8_0, 9, 3, /*with_output=*/false);
  const fs::path file = dir.path / "tied.gguf";
  g.writer.write(file);
  const decoder_config c = read_checkpoint_config(file);
  EXPECT_TRUE(load_checkpoint_weights(file, c.model) == assemble(m, true, g.hf_reference));
  EXPECT_NE(error_of([&] {
              load_checkpoint_weights(file, c.model, false);
            }).find("tied.gguf: missing tensor output.weight"),
            std::string::npos);
}

TEST(GgufCheckpoint, ErrorsNameTheFileAndWhat) {
  temp_dir dir;
  const model_preset& m = model_preset_by_name("tiny-mha");
  const std::string good = t::make_tiny_llama_gguf(m, t::ggml::q8_0, 3).writer.bytes();
  const auto load = [&](const std::string& name, const std::string& bytes) {
    const fs::path file = dir.write(name, bytes);
    return error_of([&] { load_checkpoint_weights(file, read_checkpoint_config(file).model); });
  };
  const auto expect_has = [](const std::string& msg, const std::string& part) {
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
  };

  // Cut in the header, in the tensor infos and in the data.
  expect_has(load("cut_header.gguf", good.substr(0, 100)), "cut_header.gguf: truncated file");
  expect_has(load("cut_data.gguf", good.substr(0, good.size() - 1000)), "runs past the end");
  // Mistyped metadata (the type field patched to another of the same size).
  std::string s = good;
  put_u32(s, key_type_at(s, "llama.block_count"), t::gguf_type::float32);
  expect_has(load("mistyped.gguf", s),
             "metadata llama.block_count must be an integer, got float32");
  s = good;
  put_u32(s, key_type_at(s, "llama.attention.layer_norm_rms_epsilon"), t::gguf_type::uint32);
  expect_has(load("eps.gguf", s),
             "metadata llama.attention.layer_norm_rms_epsilon must be a float, got uint32");
  // A type ggml knows and the loader does not read yet (Q4_K rows are smaller than Q8_0's, so the
  // file stays well-formed).
  s = good;
  put_u32(s, tensor_type_at(s, "blk.1.ffn_down.weight"), 12);
  expect_has(
      load("q4k.gguf", s),
      "q4k.gguf: tensor blk.1.ffn_down.weight has ggml type Q4_K, which is not supported yet");
  // Another architecture.
  s = good;
  const std::size_t arch = s.find("general.architecture") + 20 + 4 + 8;
  ASSERT_EQ(s.substr(arch, 5), "llama");
  s.replace(arch, 5, "qwen2");
  expect_has(load("qwen.gguf", s), "general.architecture 'qwen2' is not supported");
  // Not a GGUF file at all, named .gguf.
  expect_has(load("magic.gguf", "GGML" + good.substr(4)), "bad magic");
  // Unreadable: io_error.
  expect_has(error_of([&] { read_checkpoint_config(dir.path / "absent.gguf"); }), "io_error: ");

  // A preset of another shape (serve and replay pass the preset): the key that differs.
  const fs::path file = dir.write("ok.gguf", good);
  model_preset other = m;
  other.kv_heads = 2;
  expect_has(error_of([&] { load_checkpoint_weights(file, other); }),
             "ok.gguf: llama.attention.head_count_kv is 6; the model tiny-mha has 2");
}

TEST(GgufCheckpoint, DivergeRunLoadsAGgufAndRefusesABadOne) {
  temp_dir dir;
  const fs::path file = dir.path / "tiny.gguf";
  const auto g = t::make_tiny_llama_gguf(model_preset_by_name("tiny"), t::ggml::q4_0, 4);
  g.writer.write(file);
  const auto cli_run = [](const std::string& checkpoint) {
    std::ostringstream out, err;
    const int code = cli::run({"diverge", "run", "--executor", "cpu", "--checkpoint", checkpoint,
                               "--prompt-set", "random:1:8:1", "--steps", "3", "-o", ""},
                              out, err);
    return std::pair{code, err.str()};
  };
  auto [code, err] = cli_run(file.string());
  EXPECT_EQ(code, 0) << err;

  const std::string bytes = g.writer.bytes();
  for (const auto& [name, content] : std::vector<std::pair<std::string, std::string>>{
           {"cut.gguf", bytes.substr(0, 300)}, {"cutdata.gguf", bytes.substr(0, 9000)}}) {
    const fs::path bad = dir.write(name, content);
    std::tie(code, err) = cli_run(bad.string());
    EXPECT_EQ(code, cli::bad_input) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_TRUE(err.starts_with("ridgeline: " + bad.string() + ": ")) << err;
  }
  std::tie(code, err) = cli_run((dir.path / "absent.gguf").string());
  EXPECT_EQ(code, cli::io_failure) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}
