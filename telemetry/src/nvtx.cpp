// NVTX3 ranges in the `ridgeline` domain (see nvtx.hpp).
#include "ridgeline/telemetry/nvtx.hpp"

#include <atomic>

#ifdef RIDGELINE_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace ridgeline::metrics {

namespace {
std::atomic<const detail::range_listener*> g_listener{nullptr};

#ifdef RIDGELINE_RANGE_LISTENER
// Per thread: range depth and, for each of the innermost 64 ranges, the listener that got its
// push (null: none), so that its pop reaches that listener even after it was unset.
thread_local int t_depth = 0;
thread_local const detail::range_listener* t_listener[64] = {};

void listener_push(const char* name) noexcept {
  const int d = t_depth++;
  if (d >= 64) return;
  t_listener[d] = nullptr;
  const detail::range_listener* l = g_listener.load(std::memory_order_acquire);
  if (!l) return;
  try {
    l->push(name);
    t_listener[d] = l;
  } catch (...) {  // a range must never throw; the kernels just carry no phase
  }
}

void listener_pop() noexcept {
  if (t_depth == 0) return;
  const int d = --t_depth;
  if (d >= 64 || !t_listener[d]) return;
  const detail::range_listener* l = t_listener[d];
  t_listener[d] = nullptr;
  try {
    l->pop();
  } catch (...) {
  }
}
#else
void listener_push(const char*) noexcept {}
void listener_pop() noexcept {}
#endif
}  // namespace

void detail::set_range_listener(const range_listener* listener) noexcept {
  g_listener.store(listener, std::memory_order_release);
}

#ifdef RIDGELINE_HAVE_CUDA
namespace {
nvtxDomainHandle_t domain() noexcept {
  static const nvtxDomainHandle_t d = nvtxDomainCreateA("ridgeline");
  return d;
}
}  // namespace

void nvtx_push(const char* name) noexcept {
  listener_push(name);
  nvtxEventAttributes_t a{};
  a.version = NVTX_VERSION;
  a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  a.messageType = NVTX_MESSAGE_TYPE_ASCII;
  a.message.ascii = name;
  nvtxDomainRangePushEx(domain(), &a);
}

void nvtx_pop() noexcept {
  nvtxDomainRangePop(domain());
  listener_pop();
}
#else
void nvtx_push(const char* name) noexcept { listener_push(name); }
void nvtx_pop() noexcept { listener_pop(); }
#endif

}  // namespace ridgeline::metrics
