// GPU profiles and the datasheet table (see gpu_profile.hpp).
#include "ridgeline/perfmodel/gpu_profile.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"

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
  // Vendor datasheets, dense (the datasheets' "with sparsity" figures halved). fp8/int8/bf16/tf32
  // absent where the GPU has no tensor-core path for them.
  static const std::vector<datasheet_entry> table = {
      {"t4", "NVIDIA T4 16GB", static_cast<std::int64_t>(16 * GB), 320e9,
       {{dtype::fp32, 8.1 * T}, {dtype::fp16, 65 * T}, {dtype::int8, 130 * T}},
       "NVIDIA T4 Tensor Core GPU datasheet (Turing, 16 GB GDDR6, 320 GB/s, 70 W)"},
      {"l4", "NVIDIA L4 24GB", static_cast<std::int64_t>(24 * GB), 300e9,
       {{dtype::fp32, 30.3 * T}, {dtype::tf32, 60 * T}, {dtype::fp16, 121 * T},
        {dtype::bf16, 121 * T}, {dtype::fp8_e4m3, 242.5 * T}, {dtype::int8, 242.5 * T}},
       "NVIDIA L4 Tensor Core GPU datasheet (Ada, 24 GB GDDR6, 300 GB/s, 72 W)"},
      {"a10g", "NVIDIA A10G 24GB", static_cast<std::int64_t>(24 * GB), 600e9,
       {{dtype::fp32, 31.2 * T}, {dtype::tf32, 62.5 * T}, {dtype::fp16, 125 * T},
        {dtype::bf16, 125 * T}, {dtype::int8, 250 * T}},
       "NVIDIA A10 Tensor Core GPU datasheet (Ampere GA102, 24 GB GDDR6, 600 GB/s); the A10G "
       "of AWS G5 instances has no datasheet of its own, so the A10's figures stand in"},
      {"a100-40gb", "NVIDIA A100 SXM4 40GB", static_cast<std::int64_t>(40 * GB), 1555e9,
       {{dtype::fp32, 19.5 * T}, {dtype::tf32, 156 * T}, {dtype::fp16, 312 * T},
        {dtype::bf16, 312 * T}, {dtype::int8, 624 * T}},
       "NVIDIA A100 Tensor Core GPU datasheet (A100 40GB SXM: HBM2, 1,555 GB/s)"},
      {"a100-80gb", "NVIDIA A100 SXM4 80GB", static_cast<std::int64_t>(80 * GB), 2039e9,
       {{dtype::fp32, 19.5 * T}, {dtype::tf32, 156 * T}, {dtype::fp16, 312 * T},
        {dtype::bf16, 312 * T}, {dtype::int8, 624 * T}},
       "NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM: HBM2e, 2,039 GB/s)"},
      {"l40s", "NVIDIA L40S 48GB", static_cast<std::int64_t>(48 * GB), 864e9,
       {{dtype::fp32, 91.6 * T}, {dtype::tf32, 183 * T}, {dtype::fp16, 362.05 * T},
        {dtype::bf16, 362.05 * T}, {dtype::fp8_e4m3, 733 * T}, {dtype::int8, 733 * T}},
       "NVIDIA L40S GPU datasheet (Ada, 48 GB GDDR6 with ECC, 864 GB/s)"},
      {"h100-pcie", "NVIDIA H100 PCIe 80GB", static_cast<std::int64_t>(80 * GB), 2.0e12,
       {{dtype::fp32, 51.2 * T}, {dtype::tf32, 378 * T}, {dtype::fp16, 756.5 * T},
        {dtype::bf16, 756.5 * T}, {dtype::fp8_e4m3, 1513 * T}, {dtype::int8, 1513 * T}},
       "NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe: 80 GB HBM2e, 2 TB/s)"},
      {"h100-sxm", "NVIDIA H100 SXM5 80GB", static_cast<std::int64_t>(80 * GB), 3.35e12,
       {{dtype::fp32, 66.9 * T}, {dtype::tf32, 494.7 * T}, {dtype::fp16, 989.4 * T},
        {dtype::bf16, 989.4 * T}, {dtype::fp8_e4m3, 1978.9 * T}, {dtype::int8, 1978.9 * T}},
       "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM: 80 GB HBM3, 3.35 TB/s)"},
      {"h200", "NVIDIA H200 SXM 141GB", static_cast<std::int64_t>(141 * GB), 4.8e12,
       {{dtype::fp32, 66.9 * T}, {dtype::tf32, 494.7 * T}, {dtype::fp16, 989.4 * T},
        {dtype::bf16, 989.4 * T}, {dtype::fp8_e4m3, 1978.9 * T}, {dtype::int8, 1978.9 * T}},
       "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM: 141 GB HBM3e, 4.8 TB/s)"},
      {"b200", "NVIDIA B200 180GB", static_cast<std::int64_t>(180 * GB), 8.0e12,
       {{dtype::fp32, 75 * T}, {dtype::tf32, 1100 * T}, {dtype::fp16, 2250 * T},
        {dtype::bf16, 2250 * T}, {dtype::fp8_e4m3, 4500 * T}, {dtype::int8, 4500 * T}},
       "NVIDIA HGX B200 datasheet, per GPU (180 GB HBM3e, 8 TB/s; dense = sparse / 2)"},
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
  if (has("b200")) return datasheet_by_key("b200");
  if (has("l40s")) return datasheet_by_key("l40s");
  if (has("a10g")) return datasheet_by_key("a10g");
  if (has("a100")) return datasheet_by_key(has("80gb") ? "a100-80gb" : "a100-40gb");
  if (has(" l4") || n == "l4") return datasheet_by_key("l4");
  if (has(" t4") || n == "t4") return datasheet_by_key("t4");
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

double instruction_peak_section::flops_per_second(instruction_peak_kind k) const {
  auto it = peaks.find(k);
  return it == peaks.end() ? 0 : it->second.flops_per_second;
}

double gpu_profile::instruction_peak_flops_per_second(instruction_peak_kind k) const {
  return instruction_peaks ? instruction_peaks->flops_per_second(k) : 0;
}

double gpu_profile::instruction_peak_flops_per_second(dtype t) const {
  for (auto k : k_all_instruction_peak_kinds) {
    if (gemm_dtype(k) == t) return instruction_peak_flops_per_second(k);
  }
  return 0;
}

nlohmann::json to_json(const instruction_peak_section& s) {
  nlohmann::json peaks = nlohmann::json::object();
  for (const auto& [k, pk] : s.peaks) {
    peaks[std::string(name(k))] = {{"instruction", pk.instruction},
                                   {"flops_per_second", pk.flops_per_second},
                                   {"p10_flops_per_second", pk.p10_flops_per_second},
                                   {"p90_flops_per_second", pk.p90_flops_per_second},
                                   {"datasheet_flops_per_second", pk.datasheet_flops_per_second},
                                   {"launch", pk.launch},
                                   {"measurement", pk.measurement}};
  }
  return {{"peaks", peaks},
          {"skipped", s.skipped},
          {"environment", s.environment},
          {"config", s.config}};
}

instruction_peak_section instruction_peak_section_from_json(const nlohmann::json& j) {
  const std::string where = "instruction_peaks";
  if (!j.is_object() || !j.contains("peaks") || !j["peaks"].is_object()) {
    throw std::invalid_argument(where + " must be an object with an object \"peaks\"");
  }
  instruction_peak_section s;
  for (const auto& [k, v] : j["peaks"].items()) {
    const instruction_peak_kind kind = parse_instruction_peak_kind(k);
    const std::string at = where + ".peaks." + k;
    if (!v.is_object()) throw std::invalid_argument(at + " must be an object");
    instruction_peak pk;
    pk.instruction = v.value("instruction", std::string(instruction_name(kind)));
    pk.flops_per_second = positive_number(v, "flops_per_second", at);
    pk.p10_flops_per_second = positive_number(v, "p10_flops_per_second", at);
    pk.p90_flops_per_second = positive_number(v, "p90_flops_per_second", at);
    pk.datasheet_flops_per_second = positive_number(v, "datasheet_flops_per_second", at);
    if (pk.flops_per_second <= 0) throw std::invalid_argument(at + ".flops_per_second must be > 0");
    if (v.contains("launch")) pk.launch = v["launch"];
    if (v.contains("measurement")) pk.measurement = v["measurement"];
    s.peaks[kind] = pk;
  }
  if (j.contains("skipped")) {
    if (!j["skipped"].is_array()) throw std::invalid_argument(where + ".skipped must be an array");
    for (const auto& r : j["skipped"]) {
      if (!r.is_string()) throw std::invalid_argument(where + ".skipped must hold strings");
      s.skipped.push_back(r.get<std::string>());
    }
  }
  if (j.contains("environment")) s.environment = j["environment"];
  if (j.contains("config")) s.config = j["config"];
  return s;
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
  nlohmann::json j = {{"schema", k_gpu_profile_schema},
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
  if (p.instruction_peaks) j["instruction_peaks"] = to_json(*p.instruction_peaks);
  return j;
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
  if (j.contains("instruction_peaks")) {
    try {
      p.instruction_peaks = instruction_peak_section_from_json(j["instruction_peaks"]);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("GPU profile: ") + e.what());
    }
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
