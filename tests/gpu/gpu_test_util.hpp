// Shared by the GPU tests: skip without a device, host <-> device copies.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "cuda/raii.hpp"
#include "ridgeline/metrics/device.hpp"

#define RIDGELINE_REQUIRE_GPU()                                                     \
  do {                                                                              \
    if (::ridgeline::metrics::device_count() == 0)                                  \
      GTEST_SKIP() << "no CUDA device: " << ::ridgeline::metrics::no_device_reason(); \
  } while (false)

namespace ridgeline::test {

template <class T>
cuda::device_buffer upload(const std::vector<T>& host) {
  cuda::device_buffer d(host.size() * sizeof(T));
  RIDGELINE_CUDA_CHECK(cudaMemcpy(d.data(), host.data(), d.bytes(), cudaMemcpyHostToDevice));
  // From pageable memory cudaMemcpy may return before the DMA lands; kernels on non-blocking
  // streams would race with it.
  RIDGELINE_CUDA_CHECK(cudaDeviceSynchronize());
  return d;
}

template <class T>
std::vector<T> download(const cuda::device_buffer& d, std::size_t offset_bytes, std::size_t count) {
  std::vector<T> host(count);
  RIDGELINE_CUDA_CHECK(cudaMemcpy(host.data(), d.data<unsigned char>() + offset_bytes,
                                  count * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}

}  // namespace ridgeline::test
