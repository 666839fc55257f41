// Host-side seeded random weights (see random_weights.hpp).
#include "ridgeline/engine/random_weights.hpp"

#include <cmath>

#include "ridgeline/kernels/numeric.hpp"

namespace ridgeline {
namespace {

std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

float random_weight_scale(const weight_tensor& t, std::size_t index) {
  // Linear weights uniform with variance 1 / in_features keep activations at unit scale; norm
  // weights near 1; the embedding (tensor 0) uniform in [-1, 1).
  if (t.norm) return 0.1f;
  if (index == 0) return 1.0f;
  return std::sqrt(3.0f / static_cast<float>(t.cols));
}

float random_weight_offset(const weight_tensor& t) {
  return t.norm ? 1.0f : 0.0f;
}

std::uint64_t random_tensor_seed(std::uint64_t seed, std::size_t index) {
  return seed * 1000003 + index;
}

float random_uniform_element(std::uint64_t tensor_seed, std::uint64_t i, float scale,
                             float offset) {
  const std::uint64_t r = mix(tensor_seed * 0x9e3779b97f4a7c15ULL + i);
  const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;  // exact
  // nvcc contracts `offset + scale * u` into one FMA by default; std::fma rounds once as well.
  return std::fma(scale, u, offset);
}

std::vector<bf16_bits> random_weights(const model_preset& m, std::uint64_t seed) {
  const auto tensors = weight_tensors(m);
  std::int64_t total = 0;
  for (const auto& t : tensors) total += t.elements;
  std::vector<bf16_bits> w;
  w.reserve(static_cast<std::size_t>(total));
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const std::uint64_t ts = random_tensor_seed(seed, i);
    const float scale = random_weight_scale(t, i), offset = random_weight_offset(t);
    for (std::int64_t e = 0; e < t.elements; ++e) {
      w.push_back(cpu::float_to_bf16(
          random_uniform_element(ts, static_cast<std::uint64_t>(e), scale, offset)));
    }
  }
  return w;
}

}  // namespace ridgeline
