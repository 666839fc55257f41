// Reference for the bandwidth kernels (see memory_reference.hpp).
#include "ridgeline/kernels/memory_reference.hpp"

namespace ridgeline::cpu {

std::uint32_t write_pattern_word(std::uint64_t word_index, std::uint32_t seed) {
  // One multiply-add per word (a Weyl sequence), cheap enough that the write kernel stays bound by
  // memory; odd, so never zero.
  return (static_cast<std::uint32_t>(word_index) * 0x9e3779b1u + seed) | 1u;
}

std::uint32_t xor_fold(std::span<const std::uint32_t> words) {
  std::uint32_t acc = 0;
  for (auto w : words) acc ^= w;
  return acc;
}

}  // namespace ridgeline::cpu
