// Seeded random weights on the host, in the engine's layout (every tensor of weight_tensors(m), in
// order, concatenated, bf16): what the CPU executor runs when there is no GPU to generate them.
// The rule is the CUDA engine's (cuda_engine.cpp calls the same helpers): tensor i is filled
// uniformly from a counter-based hash keyed by random_tensor_seed(seed, i), linear weights with
// variance 1 / in_features, norm weights in 1 +- 0.1, the embedding in [-1, 1).
//   std::vector<bf16_bits> w = random_weights(model_preset_by_name("tiny"), 1);
//   cpu_engine cpu(m, std::move(w), 64);
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ridgeline/engine/decoder.hpp"

namespace ridgeline {

// Scale, offset and seed of tensor `index` of weight_tensors(m) (shared with the CUDA engine).
float random_weight_scale(const weight_tensor& t, std::size_t index);
float random_weight_offset(const weight_tensor& t);
std::uint64_t random_tensor_seed(std::uint64_t seed, std::size_t index);

// One element of the uniform fill: offset + scale * u, u in [-1, 1), for element i of a tensor
// filled with tensor_seed; the same hash as kernels/cuda/random.cu's fill, evaluated on the host.
float random_uniform_element(std::uint64_t tensor_seed, std::uint64_t i, float scale, float offset);

// Every tensor of weight_tensors(m), filled as above and rounded to bf16 (nearest even).
std::vector<bf16_bits> random_weights(const model_preset& m, std::uint64_t seed);

}  // namespace ridgeline
