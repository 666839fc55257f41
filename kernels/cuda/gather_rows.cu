// gather_rows (ops.hpp): one block per row (grid (rows, windows) so several windows could share a
// launch); 16-byte copies when the window, stride and pointers allow it, 2-byte copies otherwise.
#include <stdexcept>
#include <string>

#include "check.hpp"
#include "device_utils.cuh"
#include "linear.hpp"

namespace ridgeline::cuda {
namespace {

struct windows {
  gather_rows_params w[3];
  int count;
};

template <bool Vec>
__global__ void gather_rows_kernel(windows ws) {
  detail::pdl_trigger();  // the kernel after this may be scheduled now
  detail::pdl_wait();  // before reading what the previous kernel wrote
  const gather_rows_params& p = ws.w[blockIdx.y];
  const int r = blockIdx.x;
  if (r >= p.num_rows) return;
  const int from = p.rows ? p.rows[r] : r;
  const bf16_bits* src = p.src + static_cast<std::size_t>(from) * p.src_stride + p.src_col;
  bf16_bits* dst = p.dst + static_cast<std::size_t>(r) * p.cols;
  if constexpr (Vec) {
    const auto* s4 = reinterpret_cast<const uint4*>(src);
    auto* d4 = reinterpret_cast<uint4*>(dst);
    for (int c = threadIdx.x; c < p.cols / 8; c += blockDim.x) d4[c] = s4[c];
  } else {
    for (int c = threadIdx.x; c < p.cols; c += blockDim.x) dst[c] = src[c];
  }
}

void check(const gather_rows_params& p) {
  if (!p.src || !p.dst || p.num_rows < 0 || p.cols <= 0 || p.src_col < 0 ||
      p.src_col + p.cols > p.src_stride) {
    throw std::invalid_argument("gather_rows: bad window (src_stride=" +
                                std::to_string(p.src_stride) + " src_col=" +
                                std::to_string(p.src_col) + " cols=" + std::to_string(p.cols) + ")");
  }
}

bool vectorizable(const gather_rows_params& p) {
  return p.cols % 8 == 0 && p.src_stride % 8 == 0 && p.src_col % 8 == 0 &&
         (reinterpret_cast<std::uintptr_t>(p.src) | reinterpret_cast<std::uintptr_t>(p.dst)) % 16 == 0;
}

void launch(const windows& ws, cudaStream_t s, bool pdl) {
  int rows = 0;
  bool vec = true;
  for (int i = 0; i < ws.count; ++i) {
    check(ws.w[i]);
    rows = std::max(rows, ws.w[i].num_rows);
    vec = vec && vectorizable(ws.w[i]);
  }
  if (rows == 0) return;
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(ws.count));
  if (vec) launch_kernel(gather_rows_kernel<true>, grid, dim3(128), 0, s, pdl, ws);
  else launch_kernel(gather_rows_kernel<false>, grid, dim3(128), 0, s, pdl, ws);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void gather_rows(const gather_rows_params& p, cudaStream_t s, bool pdl) {
  launch({{p, {}, {}}, 1}, s, pdl);
}

}  // namespace ridgeline::cuda
