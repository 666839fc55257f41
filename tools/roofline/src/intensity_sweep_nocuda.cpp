// run_intensity_sweep for builds without CUDA: checks the options, then says why it cannot run.
#include "ridgeline/roofline/intensity_sweep.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/core/errors.hpp"

namespace ridgeline::bench {

intensity_sweep_result run_intensity_sweep(const intensity_sweep_options& o) {
  validate_intensity_sweep_options(o);
  throw no_device_error("the intensity sweep needs a CUDA GPU: " + metrics::no_device_reason());
}

}  // namespace ridgeline::bench
