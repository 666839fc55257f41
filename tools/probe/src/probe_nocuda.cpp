// run_probe and measure_instruction_peaks for builds without CUDA: say so.
#include "ridgeline/probe/probe.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/core/errors.hpp"

namespace ridgeline::bench {

gpu_profile run_probe(const probe_options& o) {
  validate_probe_options(o);
  throw no_device_error("ridgeline probe needs a CUDA GPU: " + metrics::no_device_reason());
}

instruction_peak_section measure_instruction_peaks(const instruction_peak_options& o) {
  validate_instruction_peak_options(o);
  throw no_device_error("measuring instruction peaks needs a CUDA GPU: " +
                        metrics::no_device_reason());
}

}  // namespace ridgeline::bench
