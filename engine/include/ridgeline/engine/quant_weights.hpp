// Quantized weights for the CUDA engine (engine_options::weights): which tensors it stores packed
// and how (kernels/quant_packed.hpp), their exact device bytes for the memory plan, and the host
// side of loading them: seeded random or bf16 weights quantized with quant.hpp's quantizers and
// repacked with quant_pack.hpp, quantized checkpoints packed as they are stored (no value
// changes), and the bf16 weights the CPU decoder runs to reproduce an engine (tests, audits).
//   const auto f = resolve_weight_format(o.weights, o.checkpoint);         // the load rules
//   const auto storage = uniform_storage(m, f);                            // per tensor
//   cpu::packed_quant_matrix p = random_packed_tensor(m, i, seed, storage[i]);
// Formats: bf16; fp8 (e4m3, one fp32 scale per output channel); int8 (weight-only, one scale per
// output channel); int4 (weight-only, groups of 128 input columns with a scale and a 4-bit zero
// point). Only each decoder layer's four linears (qkv, o, gate_up, down) are quantized; the
// embedding, the norms and the LM head stay bf16. docs/engine.md ("Quantized weights").
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ridgeline/engine/decoder.hpp"
#include "ridgeline/kernels/quant.hpp"
#include "ridgeline/kernels/quant_pack.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"
#include "ridgeline/perfmodel/weights.hpp"

namespace ridgeline {

// "bf16", "fp8", "int8", "int4" (the engine's formats); anything else throws
// std::invalid_argument listing them.
planner::weight_format parse_engine_weights(std::string_view s);
// Throws std::invalid_argument for a format the engine does not run (fp16, fp32).
void check_engine_weights(planner::weight_format f);

// quant.hpp's format the block linears are quantized to for f: int4 -> int4_group (group 128),
// int8 -> int8_channel, fp8 -> fp8_e4m3_channel. Throws std::invalid_argument for bf16.
cpu::quant_format quant_format_for(planner::weight_format f);

// The tensors of weight_tensors(m) the engine may store packed: every layer's qkv, o, gate_up and
// down.
bool is_block_linear(const weight_tensor& t);

// How the engine stores one tensor: bf16, or packed from a quant.hpp format.
struct tensor_storage {
  bool packed = false;
  cpu::quant_format format = cpu::quant_format::int4_group;  // packed only
  int group_size = cpu::k_default_group_size;                // int4_group only
};
// Every tensor's storage when the block linears are all in f (random weights, a bf16 checkpoint
// quantized at load). Throws std::invalid_argument, one line, for a block linear the format
// cannot hold: "tiny: layers.0.down [64][176] cannot be stored as int4: ..." (cols must be a
// multiple of 32, and of 128 for int4).
std::vector<tensor_storage> uniform_storage(const model_preset& m, planner::weight_format f);

// Device bytes of one tensor stored so: bf16 elements x 2, or the packed data, scales and zero
// points, each rounded up to 256 bytes as the engine allocates them.
std::int64_t storage_bytes(const weight_tensor& t, const tensor_storage& s);
// The sum over weight_tensors(m) (s: one entry per tensor).
std::int64_t weight_storage_bytes(const model_preset& m, std::span<const tensor_storage> s);
// Elements of the largest packed tensor (the dequantize scratch holds one layer as bf16); 0 when
// nothing is packed.
std::int64_t largest_packed_elements(const model_preset& m, std::span<const tensor_storage> s);

// The engine's KV blocks from the planner's plan (weights at the planner's per-parameter bytes of
// their format) corrected to the exact bytes the engine uploads and its dequantize scratch: the
// difference exact - plan.weight_bytes (either sign) and the scratch come off the KV budget.
// num_kv_blocks > 0 asks for exactly that many. Throws std::invalid_argument, one line starting
// with `who`, when the plan does not fit (its why_not) or too little is left for the blocks.
std::int64_t corrected_kv_blocks(const planner::memory_plan& plan, std::int64_t exact_weight_bytes,
                                 std::int64_t dequant_scratch_bytes, std::int64_t num_kv_blocks,
                                 const std::string& who);

// pack_quantized(quantize(f, rows, cols, w, group_size)), bit for bit, computed in slices of whole
// 16-row tiles on `threads` threads (0: the hardware's). rows_of(r0, n, out) writes rows
// [r0, r0 + n) as floats into out[n][cols]; it is called from several threads at once.
cpu::packed_quant_matrix quantize_packed(cpu::quant_format f, int rows, int cols, int group_size,
                                         const std::function<void(int, int, float*)>& rows_of,
                                         int threads = 0);
// Tensor `index` of weight_tensors(m) from the seeded random weights: the bf16 values
// random_weights(m, seed) holds (random_weights.hpp's rule), quantized and packed as s says.
cpu::packed_quant_matrix random_packed_tensor(const model_preset& m, std::size_t index,
                                              std::uint64_t seed, const tensor_storage& s,
                                              int threads = 0);
// A bf16 tensor [t.rows][t.cols] quantized and packed as s says.
cpu::packed_quant_matrix pack_bf16_tensor(const weight_tensor& t, const bf16_bits* w,
                                          const tensor_storage& s, int threads = 0);

// The weights an engine in format f runs, as bf16 for the CPU decoder: every block linear of w
// (weight_tensors(m) order, concatenated) quantized and dequantized, rounded to bf16 once (what the
// prefill path's dequantizer gives); the other tensors unchanged; f = bf16 returns w.
std::vector<bf16_bits> dequantized_weights(const model_preset& m, std::span<const bf16_bits> w,
                                           planner::weight_format f);

// One tensor as loaded for the engine: bf16 values, or packed.
struct loaded_tensor {
  std::vector<bf16_bits> bf16;                    // [rows][cols] when not packed
  std::optional<cpu::packed_quant_matrix> packed;
};

// The format a checkpoint stores its block linears in: int4 for AWQ and GPTQ folders (config.json
// quantization_config or quantize_config.json), fp8 for Hugging Face fp8 ones, int4 / int8 for a
// GGUF file whose linear tensors are Q4_0 / Q8_0 (F16/F32/BF16 fallbacks aside); nullopt for a
// bf16/F16/F32 checkpoint. Throws std::invalid_argument for a GGUF file that mixes Q4_0 and Q8_0
// linears (run it with --weights bf16).
std::optional<planner::weight_format> checkpoint_weight_format(
    const std::filesystem::path& checkpoint);

// The load rules: the format the engine runs for `asked` (--weights) and a checkpoint (empty:
// random weights). Unset: the checkpoint's own format, else bf16. bf16 always loads (a quantized
// checkpoint is dequantized, as before quantized kernels existed). A quantized format with a bf16
// checkpoint quantizes it at load (round to nearest, as for random weights). A quantized
// checkpoint asked to run in another quantized format is refused in one line:
// "<path>: the checkpoint holds int4 (awq) weights; --weights fp8 would quantize them again (use
// --weights int4, or bf16 to run them dequantized)".
planner::weight_format resolve_weight_format(std::optional<planner::weight_format> asked,
                                             const std::filesystem::path& checkpoint);

// Every tensor of weight_tensors(m) from a checkpoint for an engine in format f (the result of
// resolve_weight_format): bf16 -> load_checkpoint_weights (quantized checkpoints dequantized to
// bf16); a quantized checkpoint in its own format -> its block linears packed exactly as stored
// (AWQ/GPTQ int4 with their group size, fp8 per channel or per tensor, GGUF Q4_0 as int4 in
// groups of 32 with zero point 8 and Q8_0 as int8 in groups of 32; GGUF tensors stored as
// F16/F32/BF16 stay bf16); a bf16 checkpoint in a quantized format -> quantized at load.
// Formats the packed layout cannot hold exactly are refused in one line naming the tensor and
// the way out (--weights bf16): GPTQ act-order (g_idx other than row / group_size), a GPTQ zero
// point of 16, block-wise fp8 scales, a group size that is not a multiple of 32.
std::vector<loaded_tensor> load_checkpoint_for_engine(
    const std::filesystem::path& checkpoint, const model_preset& m, planner::weight_format f,
    std::optional<bool> tie_word_embeddings = std::nullopt);

}  // namespace ridgeline
