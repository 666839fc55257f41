// `ridgeline probe`: measures the current GPU's ceilings (DRAM bandwidth read/write/copy with a
// working-set sweep, cuBLASLt GEMM peaks per dtype, instruction peaks of compute-only kernels, the
// Llama-2-7B linear layers over a token sweep) and returns them as a GPU profile. The instruction
// peaks can be measured alone (measure_instruction_peaks, also what `ridgeline roofline` calls)
// and spliced into an existing profile file (with_instruction_peaks). No CUDA types here; a build
// without CUDA throws no_device_error from run_probe and measure_instruction_peaks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/core/dtype.hpp"

namespace ridgeline::bench {

struct probe_options {
  bool full = false;  // full: more repetitions, every token count of the linear-layer sweep
  std::vector<dtype> dtypes{k_all_dtypes.begin(), k_all_dtypes.end()};
  int device = 0;
  std::uint64_t max_bytes = 4ULL << 30;  // cold bandwidth buffer and top of the sweep (power of 2)
  std::uint64_t gemm_size = 8192;        // M = N = K of the peak GEMMs
  bool linear_layers = true;             // the Llama-2-7B linear-layer sweep
  std::function<void(const std::string&)> progress;  // one line per step; may be empty
};

// Device memory the probe needs with these options (bytes), so callers can refuse early.
std::uint64_t probe_memory_bytes(const probe_options& o);
// Checks option values that need no GPU (sizes, powers of two); throws std::invalid_argument.
void validate_probe_options(const probe_options& o);

// Runs the probe; throws no_device_error without a usable GPU and std::invalid_argument when the
// options do not fit the device (e.g. more memory than it has free).
gpu_profile run_probe(const probe_options& o);

// The readable table of a profile produced by run_probe.
std::string probe_table(const gpu_profile& p);

struct instruction_peak_options {
  std::vector<instruction_peak_kind> kinds{k_all_instruction_peak_kinds.begin(),
                                           k_all_instruction_peak_kinds.end()};
  int device = 0;
  bool full = false;             // more repetitions (the probe's --full stopping rule)
  double launch_seconds = 0.005;  // iterations sized so that one launch takes about this long
  // Back-to-back launches before timing, so that the clocks have settled where sustained work
  // runs them (under the power cap, as the intensity sweep's points do), not at a cold burst's.
  double sustain_seconds = 1.0;
  std::function<void(const std::string&)> progress;  // one line per kind; may be empty
};
void validate_instruction_peak_options(const instruction_peak_options& o);

// Times each kind's compute-only kernel (cuda/instruction_peak.hpp): one launch on a short count
// checked against the CPU reference, a calibration launch that sizes `iterations`, then
// sustain_seconds of launches and the measurement loop (CUDA events, median, p10 and p90). Kinds
// the device cannot run (wgmma off compute capability 9.0) are listed as skipped. Throws
// no_device_error without a usable GPU, std::runtime_error when a kernel disagrees with its
// reference.
instruction_peak_section measure_instruction_peaks(const instruction_peak_options& o);

// The instruction peaks beside the GEMM peaks of `gemm` (may be null) with % of the datasheet.
std::string instruction_peak_table(const instruction_peak_section& s, const gpu_profile* gemm);

// Checks that `text` is a GPU profile that with_instruction_peaks can update: valid, and laid out
// as ridgeline writes profiles (2-space indent, sorted keys, a final newline), so that rewriting it
// changes no other byte. Returns the profile; throws std::invalid_argument saying what is wrong.
gpu_profile check_instruction_peak_update(const std::string& text);
// Throws std::invalid_argument unless the profile is of the GPU named `device_name`.
void require_same_gpu(const gpu_profile& p, const std::string& device_name);
// The profile text with its instruction_peaks object replaced (or added) by `s`; every other byte
// stays as it was. Both checks above first, with their exceptions.
std::string with_instruction_peaks(const std::string& text, const instruction_peak_section& s,
                                   const std::string& device_name);

}  // namespace ridgeline::bench
