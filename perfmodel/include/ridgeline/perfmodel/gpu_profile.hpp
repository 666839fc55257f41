// A GPU profile (schema ridgeline.gpu_profile/v1): measured ceilings of one GPU (DRAM bandwidth,
// GEMM peak per dtype, and optionally the instruction peaks and all-reduce collectives among
// several GPUs of the host) beside its datasheet figures, as
// written by `ridgeline probe` and read by the simulated executor, the planner (GEMM peaks and
// bandwidth only) and `ridgeline roofline` (instruction peaks as its compute ceilings).
// Datasheet-only profiles have source "datasheet".
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ridgeline/core/dtype.hpp"
#include "ridgeline/kernels/instruction_peak_plan.hpp"

namespace ridgeline {

inline constexpr const char* k_gpu_profile_schema = "ridgeline.gpu_profile/v1";

struct dtype_peak {
  double flops_per_second = 0;            // measured (0 when not measured)
  double datasheet_flops_per_second = 0;  // dense, vendor figure (0 when unknown)
};

// One instruction's measured throughput (the probe's compute-only kernels,
// kernels/include/ridgeline/kernels/instruction_peak_plan.hpp): the median launch and the p10/p90
// of the launches in FLOP/s (p10 from the slower p90 time).
struct instruction_peak {
  std::string instruction;  // instruction_name(kind): "FFMA", "HGMMA (wgmma m64n256k16 ...)", ...
  double flops_per_second = 0;
  double p10_flops_per_second = 0;
  double p90_flops_per_second = 0;
  double datasheet_flops_per_second = 0;                  // 0 when the datasheet has none
  nlohmann::json launch = nlohmann::json::object();       // grid, threads, iterations, FLOPs
  nlohmann::json measurement = nlohmann::json::object();  // repetitions, clocks, throttling
};

// The profile's "instruction_peaks" object: measured by `ridgeline probe`, or alone into an
// existing profile (`ridgeline probe --only instruction-peaks --update PROFILE`), so it carries
// the environment (git sha, driver, time) of the run that measured it. Kinds a device cannot run
// (wgmma off sm_90a) are listed in `skipped` with the reason.
struct instruction_peak_section {
  std::map<instruction_peak_kind, instruction_peak> peaks;
  std::vector<std::string> skipped;
  nlohmann::json environment = nlohmann::json::object();
  nlohmann::json config = nlohmann::json::object();

  // The median FLOP/s of kind k; 0 when it was not measured.
  double flops_per_second(instruction_peak_kind k) const;
};

// Written and read through the typed ridgeline.gpu_profile/v1 format (core/schemas/gpu_profile.hpp).
nlohmann::json to_json(const instruction_peak_section& s);
// Reads the object strictly; throws schema::schema_error (an std::invalid_argument) naming
// `source`, the field and the schema when a field is missing, mistyped or out of range.
instruction_peak_section instruction_peak_section_from_json(
    const nlohmann::json& j, std::string_view source = "instruction_peaks");

// One all-reduce measured among `gpus` GPUs of one host: message size, median time, and the bus
// bandwidth it reached, 2 (gpus - 1) / gpus x message_bytes / seconds (the per-GPU link rate).
struct all_reduce_point {
  std::int32_t gpus = 0;
  double message_bytes = 0;
  double seconds = 0;
  double bus_bytes_per_second = 0;
};

struct gpu_profile {
  std::string name;    // device name as the driver reports it
  std::string key;     // short id, e.g. "h100-sxm"
  std::string source;  // "measured" or "datasheet"
  int sm_count = 0;
  std::int64_t l2_bytes = 0;
  std::int64_t memory_bytes = 0;
  // Measured DRAM bandwidth plateaus (bytes/s; copy counts read + write). 0 when not measured.
  double read_bytes_per_second = 0;
  double write_bytes_per_second = 0;
  double copy_bytes_per_second = 0;
  double datasheet_bytes_per_second = 0;
  std::map<dtype, dtype_peak> peaks;
  nlohmann::json environment = nlohmann::json::object();
  nlohmann::json config = nlohmann::json::object();
  nlohmann::json rows = nlohmann::json::array();  // the probe's raw measurements
  // Absent in profiles written before the probe measured instruction peaks.
  std::optional<instruction_peak_section> instruction_peaks;
  // All-reduce per GPU count and message size (`collectives.all_reduce`): the planner's
  // tensor-parallel cost (ceilings.hpp, all_reduce_cost_of). Absent until `ridgeline probe`
  // measures it on a host with several GPUs; the planner then uses the datasheet interconnect.
  std::optional<std::vector<all_reduce_point>> all_reduce;

  // DRAM bandwidth the roofline uses: the measured read plateau, else the datasheet figure.
  double dram_bytes_per_second() const;
  // Peak FLOP/s the roofline uses for t: measured, else datasheet; 0 when neither.
  double peak_flops_per_second(dtype t) const;
  // Ridge point (FLOP/byte) from measured ceilings; nullopt when either is missing.
  std::optional<double> ridge_point(dtype t) const;
  std::optional<double> datasheet_ridge_point(dtype t) const;
  // Measured instruction peak of kind k, or of the tensor-core (bf16, fp8_e4m3) or FFMA (fp32)
  // instruction of dtype t; 0 when the profile has none.
  double instruction_peak_flops_per_second(instruction_peak_kind k) const;
  double instruction_peak_flops_per_second(dtype t) const;
};

// The profile as its format's writer writes it (schema::to_json(profile_document)): ridge points
// derived from the ceilings, environment, config and rows as held.
nlohmann::json to_json(const gpu_profile& p);
// Reads a profile through the format's typed reader (schema::parse_gpu_profile), then checks what
// the model needs: a non-empty gpu.name, known dtype and instruction-peak names, no negative
// rate, a DRAM bandwidth (measured or datasheet). Nothing missing is defaulted: every failure is a
// schema::schema_error (an std::invalid_argument) "<source>: <field>: <what> (schema ...)".
gpu_profile gpu_profile_from_json(const nlohmann::json& j, std::string_view source = "GPU profile");
// Reads a profile file as above, the file named in every error; io_error when unreadable.
gpu_profile load_gpu_profile(const std::filesystem::path& path);

// Datasheet figures of the GPUs people serve on (dense tensor-core rates, no sparsity). Memory is
// the marketed capacity in decimal GB (16 GB -> 16e9 bytes; the driver reports a little more or
// less), bandwidth the marketed DRAM figure. A dtype is absent where the GPU has no tensor-core
// path for it (no bf16 on Turing, no fp8 before Ada/Hopper).
struct datasheet_entry {
  const char* key;
  const char* name;
  std::int64_t memory_bytes;
  double dram_bytes_per_second;
  std::map<dtype, double> flops_per_second;
  const char* citation = "";  // the vendor document the figures come from
  // The link between GPUs of one host that tensor parallelism reduces over, as the datasheet
  // names it, and its bandwidth per GPU and direction (half the marketed bidirectional figure).
  const char* interconnect = "";
  double interconnect_bytes_per_second = 0;
};
const std::vector<datasheet_entry>& datasheet_table();
// Datasheet entry for a device name as the driver reports it ("NVIDIA H100 80GB HBM3").
const datasheet_entry* datasheet_for_device(const std::string& device_name);
const datasheet_entry* datasheet_by_key(const std::string& key);

}  // namespace ridgeline
