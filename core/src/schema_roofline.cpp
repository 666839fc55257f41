// Reader of ridgeline.roofline/v1 (schemas/roofline.hpp).
#include "ridgeline/core/schemas/roofline.hpp"

namespace ridgeline::schema {
namespace {

using nlohmann::json;

roofline_ceilings parse_ceilings(const node& c) {
  roofline_ceilings o;
  o.gpu = c.string("gpu");
  o.source = c.string("source");
  o.profile_source = c.string("profile_source");
  o.dram_read_bytes_per_second = c.number("dram_read_bytes_per_second");
  if (!(o.dram_read_bytes_per_second > 0)) {
    c.fail_member("dram_read_bytes_per_second", "must be positive");
  }
  o.dram_copy_bytes_per_second = c.number("dram_copy_bytes_per_second");
  o.datasheet_dram_bytes_per_second = c.number("datasheet_dram_bytes_per_second");
  o.ridge_definition = c.string("ridge_definition");
  o.compute_ceiling_definition = c.optional_string("compute_ceiling_definition");
  o.note = c.optional_string("note");
  for (const auto& d : c.array("dtypes").elements()) {
    roofline_dtype t;
    t.dtype = d.string("dtype");
    t.peak_flops_per_second = d.number("peak_flops_per_second");
    t.datasheet_flops_per_second = d.number("datasheet_flops_per_second");
    t.ridge_flops_per_byte = d.nullable_number("ridge_flops_per_byte");
    t.datasheet_ridge_flops_per_byte = d.nullable_number("datasheet_ridge_flops_per_byte");
    if (d.has("peak_source")) {
      roofline_peak_sources p;
      p.peak_source = d.string("peak_source");
      p.instruction_peak_flops_per_second = d.nullable_number("instruction_peak_flops_per_second");
      p.instruction_peak_profile_flops_per_second =
          d.nullable_number("instruction_peak_profile_flops_per_second");
      p.gemm_peak_flops_per_second = d.number("gemm_peak_flops_per_second");
      p.gemm_ridge_flops_per_byte = d.nullable_number("gemm_ridge_flops_per_byte");
      t.sources = std::move(p);
    }
    o.dtypes.push_back(std::move(t));
  }
  return o;
}

// Absent or null -> nullopt; else a finite number.
std::optional<double> maybe_number(const node& n, std::string_view key) {
  if (!n.has(key)) return std::nullopt;
  return n.nullable_number(key);
}

roofline_crossing parse_crossing(const node& x) {
  roofline_crossing c;
  c.model = x.string("model");
  c.ridge_flops_per_byte = x.nullable_number("ridge_flops_per_byte");
  c.gemm_ridge_flops_per_byte = maybe_number(x, "gemm_ridge_flops_per_byte");
  for (const auto& r : x.array("contexts").elements()) {
    crossing_context cc;
    cc.context = r.integer("context");
    cc.crossing = r.optional_string("crossing");
    cc.has_gemm_crossing = r.has("gemm_crossing_batch");
    if (cc.has_gemm_crossing) cc.gemm_crossing_batch = r.nullable_integer("gemm_crossing_batch");
    c.contexts.push_back(std::move(cc));
  }
  return c;
}

}  // namespace

roofline_document parse_roofline(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_roofline_schema};
  const node top = open_document(doc, ctx);
  roofline_document out;
  out.document = doc;
  out.env = parse_environment(top.object("environment"));
  out.ceilings = parse_ceilings(top.object("ceilings"));
  out.model = top.object("config").string("model");
  out.crossing = parse_crossing(top.object("crossing"));
  if (const auto sweep = top.optional_object("intensity_sweep")) {
    std::vector<intensity_point> points;
    for (const auto& p : sweep->array("points").elements()) {
      points.push_back({p.string("kernel"), p.string("variant"), p.number("intensity"),
                        p.number("flop_per_byte"), p.number("flop_per_second"),
                        p.number("bytes_per_second"), p.number("seconds"),
                        p.optional_number("pct_of_roof")});
    }
    sweep->array("plateaus");
    out.intensity_sweep = std::move(points);
    if (const auto against = sweep->optional_array("against_probe")) {
      for (const auto& r : against->elements()) {
        against_probe_row a;
        a.kernel = r.string("kernel");
        a.memory_bytes_per_second = r.number("memory_bytes_per_second");
        a.memory_ratio = r.number("memory_ratio");
        a.compute_flops_per_second = r.number("compute_flops_per_second");
        a.compute_ceiling_flops_per_second = maybe_number(r, "compute_ceiling_flops_per_second");
        a.compute_ratio = maybe_number(r, "compute_ratio");
        a.instruction_peak_profile_flops_per_second =
            maybe_number(r, "instruction_peak_profile_flops_per_second");
        a.profile_instruction_ratio = maybe_number(r, "profile_instruction_ratio");
        a.probe_peak_flops_per_second = maybe_number(r, "probe_peak_flops_per_second");
        a.gemm_ratio = maybe_number(r, "gemm_ratio");
        if (r.has("compute_within_5_percent")) {  // null without a compute ceiling
          a.compute_within_5_percent = r.nullable_boolean("compute_within_5_percent");
        }
        out.against_probe.push_back(std::move(a));
      }
    }
  }
  for (const auto& r : top.array("engine").elements()) {
    roofline_engine_step s;
    s.phase = r.string("phase");
    s.batch = r.integer("batch");
    s.context = r.integer("context");
    s.skipped = r.optional_string("skipped");
    if (!s.skipped) {
      s.seconds = r.number("seconds");
      s.flops_per_second = r.number("flops_per_second");
      s.bytes_per_second = r.number("bytes_per_second");
      s.intensity_flops_per_byte = r.number("intensity_flops_per_byte");
      s.roof_flops_per_second = r.number("roof_flops_per_second");
      s.pct_of_roof = r.number("pct_of_roof");
      s.bound = r.string("bound");
      s.counted_intensity_flops_per_byte = r.object("counted").number("intensity_flops_per_byte");
      if (const auto m = r.nullable_object("measured")) {
        s.counters_measured = true;
        s.measured = engine_counters{m->number("intensity_flops_per_byte"),
                                     m->number("dram_bytes"), r.number("intensity_ratio")};
      }
    }
    out.engine.push_back(std::move(s));
  }
  for (const auto& b : top.array("decode_kernels").elements()) {
    decode_kernel_batch batch;
    batch.batch = b.integer("batch");
    batch.context = b.integer("context");
    batch.skipped = b.optional_string("skipped");
    if (!batch.skipped) {
      batch.traced_steps = b.integer("traced_steps");
      for (const auto& k : b.array("kernels").elements()) {
        decode_kernel d;
        d.phase = k.string("phase");
        d.kernel = k.string("kernel");
        d.kernel_full = k.string("kernel_full");
        d.calls = k.integer("calls");
        d.seconds = k.number("seconds");
        d.intensity_flops_per_byte = k.optional_number("intensity_flops_per_byte");
        if (d.intensity_flops_per_byte) {
          d.flops_per_second = k.number("flops_per_second");
          d.bytes_per_second = k.number("bytes_per_second");
          d.pct_of_roof = k.number("pct_of_roof");
          d.memory_ceiling = k.optional_string("memory_ceiling");
        }
        batch.kernels.push_back(std::move(d));
      }
    }
    out.decode_kernels.push_back(std::move(batch));
  }
  if (const auto ip = top.optional_object("instruction_peaks")) {
    out.instruction_peaks = parse_instruction_peaks(*ip);
  }
  return out;
}

json to_json(const roofline_ceilings& c) {
  json dtypes = json::array();
  for (const auto& t : c.dtypes) {
    json d = {{"dtype", t.dtype},
              {"peak_flops_per_second", t.peak_flops_per_second},
              {"datasheet_flops_per_second", t.datasheet_flops_per_second},
              {"ridge_flops_per_byte", nullable(t.ridge_flops_per_byte)},
              {"datasheet_ridge_flops_per_byte", nullable(t.datasheet_ridge_flops_per_byte)}};
    if (t.sources) {
      const auto& p = *t.sources;
      d["peak_source"] = p.peak_source;
      d["instruction_peak_flops_per_second"] = nullable(p.instruction_peak_flops_per_second);
      d["instruction_peak_profile_flops_per_second"] =
          nullable(p.instruction_peak_profile_flops_per_second);
      d["gemm_peak_flops_per_second"] = p.gemm_peak_flops_per_second;
      d["gemm_ridge_flops_per_byte"] = nullable(p.gemm_ridge_flops_per_byte);
    }
    dtypes.push_back(d);
  }
  json j = {{"gpu", c.gpu},
            {"source", c.source},
            {"profile_source", c.profile_source},
            {"dram_read_bytes_per_second", c.dram_read_bytes_per_second},
            {"dram_copy_bytes_per_second", c.dram_copy_bytes_per_second},
            {"datasheet_dram_bytes_per_second", c.datasheet_dram_bytes_per_second},
            {"ridge_definition", c.ridge_definition},
            {"dtypes", dtypes}};
  put_optional(j, "compute_ceiling_definition", c.compute_ceiling_definition);
  put_optional(j, "note", c.note);
  return j;
}

roofline_document read_roofline(const std::filesystem::path& path) {
  return parse_roofline(read_json(path, k_roofline_schema), path.string());
}

}  // namespace ridgeline::schema
