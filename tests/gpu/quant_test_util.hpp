// GPU test helpers shared by the quantized-kernel tests (quant_gemv_test.cpp, quant_linear_test.cpp).
#pragma once

#include <cstdint>

#include "gpu_test_util.hpp"
#include "ridgeline/kernels/quant_pack.hpp"

namespace ridgeline::test {

// A packed quantized matrix on the device; view() has device pointers (the host matrix must
// outlive it).
struct device_packed_matrix {
  explicit device_packed_matrix(const cpu::packed_quant_matrix& p)
      : host(p),
        data(upload(p.data)),
        scales(upload(p.scales)),
        zeros(p.zeros.empty() ? cuda::device_buffer() : upload(p.zeros)) {}
  packed_quant_view view() const {
    packed_quant_view v = host.view();
    v.data = data.data<std::uint8_t>();
    v.scales = scales.data<float>();
    v.zeros = host.zeros.empty() ? nullptr : zeros.data<std::uint8_t>();
    return v;
  }
  const cpu::packed_quant_matrix& host;
  cuda::device_buffer data, scales, zeros;
};

}  // namespace ridgeline::test
