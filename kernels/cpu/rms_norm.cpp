// CPU reference of RMSNorm fused with the residual add (see ops.hpp): the residual sum is rounded
// to bf16 (it is what the next layer reads), the mean of squares and the scaling are in double.
#include <cmath>
#include <cstddef>
#include <vector>

#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/reference.hpp"

namespace ridgeline::cpu {

void rms_norm(const rms_norm_params& p) {
  const auto hidden = static_cast<std::size_t>(p.hidden);
  std::vector<double> r(hidden);
  for (int t = 0; t < p.num_tokens; ++t) {
    const std::size_t row = static_cast<std::size_t>(t) * hidden;
    for (std::size_t i = 0; i < hidden; ++i) {
      const float x = bf16_to_float(p.input[row + i]);
      if (p.residual) {
        // bf16(a + b): the fp32 sum of two bf16 values rounds to bf16 as the exact sum would.
        const bf16_bits sum = float_to_bf16(bf16_to_float(p.residual[row + i]) + x);
        p.residual[row + i] = sum;
        r[i] = bf16_to_float(sum);
      } else {
        r[i] = x;
      }
    }
    double sum_sq = 0;
    for (std::size_t i = 0; i < hidden; ++i) sum_sq += r[i] * r[i];
    const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(hidden) + p.eps);
    for (std::size_t i = 0; i < hidden; ++i) {
      const double y = r[i] * inv_rms * bf16_to_float(p.weight[i]);
      p.out[row + i] = float_to_bf16(static_cast<float>(y));
    }
  }
}

}  // namespace ridgeline::cpu
