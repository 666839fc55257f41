// NVTX3 ranges in the `ridgeline` domain (see nvtx.hpp).
#include "ridgeline/metrics/nvtx.hpp"

#include <atomic>
#include <cstdint>

#ifdef RIDGELINE_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace ridgeline::metrics {

namespace {
std::atomic<const detail::range_listener*> g_listener{nullptr};

#ifdef RIDGELINE_RANGE_LISTENER
// Per thread: range depth and which of the innermost 64 ranges went to the listener, so that a
// pop reaches it only for a push that did.
thread_local int t_depth = 0;
thread_local std::uint64_t t_listened = 0;

void listener_push(const char* name) noexcept {
  const int d = t_depth++;
  if (d >= 64) return;
  const detail::range_listener* l = g_listener.load(std::memory_order_acquire);
  if (l) {
    try {
      l->push(name);
      t_listened |= std::uint64_t{1} << d;
      return;
    } catch (...) {  // a range must never throw; the kernels just carry no phase
    }
  }
  t_listened &= ~(std::uint64_t{1} << d);
}

void listener_pop() noexcept {
  if (t_depth == 0) return;
  const int d = --t_depth;
  if (d >= 64 || !(t_listened & (std::uint64_t{1} << d))) return;
  t_listened &= ~(std::uint64_t{1} << d);
  if (const detail::range_listener* l = g_listener.load(std::memory_order_acquire)) {
    try {
      l->pop();
    } catch (...) {
    }
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
