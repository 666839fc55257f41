// run_probe for builds without CUDA: says so, with what still works.
#include "ridgeline/bench/probe.hpp"
#include "ridgeline/metrics/device.hpp"
#include "ridgeline/metrics/errors.hpp"

namespace ridgeline::bench {

gpu_profile run_probe(const probe_options& o) {
  validate_probe_options(o);
  throw no_device_error("ridgeline probe needs a CUDA GPU: " + metrics::no_device_reason());
}

}  // namespace ridgeline::bench
