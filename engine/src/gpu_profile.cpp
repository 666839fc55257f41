// GPU profiles and the datasheet table (see gpu_profile.hpp).
#include "ridgeline/engine/gpu_profile.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "ridgeline/metrics/errors.hpp"
#include "ridgeline/metrics/files.hpp"

namespace ridgeline {
namespace {

constexpr double T = 1e12;
constexpr double GB = 1e9;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

double positive_number(const nlohmann::json& j, const char* field, const std::string& where) {
  if (!j.contains(field)) return 0;
  const auto& v = j.at(field);
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0) {
    throw std::invalid_argument(where + "." + field + " must be a non-negative number");
  }
  return v.get<double>();
}

}  // namespace

const std::vector<datasheet_entry>& datasheet_table() {
  // Vendor datasheets, dense (no 2:4 sparsity). fp8/int8 absent where the GPU has no such units.
  static const std::vector<datasheet_entry> table = {
      {"h100-sxm", "NVIDIA H100 SXM5 80GB", 80LL << 30, 3.35e12,
       {{dtype::fp32, 66.9 * T}, {dtype::tf32, 494.7 * T}, {dtype::fp16, 989.4 * T},
        {dtype::bf16, 989.4 * T}, {dtype::fp8_e4m3, 1978.9 * T}, {dtype::int8, 1978.9 * T}}},
      {"h100-pcie", "NVIDIA H100 PCIe 80GB", 80LL << 30, 2.0e12,
       {{dtype::fp32, 51.2 * T}, {dtype::tf32, 378 * T}, {dtype::fp16, 756.5 * T},
        {dtype::bf16, 756.5 * T}, {dtype::fp8_e4m3, 1513 * T}, {dtype::int8, 1513 * T}}},
      {"h200", "NVIDIA H200 SXM 141GB", 141 * static_cast<std::int64_t>(GB), 4.8e12,
       {{dtype::fp32, 66.9 * T}, {dtype::tf32, 494.7 * T}, {dtype::fp16, 989.4 * T},
        {dtype::bf16, 989.4 * T}, {dtype::fp8_e4m3, 1978.9 * T}, {dtype::int8, 1978.9 * T}}},
  };
  return table;
}

const datasheet_entry* datasheet_by_key(const std::string& key) {
  for (const auto& e : datasheet_table()) {
    if (key == e.key) return &e;
  }
  return nullptr;
}

const datasheet_entry* datasheet_for_device(const std::string& device_name) {
  const std::string n = lower(device_name);
  auto has = [&n](const char* s) { return n.find(s) != std::string::npos; };
  if (has("h200")) return datasheet_by_key("h200");
  if (has("h100") && has("pcie")) return datasheet_by_key("h100-pcie");
  if (has("h100") && (has("hbm3") || has("sxm"))) return datasheet_by_key("h100-sxm");
  return nullptr;
}

double gpu_profile::dram_bytes_per_second() const {
  return read_bytes_per_second > 0 ? read_bytes_per_second : datasheet_bytes_per_second;
}

double gpu_profile::peak_flops_per_second(dtype t) const {
  auto it = peaks.find(t);
  if (it == peaks.end()) return 0;
  return it->second.flops_per_second > 0 ? it->second.flops_per_second
                                         : it->second.datasheet_flops_per_second;
}

std::optional<double> gpu_profile::ridge_point(dtype t) const {
  auto it = peaks.find(t);
  if (it == peaks.end() || it->second.flops_per_second <= 0 || read_bytes_per_second <= 0) {
    return std::nullopt;
  }
  return it->second.flops_per_second / read_bytes_per_second;
}

std::optional<double> gpu_profile::datasheet_ridge_point(dtype t) const {
  auto it = peaks.find(t);
  if (it == peaks.end() || it->second.datasheet_flops_per_second <= 0 ||
      datasheet_bytes_per_second <= 0) {
    return std::nullopt;
  }
  return it->second.datasheet_flops_per_second / datasheet_bytes_per_second;
}

nlohmann::json to_json(const gpu_profile& p) {
  nlohmann::json peaks = nlohmann::json::object();
  for (const auto& [t, pk] : p.peaks) {
    nlohmann::json e = {{"flops_per_second", pk.flops_per_second},
                        {"datasheet_flops_per_second", pk.datasheet_flops_per_second}};
    if (auto r = p.ridge_point(t)) e["ridge_point_flops_per_byte"] = *r;
    if (auto r = p.datasheet_ridge_point(t)) e["datasheet_ridge_point_flops_per_byte"] = *r;
    peaks[std::string(name(t))] = e;
  }
  return {{"schema", k_gpu_profile_schema},
          {"gpu",
           {{"name", p.name},
            {"key", p.key},
            {"sm_count", p.sm_count},
            {"l2_bytes", p.l2_bytes},
            {"memory_bytes", p.memory_bytes}}},
          {"source", p.source},
          {"bandwidth",
           {{"read_bytes_per_second", p.read_bytes_per_second},
            {"write_bytes_per_second", p.write_bytes_per_second},
            {"copy_bytes_per_second", p.copy_bytes_per_second},
            {"datasheet_bytes_per_second", p.datasheet_bytes_per_second}}},
          {"peaks", peaks},
          {"environment", p.environment},
          {"config", p.config},
          {"rows", p.rows}};
}

gpu_profile gpu_profile_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("GPU profile: expected a JSON object");
  if (!j.contains("schema") || j["schema"] != k_gpu_profile_schema) {
    throw std::invalid_argument(std::string("GPU profile: schema must be \"") +
                                k_gpu_profile_schema + "\"");
  }
  for (const char* f : {"gpu", "bandwidth", "peaks"}) {
    if (!j.contains(f) || !j[f].is_object()) {
      throw std::invalid_argument(std::string("GPU profile: missing object \"") + f + "\"");
    }
  }
  gpu_profile p;
  const auto& g = j["gpu"];
  if (!g.contains("name") || !g["name"].is_string() || g["name"].get<std::string>().empty()) {
    throw std::invalid_argument("GPU profile: gpu.name must be a non-empty string");
  }
  p.name = g["name"];
  p.key = g.value("key", "");
  p.sm_count = static_cast<int>(positive_number(g, "sm_count", "gpu"));
  p.l2_bytes = static_cast<std::int64_t>(positive_number(g, "l2_bytes", "gpu"));
  p.memory_bytes = static_cast<std::int64_t>(positive_number(g, "memory_bytes", "gpu"));
  p.source = j.value("source", "measured");
  if (p.source != "measured" && p.source != "datasheet") {
    throw std::invalid_argument("GPU profile: source must be \"measured\" or \"datasheet\"");
  }
  const auto& b = j["bandwidth"];
  p.read_bytes_per_second = positive_number(b, "read_bytes_per_second", "bandwidth");
  p.write_bytes_per_second = positive_number(b, "write_bytes_per_second", "bandwidth");
  p.copy_bytes_per_second = positive_number(b, "copy_bytes_per_second", "bandwidth");
  p.datasheet_bytes_per_second = positive_number(b, "datasheet_bytes_per_second", "bandwidth");
  if (p.dram_bytes_per_second() <= 0) {
    throw std::invalid_argument("GPU profile: no DRAM bandwidth (measured or datasheet)");
  }
  for (const auto& [k, v] : j["peaks"].items()) {
    const dtype t = parse_dtype(k);
    if (!v.is_object()) throw std::invalid_argument("GPU profile: peaks." + k + " must be an object");
    p.peaks[t] = {positive_number(v, "flops_per_second", "peaks." + k),
                  positive_number(v, "datasheet_flops_per_second", "peaks." + k)};
  }
  if (j.contains("environment")) p.environment = j["environment"];
  if (j.contains("config")) p.config = j["config"];
  if (j.contains("rows")) {
    if (!j["rows"].is_array()) throw std::invalid_argument("GPU profile: rows must be an array");
    p.rows = j["rows"];
  }
  return p;
}

gpu_profile load_gpu_profile(const std::filesystem::path& path) {
  const std::string text = read_text_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument(path.string() + ": not valid JSON (" + e.what() + ")");
  }
  try {
    return gpu_profile_from_json(j);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path.string() + ": " + e.what());
  }
}

}  // namespace ridgeline
