// The CUDA executor of `ridgeline diverge run` for builds without CUDA: a clear error (exit 3);
// `--executor cpu` still runs (run_loop.cpp).
#include "ridgeline/diverge/diverge.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/core/errors.hpp"

namespace ridgeline::bench::detail {

std::unique_ptr<executor> make_cuda_diverge_executor(const executor_setup&) {
  throw no_device_error(
      "ridgeline diverge run needs a CUDA GPU (or --executor cpu for tiny models): " +
      metrics::no_device_reason());
}

}  // namespace ridgeline::bench::detail
