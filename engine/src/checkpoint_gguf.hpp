// The GGUF half of load_checkpoint_weights (checkpoint_gguf.cpp), called by checkpoint.cpp when
// is_gguf_checkpoint() says the path is a GGUF file.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/decoder.hpp"

namespace ridgeline::detail {

// The model's weights (weight_tensors(m) order) in one bf16 buffer, from a checkpoint's parts,
// for both readers: parts_of(tensor) lists a tensor's parts in the checkpoint (q/k/v and gate/up
// are fused from several), check(part) throws when the file's part is missing or unlike it, and is
// called for every part before anything is read, so a wrong file fails before gigabytes are
// converted; count(part) is its elements; read(part, dst) converts it into dst. With `tied`, the
// lm_head is a copy of the embedding (nothing is read for it).
template <typename PartsOf, typename Check, typename Count, typename Read>
std::vector<bf16_bits> gather_weights(const model_preset& m, bool tied, PartsOf parts_of,
                                      Check check, Count count, Read read) {
  using part = typename decltype(parts_of(weight_tensors(m).front()))::value_type;
  struct planned {
    std::vector<part> parts;
    std::int64_t offset = 0;
    bool from_embedding = false;
  };
  std::vector<planned> plan;
  std::int64_t total = 0, embedding_offset = 0;
  for (const auto& t : weight_tensors(m)) {
    planned p{parts_of(t), total, tied && t.name == "lm_head"};
    if (t.name == "embedding") embedding_offset = total;
    if (!p.from_embedding) {
      for (const auto& x : p.parts) check(x);
    }
    total += t.elements;
    plan.push_back(std::move(p));
  }
  std::vector<bf16_bits> out(static_cast<std::size_t>(total));
  for (const auto& p : plan) {
    std::int64_t at = p.offset;
    for (const auto& x : p.parts) {
      const std::int64_t n = count(x);
      if (p.from_embedding) {
        std::copy_n(out.begin() + embedding_offset, n, out.begin() + at);
      } else {
        read(x, out.data() + at);
      }
      at += n;
    }
  }
  return out;
}

std::vector<bf16_bits> load_gguf_weights(const std::filesystem::path& file, const model_preset& m,
                                         std::optional<bool> tie_word_embeddings);

}  // namespace ridgeline::detail
