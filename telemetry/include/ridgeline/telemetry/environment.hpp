// The environment block every result carries: GPU, driver, CUDA, clocks, git sha and dirty flag,
// build, host and time. JSON so that every result format can embed it unchanged.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

namespace ridgeline::metrics {

// Environment of this process. With a device index, the GPU section is filled from that device
// (and NVML when present); without one, only host and build fields.
nlohmann::json environment_block(std::optional<int> device_index);

// UTC time as ISO 8601, e.g. 2026-11-21T10:00:00Z.
std::string utc_now_iso8601();

}  // namespace ridgeline::metrics
