// Host-only half of the probe: option checks, memory needs, the readable tables, and the update of
// a profile file's instruction peaks.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/text.hpp"
#include "ridgeline/probe/probe.hpp"

namespace ridgeline::bench {
namespace {

bool is_pow2(std::uint64_t v) { return v && (v & (v - 1)) == 0; }

// The four linear layers of one Llama-2-7B block: out features (m) and in features (k).
}  // namespace

std::uint64_t probe_memory_bytes(const probe_options& o) {
  const std::uint64_t bandwidth = 2 * o.max_bytes;  // source and destination of the copy
  std::uint64_t gemm = 0;
  for (dtype t : o.dtypes) {
    const std::uint64_t n = o.gemm_size;
    gemm = std::max(gemm, n * n * (2 * operand_bytes(t) + output_bytes(t)));
  }
  // Largest linear layer: gate_up (22016 x 4096) with 4096 tokens, bf16.
  const std::uint64_t linear =
      o.linear_layers ? (22016ULL * 4096 + 4096ULL * 11008 + 4096ULL * 22016) * 2 : 0;
  const std::uint64_t workspace = 32ULL << 20, flush = 256ULL << 20;
  return std::max({bandwidth, gemm + workspace, linear + workspace}) + flush;
}

void validate_probe_options(const probe_options& o) {
  if (o.max_bytes < (1ULL << 20) || !is_pow2(o.max_bytes)) {
    throw std::invalid_argument("--max-bytes must be a power of two of at least 1 MiB, got " +
                                std::to_string(o.max_bytes));
  }
  if (o.gemm_size < 16 || o.gemm_size % 16 != 0) {
    throw std::invalid_argument("--gemm-size must be a positive multiple of 16, got " +
                                std::to_string(o.gemm_size));
  }
  if (o.gemm_size > (1ULL << 20)) {
    throw std::invalid_argument("--gemm-size " + std::to_string(o.gemm_size) +
                                " is absurd: its operands alone would need " +
                                format_gib(3.0 * double(o.gemm_size) * double(o.gemm_size) * 4));
  }
  if (o.dtypes.empty()) throw std::invalid_argument("--dtypes must name at least one dtype");
}

std::string probe_table(const gpu_profile& p) {
  std::ostringstream out;
  const auto& gpu = p.environment.contains("gpu") ? p.environment["gpu"] : nlohmann::json();
  out << "ridgeline probe: " << p.name << " (" << p.sm_count << " SMs, L2 "
      << format("%.0f MiB", double(p.l2_bytes) / (1 << 20)) << ", "
      << format_gib(double(p.memory_bytes)) << ")";
  if (gpu.is_object() && gpu.contains("driver_version")) {
    out << ", driver " << gpu["driver_version"].get<std::string>();
  }
  out << "\n\n";
  const double ds_bw = p.datasheet_bytes_per_second;
  out << "DRAM bandwidth (" << format_gib(p.config.value("max_bytes", 0.0))
      << " buffer, cold; best launch configuration of our kernels; copy counts read + write)\n";
  out << "  op      TB/s   p10-p90 TB/s     % of datasheet"
      << (ds_bw > 0 ? format(" %.2f", ds_bw / 1e12) : "") << "\n";
  for (const auto& r : p.rows) {
    if (r.value("kind", "") != "bandwidth") continue;
    const double b = r["bytes_moved"].get<double>();
    const auto& s = r["measurement"]["seconds"];
    out << "  " << r["op"].get<std::string>()
        << std::string(8 - r["op"].get<std::string>().size(), ' ')
        << format("%5.2f", b / s["median"].get<double>() / 1e12) << "   "
        << format("%5.2f", b / s["p90"].get<double>() / 1e12) << "-"
        << format("%-5.2f", b / s["p10"].get<double>() / 1e12) << "      "
        << (ds_bw > 0 ? format("%5.1f%%", 100.0 * b / s["median"].get<double>() / ds_bw) : "-")
        << (r["measurement"]["throttled"].get<bool>() ? "  [throttled]" : "") << "\n";
  }
  for (const auto& r : p.rows) {
    if (r.value("kind", "") != "bandwidth_reference") continue;
    const double b = r["bytes_moved"].get<double>();
    const auto& s = r["measurement"]["seconds"];
    out << "  memcpy  " << format("%5.2f", b / s["median"].get<double>() / 1e12) << "   "
        << format("%5.2f", b / s["p90"].get<double>() / 1e12) << "-"
        << format("%-5.2f", b / s["p10"].get<double>() / 1e12) << "      "
        << (ds_bw > 0 ? format("%5.1f%%", 100.0 * b / s["median"].get<double>() / ds_bw) : "-")
        << "   (cudaMemcpyAsync device-to-device: copy engines)\n";
  }
  if (p.config.contains("copy_method")) {
    out << "  copy ceiling " << format("%.2f", p.copy_bytes_per_second / 1e12) << " TB/s ("
        << p.config["copy_method"].get<std::string>() << ")\n";
  }
  out << "\nWorking-set sweep (hot, L2-only loads; L2 is "
      << format("%.0f MiB", double(p.l2_bytes) / (1 << 20)) << ")\n";
  out << "  size          read TB/s  write TB/s  copy TB/s\n";
  std::map<double, std::map<std::string, double>> sweep;
  for (const auto& r : p.rows) {
    if (r.value("kind", "") != "working_set") continue;
    sweep[r["buffer_bytes"].get<double>()][r["op"].get<std::string>()] =
        r["bytes_per_second"].get<double>();
  }
  for (const auto& [size, ops] : sweep) {
    const std::string label = format_bytes(size);
    out << "  " << label << std::string(14 - label.size(), ' ');
    for (const char* op : {"read", "write", "copy"}) {
      auto it = ops.find(op);
      out << (it == ops.end() ? std::string("      -    ") : format("%8.2f   ", it->second / 1e12));
    }
    out << "\n";
  }
  out << "\nGEMM peaks (" << p.config.value("gemm_size", 0) << "^3, best of cuBLASLt's heuristic "
      << "algorithms, TN layout)\n";
  out << "  dtype      measured       datasheet   % of ds   ridge FLOP/B (measured / datasheet)\n";
  for (const auto& [t, pk] : p.peaks) {
    if (pk.flops_per_second <= 0) continue;
    const std::string unit(rate_unit(t));
    out << "  " << name(t) << std::string(10 - name(t).size(), ' ')
        << format("%7.1f ", pk.flops_per_second / 1e12) << unit << std::string(8 - unit.size(), ' ')
        << (pk.datasheet_flops_per_second > 0
                ? format("%7.1f", pk.datasheet_flops_per_second / 1e12)
                : std::string("      -"))
        << "   "
        << (pk.datasheet_flops_per_second > 0
                ? format("%5.1f%%", 100 * pk.flops_per_second / pk.datasheet_flops_per_second)
                : std::string("     -"))
        << "    " << (p.ridge_point(t) ? format("%6.1f", *p.ridge_point(t)) : std::string("     -"))
        << " / "
        << (p.datasheet_ridge_point(t) ? format("%.1f", *p.datasheet_ridge_point(t))
                                       : std::string("-"))
        << "\n";
  }
  if (p.instruction_peaks) out << "\n" << instruction_peak_table(*p.instruction_peaks, &p);
  bool have_linear = false;
  for (const auto& r : p.rows) have_linear = have_linear || r.value("kind", "") == "linear_block";
  if (have_linear) {
    const double peak = p.peak_flops_per_second(dtype::bf16);
    out << "\nLlama-2-7B block, four linear layers (bf16, cold L2; tokens = decode batch)\n";
    out << "  tokens   qkv us    o us  gate_up us  down us   total us  TFLOP/s  % peak   TB/s  "
           "% read bw  bound\n";
    for (const auto& r : p.rows) {
      if (r.value("kind", "") != "linear_block") continue;
      const auto& lay = r["layer_seconds"];
      out << format("  %6.0f", r["tokens"].get<double>())
          << format("  %7.1f", lay["qkv"].get<double>() * 1e6)
          << format(" %7.1f", lay["o"].get<double>() * 1e6)
          << format("  %10.1f", lay["gate_up"].get<double>() * 1e6)
          << format(" %8.1f", lay["down"].get<double>() * 1e6)
          << format("  %9.1f", r["seconds"].get<double>() * 1e6)
          << format("  %7.1f", r["flops_per_second"].get<double>() / 1e12)
          << format("  %5.1f%%", peak > 0 ? 100 * r["flops_per_second"].get<double>() / peak : 0.0)
          << format("  %5.2f", r["bytes_per_second"].get<double>() / 1e12)
          << format("  %8.1f%%",
                    100 * r["bytes_per_second"].get<double>() / p.dram_bytes_per_second())
          << "  " << r["bound"].get<std::string>() << "\n";
    }
    if (p.config.contains("linear_crossover_tokens")) {
      out << "  weights stop being the bottleneck (counted intensity crosses the measured bf16 "
             "ridge) at about "
          << p.config["linear_crossover_tokens"].get<double>() << " tokens\n";
    }
  }
  return out.str();
}

void validate_instruction_peak_options(const instruction_peak_options& o) {
  if (o.kinds.empty()) throw std::invalid_argument("instruction peaks: no kind to measure");
  if (!(o.launch_seconds > 0 && o.launch_seconds <= 10)) {
    throw std::invalid_argument("instruction peaks: launch_seconds must be in (0, 10], got " +
                                std::to_string(o.launch_seconds));
  }
  if (!(o.sustain_seconds >= 0 && o.sustain_seconds <= 600)) {
    throw std::invalid_argument("instruction peaks: sustain_seconds must be in [0, 600], got " +
                                std::to_string(o.sustain_seconds));
  }
}

std::string instruction_peak_table(const instruction_peak_section& s, const gpu_profile* gemm) {
  std::ostringstream out;
  const auto& env = s.environment;
  out << "Instruction peaks (compute-only kernels, operands in registers and shared memory; timed "
         "after "
      << format("%g", s.config.value("sustain_seconds", 0.0)) << " s of launches)";
  if (env.contains("ridgeline") && env.contains("time_utc")) {
    out << ", measured " << env["time_utc"].get<std::string>() << " at git "
        << env["ridgeline"].value("git_sha", std::string("?"));
  }
  out << "\n  peak         TFLOP/s   p10-p90 TFLOP/s   datasheet  % of ds    GEMM  GEMM/instr.  "
         "instruction\n";
  for (const auto& [k, pk] : s.peaks) {
    const std::string n(name(k));
    const double ds = pk.datasheet_flops_per_second;
    const auto gd = gemm_dtype(k);
    const double g = gemm && gd && gemm->peaks.count(*gd) ? gemm->peaks.at(*gd).flops_per_second : 0;
    out << "  " << n << std::string(11 - std::min<std::size_t>(11, n.size()), ' ')
        << format("%8.1f", pk.flops_per_second / 1e12)
        << format("   %7.1f", pk.p10_flops_per_second / 1e12)
        << format("-%-7.1f", pk.p90_flops_per_second / 1e12)
        << (ds > 0 ? format("   %9.1f", ds / 1e12) +
                         format("   %5.1f%%", 100 * pk.flops_per_second / ds)
                   : std::string("           -        -"))
        << (g > 0 ? format("  %6.1f", g / 1e12) + format("  %11.3f", g / pk.flops_per_second)
                  : std::string("       -            -"))
        << "  " << pk.instruction << "\n";
  }
  for (const auto& r : s.skipped) out << "  skipped: " << r << "\n";
  return out.str();
}

gpu_profile check_instruction_peak_update(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument(std::string("not valid JSON (") + e.what() + ")");
  }
  gpu_profile p = gpu_profile_from_json(j);
  if (j.dump(2) + "\n" != text) {
    throw std::invalid_argument(
        "not laid out as ridgeline writes profiles (2-space indent, sorted keys, a final newline), "
        "so rewriting it would change more than its instruction_peaks: run the whole probe "
        "(ridgeline probe --full -o PROFILE) instead");
  }
  return p;
}

void require_same_gpu(const gpu_profile& p, const std::string& device_name) {
  if (p.name != device_name) {
    throw std::invalid_argument("a profile of the " + p.name + ", but this device is the " +
                                device_name + ": pick its --device, or another profile");
  }
}

std::string with_instruction_peaks(const std::string& text, const instruction_peak_section& s,
                                   const std::string& device_name) {
  require_same_gpu(check_instruction_peak_update(text), device_name);
  // Keys are sorted and the layout is nlohmann's, as the check made sure: the new object's lines
  // go in alphabetical place and no other line changes.
  nlohmann::json j = nlohmann::json::parse(text);
  j["instruction_peaks"] = to_json(s);
  return j.dump(2) + "\n";
}

}  // namespace ridgeline::bench
