// `ridgeline probe`: measures the current GPU's ceilings (DRAM bandwidth read/write/copy with a
// working-set sweep, cuBLASLt GEMM peaks per dtype, the Llama-2-7B linear layers over a token
// sweep) and returns them as a GPU profile. No CUDA types here; a build without CUDA throws
// no_device_error from run_probe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ridgeline/engine/gpu_profile.hpp"
#include "ridgeline/kernels/dtype.hpp"

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

}  // namespace ridgeline::bench
