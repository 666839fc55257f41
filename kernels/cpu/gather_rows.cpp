// Reference of gather_rows (ops.hpp): a plain double loop.
#include <stdexcept>

#include "ridgeline/kernels/linear_reference.hpp"

namespace ridgeline::cpu {

void gather_rows(const gather_rows_params& p) {
  if (p.num_rows < 0 || p.cols < 0 || p.src_col < 0 || p.src_col + p.cols > p.src_stride) {
    throw std::invalid_argument("gather_rows: window outside the source row");
  }
  for (int r = 0; r < p.num_rows; ++r) {
    const int from = p.rows ? p.rows[r] : r;
    for (int c = 0; c < p.cols; ++c) {
      p.dst[std::size_t(r) * p.cols + c] = p.src[std::size_t(from) * p.src_stride + p.src_col + c];
    }
  }
}

}  // namespace ridgeline::cpu
