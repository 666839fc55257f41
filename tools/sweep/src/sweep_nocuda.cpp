// run_sweep for builds without CUDA.
#include "ridgeline/sweep/sweep.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/core/errors.hpp"

namespace ridgeline::bench {

nlohmann::json run_sweep(const sweep_options& o) {
  validate_sweep_options(o);
  throw no_device_error("ridgeline sweep needs a CUDA GPU: " + metrics::no_device_reason());
}

}  // namespace ridgeline::bench
