// CPU reference of the linear layer (linear_params in ops.hpp).
#pragma once

#include "ridgeline/kernels/ops.hpp"

namespace ridgeline::cpu {

void linear(const linear_params& p);

}  // namespace ridgeline::cpu
