// Host-only half of the probe: option checks, memory needs, and the readable table.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "ridgeline/bench/probe.hpp"

namespace ridgeline::bench {
namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string gib(double bytes) { return fmt("%.1f GiB", bytes / double(1ULL << 30)); }

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
                                gib(3.0 * double(o.gemm_size) * double(o.gemm_size) * 4));
  }
  if (o.dtypes.empty()) throw std::invalid_argument("--dtypes must name at least one dtype");
}

std::string probe_table(const gpu_profile& p) {
  std::ostringstream out;
  const auto& gpu = p.environment.contains("gpu") ? p.environment["gpu"] : nlohmann::json();
  out << "ridgeline probe: " << p.name << " (" << p.sm_count << " SMs, L2 "
      << fmt("%.0f MiB", double(p.l2_bytes) / (1 << 20)) << ", " << gib(double(p.memory_bytes))
      << ")";
  if (gpu.is_object() && gpu.contains("driver_version")) {
    out << ", driver " << gpu["driver_version"].get<std::string>();
  }
  out << "\n\n";
  const double ds_bw = p.datasheet_bytes_per_second;
  out << "DRAM bandwidth (" << gib(p.config.value("max_bytes", 0.0))
      << " buffer, cold; best launch configuration of our kernels; copy counts read + write)\n";
  out << "  op      TB/s   p10-p90 TB/s     % of datasheet" << (ds_bw > 0 ? fmt(" %.2f", ds_bw / 1e12) : "") << "\n";
  for (const auto& r : p.rows) {
    if (r.value("kind", "") != "bandwidth") continue;
    const double b = r["bytes_moved"].get<double>();
    const auto& s = r["measurement"]["seconds"];
    out << "  " << r["op"].get<std::string>()
        << std::string(8 - r["op"].get<std::string>().size(), ' ')
        << fmt("%5.2f", b / s["median"].get<double>() / 1e12) << "   "
        << fmt("%5.2f", b / s["p90"].get<double>() / 1e12) << "-"
        << fmt("%-5.2f", b / s["p10"].get<double>() / 1e12) << "      "
        << (ds_bw > 0 ? fmt("%5.1f%%", 100.0 * b / s["median"].get<double>() / ds_bw) : "-")
        << (r["measurement"]["throttled"].get<bool>() ? "  [throttled]" : "") << "\n";
  }
  for (const auto& r : p.rows) {
    if (r.value("kind", "") != "bandwidth_reference") continue;
    const double b = r["bytes_moved"].get<double>();
    const auto& s = r["measurement"]["seconds"];
    out << "  memcpy  " << fmt("%5.2f", b / s["median"].get<double>() / 1e12) << "   "
        << fmt("%5.2f", b / s["p90"].get<double>() / 1e12) << "-"
        << fmt("%-5.2f", b / s["p10"].get<double>() / 1e12) << "      "
        << (ds_bw > 0 ? fmt("%5.1f%%", 100.0 * b / s["median"].get<double>() / ds_bw) : "-")
        << "   (cudaMemcpyAsync device-to-device: copy engines)\n";
  }
  if (p.config.contains("copy_method")) {
    out << "  copy ceiling " << fmt("%.2f", p.copy_bytes_per_second / 1e12) << " TB/s ("
        << p.config["copy_method"].get<std::string>() << ")\n";
  }
  out << "\nWorking-set sweep (hot, L2-only loads; L2 is "
      << fmt("%.0f MiB", double(p.l2_bytes) / (1 << 20)) << ")\n";
  out << "  size          read TB/s  write TB/s  copy TB/s\n";
  std::map<double, std::map<std::string, double>> sweep;
  for (const auto& r : p.rows) {
    if (r.value("kind", "") != "working_set") continue;
    sweep[r["buffer_bytes"].get<double>()][r["op"].get<std::string>()] =
        r["bytes_per_second"].get<double>();
  }
  for (const auto& [size, ops] : sweep) {
    const std::string label = size >= (1 << 30)   ? fmt("%.0f GiB", size / (1 << 30))
                              : size >= (1 << 20) ? fmt("%.0f MiB", size / (1 << 20))
                                                  : fmt("%.0f KiB", size / 1024);
    out << "  " << label << std::string(14 - label.size(), ' ');
    for (const char* op : {"read", "write", "copy"}) {
      auto it = ops.find(op);
      out << (it == ops.end() ? std::string("      -    ") : fmt("%8.2f   ", it->second / 1e12));
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
        << fmt("%7.1f ", pk.flops_per_second / 1e12) << unit
        << std::string(8 - unit.size(), ' ')
        << (pk.datasheet_flops_per_second > 0 ? fmt("%7.1f", pk.datasheet_flops_per_second / 1e12)
                                              : std::string("      -"))
        << "   "
        << (pk.datasheet_flops_per_second > 0
                ? fmt("%5.1f%%", 100 * pk.flops_per_second / pk.datasheet_flops_per_second)
                : std::string("     -"))
        << "    " << (p.ridge_point(t) ? fmt("%6.1f", *p.ridge_point(t)) : std::string("     -"))
        << " / "
        << (p.datasheet_ridge_point(t) ? fmt("%.1f", *p.datasheet_ridge_point(t))
                                       : std::string("-"))
        << "\n";
  }
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
      out << fmt("  %6.0f", r["tokens"].get<double>())
          << fmt("  %7.1f", lay["qkv"].get<double>() * 1e6)
          << fmt(" %7.1f", lay["o"].get<double>() * 1e6)
          << fmt("  %10.1f", lay["gate_up"].get<double>() * 1e6)
          << fmt(" %8.1f", lay["down"].get<double>() * 1e6)
          << fmt("  %9.1f", r["seconds"].get<double>() * 1e6)
          << fmt("  %7.1f", r["flops_per_second"].get<double>() / 1e12)
          << fmt("  %5.1f%%", peak > 0 ? 100 * r["flops_per_second"].get<double>() / peak : 0.0)
          << fmt("  %5.2f", r["bytes_per_second"].get<double>() / 1e12)
          << fmt("  %8.1f%%", 100 * r["bytes_per_second"].get<double>() / p.dram_bytes_per_second())
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

}  // namespace ridgeline::bench
