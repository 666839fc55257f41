// Device facts through the CUDA runtime; compiled without CUDA it reports no devices.
#include "ridgeline/telemetry/device.hpp"

#include <stdexcept>

#include "ridgeline/core/errors.hpp"

#ifdef RIDGELINE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace ridgeline::metrics {

bool built_with_cuda() {
#ifdef RIDGELINE_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

int device_count() {
#ifdef RIDGELINE_HAVE_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky slot left by a missing driver
    return 0;
  }
  return n;
#else
  return 0;
#endif
}

std::string no_device_reason() {
#ifdef RIDGELINE_HAVE_CUDA
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA device (") + cudaGetErrorString(e) + ")";
  }
  if (n == 0) return "no CUDA device found";
  return {};
#else
  return "this ridgeline was built without CUDA (RIDGELINE_CUDA=OFF or no nvcc at build time)";
#endif
}

std::optional<device_info> query_device(int index) {
#ifdef RIDGELINE_HAVE_CUDA
  if (index < 0 || index >= device_count()) return std::nullopt;
  device_info d;
  d.index = index;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    cudaGetLastError();
    return std::nullopt;
  }
  d.name = prop.name;
  d.compute_major = prop.major;
  d.compute_minor = prop.minor;
  d.memory_bytes = static_cast<std::int64_t>(prop.totalGlobalMem);
  auto attr = [index](cudaDeviceAttr a) {
    int v = 0;
    if (cudaDeviceGetAttribute(&v, a, index) != cudaSuccess) cudaGetLastError();
    return v;
  };
  d.sm_count = attr(cudaDevAttrMultiProcessorCount);
  d.l2_bytes = attr(cudaDevAttrL2CacheSize);
  d.sm_clock_max_khz = attr(cudaDevAttrClockRate);
  d.memory_clock_max_khz = attr(cudaDevAttrMemoryClockRate);
  d.memory_bus_bits = attr(cudaDevAttrGlobalMemoryBusWidth);
  cudaDriverGetVersion(&d.driver_version);
  cudaRuntimeGetVersion(&d.runtime_version);
  char bus[32] = {};
  if (cudaDeviceGetPCIBusId(bus, sizeof bus, index) == cudaSuccess) d.pci_bus_id = bus;
  int current = 0;
  cudaGetDevice(&current);
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaSetDevice(index) == cudaSuccess && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
    d.memory_free_bytes = static_cast<std::int64_t>(free_bytes);
  }
  cudaSetDevice(current);
  cudaGetLastError();
  return d;
#else
  (void)index;
  return std::nullopt;
#endif
}

device_info require_device(int index, const std::string& what) {
  if (device_count() == 0) throw no_device_error(what + " needs a CUDA GPU: " + no_device_reason());
  if (auto d = query_device(index)) return *d;
  throw std::invalid_argument("--device " + std::to_string(index) + " does not exist (" +
                              std::to_string(device_count()) + " visible)");
}

}  // namespace ridgeline::metrics
