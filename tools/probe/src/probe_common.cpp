// Host-only half of the probe: option checks, memory needs, the readable tables, and the update of
// a profile file's instruction peaks. Profiles are read and written through the typed
// ridgeline.gpu_profile/v1 reader and writer (core/schemas/gpu_profile.hpp).
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/schemas/gpu_profile.hpp"
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
  // The rows and config are read through the format's typed reader: a row or option the table
  // needs that is missing fails naming it, rather than printing a zero.
  const schema::profile_document d = schema::parse_gpu_profile(to_json(p), "probe profile");
  const schema::document_context ctx{"probe profile", schema::k_gpu_profile_schema};
  const schema::node config(d.config, ctx, "config");
  std::ostringstream out;
  out << "ridgeline probe: " << p.name << " (" << p.sm_count << " SMs, L2 "
      << format("%.0f MiB", double(p.l2_bytes) / (1 << 20)) << ", "
      << format_gib(double(p.memory_bytes)) << ")";
  if (d.env.gpu && d.env.gpu->driver_version) out << ", driver " << *d.env.gpu->driver_version;
  out << "\n\n";
  const double ds_bw = p.datasheet_bytes_per_second;
  out << "DRAM bandwidth (" << format_gib(config.number("max_bytes"))
      << " buffer, cold; best launch configuration of our kernels; copy counts read + write)\n";
  out << "  op      TB/s   p10-p90 TB/s     % of datasheet"
      << (ds_bw > 0 ? format(" %.2f", ds_bw / 1e12) : "") << "\n";
  // TB/s at the median and over p10-p90 of the times, and the median's share of the datasheet.
  auto rates = [ds_bw](const schema::bandwidth_row& r) {
    const double b = r.bytes_moved;
    const auto& s = r.measurement.seconds;
    return format("%5.2f", b / s.median / 1e12) + "   " + format("%5.2f", b / s.p90 / 1e12) + "-" +
           format("%-5.2f", b / s.p10 / 1e12) + "      " +
           (ds_bw > 0 ? format("%5.1f%%", 100.0 * b / s.median / ds_bw) : "-");
  };
  for (const auto& r : d.bandwidth) {
    out << "  " << r.op << std::string(8 - std::min<std::size_t>(8, r.op.size()), ' ') << rates(r)
        << (r.measurement.throttled ? "  [throttled]" : "") << "\n";
  }
  for (const auto& r : d.bandwidth_reference) {
    out << "  memcpy  " << rates(r) << "   (cudaMemcpyAsync device-to-device: copy engines)\n";
  }
  if (const auto method = config.optional_string("copy_method")) {
    out << "  copy ceiling " << format("%.2f", p.copy_bytes_per_second / 1e12) << " TB/s ("
        << *method << ")\n";
  }
  out << "\nWorking-set sweep (hot, L2-only loads; L2 is "
      << format("%.0f MiB", double(p.l2_bytes) / (1 << 20)) << ")\n";
  out << "  size          read TB/s  write TB/s  copy TB/s\n";
  std::map<double, std::map<std::string, double>> sweep;
  for (const auto& r : d.working_set) sweep[double(r.buffer_bytes)][r.op] = r.bytes_per_second;
  for (const auto& [size, ops] : sweep) {
    const std::string label = format_bytes(size);
    out << "  " << label << std::string(14 - label.size(), ' ');
    for (const char* op : {"read", "write", "copy"}) {
      auto it = ops.find(op);
      out << (it == ops.end() ? std::string("      -    ") : format("%8.2f   ", it->second / 1e12));
    }
    out << "\n";
  }
  out << "\nGEMM peaks (" << config.integer("gemm_size") << "^3, best of cuBLASLt's heuristic "
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
  if (!d.linear_block.empty()) {
    const double peak = p.peak_flops_per_second(dtype::bf16);
    out << "\nLlama-2-7B block, four linear layers (bf16, cold L2; tokens = decode batch)\n";
    out << "  tokens   qkv us    o us  gate_up us  down us   total us  TFLOP/s  % peak   TB/s  "
           "% read bw  bound\n";
    for (const auto& r : d.linear_block) {
      out << format("  %6.0f", double(r.tokens)) << format("  %7.1f", r.qkv_seconds * 1e6)
          << format(" %7.1f", r.o_seconds * 1e6) << format("  %10.1f", r.gate_up_seconds * 1e6)
          << format(" %8.1f", r.down_seconds * 1e6) << format("  %9.1f", r.seconds * 1e6)
          << format("  %7.1f", r.flops_per_second / 1e12)
          << format("  %5.1f%%", peak > 0 ? 100 * r.flops_per_second / peak : 0.0)
          << format("  %5.2f", r.bytes_per_second / 1e12)
          << format("  %8.1f%%", 100 * r.bytes_per_second / p.dram_bytes_per_second()) << "  "
          << r.bound << "\n";
    }
    if (const auto tokens = config.optional_number("linear_crossover_tokens")) {
      out << "  weights stop being the bottleneck (counted intensity crosses the measured bf16 "
             "ridge) at about "
          << *tokens << " tokens\n";
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

namespace {

const char* k_update_label = "GPU profile";

nlohmann::json parse_profile_text(const std::string& text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument(std::string("not valid JSON (") + e.what() + ")");
  }
}

// The profile's typed document; throws std::invalid_argument unless the format's writer gives
// back `text` byte for byte, so that a rewrite through it changes only what the caller replaced.
schema::profile_document updatable_document(const std::string& text, const nlohmann::json& j) {
  schema::profile_document d = schema::parse_gpu_profile(j, k_update_label);
  if (schema::to_text(schema::to_json(d)) != text) {
    throw std::invalid_argument(
        "not laid out as ridgeline writes profiles (2-space indent, sorted keys, a final newline), "
        "so rewriting it would change more than its instruction_peaks: run the whole probe "
        "(ridgeline probe --full -o PROFILE) instead");
  }
  return d;
}

}  // namespace

gpu_profile check_instruction_peak_update(const std::string& text) {
  const nlohmann::json j = parse_profile_text(text);
  gpu_profile p = gpu_profile_from_json(j, k_update_label);
  updatable_document(text, j);
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
  // The document as the format's writer gives it back (the check made sure that is `text`), with
  // the new section, itself read back through the format's reader: keys are sorted, so its lines
  // go in alphabetical place and no other line changes.
  schema::profile_document d = updatable_document(text, parse_profile_text(text));
  const nlohmann::json section = to_json(s);
  const schema::document_context ctx{"new instruction_peaks", schema::k_gpu_profile_schema};
  d.instruction_peaks = schema::parse_instruction_peaks(schema::node(section, ctx, "instruction_peaks"));
  return schema::to_text(schema::to_json(d));
}

}  // namespace ridgeline::bench
