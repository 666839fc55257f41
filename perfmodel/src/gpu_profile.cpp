// GPU profiles and the datasheet table (see gpu_profile.hpp).
#include "ridgeline/perfmodel/gpu_profile.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schemas/gpu_profile.hpp"

namespace ridgeline {
namespace {

constexpr double T = 1e12;
constexpr double GB = 1e9;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}


}  // namespace

const std::vector<datasheet_entry>& datasheet_table() {
  // Vendor datasheets, dense (the datasheets' "with sparsity" figures halved). fp8/int8/bf16/tf32
  // absent where the GPU has no tensor-core path for them. The interconnect is the link between
  // the GPUs of one host, per direction: the H100 PCIe's 600 GB/s NVLink bridge joins pairs only,
  // so a replica of more than two reduces over PCIe, the figure taken for every degree
  // (pessimistic for TP 2). One GPU per entry, its fields in the struct's order.
  // clang-format off
  static const std::vector<datasheet_entry> table = {
      {"t4", "NVIDIA T4 16GB", static_cast<std::int64_t>(16 * GB), 320e9,
       {{dtype::fp32, 8.1 * T}, {dtype::fp16, 65 * T}, {dtype::int8, 130 * T}},
       "NVIDIA T4 Tensor Core GPU datasheet (Turing, 16 GB GDDR6, 320 GB/s, 70 W)",
       "PCIe Gen3 x16 (32 GB/s bidirectional)", 16 * GB},
      {"l4", "NVIDIA L4 24GB", static_cast<std::int64_t>(24 * GB), 300e9,
       {{dtype::fp32, 30.3 * T}, {dtype::tf32, 60 * T}, {dtype::fp16, 121 * T},
        {dtype::bf16, 121 * T}, {dtype::fp8_e4m3, 242.5 * T}, {dtype::int8, 242.5 * T}},
       "NVIDIA L4 Tensor Core GPU datasheet (Ada, 24 GB GDDR6, 300 GB/s, 72 W)",
       "PCIe Gen4 x16 (64 GB/s bidirectional)", 32 * GB},
      {"a10g", "NVIDIA A10G 24GB", static_cast<std::int64_t>(24 * GB), 600e9,
       {{dtype::fp32, 31.2 * T}, {dtype::tf32, 62.5 * T}, {dtype::fp16, 125 * T},
        {dtype::bf16, 125 * T}, {dtype::int8, 250 * T}},
       "NVIDIA A10 Tensor Core GPU datasheet (Ampere GA102, 24 GB GDDR6, 600 GB/s); the A10G "
       "of AWS G5 instances has no datasheet of its own, so the A10's figures stand in",
       "PCIe Gen4 x16 (64 GB/s bidirectional)", 32 * GB},
      {"a100-40gb", "NVIDIA A100 SXM4 40GB", static_cast<std::int64_t>(40 * GB), 1555e9,
       {{dtype::fp32, 19.5 * T}, {dtype::tf32, 156 * T}, {dtype::fp16, 312 * T},
        {dtype::bf16, 312 * T}, {dtype::int8, 624 * T}},
       "NVIDIA A100 Tensor Core GPU datasheet (A100 40GB SXM: HBM2, 1,555 GB/s)",
       "NVLink 3 (600 GB/s bidirectional)", 300 * GB},
      {"a100-80gb", "NVIDIA A100 SXM4 80GB", static_cast<std::int64_t>(80 * GB), 2039e9,
       {{dtype::fp32, 19.5 * T}, {dtype::tf32, 156 * T}, {dtype::fp16, 312 * T},
        {dtype::bf16, 312 * T}, {dtype::int8, 624 * T}},
       "NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM: HBM2e, 2,039 GB/s)",
       "NVLink 3 (600 GB/s bidirectional)", 300 * GB},
      {"l40s", "NVIDIA L40S 48GB", static_cast<std::int64_t>(48 * GB), 864e9,
       {{dtype::fp32, 91.6 * T}, {dtype::tf32, 183 * T}, {dtype::fp16, 362.05 * T},
        {dtype::bf16, 362.05 * T}, {dtype::fp8_e4m3, 733 * T}, {dtype::int8, 733 * T}},
       "NVIDIA L40S GPU datasheet (Ada, 48 GB GDDR6 with ECC, 864 GB/s)",
       "PCIe Gen4 x16 (64 GB/s bidirectional)", 32 * GB},
      {"h100-pcie", "NVIDIA H100 PCIe 80GB", static_cast<std::int64_t>(80 * GB), 2.0e12,
       {{dtype::fp32, 51.2 * T}, {dtype::tf32, 378 * T}, {dtype::fp16, 756.5 * T},
        {dtype::bf16, 756.5 * T}, {dtype::fp8_e4m3, 1513 * T}, {dtype::int8, 1513 * T}},
       "NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe: 80 GB HBM2e, 2 TB/s)",
       "PCIe Gen5 x16 (128 GB/s bidirectional)", 64 * GB},
      {"h100-sxm", "NVIDIA H100 SXM5 80GB", static_cast<std::int64_t>(80 * GB), 3.35e12,
       {{dtype::fp32, 66.9 * T}, {dtype::tf32, 494.7 * T}, {dtype::fp16, 989.4 * T},
        {dtype::bf16, 989.4 * T}, {dtype::fp8_e4m3, 1978.9 * T}, {dtype::int8, 1978.9 * T}},
       "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM: 80 GB HBM3, 3.35 TB/s)",
       "NVLink 4 (900 GB/s bidirectional)", 450 * GB},
      {"h200", "NVIDIA H200 SXM 141GB", static_cast<std::int64_t>(141 * GB), 4.8e12,
       {{dtype::fp32, 66.9 * T}, {dtype::tf32, 494.7 * T}, {dtype::fp16, 989.4 * T},
        {dtype::bf16, 989.4 * T}, {dtype::fp8_e4m3, 1978.9 * T}, {dtype::int8, 1978.9 * T}},
       "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM: 141 GB HBM3e, 4.8 TB/s)",
       "NVLink 4 (900 GB/s bidirectional)", 450 * GB},
      {"b200", "NVIDIA B200 180GB", static_cast<std::int64_t>(180 * GB), 8.0e12,
       {{dtype::fp32, 75 * T}, {dtype::tf32, 1100 * T}, {dtype::fp16, 2250 * T},
        {dtype::bf16, 2250 * T}, {dtype::fp8_e4m3, 4500 * T}, {dtype::int8, 4500 * T}},
       "NVIDIA HGX B200 datasheet, per GPU (180 GB HBM3e, 8 TB/s; dense = sparse / 2)",
       "NVLink 5 (1.8 TB/s bidirectional)", 900 * GB},
  };
  // clang-format on
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

namespace {

static_assert(std::string_view(ridgeline::k_gpu_profile_schema) ==
              std::string_view(schema::k_gpu_profile_schema));

// The format's reader checks presence and type; what the model also needs (no negative rates, a
// known dtype, a bandwidth to place rooflines on) fails the same way, naming file, field, schema.
[[noreturn]] void bad(std::string_view source, const std::string& path, const std::string& what) {
  throw schema::schema_error(std::string(source), path, what, schema::k_gpu_profile_schema);
}

double non_negative(double v, std::string_view source, const std::string& path) {
  if (v < 0) bad(source, path, "must not be negative, found " + std::to_string(v));
  return v;
}

instruction_peak_section from_document(const schema::instruction_peak_section& d,
                                       std::string_view source, const std::string& where) {
  instruction_peak_section s;
  for (const auto& [k, v] : d.peaks) {
    const std::string at = where + ".peaks." + k;
    instruction_peak_kind kind{};
    try {
      kind = parse_instruction_peak_kind(k);
    } catch (const std::invalid_argument& e) {
      bad(source, at, e.what());
    }
    instruction_peak pk;
    pk.instruction = v.instruction;
    pk.flops_per_second = v.flops_per_second;
    if (!(pk.flops_per_second > 0)) bad(source, at + ".flops_per_second", "must be > 0");
    pk.p10_flops_per_second = non_negative(v.p10_flops_per_second, source, at + ".p10_flops_per_second");
    pk.p90_flops_per_second = non_negative(v.p90_flops_per_second, source, at + ".p90_flops_per_second");
    pk.datasheet_flops_per_second =
        non_negative(v.datasheet_flops_per_second, source, at + ".datasheet_flops_per_second");
    pk.launch = v.launch;
    pk.measurement = v.measurement;
    s.peaks[kind] = std::move(pk);
  }
  s.skipped = d.skipped;
  s.environment = d.environment;
  s.config = d.config;
  return s;
}

schema::instruction_peak_section to_document(const instruction_peak_section& s) {
  schema::instruction_peak_section d;
  for (const auto& [k, pk] : s.peaks) {
    d.peaks[std::string(name(k))] = {pk.instruction,
                                     pk.flops_per_second,
                                     pk.p10_flops_per_second,
                                     pk.p90_flops_per_second,
                                     pk.datasheet_flops_per_second,
                                     pk.launch,
                                     pk.measurement};
  }
  d.skipped = s.skipped;
  d.environment = s.environment;
  d.config = s.config;
  return d;
}

}  // namespace

nlohmann::json to_json(const instruction_peak_section& s) {
  return schema::to_json(to_document(s));
}

instruction_peak_section instruction_peak_section_from_json(const nlohmann::json& j,
                                                           std::string_view source) {
  const schema::document_context ctx{std::string(source), schema::k_gpu_profile_schema};
  const schema::node n(j, ctx, "instruction_peaks");
  return from_document(schema::parse_instruction_peaks(n), source, "instruction_peaks");
}

static schema::profile_document to_document(const gpu_profile& p) {
  schema::profile_document d;
  d.gpu_name = p.name;
  d.gpu_key = p.key;
  d.sm_count = p.sm_count;
  d.l2_bytes = p.l2_bytes;
  d.memory_bytes = p.memory_bytes;
  d.source = p.source;
  d.read_bytes_per_second = p.read_bytes_per_second;
  d.write_bytes_per_second = p.write_bytes_per_second;
  d.copy_bytes_per_second = p.copy_bytes_per_second;
  d.datasheet_bytes_per_second = p.datasheet_bytes_per_second;
  for (const auto& [t, pk] : p.peaks) {
    d.peaks[std::string(name(t))] = {pk.flops_per_second, pk.datasheet_flops_per_second,
                                     p.ridge_point(t), p.datasheet_ridge_point(t)};
  }
  d.env.raw = p.environment;
  d.config = p.config;
  if (!p.rows.is_array()) throw std::invalid_argument("GPU profile: rows must be an array");
  d.rows.assign(p.rows.begin(), p.rows.end());
  if (p.instruction_peaks) d.instruction_peaks = to_document(*p.instruction_peaks);
  if (p.all_reduce) {
    d.all_reduce.emplace();
    for (const auto& a : *p.all_reduce)
      d.all_reduce->push_back({a.gpus, a.message_bytes, a.seconds, a.bus_bytes_per_second});
  }
  return d;
}

nlohmann::json to_json(const gpu_profile& p) { return schema::to_json(to_document(p)); }

// Takes the document by value: its environment, config and rows (most of a profile's bytes) are
// moved into the profile, not copied.
static gpu_profile from_document(schema::profile_document d, std::string_view source) {
  gpu_profile p;
  if (d.gpu_name.empty()) bad(source, "gpu.name", "expected a non-empty string");
  p.name = d.gpu_name;
  p.key = d.gpu_key;
  p.sm_count = static_cast<int>(d.sm_count);
  p.l2_bytes = d.l2_bytes;
  p.memory_bytes = d.memory_bytes;
  if (d.sm_count < 0) bad(source, "gpu.sm_count", "must not be negative");
  if (d.l2_bytes < 0) bad(source, "gpu.l2_bytes", "must not be negative");
  if (d.memory_bytes < 0) bad(source, "gpu.memory_bytes", "must not be negative");
  p.source = d.source;
  p.read_bytes_per_second =
      non_negative(d.read_bytes_per_second, source, "bandwidth.read_bytes_per_second");
  p.write_bytes_per_second =
      non_negative(d.write_bytes_per_second, source, "bandwidth.write_bytes_per_second");
  p.copy_bytes_per_second =
      non_negative(d.copy_bytes_per_second, source, "bandwidth.copy_bytes_per_second");
  p.datasheet_bytes_per_second =
      non_negative(d.datasheet_bytes_per_second, source, "bandwidth.datasheet_bytes_per_second");
  if (p.dram_bytes_per_second() <= 0) {
    bad(source, "bandwidth",
        "no DRAM bandwidth (read_bytes_per_second and datasheet_bytes_per_second are both 0)");
  }
  for (const auto& [k, v] : d.peaks) {
    const std::string at = "peaks." + k;
    dtype t{};
    try {
      t = parse_dtype(k);
    } catch (const std::invalid_argument& e) {
      bad(source, at, e.what());
    }
    p.peaks[t] = {non_negative(v.flops_per_second, source, at + ".flops_per_second"),
                  non_negative(v.datasheet_flops_per_second, source,
                               at + ".datasheet_flops_per_second")};
  }
  p.environment = std::move(d.env.raw);
  p.config = std::move(d.config);
  p.rows = nlohmann::json::array();
  p.rows.get_ref<nlohmann::json::array_t&>() = std::move(d.rows);
  if (d.instruction_peaks) {
    p.instruction_peaks = from_document(*d.instruction_peaks, source, "instruction_peaks");
  }
  if (d.all_reduce) {
    p.all_reduce.emplace();
    for (std::size_t i = 0; i < d.all_reduce->size(); ++i) {
      const auto& r = (*d.all_reduce)[i];
      const std::string at = "collectives.all_reduce[" + std::to_string(i) + "]";
      if (r.gpus < 2 || r.gpus > 1024) bad(source, at + ".gpus", "must be in 2 .. 1024");
      if (!(r.message_bytes > 0)) bad(source, at + ".message_bytes", "must be > 0");
      if (!(r.seconds > 0)) bad(source, at + ".seconds", "must be > 0");
      if (!(r.bus_bytes_per_second > 0)) bad(source, at + ".bus_bytes_per_second", "must be > 0");
      p.all_reduce->push_back(
          {static_cast<std::int32_t>(r.gpus), r.message_bytes, r.seconds, r.bus_bytes_per_second});
    }
  }
  return p;
}

gpu_profile gpu_profile_from_json(const nlohmann::json& j, std::string_view source) {
  return from_document(schema::parse_gpu_profile(j, source), source);
}

gpu_profile load_gpu_profile(const std::filesystem::path& path) {
  return gpu_profile_from_json(schema::read_json(path, k_gpu_profile_schema), path.string());
}

}  // namespace ridgeline
