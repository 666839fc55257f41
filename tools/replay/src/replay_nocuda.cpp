// make_cuda_executor for builds without CUDA.
#include "ridgeline/core/errors.hpp"
#include "ridgeline/replay/replay.hpp"
#include "ridgeline/telemetry/device.hpp"

namespace ridgeline::replay {

replay_executor make_cuda_executor(const replay_setup&) {
  throw no_device_error("this build has no CUDA executor: " + metrics::no_device_reason());
}

}  // namespace ridgeline::replay
