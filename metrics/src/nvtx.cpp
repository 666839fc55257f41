// NVTX3 ranges in the `ridgeline` domain (see nvtx.hpp).
#include "ridgeline/metrics/nvtx.hpp"

#ifdef RIDGELINE_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace ridgeline::metrics {

#ifdef RIDGELINE_HAVE_CUDA
namespace {
nvtxDomainHandle_t domain() noexcept {
  static const nvtxDomainHandle_t d = nvtxDomainCreateA("ridgeline");
  return d;
}
}  // namespace

void nvtx_push(const char* name) noexcept {
  nvtxEventAttributes_t a{};
  a.version = NVTX_VERSION;
  a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  a.messageType = NVTX_MESSAGE_TYPE_ASCII;
  a.message.ascii = name;
  nvtxDomainRangePushEx(domain(), &a);
}

void nvtx_pop() noexcept { nvtxDomainRangePop(domain()); }
#else
void nvtx_push(const char*) noexcept {}
void nvtx_pop() noexcept {}
#endif

}  // namespace ridgeline::metrics
