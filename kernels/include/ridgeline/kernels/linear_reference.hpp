// CPU references of the linear layer and the row gather (ops.hpp).
#pragma once

#include "ridgeline/kernels/ops.hpp"

namespace ridgeline::cpu {

void linear(const linear_params& p);
void gather_rows(const gather_rows_params& p);

}  // namespace ridgeline::cpu
