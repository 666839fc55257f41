// Naive GEMM reference (see gemm_reference.hpp): three loops, double accumulation, no blocking.
#include "ridgeline/kernels/gemm_reference.hpp"

#include <cmath>
#include <stdexcept>

namespace ridgeline::cpu {

void gemm_reference(const gemm_view& v, std::vector<double>& d, std::vector<double>& abs_sum) {
  if (v.a.size() != v.m * v.k || v.b.size() != v.n * v.k) {
    throw std::invalid_argument("gemm_reference: operand sizes do not match m, n, k");
  }
  d.assign(v.m * v.n, 0.0);
  abs_sum.assign(v.m * v.n, 0.0);
  for (std::size_t j = 0; j < v.n; ++j) {
    for (std::size_t i = 0; i < v.m; ++i) {
      double acc = 0, acc_abs = 0;
      for (std::size_t p = 0; p < v.k; ++p) {
        const double prod = static_cast<double>(v.a[i * v.k + p]) * v.b[j * v.k + p];
        acc += prod;
        acc_abs += std::fabs(prod);
      }
      d[j * v.m + i] = acc;
      abs_sum[j * v.m + i] = acc_abs;
    }
  }
}

}  // namespace ridgeline::cpu
