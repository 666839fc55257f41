// The environment block every ridgeline result carries (written by
// telemetry::environment_block): host, build, time, and the GPU when the command ran on one.
// The typed fields are the ones readers check; `raw` keeps the whole block as written, so a
// writer puts it back byte for byte (it has NVML fields that depend on the driver).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/core/schema.hpp"

namespace ridgeline::schema {

struct environment_gpu {
  std::string name;
  std::string compute_capability;
  std::string cuda_runtime_version;
  std::optional<std::string> driver_version;  // only with NVML
  std::optional<std::int64_t> sm_clock_mhz;   // only with NVML and a good sample
  std::optional<std::vector<std::string>> throttle_reasons;  // as sm_clock_mhz
};

struct environment {
  std::string time_utc;
  std::string hostname;
  std::string git_sha;
  bool git_dirty = false;
  std::string ridgeline_version;
  bool has_gpu_member = false;  // host-only commands write no "gpu" key at all
  // The GPU: nullopt when there is no "gpu" key or it is null (no such device; then
  // gpu_unavailable_reason says why).
  std::optional<environment_gpu> gpu;
  nlohmann::json raw;  // the block as written
};

environment parse_environment(const node& block);
// A producer's own block (telemetry::environment_block), checked as a reader would.
environment environment_from_block(const nlohmann::json& block);
inline nlohmann::json to_json(const environment& e) { return e.raw; }

}  // namespace ridgeline::schema
