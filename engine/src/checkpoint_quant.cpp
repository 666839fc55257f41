// The load rules of quantized weights (quant_weights.hpp): which format a checkpoint holds, which
// the engine runs, and the dispatch to the GGUF and Hugging Face loaders (checkpoint_quant.hpp).
#include <stdexcept>
#include <string>

#include "checkpoint_quant.hpp"
#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/quant_weights.hpp"

namespace ridgeline {
namespace fs = std::filesystem;

namespace {

std::string held_by(const fs::path& checkpoint, planner::weight_format f) {
  if (is_gguf_checkpoint(checkpoint)) {
    return f == planner::weight_format::int4 ? "int4 (GGUF Q4_0)" : "int8 (GGUF Q8_0)";
  }
  const auto q = detail::hf_quantization(checkpoint);
  return std::string(planner::name(f)) + " (" + (q ? q->method : std::string("?")) + ")";
}

}  // namespace

std::optional<planner::weight_format> checkpoint_weight_format(const fs::path& checkpoint) {
  if (is_gguf_checkpoint(checkpoint)) return detail::gguf_weight_format(checkpoint);
  const auto q = detail::hf_quantization(checkpoint);
  if (!q) return std::nullopt;
  return q->method == "fp8" ? planner::weight_format::fp8 : planner::weight_format::int4;
}

planner::weight_format resolve_weight_format(std::optional<planner::weight_format> asked,
                                             const fs::path& checkpoint) {
  if (asked) check_engine_weights(*asked);
  if (checkpoint.empty()) return asked.value_or(planner::weight_format::bf16);
  const auto held = checkpoint_weight_format(checkpoint);
  if (!asked) return held.value_or(planner::weight_format::bf16);
  if (*asked == planner::weight_format::bf16 || !held || *held == *asked) return *asked;
  throw std::invalid_argument(checkpoint.string() + ": the checkpoint holds " +
                              held_by(checkpoint, *held) + " weights; --weights " +
                              std::string(planner::name(*asked)) +
                              " would quantize them again (use --weights " +
                              std::string(planner::name(*held)) +
                              ", or bf16 to run them dequantized)");
}

std::vector<loaded_tensor> load_checkpoint_for_engine(const fs::path& checkpoint,
                                                      const model_preset& m,
                                                      planner::weight_format f,
                                                      std::optional<bool> tie_word_embeddings) {
  check_engine_weights(f);
  const auto held = checkpoint_weight_format(checkpoint);
  if (held && f != planner::weight_format::bf16 && *held != f) {
    resolve_weight_format(f, checkpoint);  // throws the mismatch line
  }
  if (is_gguf_checkpoint(checkpoint)) {
    return detail::load_gguf_for_engine(checkpoint, m, f, tie_word_embeddings);
  }
  if (const auto q = detail::hf_quantization(checkpoint)) {
    return detail::load_hf_quantized_for_engine(checkpoint, m, *q, f, tie_word_embeddings);
  }
  // A bf16/F16/F32 checkpoint: as bf16, or quantized at load (round to nearest).
  const std::vector<bf16_bits> w = load_checkpoint_weights(checkpoint, m, tie_word_embeddings);
  const auto tensors = weight_tensors(m);
  const std::vector<tensor_storage> storage = uniform_storage(m, f);
  std::vector<loaded_tensor> out(tensors.size());
  std::size_t at = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto n = static_cast<std::size_t>(tensors[i].elements);
    if (storage[i].packed) {
      out[i].packed = pack_bf16_tensor(tensors[i], w.data() + at, storage[i]);
    } else {
      out[i].bf16.assign(w.begin() + static_cast<std::ptrdiff_t>(at),
                         w.begin() + static_cast<std::ptrdiff_t>(at + n));
    }
    at += n;
  }
  return out;
}

}  // namespace ridgeline
