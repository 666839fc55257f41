// `ridgeline roofline` in a build without CUDA: nothing to measure.
#include "ridgeline/roofline/roofline.hpp"
#include "ridgeline/core/errors.hpp"

namespace ridgeline::bench {

nlohmann::json run_roofline(const roofline_options& o) {
  validate_roofline_options(o);
  throw no_device_error("ridgeline roofline needs a CUDA build and a GPU (this build has no CUDA)");
}

}  // namespace ridgeline::bench
