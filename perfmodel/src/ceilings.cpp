// Ceilings of a GPU for the step-time models (see ceilings.hpp).
#include "ridgeline/perfmodel/ceilings.hpp"

#include <algorithm>
#include <stdexcept>

#include "ridgeline/core/text.hpp"

namespace ridgeline::planner {

dtype compute_dtype_for(weight_format f, const gpu_profile& g) {
  auto has = [&](dtype t) { return g.peak_flops_per_second(t) > 0; };
  switch (f) {
    case weight_format::fp32:
      return dtype::fp32;
    case weight_format::fp8:
      if (has(dtype::fp8_e4m3)) return dtype::fp8_e4m3;
      throw std::invalid_argument(g.key +
                                  " has no fp8 tensor cores (datasheet); use bf16, int8 "
                                  "or int4 weights");
    case weight_format::fp16:
      return has(dtype::fp16) ? dtype::fp16 : dtype::bf16;
    default:
      return has(dtype::bf16) ? dtype::bf16 : dtype::fp16;
  }
}

ceilings ceilings_of(const gpu_profile& g, dtype compute,
                     const std::vector<gpu_profile>& measured) {
  ceilings c;
  c.compute_dtype = compute;
  const std::string key = g.key.empty() ? g.name : g.key;
  auto it = g.peaks.find(compute);
  const bool measured_bw = g.read_bytes_per_second > 0;
  const bool measured_peak = it != g.peaks.end() && it->second.flops_per_second > 0;
  if (measured_bw && measured_peak) {
    c.bytes_per_second = g.read_bytes_per_second;
    c.flops_per_second = it->second.flops_per_second;
    c.basis = "measured (probe of " + key + ")";
    return c;
  }
  // Derating: mean measured / datasheet ratio over measured GPUs (bandwidth; peak of this dtype,
  // else of any dtype).
  double bw_sum = 0, bw_n = 0, pk_sum = 0, pk_n = 0, any_sum = 0, any_n = 0;
  for (const auto& m : measured) {
    if (m.read_bytes_per_second > 0 && m.datasheet_bytes_per_second > 0) {
      bw_sum += m.read_bytes_per_second / m.datasheet_bytes_per_second;
      ++bw_n;
    }
    for (const auto& [t, p] : m.peaks) {
      if (p.flops_per_second > 0 && p.datasheet_flops_per_second > 0) {
        const double r = p.flops_per_second / p.datasheet_flops_per_second;
        any_sum += r;
        ++any_n;
        if (t == compute) {
          pk_sum += r;
          ++pk_n;
        }
      }
    }
  }
  const double bw_ratio = bw_n > 0 ? bw_sum / bw_n : 0.9;
  const double pk_ratio = pk_n > 0 ? pk_sum / pk_n : any_n > 0 ? any_sum / any_n : 0.75;
  const double ds_peak = it != g.peaks.end() ? it->second.datasheet_flops_per_second : 0;
  c.bytes_per_second =
      measured_bw ? g.read_bytes_per_second : g.datasheet_bytes_per_second * bw_ratio;
  c.flops_per_second = measured_peak ? it->second.flops_per_second : ds_peak * pk_ratio;
  if (!(c.bytes_per_second > 0))
    throw std::invalid_argument("GPU profile '" + key + "' has no DRAM bandwidth");
  if (!(c.flops_per_second > 0))
    throw std::invalid_argument("GPU '" + key + "' has no " + std::string(name(compute)) +
                                " peak (measured or datasheet)");
  c.derated = true;
  c.basis = "datasheet-derated:";
  if (!measured_bw) c.basis += " bandwidth x " + format("%.3f", bw_ratio);
  if (!measured_peak)
    c.basis += std::string(measured_bw ? "" : ",") + " " + std::string(name(compute)) + " peak x " +
               format("%.3f", pk_ratio);
  c.basis += " (measured/datasheet of " + std::to_string(static_cast<int>(measured.size())) +
             " measured GPU" + (measured.size() == 1 ? "" : "s") + ")";
  return c;
}

double all_reduce_cost::seconds(double message_bytes) const {
  if (gpus <= 1) return 0;
  const double n = gpus;
  return latency_seconds + 2 * (n - 1) / n * message_bytes / bus_bytes_per_second;
}

bool all_reduce_cost::latency_bound(double message_bytes) const {
  return gpus > 1 && latency_seconds >= seconds(message_bytes) - latency_seconds;
}

all_reduce_cost all_reduce_cost_of(const gpu_profile& g, std::int32_t gpus) {
  if (gpus < 1) throw std::invalid_argument("all-reduce: GPU count must be at least 1");
  all_reduce_cost c;
  c.gpus = gpus;
  if (gpus == 1) {
    c.basis = "one GPU: no all-reduce";
    return c;
  }
  const std::string key = g.key.empty() ? g.name : g.key;
  if (g.all_reduce) {
    for (const auto& p : *g.all_reduce) {
      if (p.gpus != gpus) continue;
      c.latency_seconds = c.measured ? std::min(c.latency_seconds, p.seconds) : p.seconds;
      c.bus_bytes_per_second = std::max(c.bus_bytes_per_second, p.bus_bytes_per_second);
      c.measured = true;
    }
  }
  if (c.measured) {
    c.basis = "measured all-reduce (probe of " + key + ", " + std::to_string(gpus) +
              " GPUs): " + format("%.0f", c.bus_bytes_per_second / 1e9) + " GB/s bus, " +
              format("%.1f", c.latency_seconds * 1e6) + " us";
    return c;
  }
  const datasheet_entry* e = datasheet_by_key(g.key);
  if (!e) e = datasheet_for_device(g.name);
  if (!e || !(e->interconnect_bytes_per_second > 0)) {
    throw std::invalid_argument("GPU '" + key + "' has no measured all-reduce among " +
                                std::to_string(gpus) +
                                " GPUs and no datasheet interconnect: tensor parallelism cannot "
                                "be planned on it");
  }
  c.latency_seconds = k_assumed_all_reduce_latency_seconds;
  c.bus_bytes_per_second = e->interconnect_bytes_per_second;
  c.basis = std::string("datasheet ") + e->interconnect + ": " +
            format("%.0f", c.bus_bytes_per_second / 1e9) + " GB/s per direction, latency " +
            format("%.0f", c.latency_seconds * 1e6) + " us assumed (not measured)";
  return c;
}

}  // namespace ridgeline::planner
