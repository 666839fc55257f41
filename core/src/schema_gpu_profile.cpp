// Reader and writer of ridgeline.gpu_profile/v1 (schemas/gpu_profile.hpp).
#include "ridgeline/core/schemas/gpu_profile.hpp"

namespace ridgeline::schema {
namespace {

using nlohmann::json;

void read_row(const node& r, profile_document& out) {
  const std::string kind = r.string("kind");
  if (kind == "bandwidth" || kind == "bandwidth_reference") {
    bandwidth_row b{r.string("op"), r.integer("buffer_bytes"), r.number("bytes_moved"),
                    r.number("bytes_per_second"), parse_measurement(r.object("measurement"))};
    (kind == "bandwidth" ? out.bandwidth : out.bandwidth_reference).push_back(std::move(b));
  } else if (kind == "working_set") {
    out.working_set.push_back(
        {r.string("op"), r.integer("buffer_bytes"), r.number("bytes_per_second")});
  } else if (kind == "gemm") {
    out.gemm.push_back({r.string("dtype"), r.integer("m"), r.integer("n"), r.integer("k"),
                        r.number("flops"), r.number("flops_per_second")});
  } else if (kind == "linear") {
    out.linear.push_back({r.string("model"), r.string("layer"), r.string("dtype"), r.integer("m"),
                          r.integer("n"), r.integer("k"), r.number("flops"), r.number("bytes"),
                          r.number("flops_per_second")});
  } else if (kind == "linear_block") {
    const node layers = r.object("layer_seconds");
    out.linear_block.push_back({r.string("model"), r.integer("tokens"), r.number("seconds"),
                                r.number("flops"), r.number("bytes"), r.number("flops_per_second"),
                                r.number("bytes_per_second"), layers.number("qkv"),
                                layers.number("o"), layers.number("gate_up"),
                                layers.number("down"), r.string("bound")});
  } else if (kind != "bandwidth_candidate") {
    r.fail_member("kind", "unknown row kind \"" + kind + "\"");
  }
}

}  // namespace

instruction_peak_section parse_instruction_peaks(const node& n) {
  instruction_peak_section s;
  for (const auto& [kind, p] : n.object("peaks").members()) {
    instruction_peak ip;
    ip.instruction = p.string("instruction");
    ip.flops_per_second = p.number("flops_per_second");
    ip.p10_flops_per_second = p.number("p10_flops_per_second");
    ip.p90_flops_per_second = p.number("p90_flops_per_second");
    ip.datasheet_flops_per_second = p.number("datasheet_flops_per_second");
    ip.launch = p.object("launch").value();
    ip.measurement = p.object("measurement").value();
    s.peaks[kind] = std::move(ip);
  }
  s.skipped = n.strings("skipped");
  s.environment = n.object("environment").value();
  s.config = n.object("config").value();
  return s;
}

profile_document parse_gpu_profile(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_gpu_profile_schema};
  const node top = open_document(doc, ctx);
  profile_document out;
  const node gpu = top.object("gpu");
  out.gpu_name = gpu.string("name");
  out.gpu_key = gpu.string("key");
  out.sm_count = gpu.integer("sm_count");
  out.l2_bytes = gpu.integer("l2_bytes");
  out.memory_bytes = gpu.integer("memory_bytes");
  out.source = top.string("source");
  if (out.source != "measured" && out.source != "datasheet") {
    top.fail_member("source", "expected \"measured\" or \"datasheet\", found \"" + out.source + "\"");
  }
  const node bw = top.object("bandwidth");
  out.read_bytes_per_second = bw.number("read_bytes_per_second");
  out.write_bytes_per_second = bw.number("write_bytes_per_second");
  out.copy_bytes_per_second = bw.number("copy_bytes_per_second");
  out.datasheet_bytes_per_second = bw.number("datasheet_bytes_per_second");
  for (const auto& [dtype, p] : top.object("peaks").members()) {
    profile_peak pk;
    pk.flops_per_second = p.number("flops_per_second");
    pk.datasheet_flops_per_second = p.number("datasheet_flops_per_second");
    pk.ridge_point_flops_per_byte = p.optional_number("ridge_point_flops_per_byte");
    pk.datasheet_ridge_point_flops_per_byte =
        p.optional_number("datasheet_ridge_point_flops_per_byte");
    out.peaks[dtype] = pk;
  }
  out.env = parse_environment(top.object("environment"));
  out.config = top.object("config").value();
  for (const auto& r : top.array("rows").elements()) {
    read_row(r, out);
    out.rows.push_back(r.value());
  }
  if (const auto ip = top.optional_object("instruction_peaks")) {
    out.instruction_peaks = parse_instruction_peaks(*ip);
  }
  if (const auto c = top.optional_object("collectives")) {
    out.all_reduce.emplace();
    for (const auto& r : c->array("all_reduce").elements()) {
      out.all_reduce->push_back({r.integer("gpus"), r.number("message_bytes"), r.number("seconds"),
                                 r.number("bus_bytes_per_second")});
    }
  }
  return out;
}

profile_document read_gpu_profile(const std::filesystem::path& path) {
  return parse_gpu_profile(read_json(path, k_gpu_profile_schema), path.string());
}

json to_json(const instruction_peak_section& s) {
  json peaks = json::object();
  for (const auto& [kind, p] : s.peaks) {
    peaks[kind] = {{"instruction", p.instruction},
                   {"flops_per_second", p.flops_per_second},
                   {"p10_flops_per_second", p.p10_flops_per_second},
                   {"p90_flops_per_second", p.p90_flops_per_second},
                   {"datasheet_flops_per_second", p.datasheet_flops_per_second},
                   {"launch", p.launch},
                   {"measurement", p.measurement}};
  }
  return {{"peaks", peaks},
          {"skipped", s.skipped},
          {"environment", s.environment},
          {"config", s.config}};
}

json to_json(const profile_document& doc) {
  json peaks = json::object();
  for (const auto& [dtype, p] : doc.peaks) {
    json j = {{"flops_per_second", p.flops_per_second},
              {"datasheet_flops_per_second", p.datasheet_flops_per_second}};
    put_optional(j, "ridge_point_flops_per_byte", p.ridge_point_flops_per_byte);
    put_optional(j, "datasheet_ridge_point_flops_per_byte", p.datasheet_ridge_point_flops_per_byte);
    peaks[dtype] = j;
  }
  json j = {{"schema", k_gpu_profile_schema},
            {"gpu",
             {{"name", doc.gpu_name},
              {"key", doc.gpu_key},
              {"sm_count", doc.sm_count},
              {"l2_bytes", doc.l2_bytes},
              {"memory_bytes", doc.memory_bytes}}},
            {"source", doc.source},
            {"bandwidth",
             {{"read_bytes_per_second", doc.read_bytes_per_second},
              {"write_bytes_per_second", doc.write_bytes_per_second},
              {"copy_bytes_per_second", doc.copy_bytes_per_second},
              {"datasheet_bytes_per_second", doc.datasheet_bytes_per_second}}},
            {"peaks", peaks},
            {"environment", to_json(doc.env)},
            {"config", doc.config},
            {"rows", doc.rows}};
  if (doc.instruction_peaks) j["instruction_peaks"] = to_json(*doc.instruction_peaks);
  if (doc.all_reduce) {
    json rows = json::array();
    for (const auto& r : *doc.all_reduce) {
      rows.push_back({{"gpus", r.gpus},
                      {"message_bytes", r.message_bytes},
                      {"seconds", r.seconds},
                      {"bus_bytes_per_second", r.bus_bytes_per_second}});
    }
    j["collectives"] = {{"all_reduce", rows}};
  }
  return j;
}

}  // namespace ridgeline::schema
