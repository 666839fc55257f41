// CPU reference of SwiGLU (see ops.hpp): silu(g) * u in double, rounded once to bf16.
#include <cmath>
#include <cstddef>

#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/reference.hpp"

namespace ridgeline::cpu {

void swiglu(const swiglu_params& p) {
  const auto inter = static_cast<std::size_t>(p.intermediate);
  for (int t = 0; t < p.num_tokens; ++t) {
    const bf16_bits* gu = p.gate_up + static_cast<std::size_t>(t) * 2 * inter;
    for (std::size_t i = 0; i < inter; ++i) {
      const double g = bf16_to_float(gu[i]);
      const double u = bf16_to_float(gu[inter + i]);
      const double silu = g / (1.0 + std::exp(-g));
      p.out[static_cast<std::size_t>(t) * inter + i] = float_to_bf16(static_cast<float>(silu * u));
    }
  }
}

}  // namespace ridgeline::cpu
