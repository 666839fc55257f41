// NVML loaded with dlopen so that ridgeline runs (and builds) where the driver library is absent.
// Only the handful of entry points we sample are resolved; a missing one reads as "not reported".
#include "ridgeline/telemetry/nvml.hpp"

#include <dlfcn.h>

#include <chrono>
#include <cstring>

#include "ridgeline/telemetry/device.hpp"

namespace ridgeline::metrics {
namespace {

using nvml_return = int;  // nvmlReturn_t; 0 is NVML_SUCCESS
using nvml_device = void*;
constexpr nvml_return nvml_success = 0;
constexpr int nvml_clock_sm = 1;
constexpr int nvml_clock_mem = 2;
constexpr int nvml_temperature_gpu = 0;

// Throttle ("clocks event") reason bits as NVML defines them.
struct reason {
  std::uint64_t bit;
  const char* name;
  bool suspect;  // makes a timing suspect
};
constexpr reason k_reasons[] = {
    {0x1, "gpu_idle", false},
    {0x2, "applications_clocks_setting", false},
    {0x4, "sw_power_cap", true},
    {0x8, "hw_slowdown", true},
    {0x10, "sync_boost", false},
    {0x20, "sw_thermal_slowdown", true},
    {0x40, "hw_thermal_slowdown", true},
    {0x80, "hw_power_brake_slowdown", true},
    {0x100, "display_clock_setting", false},
};

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::vector<std::string> throttle_reason_names(std::uint64_t mask) {
  std::vector<std::string> names;
  for (const auto& r : k_reasons) {
    if (mask & r.bit) names.emplace_back(r.name);
  }
  return names;
}

bool is_throttling(std::uint64_t mask) {
  for (const auto& r : k_reasons) {
    if (r.suspect && (mask & r.bit)) return true;
  }
  return false;
}

struct nvml::api {
  void* lib = nullptr;
  nvml_return (*init)() = nullptr;
  nvml_return (*shutdown)() = nullptr;
  nvml_return (*by_pci)(const char*, nvml_device*) = nullptr;
  nvml_return (*by_index)(unsigned, nvml_device*) = nullptr;
  nvml_return (*clock)(nvml_device, int, unsigned*) = nullptr;
  nvml_return (*max_clock)(nvml_device, int, unsigned*) = nullptr;
  nvml_return (*power)(nvml_device, unsigned*) = nullptr;
  nvml_return (*power_limit)(nvml_device, unsigned*) = nullptr;
  nvml_return (*temperature)(nvml_device, int, unsigned*) = nullptr;
  nvml_return (*reasons)(nvml_device, unsigned long long*) = nullptr;
  nvml_return (*driver)(char*, unsigned) = nullptr;

  template <class F>
  void bind(F& fn, const char* name) {
    fn = reinterpret_cast<F>(dlsym(lib, name));
  }
};

nvml& nvml::instance() {
  static nvml n;
  return n;
}

nvml::nvml() {
  void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    m_error = "NVML not found (libnvidia-ml.so.1): clocks, power and throttling are not recorded";
    return;
  }
  m_api = new api;
  m_api->lib = lib;
  m_api->bind(m_api->init, "nvmlInit_v2");
  m_api->bind(m_api->shutdown, "nvmlShutdown");
  m_api->bind(m_api->by_pci, "nvmlDeviceGetHandleByPciBusId_v2");
  m_api->bind(m_api->by_index, "nvmlDeviceGetHandleByIndex_v2");
  m_api->bind(m_api->clock, "nvmlDeviceGetClockInfo");
  m_api->bind(m_api->max_clock, "nvmlDeviceGetMaxClockInfo");
  m_api->bind(m_api->power, "nvmlDeviceGetPowerUsage");
  m_api->bind(m_api->power_limit, "nvmlDeviceGetEnforcedPowerLimit");
  m_api->bind(m_api->temperature, "nvmlDeviceGetTemperature");
  m_api->bind(m_api->reasons, "nvmlDeviceGetCurrentClocksEventReasons");
  if (!m_api->reasons) m_api->bind(m_api->reasons, "nvmlDeviceGetCurrentClocksThrottleReasons");
  m_api->bind(m_api->driver, "nvmlSystemGetDriverVersion");
  if (!m_api->init || m_api->init() != nvml_success) {
    m_error = "NVML failed to initialise: clocks, power and throttling are not recorded";
    return;
  }
  m_available = true;
}

nvml::~nvml() {
  if (m_api) {
    if (m_available && m_api->shutdown) m_api->shutdown();
    // The library stays loaded: other static destructors may still run NVML-free code after us.
    delete m_api;
  }
}

std::optional<gpu_sample> nvml::sample(int device_index) const {
  if (!m_available) return std::nullopt;
  nvml_device dev = nullptr;
  // Map the CUDA index to NVML through the PCI bus id: CUDA_VISIBLE_DEVICES reorders devices.
  auto info = query_device(device_index);
  bool found = false;
  if (info && m_api->by_pci && !info->pci_bus_id.empty()) {
    found = m_api->by_pci(info->pci_bus_id.c_str(), &dev) == nvml_success;
  }
  if (!found && m_api->by_index) {
    found = m_api->by_index(static_cast<unsigned>(device_index), &dev) == nvml_success;
  }
  if (!found) return std::nullopt;
  gpu_sample s;
  s.time_seconds = steady_seconds();
  unsigned v = 0;
  if (m_api->clock && m_api->clock(dev, nvml_clock_sm, &v) == nvml_success) s.sm_clock_mhz = v;
  if (m_api->clock && m_api->clock(dev, nvml_clock_mem, &v) == nvml_success) {
    s.memory_clock_mhz = v;
  }
  if (m_api->max_clock && m_api->max_clock(dev, nvml_clock_sm, &v) == nvml_success) {
    s.sm_clock_max_mhz = v;
  }
  if (m_api->power && m_api->power(dev, &v) == nvml_success) s.power_watts = v / 1000.0;
  if (m_api->power_limit && m_api->power_limit(dev, &v) == nvml_success) {
    s.power_limit_watts = v / 1000.0;
  }
  if (m_api->temperature && m_api->temperature(dev, nvml_temperature_gpu, &v) == nvml_success) {
    s.temperature_c = v;
  }
  unsigned long long mask = 0;
  if (m_api->reasons && m_api->reasons(dev, &mask) == nvml_success) s.throttle_reasons = mask;
  return s;
}

std::string nvml::driver_version() const {
  if (!m_available || !m_api->driver) return {};
  char buf[96] = {};
  if (m_api->driver(buf, sizeof buf) != nvml_success) return {};
  return buf;
}

void clock_record::add(const gpu_sample& s) {
  if (samples.empty() || s.sm_clock_mhz < sm_clock_min_mhz) sm_clock_min_mhz = s.sm_clock_mhz;
  if (samples.empty() || s.sm_clock_mhz > sm_clock_max_mhz) sm_clock_max_mhz = s.sm_clock_mhz;
  samples.push_back(s);
  if (is_throttling(s.throttle_reasons)) {
    throttled = true;
    for (auto& n : throttle_reason_names(s.throttle_reasons)) {
      bool seen = false;
      for (auto& r : reasons) seen = seen || r == n;
      if (!seen) reasons.push_back(n);
    }
  }
}

}  // namespace ridgeline::metrics
