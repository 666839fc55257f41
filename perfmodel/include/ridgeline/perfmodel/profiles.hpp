// The GPUs the planner knows without a file: measured profiles and fits embedded from
// perfmodel/profiles/*.json (ridgeline.gpu_profile/v1 and ridgeline.fit/v1), and the engine's
// datasheet table for the rest. Datasheet-only GPUs are derated by the measured/datasheet ratios
// of the measured ones and every output marks them so.
//   resolved_gpu g = resolve_gpu("l40s");         // datasheet entry
//   resolved_gpu h = resolve_gpu("h100-sxm");     // embedded measured profile
//   resolved_gpu p = resolve_gpu("my-gpu.json");  // a profile file
#pragma once

#include <span>
#include <string>
#include <vector>

#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"

namespace ridgeline::planner {

struct embedded_file {
  const char* name;
  const char* text;
};
// Every perfmodel/profiles/*.json as it was at build time (generated source).
std::span<const embedded_file> embedded_profile_files();

const std::vector<gpu_profile>& measured_profiles();
struct embedded_fit {
  std::string file;
  std::string gpu;  // key of the GPU it was fitted on
  fitted_parameters parameters;
};
const std::vector<embedded_fit>& embedded_fits();

// Profile of a datasheet entry (source "datasheet", no measurements).
gpu_profile datasheet_profile(const datasheet_entry& e);

struct resolved_gpu {
  gpu_profile profile;
  bool measured = false;
  std::string origin;  // "embedded measured profile", "datasheet (<citation>)", a path
};
// Embedded measured key, datasheet key or a profile JSON path; throws std::invalid_argument
// naming the known keys.
resolved_gpu resolve_gpu(const std::string& spec);
std::string known_gpu_keys();
// The embedded measured profile of the GPU whose driver name is `device_name` ("NVIDIA H100 80GB
// HBM3"); throws std::invalid_argument naming the device and how to measure one.
const gpu_profile& measured_profile_for_device(const std::string& device_name);

// Efficiencies to plan `g` with: a fit embedded for g's key, else a fit from another measured GPU
// (the efficiencies are relative to each GPU's own ceilings, so they transfer), else defaults
// anchored on a probe.
fitted_parameters parameters_for(const gpu_profile& g);

}  // namespace ridgeline::planner
