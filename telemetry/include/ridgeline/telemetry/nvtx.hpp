// NVTX3 ranges in the `ridgeline` domain, so Nsight Systems (and CUPTI) timelines show the probe's
// measurements, the sweep's points and every phase of an engine step (prefill, decode, attention,
// MLP, sampling) under one domain. Without a tool attached a range costs one predictable branch
// (NVTX3's injection pointer is null); in a build without CUDA the calls do nothing.
//   { metrics::nvtx_range r("decode"); ... }   // or nvtx_push("mlp"); ...; nvtx_pop();
#pragma once

#include <string>

namespace ridgeline::metrics {

void nvtx_push(const char* name) noexcept;
void nvtx_pop() noexcept;

namespace detail {
// Something that also wants every range (the CUPTI kernel tracer turns each into a phase of the
// kernels launched inside it). Set while a trace runs; a range pushed before it was set is popped
// without it, one pushed while it was set is popped to it (listeners must outlive that: ridgeline's
// is static). Without a listener a range costs one atomic load more.
struct range_listener {
  void (*push)(const char* name);
  void (*pop)();
};
void set_range_listener(const range_listener* listener) noexcept;  // nullptr: none
}  // namespace detail

class nvtx_range {
 public:
  explicit nvtx_range(const char* name) noexcept { nvtx_push(name); }
  explicit nvtx_range(const std::string& name) noexcept { nvtx_push(name.c_str()); }
  ~nvtx_range() { nvtx_pop(); }
  nvtx_range(const nvtx_range&) = delete;
  nvtx_range& operator=(const nvtx_range&) = delete;
};

}  // namespace ridgeline::metrics
