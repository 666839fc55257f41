// Naive reference of a linear layer (see linear_params in ops.hpp): double accumulation, one
// rounding at the end.
#include <stdexcept>

#include "ridgeline/kernels/linear_reference.hpp"
#include "ridgeline/kernels/numeric.hpp"

namespace ridgeline::cpu {

void linear(const linear_params& p) {
  if (p.num_tokens < 0 || p.in_features <= 0 || p.out_features <= 0 || !p.x || !p.w || !p.y) {
    throw std::invalid_argument("linear: empty shape or null pointer");
  }
  for (int t = 0; t < p.num_tokens; ++t) {
    for (int o = 0; o < p.out_features; ++o) {
      double acc = 0;
      for (int i = 0; i < p.in_features; ++i) {
        acc += double(bf16_to_float(p.x[std::size_t(t) * p.in_features + i])) *
               double(bf16_to_float(p.w[std::size_t(o) * p.in_features + i]));
      }
      const std::size_t at = std::size_t(t) * p.out_features + o;
      if (p.y_fp32) static_cast<float*>(p.y)[at] = static_cast<float>(acc);
      else static_cast<bf16_bits*>(p.y)[at] = float_to_bf16(static_cast<float>(acc));
    }
  }
}

}  // namespace ridgeline::cpu
