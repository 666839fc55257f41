// Static facts about a CUDA device, read through cudaDeviceGetAttribute. No CUDA types here: a
// build without CUDA links a version that reports no devices.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace ridgeline::metrics {

struct device_info {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  int sm_count = 0;
  std::int64_t l2_bytes = 0;
  std::int64_t memory_bytes = 0;       // total device memory
  std::int64_t memory_free_bytes = 0;  // free at query time
  int sm_clock_max_khz = 0;            // peak SM clock
  int memory_clock_max_khz = 0;        // peak memory clock
  int memory_bus_bits = 0;
  int driver_version = 0;   // e.g. 13000
  int runtime_version = 0;  // e.g. 13000
  std::string pci_bus_id;

  // Theoretical DRAM bandwidth from clock and bus width (DDR: two transfers a clock).
  double theoretical_dram_bytes_per_second() const {
    return 2.0 * memory_clock_max_khz * 1e3 * (memory_bus_bits / 8.0);
  }
};

// Whether this binary was built with CUDA.
bool built_with_cuda();
// Number of visible CUDA devices; 0 without a driver, without devices or without CUDA.
int device_count();
// Why no device is usable (driver missing, no device, built without CUDA); empty when one is.
std::string no_device_reason();
// Facts about device `index`; std::nullopt when it does not exist.
std::optional<device_info> query_device(int index);
// Facts about device `index` for a command that needs one: throws no_device_error("<what> needs a
// CUDA GPU: <no_device_reason()>") without any device, std::invalid_argument("--device N does not
// exist (M visible)") for an index out of range.
device_info require_device(int index, const std::string& what);

}  // namespace ridgeline::metrics
