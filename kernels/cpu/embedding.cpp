// CPU references of the embedding lookup (a row copy per token) and of scatter_tokens (see
// ops.hpp).
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

void scatter_tokens(const scatter_tokens_params& p) {
  for (int i = 0; i < p.count; ++i) p.ids[p.rows[i]] = p.samples[p.from[i]];
}

}  // namespace ridgeline::cpu
