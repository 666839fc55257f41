// Shared by the GPU tests: skip without a device, host <-> device copies, poisoned outputs with a
// guard band, and the two comparisons with a CPU reference (bit for bit; within a tolerance
// relative to the magnitude of the summed products).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "cuda/raii.hpp"
#include "ridgeline/telemetry/device.hpp"

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

inline constexpr std::size_t k_guard_floats = 64;
inline constexpr std::uint32_t k_poison = 0x7fc0dead;  // a NaN

// A device output of `count` floats filled with a NaN and followed by a guard band of it; values()
// downloads the outputs and checks that the guard band came back untouched.
struct poisoned_output {
  explicit poisoned_output(std::size_t n)
      : count(n), buffer(upload(std::vector<std::uint32_t>(n + k_guard_floats, k_poison))) {}
  std::vector<float> values() const {
    const auto all = download<std::uint32_t>(buffer, 0, count + k_guard_floats);
    for (std::size_t i = count; i < all.size(); ++i) {
      EXPECT_EQ(all[i], k_poison) << "guard word " << i - count << " overwritten";
    }
    std::vector<float> v(count);
    std::memcpy(v.data(), all.data(), count * 4);
    return v;
  }
  std::size_t count;
  cuda::device_buffer buffer;
};

// Every output bit for bit equal to its (finite) reference; the first five mismatches are
// reported. Returns whether all matched.
inline bool bitwise_equal(const std::vector<float>& gpu, const std::vector<float>& ref) {
  EXPECT_EQ(gpu.size(), ref.size());
  if (gpu.size() != ref.size()) return false;
  int reported = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    std::uint32_t g = 0, r = 0;
    std::memcpy(&g, &gpu[i], 4);
    std::memcpy(&r, &ref[i], 4);
    if (!std::isfinite(ref[i])) {
      ADD_FAILURE() << "reference output " << i << " is " << ref[i];
      return false;
    }
    if (g != r && reported++ < 5) {
      ADD_FAILURE() << "output " << i << ": gpu " << gpu[i] << " ref " << ref[i];
    }
  }
  return reported == 0;
}

// |gpu - ref| <= 1e-6 + rtol * magnitude for every output (magnitude: the sum of |a * b| over the
// products in it); the first five mismatches and the worst relative error are reported. Returns
// whether all were within.
inline bool within_magnitude(const std::vector<float>& gpu, const std::vector<double>& ref,
                             const std::vector<double>& magnitude, double rtol) {
  EXPECT_EQ(gpu.size(), ref.size());
  if (gpu.size() != ref.size() || magnitude.size() != ref.size()) return false;
  double worst = 0;
  std::size_t worst_i = 0;
  int reported = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(gpu[i] - ref[i]);
    if (!(err <= 1e-6 + rtol * magnitude[i]) && reported++ < 5) {
      ADD_FAILURE() << "output " << i << ": gpu " << gpu[i] << " ref " << ref[i]
                    << " |a*b| sum " << magnitude[i];
    }
    if (magnitude[i] > 0 && err / magnitude[i] > worst) {
      worst = err / magnitude[i];
      worst_i = i;
    }
  }
  if (reported > 0) {
    ADD_FAILURE() << reported << " outputs off; worst relative error " << worst << " at " << worst_i;
  }
  return reported == 0;
}

}  // namespace ridgeline::test
