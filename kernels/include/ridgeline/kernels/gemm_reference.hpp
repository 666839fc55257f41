// Naive GEMM reference, the layout the cuBLASLt launcher uses (row-major PyTorch-style):
//   D[n][m] = sum_k A[m][k] * B[n][k]       (A: weights [m x k], B: activations [n x k])
// Operands are given as float holding values already representable in the dtype; accumulation is
// in double. abs_sum[n][m] = sum_k |A[m][k] * B[n][k]| bounds the rounding error of any order.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace ridgeline::cpu {

struct gemm_view {
  std::size_t m = 0, n = 0, k = 0;
  std::span<const float> a;  // [m * k]
  std::span<const float> b;  // [n * k]
};

void gemm_reference(const gemm_view& v, std::vector<double>& d, std::vector<double>& abs_sum);

}  // namespace ridgeline::cpu
