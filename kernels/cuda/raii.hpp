// Move-only owners of CUDA resources (streams, events, device memory, cuBLASLt handles) and the
// event timer and L2 flusher the benchmarks use. Destructors are noexcept and terminate on error.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "check.hpp"

namespace ridgeline::cuda {

class stream {
 public:
  stream() { RIDGELINE_CUDA_CHECK(cudaStreamCreateWithFlags(&m_stream, cudaStreamNonBlocking)); }
  ~stream() {
    if (m_stream) RIDGELINE_CUDA_CHECK_NOEXCEPT(cudaStreamDestroy(m_stream));
  }
  stream(stream&& o) noexcept : m_stream(std::exchange(o.m_stream, nullptr)) {}
  stream& operator=(stream&& o) noexcept {
    std::swap(m_stream, o.m_stream);
    return *this;
  }
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  cudaStream_t get() const { return m_stream; }
  void synchronize() const { RIDGELINE_CUDA_CHECK(cudaStreamSynchronize(m_stream)); }

 private:
  cudaStream_t m_stream = nullptr;
};

class event {
 public:
  event() { RIDGELINE_CUDA_CHECK(cudaEventCreate(&m_event)); }
  ~event() {
    if (m_event) RIDGELINE_CUDA_CHECK_NOEXCEPT(cudaEventDestroy(m_event));
  }
  event(event&& o) noexcept : m_event(std::exchange(o.m_event, nullptr)) {}
  event& operator=(event&& o) noexcept {
    std::swap(m_event, o.m_event);
    return *this;
  }
  event(const event&) = delete;
  event& operator=(const event&) = delete;
  cudaEvent_t get() const { return m_event; }
  void record(cudaStream_t s) const { RIDGELINE_CUDA_CHECK(cudaEventRecord(m_event, s)); }

 private:
  cudaEvent_t m_event = nullptr;
};

// Untyped device allocation; typed access through data<T>().
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t bytes) : m_bytes(bytes) {
    if (bytes) RIDGELINE_CUDA_CHECK(cudaMalloc(&m_ptr, bytes));
  }
  ~device_buffer() {
    if (m_ptr) RIDGELINE_CUDA_CHECK_NOEXCEPT(cudaFree(m_ptr));
  }
  device_buffer(device_buffer&& o) noexcept
      : m_ptr(std::exchange(o.m_ptr, nullptr)), m_bytes(std::exchange(o.m_bytes, 0)) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    std::swap(m_ptr, o.m_ptr);
    std::swap(m_bytes, o.m_bytes);
    return *this;
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  template <class T = void>
  T* data() const {
    return static_cast<T*>(m_ptr);
  }
  std::size_t bytes() const { return m_bytes; }

 private:
  void* m_ptr = nullptr;
  std::size_t m_bytes = 0;
};

class cublaslt_handle {
 public:
  cublaslt_handle() { RIDGELINE_CUBLAS_CHECK(cublasLtCreate(&m_handle)); }
  ~cublaslt_handle() {
    if (m_handle) cublasLtDestroy(m_handle);
  }
  cublaslt_handle(cublaslt_handle&& o) noexcept : m_handle(std::exchange(o.m_handle, nullptr)) {}
  cublaslt_handle& operator=(cublaslt_handle&& o) noexcept {
    std::swap(m_handle, o.m_handle);
    return *this;
  }
  cublaslt_handle(const cublaslt_handle&) = delete;
  cublaslt_handle& operator=(const cublaslt_handle&) = delete;
  cublasLtHandle_t get() const { return m_handle; }

 private:
  cublasLtHandle_t m_handle = nullptr;
};

// Times GPU work between start() and stop() on a stream with a pair of events.
class event_timer {
 public:
  void start(cudaStream_t s) { m_start.record(s); }
  void stop(cudaStream_t s) { m_stop.record(s); }
  // Blocks until stop() has completed; seconds between the two events.
  double seconds() const {
    RIDGELINE_CUDA_CHECK(cudaEventSynchronize(m_stop.get()));
    float ms = 0;
    RIDGELINE_CUDA_CHECK(cudaEventElapsedTime(&ms, m_start.get(), m_stop.get()));
    return static_cast<double>(ms) * 1e-3;
  }

 private:
  event m_start;
  event m_stop;
};

// Evicts the L2 before a cold measurement by writing a buffer twice its size.
class l2_flusher {
 public:
  explicit l2_flusher(std::size_t l2_bytes) : m_buffer(2 * (l2_bytes ? l2_bytes : (64u << 20))) {}
  void flush(cudaStream_t s) const {
    RIDGELINE_CUDA_CHECK(cudaMemsetAsync(m_buffer.data(), m_counter++ & 0xff, m_buffer.bytes(), s));
  }

 private:
  device_buffer m_buffer;
  mutable unsigned m_counter = 1;
};

}  // namespace ridgeline::cuda
