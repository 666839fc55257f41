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
  // Read through the format's typed reader: a field the table prints that is missing is an error
  // naming it, never a zero in the table.
  const schema::roofline_document d = schema::parse_roofline(doc, "roofline results");
  const schema::roofline_ceilings& c = d.ceilings;
  std::ostringstream out;
  const double bw = c.dram_read_bytes_per_second;
  out << "ridgeline roofline: " << c.gpu << "  (ceilings: " << c.source << ")\n";
  // A number, or "-" when it is unknown, right-aligned in `f`'s width.
  auto num = [](const std::optional<double>& v, const char* f, double scale = 1.0) {
    const std::string s = v ? format(f, *v / scale) : "-";
    const std::string width = format(f, 0.0);
    return std::string(width.size() > s.size() ? width.size() - s.size() : 0, ' ') + s;
  };
  out << "DRAM read " << format("%.2f", bw / 1e12) << " TB/s\n";
  out << "% of roof: below the ridge, achieved DRAM bytes/s / the measured read bandwidth "
      << format("%.2f", bw / 1e12)
      << " TB/s (the traffic of decode steps and GEMV-like kernels is reads); above it, FLOP/s / "
         "the dtype's compute ceiling\n";
  out << "  dtype     ceiling TFLOP/s  GEMM TFLOP/s  ridge FLOP/B  GEMM ridge  datasheet ridge  "
         "ceiling from\n";
  for (const auto& t : c.dtypes) {
    const auto& src = t.sources;
    out << "  " << t.dtype << std::string(9 - std::min<std::size_t>(9, t.dtype.size()), ' ')
        << num(t.peak_flops_per_second, "%15.1f", 1e12)
        << num(src ? std::optional<double>(src->gemm_peak_flops_per_second) : std::nullopt,
               "%14.1f", 1e12)
        << num(t.ridge_flops_per_byte, "%14.1f")
        << num(src ? src->gemm_ridge_flops_per_byte : std::nullopt, "%12.1f")
        << num(t.datasheet_ridge_flops_per_byte, "%17.1f") << "  "
        << (src ? src->peak_source : std::string("GEMM peak")) << "\n";
  }
  if (c.note) out << "  note: " << *c.note << "\n";
  if (d.intensity_sweep && doc.at("intensity_sweep").contains("against_probe")) {
    out << "\nIntensity sweep plateaus against the ceilings (compute ceiling: the instruction "
           "peak measured in this run by the probe's routine right after the kernel's points, "
           "both sustained alike; ratio = plateau / ceiling; beside it the profile's instruction "
           "peak and the GEMM peak):\n"
        << "  kernel        memory TB/s  % of read   compute TFLOP/s  ceiling  ratio  "
           "instr. (profile)  ratio    GEMM  ratio\n";
    for (const auto& r : d.against_probe) {
      out << "  " << r.kernel << std::string(12 - std::min<std::size_t>(12, r.kernel.size()), ' ')
          << format("%13.3f", r.memory_bytes_per_second / 1e12)
          << format("%10.1f%%", 100.0 * r.memory_ratio)
          << format("%17.1f", r.compute_flops_per_second / 1e12)
          << num(r.compute_ceiling_flops_per_second, "%9.1f", 1e12)
          << num(r.compute_ratio, "%7.3f")
          << num(r.instruction_peak_profile_flops_per_second, "%18.1f", 1e12)
          << num(r.profile_instruction_ratio, "%7.3f")
          << num(r.probe_peak_flops_per_second, "%8.1f", 1e12) << num(r.gemm_ratio, "%7.3f");
      if (r.compute_within_5_percent) {
        out << (*r.compute_within_5_percent ? "  within 5%" : "  missed (5%)");
      }
      out << "\n";
    }
  }
  out << "\nEngine steps (" << d.model << "; time: CUDA events; "
      << "measured: CUPTI counters in a separate pass):\n"
      << "  phase    batch  ctx    ms      counted FLOP/B  measured FLOP/B  ratio  "
         "measured GB  TFLOP/s  TB/s   % of roof\n";
  for (const auto& r : d.engine) {
    if (r.skipped) {
      out << "  " << r.phase << " batch " << r.batch << ": skipped: " << *r.skipped << "\n";
      continue;
    }
    const auto& m = r.measured;
    out << "  " << r.phase << std::string(8 - std::min<std::size_t>(8, r.phase.size()), ' ')
        << format("%5.0f", double(r.batch)) << format("%5.0f", double(r.context))
        << format("%9.3f", r.seconds * 1e3)
        << format("%13.2f", r.counted_intensity_flops_per_byte)
        << (m ? format("%17.2f", m->intensity_flops_per_byte) +
                    format("%7.3f", m->intensity_ratio) + format("%13.2f", m->dram_bytes / 1e9)
              : std::string("                -      -            -"))
        << format("%9.1f", r.flops_per_second / 1e12)
        << format("%7.2f", r.bytes_per_second / 1e12) << format("%9.1f%%", r.pct_of_roof) << "\n";
  }
  for (const auto& k : d.decode_kernels) {
    if (k.skipped) {
      out << "\nDecode step at batch " << k.batch << ", per kernel: skipped: " << *k.skipped
          << "\n";
      continue;
    }
    out << "\nDecode step at batch " << k.batch << ", per kernel (summed over layers; "
        << k.traced_steps << " traced eager steps):\n"
        << "  phase            kernel                                      calls  us/step  "
           "FLOP/B   TFLOP/s   TB/s  % of roof\n";
    for (const auto& r : k.kernels) {
      std::string name = r.kernel;
      if (name.size() > 42) name = name.substr(0, 39) + "...";
      out << "  " << r.phase << std::string(17 - std::min<std::size_t>(17, r.phase.size()), ' ')
          << name << std::string(44 - std::min<std::size_t>(44, name.size()), ' ')
          << format("%5.0f", double(r.calls)) << format("%9.1f", r.seconds * 1e6)
          << (r.intensity_flops_per_byte
                  ? format("%9.2f", *r.intensity_flops_per_byte) +
                        format("%10.2f", *r.flops_per_second / 1e12) +
                        format("%7.2f", *r.bytes_per_second / 1e12) +
                        format("%10.1f%%", *r.pct_of_roof) +
                        (r.memory_ceiling ? "  of " + *r.memory_ceiling + " floor" : "")
                  : std::string(""))
          << "\n";
    }
  }
  const schema::roofline_crossing& x = d.crossing;
  out << "\nbf16 ridge "
      << (x.ridge_flops_per_byte ? format("%.1f", *x.ridge_flops_per_byte) : std::string("?"))
      << " FLOP/byte"
      << (x.gemm_ridge_flops_per_byte
              ? format(" (cuBLASLt GEMM peak's: %.1f)", *x.gemm_ridge_flops_per_byte)
              : std::string())
      << "; decode of " << x.model << " crosses it:\n";
  for (const auto& r : x.contexts) {
    out << "  context " << r.context << ": " << r.crossing.value_or("?");
    if (r.has_gemm_crossing) {
      out << (r.gemm_crossing_batch
                  ? "; the GEMM's ridge from batch " + std::to_string(*r.gemm_crossing_batch)
                  : std::string("; the GEMM's ridge never"));
    }
    out << "\n";
  }
  return out.str();
}

std::string roofline_csv(const json& doc) {
  const schema::roofline_document d = schema::parse_roofline(doc, "roofline results");
  std::ostringstream out;
  out << "kind,name,phase,batch,context,intensity_flops_per_byte,flops_per_second,bytes_per_second,"
         "pct_of_roof,seconds\n";
  auto row = [&](const std::string& kind, const std::string& n, const std::string& phase,
                 std::int64_t batch, std::int64_t context, double i, double f, double b, double pct,
                 double s) {
    std::string q = n;
    std::replace(q.begin(), q.end(), ',', ';');
    out << kind << ',' << q << ',' << phase << ',' << batch << ',' << context << ','
        << format("%.6g", i) << ',' << format("%.6g", f) << ',' << format("%.6g", b) << ','
        << format("%.4g", pct) << ',' << format("%.6g", s) << '\n';
  };
  // A point without a compute ceiling, a kernel the counters did not match: 0 in its columns.
  if (d.intensity_sweep) {
    for (const auto& p : *d.intensity_sweep) {
      row("intensity_sweep", p.kernel, "", 0, 0, p.flop_per_byte, p.flop_per_second,
          p.bytes_per_second, p.pct_of_roof.value_or(0.0), p.seconds);
    }
  }
  for (const auto& r : d.engine) {
    if (r.skipped) continue;
    row("engine_step", r.phase, r.phase, r.batch, r.context,
        r.measured ? r.measured->intensity_flops_per_byte : r.counted_intensity_flops_per_byte,
        r.flops_per_second, r.bytes_per_second, r.pct_of_roof, r.seconds);
  }
  for (const auto& k : d.decode_kernels) {
    for (const auto& r : k.kernels) {
      row("decode_kernel", r.kernel, r.phase, k.batch, k.context,
          r.intensity_flops_per_byte.value_or(0.0), r.flops_per_second.value_or(0.0),
          r.bytes_per_second.value_or(0.0), r.pct_of_roof.value_or(0.0), r.seconds);
    }
  }
  return out.str();
}

}  // namespace ridgeline::bench
