// Real checkpoints for the engine: a Hugging Face Llama or Mistral folder (config.json plus
// model.safetensors, or shards listed by model.safetensors.index.json), or a llama.cpp GGUF file
// (Llama family; F32/F16/BF16/Q8_0/Q4_0, dequantized on load), read into the engine's weight
// layout (weight_tensors() order, bf16, q/k/v and gate/up fused), and a writer of the Hugging Face
// format for tests and for exporting random models. docs/checkpoints.md has the name mappings.
// This file maps names and reads config.json / GGUF metadata; the containers are safetensors.hpp
// and gguf.hpp. Every command's --checkpoint goes through the two dispatching calls:
//   const decoder_config c = read_checkpoint_config("Llama-3.1-8B");   // or "llama.Q4_0.gguf"
//   std::vector<bf16_bits> w = load_checkpoint_weights("Llama-3.1-8B", c.model);
// Bad or inconsistent input throws std::invalid_argument, files that cannot be read or written
// throw io_error; either way one line that names the file (and the tensor or field).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ridgeline/engine/decoder.hpp"
#include "ridgeline/engine/safetensors.hpp"

namespace ridgeline {

// What ridgeline reads from a Hugging Face config.json.
struct hf_config {
  decoder_config decoder;            // shape (name: the folder's name), rope, rms_norm_eps
  std::string architecture;          // "LlamaForCausalLM" or "MistralForCausalLM"
  bool tie_word_embeddings = false;  // lm_head is the embedding
};

// Reads and checks config.json: the shape fields, rope_theta, rope_scaling (none, "default" or
// "llama3"), rms_norm_eps; architectures must name LlamaForCausalLM or MistralForCausalLM. A
// Mistral sliding_window shorter than max_position_embeddings caps max_context (the engine
// attends to the whole context, which equals sliding-window attention only within the window).
hf_config read_hf_config(const std::filesystem::path& config_json, int block_tokens = 16);
model_preset model_from_hf_config(const std::filesystem::path& config_json);
decoder_config decoder_config_from_hf(const std::filesystem::path& config_json,
                                      int block_tokens = 16);

// Writes config.json for a decoder (LlamaForCausalLM, bf16), readable by read_hf_config and by
// Hugging Face transformers.
void write_hf_config(const std::filesystem::path& config_json, const decoder_config& c,
                     bool tie_word_embeddings = false);

// True when `checkpoint` is a GGUF file: a path ending in .gguf (any case; it need not exist, so
// that a missing one is reported by the GGUF reader), or a regular file that starts with the
// magic "GGUF" (Ollama's blobs have no extension).
bool is_gguf_checkpoint(const std::filesystem::path& checkpoint);

// The decoder a GGUF file describes (Llama family: general.architecture "llama"): the shape from
// llama.* metadata (block_count, embedding_length, attention.head_count(_kv), key_length,
// feed_forward_length, context_length, vocabulary = tokenizer.ggml.tokens), rope.freq_base and
// attention.layer_norm_rms_epsilon. The model's name is the file's stem. Refuses (one line naming
// the file and key) other architectures, RoPE scaling (rope.scaling.type other than "none", or a
// rope_freqs.weight tensor as Llama 3.1 files carry), partial rotary dimensions and key/value
// lengths that differ.
decoder_config decoder_config_from_gguf(const std::filesystem::path& file, int block_tokens = 16);

// The decoder of any checkpoint --checkpoint takes: a GGUF file (decoder_config_from_gguf), else
// a Hugging Face folder's config.json, or the config.json beside a .safetensors / .index.json file.
decoder_config read_checkpoint_config(const std::filesystem::path& checkpoint,
                                      int block_tokens = 16);

// Every tensor of weight_tensors(m), in order, concatenated, read from a checkpoint: a folder
// (model.safetensors.index.json if present, else model.safetensors), a .safetensors file or an
// .index.json file, or a GGUF file (is_gguf_checkpoint). Shapes must match m exactly. BF16 is
// copied, F16 and F32 are rounded to bf16.
// tie_word_embeddings: true takes lm_head from the embedding; false needs lm_head.weight; unset
// reads tie_word_embeddings from a config.json beside the checkpoint (false when there is none).
// GGUF: the file's llama.* shape must equal m (a preset is checked, not trusted); every tensor is
// dequantized to float and rounded to bf16 (the engine has no quantized kernels yet); Q and K
// rows are un-permuted from llama.cpp's interleaved RoPE order; unset tie_word_embeddings ties
// when output.weight is absent (as llama.cpp does).
std::vector<bf16_bits> load_checkpoint_weights(
    const std::filesystem::path& dir_or_file, const model_preset& m,
    std::optional<bool> tie_word_embeddings = std::nullopt);

// Writes weights (weight_tensors(m) order) as one safetensors file with Hugging Face Llama names,
// BF16. tie_embeddings leaves lm_head.weight out; the lm head must then equal the embedding.
void save_checkpoint(const std::filesystem::path& file, const model_preset& m,
                     std::span<const bf16_bits> weights, bool tie_embeddings = false);

}  // namespace ridgeline
