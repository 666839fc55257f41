// Host half of `ridgeline roofline` (see roofline.hpp): option checks, the ceilings and crossing
// blocks, the decode crossing arithmetic, table and CSV. The GPU half is roofline/roofline_run.cpp.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/schemas/roofline.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/roofline/roofline.hpp"
#include "ridgeline/sweep/sweep.hpp"

namespace ridgeline::bench {

using nlohmann::json;

namespace {

void require_positive(const std::vector<int>& v, const char* what) {
  for (int x : v) {
    if (x <= 0)
      throw std::invalid_argument(std::string(what) + " must be positive, got " +
                                  std::to_string(x));
  }
}

constexpr dtype k_roof_dtypes[] = {dtype::fp32, dtype::tf32,     dtype::fp16,
                                   dtype::bf16, dtype::fp8_e4m3, dtype::int8};

}  // namespace

std::string short_kernel_name(const std::string& n) {
  std::string s = n.rfind("void ", 0) == 0 ? n.substr(5) : n;
  // Cut the parameter list: the first '(' outside template brackets that does not open
  // "(anonymous namespace)".
  static const std::string anon = "(anonymous namespace)";
  int depth = 0;
  std::size_t last_scope = std::string::npos;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '<') ++depth;
    if (c == '>' && depth > 0) --depth;
    if (depth != 0) continue;
    if (c == '(') {
      if (s.compare(i, anon.size(), anon) == 0) {
        i += anon.size() - 1;
        continue;
      }
      s.resize(i);
      break;
    }
    if (c == ':' && i + 1 < s.size() && s[i + 1] == ':') last_scope = ++i;
  }
  return last_scope == std::string::npos ? s : s.substr(last_scope + 1);
}

void validate_roofline_options(const roofline_options& o) {
  model_preset_by_name(o.model);  // throws for an unknown preset
  if (o.context <= 0) throw std::invalid_argument("--context must be positive");
  if (o.prefill_context <= 0) throw std::invalid_argument("--prefill-context must be positive");
  require_positive(o.decode_batches, "--batch");
  require_positive(o.prefill_batches, "--prefill-batch");
  require_positive(o.kernel_batches, "--kernel-batch");
  if (o.intensity_sweep) validate_intensity_sweep_options(o.sweep);
}

double decode_intensity_limit(const model_preset& m, int context) {
  // Per sequence: its share of the linear layers and LM head, its attention, its KV read and
  // the new token's KV write; the weights are shared and vanish per sequence.
  const step_work one = count_step_work(m, 1, context, false);
  const step_work two = count_step_work(m, 2, context, false);
  const double flops = two.flops - one.flops;
  const double bytes =
      (two.kv_read_bytes + two.kv_write_bytes) - (one.kv_read_bytes + one.kv_write_bytes);
  return bytes > 0 ? flops / bytes : INFINITY;
}

std::optional<int> decode_ridge_crossing(const model_preset& m, int context, double ridge,
                                         int max_batch) {
  if (!(ridge > 0)) return std::nullopt;
  auto intensity = [&](int b) {
    const step_work w = count_step_work(m, b, context, false);
    return w.flops / w.bytes();
  };
  // Intensity grows monotonically with the batch toward its limit: bisect on [1, max_batch].
  if (intensity(1) >= ridge) return 1;
  if (intensity(max_batch) < ridge) return std::nullopt;
  int lo = 1, hi = max_batch;  // intensity(lo) < ridge <= intensity(hi)
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    (intensity(mid) >= ridge ? hi : lo) = mid;
  }
  return hi;
}

std::optional<instruction_peak_kind> instruction_peak_of(intensity_kernel k) {
  switch (k) {
    case intensity_kernel::ffma_fp32:
      return instruction_peak_kind::fp32;
    case intensity_kernel::hfma2_bf16:
      return instruction_peak_kind::bf16_hfma2;
    case intensity_kernel::mma_bf16:
      return instruction_peak_kind::bf16;
    case intensity_kernel::mma_fp8:
      return instruction_peak_kind::fp8_e4m3;
    case intensity_kernel::hfma2_fp16:
      break;
  }
  return std::nullopt;
}

compute_ceiling select_compute_ceiling(std::optional<instruction_peak_kind> k,
                                       std::optional<dtype> gemm, const gpu_profile& p,
                                       const instruction_peak_section* same_run) {
  compute_ceiling c;
  if (k) {
    c.same_run_flops_per_second = same_run ? same_run->flops_per_second(*k) : 0;
    c.profile_flops_per_second = p.instruction_peak_flops_per_second(*k);
  }
  const double datasheet = gemm ? p.peak_flops_per_second(*gemm) : 0;  // measured, else datasheet
  if (gemm && p.peaks.count(*gemm)) c.gemm_flops_per_second = p.peaks.at(*gemm).flops_per_second;
  // The probe's routine run in this run (sustained as the sweep's points, so both see the power
  // cap alike) first; the profile's where this run measured none.
  const std::pair<double, const char*> order[] = {
      {c.same_run_flops_per_second, "instruction peak, this run"},
      {c.profile_flops_per_second, "instruction peak, probe profile"},
      {c.gemm_flops_per_second, "GEMM peak (no instruction peak)"},
      {datasheet, "datasheet (nothing measured)"}};
  c.source = "none";
  for (const auto& [v, src] : order) {
    if (v > 0) {
      c.flops_per_second = v;
      c.source = src;
      break;
    }
  }
  return c;
}

compute_ceiling select_compute_ceiling(dtype t, const gpu_profile& p,
                                       const instruction_peak_section* same_run) {
  std::optional<instruction_peak_kind> kind;
  for (auto k : k_all_instruction_peak_kinds) {
    if (gemm_dtype(k) == t) kind = k;
  }
  return select_compute_ceiling(kind, t, p, same_run);
}

compute_ceiling select_compute_ceiling(intensity_kernel k, const gpu_profile& p,
                                       const instruction_peak_section* same_run) {
  const auto kind = instruction_peak_of(k);
  return select_compute_ceiling(kind, kind ? gemm_dtype(*kind) : std::nullopt, p, same_run);
}

json roofline_ceilings(const gpu_profile& p, const std::string& source,
                       const instruction_peak_section* same_run) {
  // Built as the roofline format's typed ceilings and written by its writer
  // (core/schemas/roofline.hpp).
  schema::roofline_ceilings c;
  const double bw = p.dram_bytes_per_second();
  auto positive = [](double v) { return v > 0 ? std::optional<double>(v) : std::nullopt; };
  for (dtype t : k_roof_dtypes) {
    auto it = p.peaks.find(t);
    if (it == p.peaks.end()) continue;
    const compute_ceiling cc = select_compute_ceiling(t, p, same_run);
    schema::roofline_dtype d;
    d.dtype = std::string(name(t));
    d.peak_flops_per_second = cc.flops_per_second;
    d.datasheet_flops_per_second = it->second.datasheet_flops_per_second;
    d.ridge_flops_per_byte = positive(
        p.read_bytes_per_second > 0 ? cc.flops_per_second / p.read_bytes_per_second : 0.0);
    d.datasheet_ridge_flops_per_byte = p.datasheet_ridge_point(t);
    d.sources = schema::roofline_peak_sources{cc.source, positive(cc.same_run_flops_per_second),
                                              positive(cc.profile_flops_per_second),
                                              cc.gemm_flops_per_second, p.ridge_point(t)};
    c.dtypes.push_back(std::move(d));
  }
  c.gpu = p.name;
  c.source = source;
  c.profile_source = p.source;
  c.dram_read_bytes_per_second = bw;
  c.dram_copy_bytes_per_second = p.copy_bytes_per_second;
  c.datasheet_dram_bytes_per_second = p.datasheet_bytes_per_second;
  c.compute_ceiling_definition =
      "the instruction peak of the dtype's instruction (FFMA for fp32, wgmma for bf16 and "
      "fp8_e4m3: the probe's compute-only kernels), measured in this run; else the "
      "profile's; else the probe's cuBLASLt GEMM peak";
  c.ridge_definition =
      "compute ceiling / DRAM read bytes/s, both measured (gemm_ridge: the probe's GEMM "
      "peak instead)";
  if (same_run && !p.instruction_peaks) {
    c.note =
        "the profile has no instruction peaks (written before the probe measured them): the "
        "compute ceilings are this run's measurement; `ridgeline probe --only instruction-peaks "
        "--update PROFILE` adds them";
  }
  return schema::to_json(c);
}

json roofline_crossings(const model_preset& m, const gpu_profile& p,
                        const std::vector<int>& contexts,
                        const instruction_peak_section* same_run) {
  json rows = json::array();
  const double ceiling = select_compute_ceiling(dtype::bf16, p, same_run).flops_per_second;
  std::optional<double> ridge;
  if (ceiling > 0 && p.read_bytes_per_second > 0) ridge = ceiling / p.read_bytes_per_second;
  const auto gemm_ridge = p.ridge_point(dtype::bf16);
  auto crossing = [&](int c, std::optional<double> at, const char* key, json& r) {
    if (!at) return;
    const auto b = decode_ridge_crossing(m, c, *at);
    r[std::string(key) + "_batch"] = b ? json(*b) : json(nullptr);
    r[key] = b ? "decode is compute-bound from batch " + std::to_string(*b)
               : "never: decode stays memory-bound at every batch (its intensity tends to " +
                     format("%.1f", decode_intensity_limit(m, c)) + " FLOP/byte)";
  };
  for (int c : contexts) {
    json r = {{"context", c},
              {"intensity_limit_flops_per_byte", decode_intensity_limit(m, c)},
              {"intensity_at_batch_1", [&] {
                 const step_work w = count_step_work(m, 1, c, false);
                 return w.flops / w.bytes();
               }()}};
    crossing(c, ridge, "crossing", r);
    crossing(c, gemm_ridge, "gemm_crossing", r);
    rows.push_back(r);
  }
  return {{"model", m.name},
          {"dtype", "bf16"},
          {"ridge_flops_per_byte", ridge ? json(*ridge) : json(nullptr)},
          {"gemm_ridge_flops_per_byte", gemm_ridge ? json(*gemm_ridge) : json(nullptr)},
          {"counted",
           "decode step: 2 FLOPs per weight per token plus attention, over weight bytes "
           "once plus KV read and written (count_step_work)"},
          {"contexts", rows}};
}

std::string roofline_table(const json& doc) {
  std::ostringstream out;
  const json& c = doc.at("ceilings");
  const double bw = c.value("dram_read_bytes_per_second", 0.0);
  out << "ridgeline roofline: " << c.value("gpu", std::string("?"))
      << "  (ceilings: " << c.value("source", std::string("")) << ")\n";
  // A number of a JSON object, or "-" when it is absent or null, right-aligned in `f`'s width.
  auto num = [](const json& o, const char* key, const char* f, double scale = 1.0) {
    const bool have = o.contains(key) && o[key].is_number();
    const std::string s = have ? format(f, o[key].get<double>() / scale) : "-";
    const std::string width = format(f, 0.0);
    return std::string(width.size() > s.size() ? width.size() - s.size() : 0, ' ') + s;
  };
  out << "DRAM read " << format("%.2f", bw / 1e12) << " TB/s\n";
  out << "  dtype     ceiling TFLOP/s  GEMM TFLOP/s  ridge FLOP/B  GEMM ridge  datasheet ridge  "
         "ceiling from\n";
  for (const auto& d : c.at("dtypes")) {
    out << "  " << d.value("dtype", std::string())
        << std::string(9 - std::min<std::size_t>(9, d.value("dtype", std::string()).size()), ' ')
        << num(d, "peak_flops_per_second", "%15.1f", 1e12)
        << num(d, "gemm_peak_flops_per_second", "%14.1f", 1e12)
        << num(d, "ridge_flops_per_byte", "%14.1f") << num(d, "gemm_ridge_flops_per_byte", "%12.1f")
        << num(d, "datasheet_ridge_flops_per_byte", "%17.1f") << "  "
        << d.value("peak_source", std::string("GEMM peak")) << "\n";
  }
  if (c.contains("note")) out << "  note: " << c["note"].get<std::string>() << "\n";
  if (doc.contains("intensity_sweep") && doc["intensity_sweep"].contains("against_probe")) {
    out << "\nIntensity sweep plateaus against the ceilings (compute ceiling: the instruction "
           "peak measured in this run by the probe's routine right after the kernel's points, "
           "both sustained alike; ratio = plateau / ceiling; beside it the profile's instruction "
           "peak and the GEMM peak):\n"
        << "  kernel        memory TB/s  % of read   compute TFLOP/s  ceiling  ratio  "
           "instr. (profile)  ratio    GEMM  ratio\n";
    for (const auto& r : doc["intensity_sweep"]["against_probe"]) {
      out << "  " << r.value("kernel", std::string())
          << std::string(12 - std::min<std::size_t>(12, r.value("kernel", std::string()).size()),
                         ' ')
          << format("%13.3f", r.value("memory_bytes_per_second", 0.0) / 1e12)
          << format("%10.1f%%", 100.0 * r.value("memory_ratio", 0.0))
          << format("%17.1f", r.value("compute_flops_per_second", 0.0) / 1e12)
          << num(r, "compute_ceiling_flops_per_second", "%9.1f", 1e12)
          << num(r, "compute_ratio", "%7.3f")
          << num(r, "instruction_peak_profile_flops_per_second", "%18.1f", 1e12)
          << num(r, "profile_instruction_ratio", "%7.3f")
          << num(r, "probe_peak_flops_per_second", "%8.1f", 1e12) << num(r, "gemm_ratio", "%7.3f");
      if (r.contains("compute_within_5_percent") && r["compute_within_5_percent"].is_boolean()) {
        out << (r["compute_within_5_percent"].get<bool>() ? "  within 5%" : "  missed (5%)");
      }
      out << "\n";
    }
  }
  if (doc.contains("engine")) {
    out << "\nEngine steps (" << doc["config"].value("model", std::string())
        << "; time: CUDA events; "
        << "measured: CUPTI counters in a separate pass):\n"
        << "  phase    batch  ctx    ms      counted FLOP/B  measured FLOP/B  ratio  "
           "measured GB  TFLOP/s  TB/s   % of roof\n";
    for (const auto& r : doc["engine"]) {
      if (r.contains("skipped")) {
        out << "  " << r.value("phase", std::string()) << " batch " << r.value("batch", 0)
            << ": skipped: " << r["skipped"].get<std::string>() << "\n";
        continue;
      }
      const bool m = r.contains("measured") && !r["measured"].is_null();
      out << "  " << r.value("phase", std::string())
          << std::string(8 - std::min<std::size_t>(8, r.value("phase", std::string()).size()), ' ')
          << format("%5.0f", r.value("batch", 0.0)) << format("%5.0f", r.value("context", 0.0))
          << format("%9.3f", r.value("seconds", 0.0) * 1e3)
          << format("%13.2f", r["counted"].value("intensity_flops_per_byte", 0.0))
          << (m ? format("%17.2f", r["measured"].value("intensity_flops_per_byte", 0.0)) +
                      format("%7.3f", r.value("intensity_ratio", 0.0)) +
                      format("%13.2f", r["measured"].value("dram_bytes", 0.0) / 1e9)
                : std::string("                -      -            -"))
          << format("%9.1f", r.value("flops_per_second", 0.0) / 1e12)
          << format("%7.2f", r.value("bytes_per_second", 0.0) / 1e12)
          << format("%9.1f%%", r.value("pct_of_roof", 0.0)) << "\n";
    }
  }
  if (doc.contains("decode_kernels")) {
    for (const auto& k : doc["decode_kernels"]) {
      if (k.contains("skipped")) {
        out << "\nDecode step at batch " << k.value("batch", 0)
            << ", per kernel: skipped: " << k["skipped"].get<std::string>() << "\n";
        continue;
      }
      out << "\nDecode step at batch " << k.value("batch", 0)
          << ", per kernel (summed over layers; " << k.value("traced_steps", 0)
          << " traced eager steps):\n"
          << "  phase            kernel                                      calls  us/step  "
             "FLOP/B   TFLOP/s   TB/s  % of roof\n";
      for (const auto& r : k.value("kernels", json::array())) {
        std::string name = r.value("kernel", std::string());
        if (name.size() > 42) name = name.substr(0, 39) + "...";
        std::string phase = r.value("phase", std::string());
        out << "  " << phase << std::string(17 - std::min<std::size_t>(17, phase.size()), ' ')
            << name << std::string(44 - std::min<std::size_t>(44, name.size()), ' ')
            << format("%5.0f", r.value("calls", 0.0))
            << format("%9.1f", r.value("seconds", 0.0) * 1e6)
            << (r.contains("intensity_flops_per_byte")
                    ? format("%9.2f", r["intensity_flops_per_byte"].get<double>()) +
                          format("%10.2f", r.value("flops_per_second", 0.0) / 1e12) +
                          format("%7.2f", r.value("bytes_per_second", 0.0) / 1e12) +
                          format("%10.1f%%", r.value("pct_of_roof", 0.0))
                    : std::string(""))
            << "\n";
      }
    }
  }
  if (doc.contains("crossing")) {
    const json& x = doc["crossing"];
    const bool gemm = x.contains("gemm_ridge_flops_per_byte") &&
                      x["gemm_ridge_flops_per_byte"].is_number();
    out << "\nbf16 ridge "
        << (x["ridge_flops_per_byte"].is_null()
                ? std::string("?")
                : format("%.1f", x["ridge_flops_per_byte"].get<double>()))
        << " FLOP/byte"
        << (gemm ? format(" (cuBLASLt GEMM peak's: %.1f)",
                          x["gemm_ridge_flops_per_byte"].get<double>())
                 : std::string())
        << "; decode of " << x.value("model", std::string()) << " crosses it:\n";
    for (const auto& r : x["contexts"]) {
      out << "  context " << r.value("context", 0) << ": " << r.value("crossing", std::string("?"));
      if (r.contains("gemm_crossing_batch")) {
        out << (r["gemm_crossing_batch"].is_number()
                    ? "; the GEMM's ridge from batch " +
                          std::to_string(r["gemm_crossing_batch"].get<int>())
                    : std::string("; the GEMM's ridge never"));
      }
      out << "\n";
    }
  }
  return out.str();
}

std::string roofline_csv(const json& doc) {
  std::ostringstream out;
  out << "kind,name,phase,batch,context,intensity_flops_per_byte,flops_per_second,bytes_per_second,"
         "pct_of_roof,seconds\n";
  auto row = [&](const std::string& kind, const std::string& n, const std::string& phase, int batch,
                 int context, double i, double f, double b, double pct, double s) {
    std::string q = n;
    std::replace(q.begin(), q.end(), ',', ';');
    out << kind << ',' << q << ',' << phase << ',' << batch << ',' << context << ','
        << format("%.6g", i) << ',' << format("%.6g", f) << ',' << format("%.6g", b) << ','
        << format("%.4g", pct) << ',' << format("%.6g", s) << '\n';
  };
  if (doc.contains("intensity_sweep")) {
    for (const auto& p : doc["intensity_sweep"].value("points", json::array())) {
      const double s = p.value("seconds", 0.0);
      row("intensity_sweep", p.value("kernel", std::string()), "", 0, 0,
          p.value("flop_per_byte", 0.0), p.value("flop_per_second", 0.0),
          p.value("bytes_per_second", 0.0), p.value("pct_of_roof", 0.0), s);
    }
  }
  for (const auto& r : doc.value("engine", json::array())) {
    if (r.contains("skipped")) continue;
    const bool m = r.contains("measured") && !r["measured"].is_null();
    row("engine_step", r.value("phase", std::string()), r.value("phase", std::string()),
        r.value("batch", 0), r.value("context", 0),
        m ? r["measured"].value("intensity_flops_per_byte", 0.0)
          : r["counted"].value("intensity_flops_per_byte", 0.0),
        r.value("flops_per_second", 0.0), r.value("bytes_per_second", 0.0),
        r.value("pct_of_roof", 0.0), r.value("seconds", 0.0));
  }
  for (const auto& k : doc.value("decode_kernels", json::array())) {
    for (const auto& r : k.value("kernels", json::array())) {
      row("decode_kernel", r.value("kernel", std::string()), r.value("phase", std::string()),
          k.value("batch", 0), k.value("context", 0), r.value("intensity_flops_per_byte", 0.0),
          r.value("flops_per_second", 0.0), r.value("bytes_per_second", 0.0),
          r.value("pct_of_roof", 0.0), r.value("seconds", 0.0));
    }
  }
  return out.str();
}

}  // namespace ridgeline::bench
