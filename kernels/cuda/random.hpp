// Fills device buffers with seeded uniform random values in a dtype (never zeros as a whole:
// floats uniform in [-scale, scale), int8 uniform in [-127, 127]). Used for benchmark inputs.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "ridgeline/core/dtype.hpp"

namespace ridgeline::cuda {

// Floats are offset + scale * u, u uniform in [-1, 1).
void fill_uniform(void* dst, dtype t, std::size_t count, std::uint64_t seed, float scale,
                  cudaStream_t s, float offset = 0.0f);

}  // namespace ridgeline::cuda
