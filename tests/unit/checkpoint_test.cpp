// Hugging Face checkpoints (engine/checkpoint.hpp): config.json read and written, safetensors
// single file and sharded, the name mapping checked against files written by hand here (not by
// save_checkpoint), F16/F32 rounded to bf16 as the format definitions say, one clear error per
// broken input, header byte flips that never crash, and the CPU decoder giving bitwise the same
// logits from loaded weights as from the originals.
//   ctest --test-dir build-cpu -R Checkpoint
#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/cpu_engine.hpp"
#include "ridgeline/engine/safetensors.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "ridgeline/engine/step_batch.hpp"
#include "ridgeline/kernels/attention_reference.hpp"
#include "ridgeline/kernels/linear_reference.hpp"
#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/reference.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"

using namespace ridgeline;
namespace fs = std::filesystem;

namespace {

// name, layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, max_context
const model_preset k_tiny{"tiny-ckpt", 2, 64, 4, 2, 16, 88, 101, 128, false};

// A fresh directory per test, removed afterwards.
struct temp_dir {
  fs::path path;
  explicit temp_dir(const std::string& name)
      : path(fs::temp_directory_path() /
             ("ridgeline_ckpt_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

std::int64_t total_elements(const model_preset& m) {
  std::int64_t n = 0;
  for (const auto& t : weight_tensors(m)) n += t.elements;
  return n;
}

// Norms near 1, linears uniform with 1/sqrt(fan-in) scale, so activations stay well inside bf16.
std::vector<bf16_bits> random_weights(const model_preset& m, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<bf16_bits> w;
  for (const auto& t : weight_tensors(m)) {
    const float scale = t.norm ? 0.2f : 1.0f / std::sqrt(static_cast<float>(t.cols));
    for (std::int64_t i = 0; i < t.elements; ++i) {
      w.push_back(cpu::float_to_bf16((t.norm ? 1.0f : 0.0f) + scale * u(rng)));
    }
  }
  return w;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A tensor as a hand-written safetensors file holds it: raw little-endian bytes.
struct raw_tensor {
  std::string name, dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

// Writes a safetensors file from first principles (8-byte length, JSON, data), independent of
// save_checkpoint. Data is laid out in reverse order of `ts`, the header lists them in order, so
// nothing depends on the two agreeing.
void write_safetensors(const fs::path& p, const std::vector<raw_tensor>& ts) {
  std::vector<std::uint64_t> begin(ts.size());
  std::uint64_t at = 0;
  for (std::size_t i = ts.size(); i-- > 0;) {
    begin[i] = at;
    at += ts[i].bytes.size();
  }
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  for (std::size_t i = 0; i < ts.size(); ++i) {
    header += ",\"" + ts[i].name + "\":{\"dtype\":\"" + ts[i].dtype + "\",\"shape\":[";
    for (std::size_t d = 0; d < ts[i].shape.size(); ++d) {
      if (d) header += ',';
      header += std::to_string(ts[i].shape[d]);
    }
    header += "],\"data_offsets\":[" + std::to_string(begin[i]) + "," +
              std::to_string(begin[i] + ts[i].bytes.size()) + "]}";
  }
  header += "}";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  file += header;
  for (std::size_t i = ts.size(); i-- > 0;) file += ts[i].bytes;
  write_bytes(p, file);
}

// The Hugging Face Llama tensors, restated here from the brief (not from checkpoint.cpp), in the
// order their rows make up the engine's tensors: q, k, v form qkv and gate, up form gate_up.
struct hf_spec {
  std::string name;
  std::vector<std::int64_t> shape;
  std::int64_t elements() const {
    return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
  }
};
std::vector<hf_spec> hf_llama_tensors(const model_preset& m, bool with_lm_head = true) {
  const std::int64_t H = m.hidden, Q = m.heads * m.head_dim, KV = m.kv_heads * m.head_dim,
                     I = m.intermediate, V = m.vocab;
  std::vector<hf_spec> v{{"model.embed_tokens.weight", {V, H}}};
  for (int l = 0; l < m.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    v.push_back({p + "input_layernorm.weight", {H}});
    v.push_back({p + "self_attn.q_proj.weight", {Q, H}});
    v.push_back({p + "self_attn.k_proj.weight", {KV, H}});
    v.push_back({p + "self_attn.v_proj.weight", {KV, H}});
    v.push_back({p + "self_attn.o_proj.weight", {H, Q}});
    v.push_back({p + "post_attention_layernorm.weight", {H}});
    v.push_back({p + "mlp.gate_proj.weight", {I, H}});
    v.push_back({p + "mlp.up_proj.weight", {I, H}});
    v.push_back({p + "mlp.down_proj.weight", {H, I}});
  }
  v.push_back({"model.norm.weight", {H}});
  if (with_lm_head) v.push_back({"lm_head.weight", {V, H}});
  return v;
}

std::string as_bytes(const std::vector<std::uint16_t>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size() * 2};
}
std::string as_bytes(const std::vector<std::uint32_t>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size() * 4};
}

// Random BF16 tensors with every spec's name; `expected` gets their concatenation (engine layout).
std::vector<raw_tensor> random_hf_tensors(const model_preset& m, std::uint64_t seed,
                                          std::vector<bf16_bits>& expected) {
  std::mt19937_64 rng(seed);
  std::vector<raw_tensor> ts;
  for (const auto& s : hf_llama_tensors(m)) {
    std::vector<std::uint16_t> bits(static_cast<std::size_t>(s.elements()));
    for (auto& b : bits) b = static_cast<std::uint16_t>(rng());
    expected.insert(expected.end(), bits.begin(), bits.end());
    ts.push_back({s.name, "BF16", s.shape, as_bytes(bits)});
  }
  return ts;
}

// What a load must throw: std::invalid_argument whose one-line message contains every `parts`.
template <class F>
void expect_invalid(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning " << *parts.begin();
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << msg << "\nlacks: " << p;
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// config.json

TEST(Checkpoint, ReadsLlama31Config) {
  temp_dir dir("llama31");
  fs::create_directories(dir.path / "Llama-3.1-8B");
  const fs::path cfg = dir.path / "Llama-3.1-8B" / "config.json";
  write_bytes(cfg, R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "attention_bias": false})");
  const hf_config h = read_hf_config(cfg);
  const model_preset& m = h.decoder.model;
  EXPECT_EQ(m.name, "Llama-3.1-8B");
  EXPECT_EQ(m.layers, 32);
  EXPECT_EQ(m.hidden, 4096);
  EXPECT_EQ(m.heads, 32);
  EXPECT_EQ(m.kv_heads, 8);
  EXPECT_EQ(m.head_dim, 128);  // hidden / heads
  EXPECT_EQ(m.intermediate, 14336);
  EXPECT_EQ(m.vocab, 128256);
  EXPECT_EQ(m.max_context, 131072);
  EXPECT_EQ(h.architecture, "LlamaForCausalLM");
  EXPECT_FALSE(h.tie_word_embeddings);
  EXPECT_EQ(h.decoder.rms_eps, 1e-5f);
  EXPECT_EQ(h.decoder.rope.theta, 500000.0f);
  EXPECT_TRUE(h.decoder.rope.llama3_scaling);
  EXPECT_EQ(h.decoder.rope.scaling_factor, 8.0f);
  EXPECT_EQ(h.decoder.rope.low_freq_factor, 1.0f);
  EXPECT_EQ(h.decoder.rope.high_freq_factor, 4.0f);
  EXPECT_EQ(h.decoder.rope.original_max_position, 8192);
  EXPECT_EQ(model_from_hf_config(cfg).kv_heads, 8);
  EXPECT_EQ(decoder_config_from_hf(cfg, 32).block_tokens, 32);
}

TEST(Checkpoint, MistralDefaultsAndSlidingWindow) {
  temp_dir dir("mistral");
  const fs::path cfg = dir.path / "config.json";
  // No num_key_value_heads (= heads), explicit head_dim, no rope_scaling, window < context.
  write_bytes(cfg, R"({"architectures": ["MistralForCausalLM"], "hidden_size": 96,
    "intermediate_size": 256, "num_attention_heads": 6, "num_hidden_layers": 3,
    "head_dim": 32, "vocab_size": 311, "max_position_embeddings": 32768,
    "sliding_window": 4096, "rope_theta": 1000000.0, "rope_scaling": null})");
  const hf_config h = read_hf_config(cfg);
  EXPECT_EQ(h.decoder.model.kv_heads, 6);
  EXPECT_EQ(h.decoder.model.head_dim, 32);
  EXPECT_EQ(h.decoder.model.max_context, 4096);
  EXPECT_EQ(h.decoder.rms_eps, 1e-6f);  // transformers' default
  EXPECT_EQ(h.decoder.rope.theta, 1e6f);
  EXPECT_FALSE(h.decoder.rope.llama3_scaling);
}

TEST(Checkpoint, ConfigRoundTrip) {
  temp_dir dir("cfg_round_trip");
  const fs::path cfg = dir.path / "config.json";
  decoder_config c = make_decoder_config(k_tiny);
  c.rms_eps = 1e-5f;
  c.rope.theta = 500000.0f;
  c.rope.llama3_scaling = true;
  c.rope.scaling_factor = 32.0f;
  c.rope.low_freq_factor = 1.0f;
  c.rope.high_freq_factor = 4.0f;
  c.rope.original_max_position = 64;
  write_hf_config(cfg, c, true);
  EXPECT_NE(read_text_file(cfg).find("\"rms_norm_eps\": 1e-05"), std::string::npos);
  const hf_config h = read_hf_config(cfg);
  const model_preset& m = h.decoder.model;
  EXPECT_EQ(m.name, dir.path.filename().string());
  EXPECT_EQ(std::tie(m.layers, m.hidden, m.heads, m.kv_heads, m.head_dim, m.intermediate, m.vocab,
                     m.max_context),
            std::tie(k_tiny.layers, k_tiny.hidden, k_tiny.heads, k_tiny.kv_heads, k_tiny.head_dim,
                     k_tiny.intermediate, k_tiny.vocab, k_tiny.max_context));
  EXPECT_TRUE(h.tie_word_embeddings);
  EXPECT_EQ(h.decoder.rms_eps, c.rms_eps);
  EXPECT_EQ(h.decoder.rope.theta, c.rope.theta);
  EXPECT_TRUE(h.decoder.rope.llama3_scaling);
  EXPECT_EQ(h.decoder.rope.scaling_factor, 32.0f);
  EXPECT_EQ(h.decoder.rope.original_max_position, 64);
}

TEST(Checkpoint, ConfigErrorsNameTheFileAndField) {
  temp_dir dir("cfg_errors");
  const fs::path cfg = dir.path / "config.json";
  const std::string good_fields = R"("hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 88,
    "vocab_size": 101, "max_position_embeddings": 128)";
  auto with = [&](const std::string& extra) {
    write_bytes(cfg, "{" + good_fields + ", " + extra + "}");
    return [&] { read_hf_config(cfg); };
  };
  expect_invalid(with(R"("architectures": ["GPT2LMHeadModel"])"),
                 {cfg.string(), "GPT2LMHeadModel", "not supported"});
  write_bytes(cfg, R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64})");
  expect_invalid([&] { read_hf_config(cfg); }, {cfg.string(), "missing field 'num_hidden_layers'"});
  write_bytes(cfg, "{" + good_fields + "}");
  expect_invalid([&] { read_hf_config(cfg); }, {cfg.string(), "missing field 'architectures'"});
  write_bytes(cfg, R"({"architectures": ["LlamaForCausalLM"], "hidden_size": "64"})");
  expect_invalid([&] { read_hf_config(cfg); },
                 {cfg.string(), "'hidden_size' must be a positive integer, got \"64\""});
  expect_invalid(with(R"("architectures": ["LlamaForCausalLM"], "num_key_value_heads": 3)"),
                 {cfg.string(), "multiple of kv_heads"});
  expect_invalid(with(R"("architectures": ["LlamaForCausalLM"], "rope_scaling": {"rope_type":
                      "yarn", "factor": 4.0})"),
                 {cfg.string(), "rope_scaling type 'yarn'"});
  expect_invalid(with(R"("architectures": ["LlamaForCausalLM"], "rope_scaling": {"rope_type":
                      "llama3", "factor": 8.0})"),
                 {cfg.string(), "missing field 'low_freq_factor'"});
  expect_invalid(with(R"("architectures": ["LlamaForCausalLM"], "rms_norm_eps": -1)"),
                 {cfg.string(), "rms_norm_eps"});
  expect_invalid(with(R"("architectures": ["LlamaForCausalLM"], "hidden_act": "gelu")"),
                 {cfg.string(), "gelu"});
  write_bytes(cfg, "{\"architectures\": [");
  expect_invalid([&] { read_hf_config(cfg); }, {cfg.string(), "not valid JSON"});
  EXPECT_THROW(read_hf_config(dir.path / "absent.json"), io_error);
}

// ------------------------------------------------------------------------------------------------
// Loading

TEST(Checkpoint, SaveLoadRoundTripIsBitExact) {
  temp_dir dir("round_trip");
  const auto w = random_weights(k_tiny, 1);
  ASSERT_EQ(std::int64_t(w.size()), total_elements(k_tiny));
  save_checkpoint(dir.path / "model.safetensors", k_tiny, w);
  EXPECT_EQ(load_checkpoint_weights(dir.path, k_tiny), w);                        // the folder
  EXPECT_EQ(load_checkpoint_weights(dir.path / "model.safetensors", k_tiny), w);  // the file
  const safetensors_header h = read_safetensors_header(dir.path / "model.safetensors");
  EXPECT_EQ(h.data_offset % 8, 0u);
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.tensors.size(), hf_llama_tensors(k_tiny).size());
  EXPECT_EQ(h.tensors.at("model.layers.1.self_attn.k_proj.weight").shape,
            (std::vector<std::int64_t>{32, 64}));
}

TEST(Checkpoint, TiedEmbeddingsLeaveLmHeadOut) {
  temp_dir dir("tied");
  auto w = random_weights(k_tiny, 2);
  const auto tensors = weight_tensors(k_tiny);
  const std::int64_t emb = tensors.front().elements;
  std::copy_n(w.begin(), emb, w.end() - emb);  // lm_head (last) = embedding (first)
  save_checkpoint(dir.path / "model.safetensors", k_tiny, w, true);
  EXPECT_FALSE(
      read_safetensors_header(dir.path / "model.safetensors").tensors.contains("lm_head.weight"));
  EXPECT_EQ(load_checkpoint_weights(dir.path, k_tiny, true), w);
  // Unset: no config.json beside it means untied, and lm_head.weight is then missing.
  expect_invalid([&] { load_checkpoint_weights(dir.path, k_tiny); }, {"missing tensor lm_head"});
  write_hf_config(dir.path / "config.json", make_decoder_config(k_tiny), true);
  EXPECT_EQ(load_checkpoint_weights(dir.path, k_tiny), w);
  // An untied model cannot be saved as tied.
  const auto untied = random_weights(k_tiny, 3);
  expect_invalid([&] { save_checkpoint(dir.path / "x.safetensors", k_tiny, untied, true); },
                 {"lm head differs"});
  expect_invalid(
      [&] {
        save_checkpoint(dir.path / "x.safetensors", k_tiny, {w.data(), 10});
      },
      {"weight elements"});
}

TEST(Checkpoint, ShardedIndexMatchesHandAssembledLayout) {
  temp_dir dir("sharded");
  std::vector<bf16_bits> expected;
  const auto ts = random_hf_tensors(k_tiny, 4, expected);
  ASSERT_EQ(std::int64_t(expected.size()), total_elements(k_tiny));
  // Odd tensors in shard 1, even ones in shard 2: every fused tensor spans both shards.
  std::vector<raw_tensor> a, b;
  std::string map;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const char* shard =
        i % 2 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    (i % 2 ? a : b).push_back(ts[i]);
    map += std::string(map.empty() ? "" : ",") + "\"" + ts[i].name + "\":\"" + shard + "\"";
  }
  write_safetensors(dir.path / "model-00001-of-00002.safetensors", a);
  write_safetensors(dir.path / "model-00002-of-00002.safetensors", b);
  write_bytes(dir.path / "model.safetensors.index.json",
              R"({"metadata": {"total_size": 1}, "weight_map": {)" + map + "}}");
  const auto loaded = load_checkpoint_weights(dir.path, k_tiny, false);
  ASSERT_EQ(loaded.size(), expected.size());
  EXPECT_TRUE(loaded == expected);  // no element dump of 70k values on failure
  EXPECT_EQ(load_checkpoint_weights(dir.path / "model.safetensors.index.json", k_tiny, false),
            expected);
  // Saving the loaded weights writes the same tensors under the same names.
  save_checkpoint(dir.path / "resaved.safetensors", k_tiny, loaded);
  const auto h = read_safetensors_header(dir.path / "resaved.safetensors");
  const std::string bytes = read_bytes(dir.path / "resaved.safetensors");
  for (const auto& t : ts) {
    const auto& e = h.tensors.at(t.name);
    EXPECT_EQ(bytes.substr(h.data_offset + e.begin, e.end - e.begin), t.bytes) << t.name;
  }

  // A weight_map entry whose shard lacks the tensor, and a shard path leaving the folder.
  write_bytes(dir.path / "model.safetensors.index.json",
              R"({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors",)"
              R"( "lm_head.weight": "model-00001-of-00002.safetensors"}})");
  const bool norm_in_a = std::any_of(
      a.begin(), a.end(), [](const raw_tensor& t) { return t.name == "model.norm.weight"; });
  ASSERT_TRUE(norm_in_a != std::any_of(a.begin(), a.end(), [](const raw_tensor& t) {
                return t.name == "lm_head.weight";
              }));
  expect_invalid([&] { load_checkpoint_weights(dir.path, k_tiny, false); },
                 {"model.safetensors.index.json", "whose header has no such tensor"});
  write_bytes(dir.path / "model.safetensors.index.json",
              R"({"weight_map": {"model.norm.weight": "../model.safetensors"}})");
  expect_invalid([&] { load_checkpoint_weights(dir.path, k_tiny, false); },
                 {"not a file name in the index's folder"});
}

TEST(Checkpoint, F16AndF32AreRoundedToBf16) {
  // (source bits, bf16 bits) worked out by hand from the formats' definitions.
  const std::vector<std::pair<std::uint16_t, std::uint16_t>> f16 = {
      {0x3c00, 0x3f80},  // 1
      {0xc000, 0xc000},  // -2
      {0x3555, 0x3eab},  // 0.33325195 = 0x3eaaa000: rounds up
      {0x0001, 0x3380},  // 2^-24, subnormal in fp16, normal in bf16
      {0x7bff, 0x4780},  // 65504 = 0x477fe000: rounds up to 65536
      {0x8000, 0x8000},  // -0
      {0x7c00, 0x7f80},  // +inf
  };
  const std::vector<std::pair<std::uint32_t, std::uint16_t>> f32 = {
      {0x3f800000, 0x3f80},  // 1
      {0x3f808000, 0x3f80},  // tie: to even (down)
      {0x3f818000, 0x3f82},  // tie: to even (up)
      {0x3f80c000, 0x3f81},  // above half: up
      {0xc0490fdb, 0xc049},  // -pi: below half: down
      {0x00000001, 0x0000},  // smallest subnormal: down to +0
      {0x7f7fffff, 0x7f80},  // largest float rounds to infinity
  };
  for (const std::string mode : {"F16", "F32", "mixed"}) {
    SCOPED_TRACE(mode);
    temp_dir dir("convert_" + mode);
    std::vector<raw_tensor> ts;
    std::vector<bf16_bits> expected;
    int index = 0;
    for (const auto& s : hf_llama_tensors(k_tiny)) {
      const std::string dtype = mode != "mixed"  ? mode
                                : index % 3 == 0 ? "F16"
                                : index % 3 == 1 ? "F32"
                                                 : "BF16";
      std::vector<std::uint16_t> b16;
      std::vector<std::uint32_t> b32;
      for (std::int64_t i = 0; i < s.elements(); ++i) {
        const std::size_t k = static_cast<std::size_t>(i + index) % 7;
        if (dtype == "F16") {
          b16.push_back(f16[k].first);
          expected.push_back(f16[k].second);
        } else if (dtype == "F32") {
          b32.push_back(f32[k].first);
          expected.push_back(f32[k].second);
        } else {
          b16.push_back(static_cast<std::uint16_t>(0x1234 + i));
          expected.push_back(static_cast<std::uint16_t>(0x1234 + i));
        }
      }
      ts.push_back({s.name, dtype, s.shape, dtype == "F32" ? as_bytes(b32) : as_bytes(b16)});
      ++index;
    }
    write_safetensors(dir.path / "model.safetensors", ts);
    const auto loaded = load_checkpoint_weights(dir.path, k_tiny, false);
    ASSERT_EQ(loaded.size(), expected.size());
    std::size_t bad = 0, first_bad = 0;
    for (std::size_t i = 0; i < loaded.size(); ++i) {
      if (loaded[i] != expected[i] && bad++ == 0) first_bad = i;
    }
    EXPECT_EQ(bad, 0u) << "first mismatch at " << first_bad << ": got " << loaded[first_bad]
                       << ", expected " << expected[first_bad];
  }
}

// ------------------------------------------------------------------------------------------------
// Errors

TEST(Checkpoint, TruncatedFileNamesFileAndTensor) {
  temp_dir dir("truncated");
  const fs::path file = dir.path / "model.safetensors";
  save_checkpoint(file, k_tiny, random_weights(k_tiny, 5));
  // The data section ends with the last tensor saved; find it from the header.
  const auto h = read_safetensors_header(file);
  std::string last;
  std::uint64_t last_end = 0;
  for (const auto& [name, t] : h.tensors) {
    if (t.end > last_end) last_end = t.end, last = name;
  }
  fs::resize_file(file, fs::file_size(file) - 3);
  expect_invalid([&] { load_checkpoint_weights(dir.path, k_tiny); },
                 {file.string(), "tensor '" + last + "'", "truncated"});
  fs::resize_file(file, 5);
  expect_invalid([&] { load_checkpoint_weights(file, k_tiny); }, {file.string(), "too short"});
}

TEST(Checkpoint, BadHeaderLengthAndInvalidJson) {
  temp_dir dir("bad_header");
  const fs::path file = dir.path / "model.safetensors";
  save_checkpoint(file, k_tiny, random_weights(k_tiny, 6));
  const std::string good = read_bytes(file);

  std::string bad = good;
  bad[6] = '\x01';  // header length 2^48 + ...
  write_bytes(file, bad);
  expect_invalid([&] { load_checkpoint_weights(file, k_tiny); }, {file.string(), "header length"});

  bad = good;
  bad[8] = '[';  // the header's opening brace
  write_bytes(file, bad);
  expect_invalid([&] { load_checkpoint_weights(file, k_tiny); }, {file.string(), "not valid JSON"});

  write_safetensors(file, {});
  bad = read_bytes(file);
  bad.replace(8, bad.size() - 8, std::string("[1, 2, 3]").append(bad.size() - 17, ' '));
  write_bytes(file, bad);
  expect_invalid([&] { read_safetensors_header(file); }, {file.string(), "not a JSON object"});

  // Offsets that disagree with dtype x shape.
  write_safetensors(file, {{"x", "BF16", {3, 2}, std::string(10, '\0')}});
  expect_invalid([&] { read_safetensors_header(file); }, {"tensor 'x'", "needs 12"});
  // Negative and fractional dimensions.
  expect_invalid(
      [] {
        parse_safetensors_header(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0,
                                 "s");
      },
      {"tensor 'x'", "-1"});
  expect_invalid(
      [] {
        parse_safetensors_header(R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,6]}})", 8,
                                 "s");
      },
      {"tensor 'x'", "1.5"});
  // Elements x width past 2^64.
  expect_invalid(
      [] {
        parse_safetensors_header(
            R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0,
            "s");
      },
      {"tensor 'x'", "2^64"});
  // A file that is not there is an I/O error, not bad input.
  EXPECT_THROW(load_checkpoint_weights(dir.path / "absent.safetensors", k_tiny), io_error);
  EXPECT_THROW(load_checkpoint_weights(dir.path / "absent-dir", k_tiny), io_error);
}

TEST(Checkpoint, UnsupportedDtypeIsNamed) {
  temp_dir dir("dtype");
  std::vector<bf16_bits> unused;
  auto ts = random_hf_tensors(k_tiny, 7, unused);
  ts[3].dtype = "I16";  // same width, so only the dtype is wrong
  write_safetensors(dir.path / "model.safetensors", ts);
  expect_invalid([&] { load_checkpoint_weights(dir.path, k_tiny); },
                 {"model.safetensors", ts[3].name, "dtype I16", "BF16, F16 and F32"});
}

TEST(Checkpoint, ShapeMismatchSaysBothShapes) {
  temp_dir dir("shape");
  std::vector<bf16_bits> unused;
  auto ts = random_hf_tensors(k_tiny, 8, unused);
  for (auto& t : ts) {
    if (t.name == "model.layers.1.mlp.down_proj.weight") {
      t.shape = {64, 80};
      t.bytes.resize(64 * 80 * 2);
    }
  }
  write_safetensors(dir.path / "model.safetensors", ts);
  expect_invalid([&] { load_checkpoint_weights(dir.path, k_tiny); },
                 {(dir.path / "model.safetensors").string() +
                  ": model.layers.1.mlp.down_proj.weight has shape [64, 80]; the config says "
                  "[64, 88]"});
  // A whole model of another shape fails at its first tensor that differs.
  model_preset wider = k_tiny;
  wider.intermediate = 96;
  save_checkpoint(dir.path / "model.safetensors", wider, random_weights(wider, 9));
  expect_invalid([&] { load_checkpoint_weights(dir.path, k_tiny); },
                 {"model.layers.0.mlp.gate_proj.weight has shape [96, 64]; the config says "
                  "[88, 64]"});
}

TEST(Checkpoint, MissingTensorIsNamed) {
  temp_dir dir("missing");
  std::vector<bf16_bits> unused;
  auto ts = random_hf_tensors(k_tiny, 10, unused);
  std::erase_if(
      ts, [](const raw_tensor& t) { return t.name == "model.layers.1.self_attn.v_proj.weight"; });
  write_safetensors(dir.path / "model.safetensors", ts);
  expect_invalid([&] { load_checkpoint_weights(dir.path, k_tiny); },
                 {"model.safetensors", "missing tensor model.layers.1.self_attn.v_proj.weight"});
}

// Random byte flips in the length and JSON header of a valid file: each either parses (and, for
// every tenth, loads with the right size) or throws std::invalid_argument / io_error with a
// one-line message; nothing else (a crash, another exception type, a sanitizer report under
// build-asan) is acceptable. Only every tenth goes through a file: rewriting one costs ~4 ms.
TEST(Checkpoint, HeaderByteFlipsNeverCrash) {
  temp_dir dir("flips");
  const model_preset m{"flip", 1, 16, 2, 1, 8, 16, 11, 32, false};
  const fs::path file = dir.path / "model.safetensors";
  save_checkpoint(file, m, random_weights(m, 11));
  const std::string good = read_bytes(file);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(good[i]);
  const std::size_t header_end = 8 + n;
  std::mt19937_64 rng(12);
  int parsed = 0, rejected = 0, loaded = 0, load_rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      const std::size_t at = rng() % header_end;
      if (rng() % 2) {
        bad[at] = static_cast<char>(bad[at] ^ (1 << (rng() % 8)));
      } else {
        bad[at] = static_cast<char>(rng());
      }
    }
    try {
      parse_safetensors_header(std::string_view(bad).substr(8, n), good.size() - header_end,
                               "flipped");
      ++parsed;
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      ++rejected;
    }
    if (iter % 10 != 0) continue;
    write_bytes(file, bad);
    try {
      const auto w = load_checkpoint_weights(file, m, false);
      EXPECT_EQ(std::int64_t(w.size()), total_elements(m));
      ++loaded;
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      ++load_rejected;
    } catch (const io_error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      ++load_rejected;
    }
  }
  EXPECT_GT(rejected, 2000);  // almost every flip breaks something the parser checks
  EXPECT_EQ(parsed + rejected, 3000);
  EXPECT_GT(load_rejected, 200);
  EXPECT_EQ(loaded + load_rejected, 300);
}

// ------------------------------------------------------------------------------------------------
// End to end: the CPU decoder (decoder_forward over the references) from a checkpoint folder

namespace {

// Logits of the last prompt token, one prefill step from an empty cache (the CPU engine).
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

}  // namespace

TEST(Checkpoint, CpuDecoderFromCheckpointFolderGivesSameLogits) {
  temp_dir dir("engine");
  decoder_config c = make_decoder_config(k_tiny);
  c.rope.theta = 500000.0f;
  c.rope.llama3_scaling = true;
  c.rope.original_max_position = 16;  // so the scaling changes frequencies at these sizes
  c.rms_eps = 1e-5f;
  const auto w = random_weights(k_tiny, 13);
  write_hf_config(dir.path / "config.json", c);
  save_checkpoint(dir.path / "model.safetensors", k_tiny, w);

  const decoder_config loaded_c = decoder_config_from_hf(dir.path / "config.json");
  const auto loaded_w = load_checkpoint_weights(dir.path, loaded_c.model);
  const std::vector<token_id> prompt = {
      1, 17, 100, 5,  42, 0, 63, 99, 7,
      3, 88, 51,  20, 11, 2, 9,  77, 30};  // 18 tokens: two KV blocks
  const auto ref = prompt_logits(c, w, prompt);
  const auto got = prompt_logits(loaded_c, loaded_w, prompt);
  EXPECT_TRUE(same_bits(ref, got));
  for (const float x : ref) ASSERT_TRUE(std::isfinite(x));
  EXPECT_NE(*std::min_element(ref.begin(), ref.end()), *std::max_element(ref.begin(), ref.end()));
  // The comparison can fail: other weights or another RoPE give other logits.
  EXPECT_FALSE(same_bits(ref, prompt_logits(c, random_weights(k_tiny, 14), prompt)));
  decoder_config no_scaling = loaded_c;
  no_scaling.rope.llama3_scaling = false;
  EXPECT_FALSE(same_bits(ref, prompt_logits(no_scaling, loaded_w, prompt)));
}

// The safetensors layer alone (no model): what write_bf16_safetensors writes, safetensors_reader
// finds and reads back by name, in the order and shapes given.
TEST(Safetensors, WriterAndReaderRoundTripByName) {
  temp_dir dir("safetensors_only");
  const std::vector<bf16_bits> a = {1, 2, 3, 4, 5, 6}, b = {0x3f80, 0xbf80, 7};
  const std::vector<safetensors_entry> entries = {{"first", {2, 3}, a.data()},
                                                  {"second.weight", {3}, b.data()}};
  const fs::path file = dir.path / "x.safetensors";
  write_bf16_safetensors(file, entries);
  const safetensors_header h = read_safetensors_header(file);
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.data_offset % 8, 0u);  // the data section is 8-byte aligned
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.tensors.at("first").begin, 0u);
  EXPECT_EQ(h.tensors.at("second.weight").begin, 12u);  // after the first's 6 x 2 bytes
  safetensors_reader r(file);
  EXPECT_EQ(r.folder(), dir.path);
  const safetensors_tensor* t = r.find("second.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, "BF16");
  EXPECT_EQ(shape_text(t->shape), "[3]");
  std::vector<bf16_bits> got(3, 0xffff);
  r.read("second.weight", got.data());
  EXPECT_EQ(got, b);
  got.assign(6, 0xffff);
  r.read("first", got.data());
  EXPECT_EQ(got, a);
  EXPECT_EQ(r.find("third"), nullptr);
  try {
    r.missing("third");
    FAIL() << "missing() returned";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(file.string() + ": missing tensor third"),
              std::string::npos)
        << e.what();
  }
}

// The layout helpers both executors use: one allocation of every weight tensor, each starting at
// a multiple of the alignment (128 elements = 256 bytes on the GPU, 1 on the CPU).
TEST(Decoder, WeightOffsetsAndTensorPointers) {
  const model_preset& m = model_preset_by_name("tiny-mha");
  const auto tensors = weight_tensors(m);
  const auto packed = weight_offsets(m, 1);
  const auto aligned = weight_offsets(m, 128);
  ASSERT_EQ(packed.size(), tensors.size() + 1);
  ASSERT_EQ(aligned.size(), tensors.size() + 1);
  EXPECT_EQ(packed.back(), total_weight_elements(m));
  std::int64_t sum = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(packed[i], sum);
    sum += tensors[i].elements;
    EXPECT_EQ(aligned[i] % 128, 0);
    EXPECT_GE(aligned[i + 1] - aligned[i], tensors[i].elements);
    EXPECT_LT(aligned[i + 1] - aligned[i], tensors[i].elements + 128);
  }
  EXPECT_EQ(sum, total_weight_elements(m));
  std::vector<bf16_bits> storage(static_cast<std::size_t>(aligned.back()));
  const auto ptrs = tensor_pointers(m, storage.data(), 128);
  ASSERT_EQ(ptrs.size(), tensors.size());
  for (std::size_t i = 0; i < ptrs.size(); ++i) EXPECT_EQ(ptrs[i], storage.data() + aligned[i]);
  EXPECT_THROW(weight_offsets(m, 0), std::invalid_argument);
}

TEST(Decoder, BindStepInputsTakesCountsFromTheStepAndPointersFromTheArrays) {
  const std::vector<token_id> a = {1, 2, 3, 4, 5}, b = {6, 7};
  const std::vector<block_id> ta = {3, 1}, tb = {0};
  std::vector<step_sequence> seqs(2);
  seqs[0] = {a, 2, 3, ta, true, {}};
  seqs[1] = {b, 0, 2, tb, false, {}};
  const host_step h = build_step(seqs, 4, 16);
  std::vector<std::int32_t> out_tokens(1), out_ids(3);
  std::vector<float> out_lp(3), out_sampled(1);
  const step_arrays arrays{h.ids.data(),         h.positions.data(),    h.slot_mapping.data(),
                           h.q_offsets.data(),   h.seq_lens.data(),     h.block_tables.data(),
                           h.sample_rows.data(), h.prev_tokens.data(),  h.prev_offsets.data(),
                           h.sampling.data(),    out_tokens.data(),     out_lp.data(),
                           out_ids.data(),       out_sampled.data()};
  const step_inputs in = bind_step_inputs(h, arrays, 3, 64);
  EXPECT_EQ(in.num_tokens, 5);
  EXPECT_EQ(in.num_seqs, 2);
  EXPECT_EQ(in.num_samples, 1);
  EXPECT_EQ(in.max_blocks_per_seq, 2);
  EXPECT_EQ(in.split_tokens, 64);
  EXPECT_EQ(in.top_logprobs, 3);
  EXPECT_EQ(in.block_tables, h.block_tables.data());
  EXPECT_EQ(in.slot_mapping, h.slot_mapping.data());
  EXPECT_EQ(in.out_logprobs, out_lp.data());
  EXPECT_EQ(in.out_top_ids, out_ids.data());
  EXPECT_EQ(in.out_sampled_logprobs, out_sampled.data());
  const step_inputs no_topk = bind_step_inputs(h, arrays, 0, 0);
  EXPECT_EQ(no_topk.out_logprobs, nullptr);
  EXPECT_EQ(no_topk.out_top_ids, nullptr);
  EXPECT_EQ(no_topk.out_sampled_logprobs, nullptr);
  EXPECT_EQ(no_topk.out_tokens, out_tokens.data());
}
