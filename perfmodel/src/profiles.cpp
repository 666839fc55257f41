// Embedded profiles and GPU resolution (see profiles.hpp).
#include "ridgeline/perfmodel/profiles.hpp"

#include <stdexcept>

namespace ridgeline::planner {

const std::vector<gpu_profile>& measured_profiles() {
  static const std::vector<gpu_profile> all = [] {
    std::vector<gpu_profile> out;
    for (const auto& f : embedded_profile_files()) {
      const auto j = nlohmann::json::parse(f.text);
      if (j.value("schema", "") != k_gpu_profile_schema) continue;
      gpu_profile p = gpu_profile_from_json(j);
      if (p.key.empty()) p.key = std::string(f.name).substr(0, std::string(f.name).size() - 5);
      out.push_back(std::move(p));
    }
    return out;
  }();
  return all;
}

const std::vector<embedded_fit>& embedded_fits() {
  static const std::vector<embedded_fit> all = [] {
    std::vector<embedded_fit> out;
    for (const auto& f : embedded_profile_files()) {
      const auto j = nlohmann::json::parse(f.text);
      if (j.value("schema", "") != k_fit_schema) continue;
      embedded_fit e{f.name, "", fitted_parameters_from_json(j)};
      e.gpu = e.parameters.gpu;
      out.push_back(std::move(e));
    }
    return out;
  }();
  return all;
}

gpu_profile datasheet_profile(const datasheet_entry& e) {
  gpu_profile g;
  g.name = e.name;
  g.key = e.key;
  g.source = "datasheet";
  g.memory_bytes = e.memory_bytes;
  g.datasheet_bytes_per_second = e.dram_bytes_per_second;
  for (const auto& [t, f] : e.flops_per_second) g.peaks[t].datasheet_flops_per_second = f;
  g.config = {{"citation", e.citation}};
  return g;
}

std::string known_gpu_keys() {
  std::string keys;
  for (const auto& p : measured_profiles())
    keys += (keys.empty() ? "" : ", ") + p.key + " (measured)";
  for (const auto& e : datasheet_table()) {
    bool measured = false;
    for (const auto& p : measured_profiles()) measured = measured || p.key == e.key;
    if (!measured) keys += (keys.empty() ? "" : ", ") + std::string(e.key);
  }
  return keys;
}

resolved_gpu resolve_gpu(const std::string& spec) {
  for (const auto& p : measured_profiles()) {
    if (p.key == spec) return {p, true, "embedded measured profile (perfmodel/profiles)"};
  }
  if (const datasheet_entry* e = datasheet_by_key(spec)) {
    return {datasheet_profile(*e), false, std::string("datasheet: ") + e->citation};
  }
  if (spec.find('/') == std::string::npos && spec.find(".json") == std::string::npos) {
    throw std::invalid_argument("unknown GPU '" + spec +
                                "' (a profile JSON path or one of: " + known_gpu_keys() + ")");
  }
  gpu_profile p = load_gpu_profile(spec);
  const bool measured = p.source == "measured" && p.read_bytes_per_second > 0;
  if (p.key.empty()) p.key = p.name;
  // A profile without a memory size (older probes) takes the datasheet's.
  if (p.memory_bytes <= 0) {
    if (const datasheet_entry* e = datasheet_for_device(p.name)) p.memory_bytes = e->memory_bytes;
  }
  return {p, measured, spec};
}

const gpu_profile& measured_profile_for_device(const std::string& device_name) {
  for (const auto& p : measured_profiles()) {
    if (p.name == device_name) return p;
  }
  throw std::invalid_argument("no measured profile of the " + device_name +
                              " is embedded: run `ridgeline probe -o gpu.json` and pass --gpu "
                              "gpu.json");
}

fitted_parameters parameters_for(const gpu_profile& g) {
  const auto& fits = embedded_fits();
  for (const auto& f : fits) {
    if (f.gpu == g.key) return f.parameters;
  }
  if (!fits.empty()) return fits.front().parameters;
  for (const auto& p : measured_profiles()) {
    if (p.key == g.key) return default_parameters(&p);
  }
  if (!g.rows.empty()) return default_parameters(&g);
  return measured_profiles().empty() ? default_parameters(nullptr)
                                     : default_parameters(&measured_profiles().front());
}

}  // namespace ridgeline::planner
