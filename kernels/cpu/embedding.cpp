// CPU reference of the embedding lookup (see ops.hpp): a row copy per token.
#include <cstddef>

#include "ridgeline/kernels/reference.hpp"

namespace ridgeline::cpu {

void embedding(const embedding_params& p) {
  const auto hidden = static_cast<std::size_t>(p.hidden);
  for (int t = 0; t < p.num_tokens; ++t) {
    const auto id = static_cast<std::size_t>(p.ids[t]);
    for (std::size_t i = 0; i < hidden; ++i) {
      p.out[static_cast<std::size_t>(t) * hidden + i] = p.table[id * hidden + i];
    }
  }
}

}  // namespace ridgeline::cpu
