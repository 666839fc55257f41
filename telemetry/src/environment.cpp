// The environment block (see environment.hpp).
#include "ridgeline/telemetry/environment.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>
#include <thread>

#include "ridgeline/core/build_info.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/telemetry/nvml.hpp"

namespace ridgeline::metrics {

std::string utc_now_iso8601() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::json environment_block(std::optional<int> device_index) {
  using nlohmann::json;
  const auto& b = current_build();
  json env;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  utsname u{};
  uname(&u);
  env["host"] = {{"hostname", host},
                 {"kernel", std::string(u.sysname) + " " + u.release},
                 {"cpu_threads", std::thread::hardware_concurrency()}};
  env["time_utc"] = utc_now_iso8601();
  env["ridgeline"] = {{"version", b.version},
                      {"git_sha", b.git_sha},
                      {"git_dirty", b.git_dirty},
                      {"build_type", b.build_type},
                      {"cxx_compiler", b.cxx_compiler},
                      {"cuda_compiler", b.cuda_compiler},
                      {"built_with_cuda", built_with_cuda()}};
  if (!device_index) return env;
  auto d = query_device(*device_index);
  if (!d) {
    env["gpu"] = nullptr;
    env["gpu_unavailable_reason"] = no_device_reason();
    return env;
  }
  auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
  json gpu = {{"index", d->index},
              {"name", d->name},
              {"compute_capability", std::to_string(d->compute_major) + "." +
                                         std::to_string(d->compute_minor)},
              {"sm_count", d->sm_count},
              {"l2_bytes", d->l2_bytes},
              {"memory_bytes", d->memory_bytes},
              {"sm_clock_max_mhz", d->sm_clock_max_khz / 1000},
              {"memory_clock_max_mhz", d->memory_clock_max_khz / 1000},
              {"memory_bus_bits", d->memory_bus_bits},
              {"pci_bus_id", d->pci_bus_id},
              {"cuda_driver_version", version(d->driver_version)},
              {"cuda_runtime_version", version(d->runtime_version)}};
  auto& n = nvml::instance();
  if (n.available()) {
    gpu["driver_version"] = n.driver_version();
    if (auto s = n.sample(*device_index)) {
      gpu["sm_clock_mhz"] = s->sm_clock_mhz;
      gpu["memory_clock_mhz"] = s->memory_clock_mhz;
      gpu["power_watts"] = s->power_watts;
      gpu["power_limit_watts"] = s->power_limit_watts;
      gpu["temperature_c"] = s->temperature_c;
      gpu["throttle_reasons"] = throttle_reason_names(s->throttle_reasons);
    }
  } else {
    gpu["nvml"] = n.error();
  }
  env["gpu"] = gpu;
  return env;
}

}  // namespace ridgeline::metrics
