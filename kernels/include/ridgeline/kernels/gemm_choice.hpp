// How a cuBLASLt algorithm is chosen for a GEMM shape: the policy (how many heuristic candidates,
// cold or hot, repetitions, margin) and the pure rule that turns per-candidate medians into a
// winner. Host-only, no CUDA types: the CUDA half that times candidates with this policy is
// kernels/cuda/gemm_chooser.hpp. One definition for every caller: the engine's linear layers, the
// probe (its linear-layer rows with the engine's policy, its GEMM peaks with the peak policy) and
// bench/kernels_bench. C++17: CUDA sources include it (through kernels/cuda/linear.hpp).
#pragma once

#include <string>
#include <vector>

namespace ridgeline {

struct gemm_choice_policy {
  int candidates = 32;  // the cuBLASLt heuristic's max_algorithms; usable ones are timed
  bool cold = true;     // flush the L2 (write twice its size) before every timed repetition
  int warmup = 1;       // untimed, unflushed runs of each candidate first
  int repetitions = 5;  // timed runs per candidate; the median counts (odd, so it is one sample)
  double margin = 0.01;  // a later candidate must beat the best so far by this fraction
  bool operator==(const gemm_choice_policy& o) const {
    return candidates == o.candidates && cold == o.cold && warmup == o.warmup &&
           repetitions == o.repetitions && margin == o.margin;
  }
};

// The engine's: linear layers stream their weights from DRAM once per step, so each candidate is
// timed cold; the 1% margin keeps run-to-run noise from flipping the choice (ties go to the
// heuristic's order). engine_options::gemm_candidates overrides `candidates`.
inline constexpr gemm_choice_policy k_engine_gemm_policy{};
// Compute peaks (8192^3 GEMMs, hot, compute-bound): the heuristic's 8 candidates, strictly fastest
// median of 5 after one warm-up.
inline constexpr gemm_choice_policy k_peak_gemm_policy{8, false, 1, 5, 0.0};

// Throws std::invalid_argument naming the bad field: candidates >= 1, warmup >= 0, repetitions
// odd and >= 1, 0 <= margin < 1.
void validate(const gemm_choice_policy& p);
// One line for result documents, e.g. "32 candidates, cold (L2 flushed before each run), 1
// warm-up, median of 5, a later candidate must be 1% faster".
std::string describe(const gemm_choice_policy& p);

// The middle value of an odd-sized sample (reorders it); throws std::invalid_argument when the
// size is even or zero.
double median_of_odd(std::vector<double>& samples);

// Index of the winner given each candidate's median time in the heuristic's order: candidate i
// replaces the best so far only if medians[i] < best * (1 - margin), so with margin 0 the first of
// equal times wins, and with a margin a chain of small improvements cannot add up to a switch.
// Throws std::invalid_argument for an empty list or a margin outside [0, 1).
int pick_fastest(const std::vector<double>& medians, double margin);

}  // namespace ridgeline
