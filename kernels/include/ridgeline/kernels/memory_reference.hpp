// Reference for the bandwidth kernels: the pattern the write kernel stores (never zeros) and the
// XOR-fold the read kernel computes, so tests can check both bit for bit.
#pragma once

#include <cstdint>
#include <span>

namespace ridgeline::cpu {

// 32-bit word w of the write pattern for a given seed (a hash of the index; never a run of zeros).
std::uint32_t write_pattern_word(std::uint64_t word_index, std::uint32_t seed);
// XOR of all 32-bit words, the value the read kernel folds a buffer into.
std::uint32_t xor_fold(std::span<const std::uint32_t> words);

}  // namespace ridgeline::cpu
