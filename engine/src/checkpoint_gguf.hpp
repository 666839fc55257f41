// The GGUF half of load_checkpoint_weights (checkpoint_gguf.cpp), called by checkpoint.cpp when
// is_gguf_checkpoint() says the path is a GGUF file.
#pragma once

#include <filesystem>
#include <optional>
#include <vector>

#include "ridgeline/engine/decoder.hpp"

namespace ridgeline::detail {

std::vector<bf16_bits> load_gguf_weights(const std::filesystem::path& file, const model_preset& m,
                                         std::optional<bool> tie_word_embeddings);

}  // namespace ridgeline::detail
