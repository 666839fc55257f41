// gather_rows (ops.hpp): one block per destination row, 2-byte elements (windows are rarely
// 16-byte aligned in general; these copies are a few KB per token, far off the critical path).
#include <stdexcept>
#include <string>

#include "check.hpp"
#include "linear.hpp"

namespace ridgeline::cuda {
namespace {

__global__ void gather_rows_kernel(gather_rows_params p) {
  const int r = blockIdx.x;
  const int from = p.rows ? p.rows[r] : r;
  const bf16_bits* src = p.src + static_cast<std::size_t>(from) * p.src_stride + p.src_col;
  bf16_bits* dst = p.dst + static_cast<std::size_t>(r) * p.cols;
  for (int c = threadIdx.x; c < p.cols; c += blockDim.x) dst[c] = src[c];
}

}  // namespace

void gather_rows(const gather_rows_params& p, cudaStream_t s) {
  if (!p.src || !p.dst || p.num_rows < 0 || p.cols <= 0 || p.src_col < 0 ||
      p.src_col + p.cols > p.src_stride) {
    throw std::invalid_argument("gather_rows: bad window (src_stride=" +
                                std::to_string(p.src_stride) + " src_col=" +
                                std::to_string(p.src_col) + " cols=" + std::to_string(p.cols) + ")");
  }
  if (p.num_rows == 0) return;
  gather_rows_kernel<<<p.num_rows, 256, 0, s>>>(p);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace ridgeline::cuda
