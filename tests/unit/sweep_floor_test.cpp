// The ceilings every "% of floor" divides by (perfmodel/bandwidth_floor.hpp) and the sweep's floor
// columns (tools/sweep): each byte at the measured ceiling that matches it, named in the table and
// the JSON; the committed sweeps re-derived from their own bytes and medians (sweep --rederive).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "ridgeline/core/schema.hpp"
#include "ridgeline/core/schemas/sweep.hpp"
#include "ridgeline/perfmodel/bandwidth_floor.hpp"
#include "ridgeline/perfmodel/profiles.hpp"
#include "ridgeline/sweep/sweep.hpp"

#include "gguf_writer.hpp"
#include "temp_dir.hpp"

using namespace ridgeline;
using nlohmann::json;

namespace {

constexpr const char* k_h100 = "NVIDIA H100 80GB HBM3";

// Round figures, so the expected floors below are plain arithmetic.
gpu_profile round_profile() {
  gpu_profile p;
  p.name = "test GPU";
  p.source = "measured";
  p.read_bytes_per_second = 3.0e12;
  p.write_bytes_per_second = 3.2e12;
  p.copy_bytes_per_second = 2.5e12;
  p.datasheet_bytes_per_second = 4.0e12;
  p.peaks[dtype::bf16] = {800e12, 989e12};
  return p;
}

std::filesystem::path source(const std::string& rel) {
  return std::filesystem::path(RIDGELINE_SOURCE_DIR) / rel;
}

}  // namespace

TEST(BandwidthFloor, EachPureKindGetsItsOwnCeiling) {
  const gpu_profile p = round_profile();
  const bandwidth_floor r = bandwidth_floor_of(p, 6e9, 0);
  EXPECT_DOUBLE_EQ(r.seconds, 6e9 / 3.0e12);
  EXPECT_EQ(r.dominant, traffic_kind::read);
  const bandwidth_floor w = bandwidth_floor_of(p, 0, 6.4e9);
  EXPECT_DOUBLE_EQ(w.seconds, 6.4e9 / 3.2e12);
  EXPECT_EQ(w.dominant, traffic_kind::write);
  // A copy of 5 GB reads 5 and writes 5: 10 GB at the copy ceiling (it counts both).
  const bandwidth_floor c = bandwidth_floor_of(p, 5e9, 5e9);
  EXPECT_DOUBLE_EQ(c.seconds, 10e9 / 2.5e12);
  EXPECT_EQ(c.dominant, traffic_kind::copy);
  EXPECT_DOUBLE_EQ(c.bytes_per_second(), 2.5e12);
  // Mixed: 1 GB written pairs with 1 GB read as a copy, the other 8 GB read alone.
  const bandwidth_floor m = bandwidth_floor_of(p, 9e9, 1e9);
  EXPECT_DOUBLE_EQ(m.seconds, 8e9 / 3.0e12 + 2e9 / 2.5e12);
  EXPECT_DOUBLE_EQ(m.read_bytes, 8e9);
  EXPECT_DOUBLE_EQ(m.copy_bytes, 2e9);
  EXPECT_DOUBLE_EQ(m.write_bytes, 0);
  EXPECT_EQ(m.dominant, traffic_kind::read);
  EXPECT_THROW(bandwidth_floor_of(p, -1, 0), std::invalid_argument);
}

TEST(BandwidthFloor, LabelsNameTheKindAndTheFallback) {
  gpu_profile p = round_profile();
  EXPECT_EQ(bandwidth_ceiling_of(p, traffic_kind::read).label(), "measured read bandwidth 3.00 TB/s");
  EXPECT_EQ(bandwidth_ceiling_of(p, traffic_kind::copy).label(), "measured copy bandwidth 2.50 TB/s");
  p.read_bytes_per_second = 0;  // not measured: the datasheet stands in, and says so
  const bandwidth_ceiling r = bandwidth_ceiling_of(p, traffic_kind::read);
  EXPECT_FALSE(r.measured);
  EXPECT_DOUBLE_EQ(r.bytes_per_second, 4.0e12);
  EXPECT_EQ(r.label(), "datasheet bandwidth 4.00 TB/s (no measured read ceiling)");
}

// The case: a decode step is read at > 99.7% of its bytes, so its % of floor is of the
// measured read ceiling (3.13 TB/s on the H100), not of the copy ceiling (3.03 TB/s), and the row
// and the config say "read".
TEST(SweepFloor, DecodeStepUsesTheReadCeilingAndNamesIt) {
  const gpu_profile& h100 = planner::measured_profile_for_device(k_h100);
  const bench::sweep_ceilings c = bench::resolve_sweep_ceilings(h100, k_h100);
  ASSERT_TRUE(c.measured);
  const step_work w = bench::count_step_work(model_preset_by_name("llama-2-7b"), 64, 512, false);
  const double t = 0.0109;  // a median step time
  json row = {{"step_seconds", {{"median", t}}},
              {"weight_bytes", w.weight_bytes},
              {"kv_read_bytes", w.kv_read_bytes},
              {"kv_write_bytes", w.kv_write_bytes},
              {"flops_per_step", w.flops}};
  bench::put_floor(row, c);
  // From the rule, by hand: the written rows pair with as many read bytes as a copy.
  const double read = w.weight_bytes + w.kv_read_bytes, written = w.kv_write_bytes;
  const double floor = (read - written) / h100.read_bytes_per_second +
                       2 * written / h100.copy_bytes_per_second;
  EXPECT_DOUBLE_EQ(row["floor_seconds"].get<double>(), floor);
  EXPECT_DOUBLE_EQ(row["pct_of_floor"].get<double>(), 100.0 * floor / t);
  EXPECT_EQ(row["floor_ceiling"], "read");
  // Within 0.01% of every byte at the read ceiling, and well below every byte at the copy ceiling.
  EXPECT_NEAR(row["pct_of_floor"].get<double>(), 100.0 * w.bytes() / h100.read_bytes_per_second / t,
              0.01);
  EXPECT_LT(row["pct_of_floor"].get<double>(),
            100.0 * w.bytes() / h100.copy_bytes_per_second / t - 2.5);
  EXPECT_DOUBLE_EQ(row["pct_of_peak_flops"].get<double>(),
                   100.0 * w.flops / t / h100.peaks.at(dtype::bf16).flops_per_second);

  json cfg = json::object();
  bench::put_ceilings(cfg, c);
  EXPECT_EQ(cfg["floor_ceiling"], "read");
  EXPECT_DOUBLE_EQ(cfg["floor_bytes_per_second"].get<double>(), h100.read_bytes_per_second);
  EXPECT_EQ(cfg["floor_source"],
            std::string("measured read bandwidth 3.13 TB/s (probe profile of ") + k_h100 + ")");
  EXPECT_EQ(cfg["peak_source"],
            std::string("measured bf16 GEMM peak 803.1 TFLOP/s (probe profile of ") + k_h100 + ")");
}

// --weights: a point's counted bytes are the block linears' packed bytes (perfmodel/weights.hpp),
// so the floor is the format's; the layout follows a quantized checkpoint (GGUF: groups of 32).
TEST(SweepFloor, QuantizedWeightsCountTheirPackedBytes) {
  const model_preset& m = model_preset_by_name("llama-2-7b");
  const step_work bf16 = bench::count_step_work(m, 1, 512, false);
  const step_work int4 = bench::count_step_work(m, 1, 512, false, planner::weight_format::int4);
  // One block: 12288 + 4096 + 22016 rows of 4096 columns and 4096 rows of 11008, in 16-row tiles
  // of 4-bit codes, a fp32 scale and a 4-bit zero point per row and 128 columns.
  const double params = 4096.0 * (12288 + 4096 + 22016) + 4096.0 * 11008;
  EXPECT_DOUBLE_EQ(int4.block_weight_bytes, 32 * (params / 2 + params / 128 * 4.5));
  EXPECT_DOUBLE_EQ(int4.head_weight_bytes, bf16.head_weight_bytes);
  EXPECT_DOUBLE_EQ(int4.kv_bytes(), bf16.kv_bytes());
  EXPECT_DOUBLE_EQ(int4.flops, bf16.flops);
  const step_work q4_0 =
      bench::count_step_work(m, 1, 512, false, {planner::weight_format::int4, 32});
  EXPECT_DOUBLE_EQ(q4_0.block_weight_bytes, 32 * (params / 2 + params / 32 * 4.5));
  // The layout the engine holds: random weights and no checkpoint in the engine's own.
  EXPECT_EQ(bench::engine_weight_layout("", planner::weight_format::int4),
            planner::weight_layout(planner::weight_format::int4));
  EXPECT_EQ(bench::engine_weight_layout("", planner::weight_format::bf16),
            planner::weight_layout(planner::weight_format::bf16));
  // A GGUF Q4_0 file: int4 in groups of 32.
  using planner::weight_format;
  test::temp_dir dir("sweep_layout");
  const std::filesystem::path gguf = dir.path / "m.gguf";
  test::make_tiny_llama_gguf(model_preset_by_name("tiny-gpu"), test::ggml::q4_0).writer.write(gguf);
  EXPECT_EQ(bench::engine_weight_layout(gguf.string(), weight_format::int4),
            planner::weight_layout(weight_format::int4, 32));
  EXPECT_EQ(bench::engine_weight_layout(gguf.string(), weight_format::bf16),
            planner::weight_layout(weight_format::bf16));
  // AWQ with group 64 in config.json; GPTQ with group_size -1 in quantize_config.json.
  const std::filesystem::path awq = dir.path / "awq", gptq = dir.path / "gptq";
  std::filesystem::create_directories(awq);
  std::filesystem::create_directories(gptq);
  std::ofstream(awq / "config.json") << json{{"quantization_config",
                                              {{"quant_method", "awq"},
                                               {"bits", 4},
                                               {"group_size", 64},
                                               {"version", "gemm"}}}}
                                            .dump();
  std::ofstream(gptq / "config.json") << json{{"model_type", "llama"}}.dump();
  std::ofstream(gptq / "quantize_config.json")
      << json{{"quant_method", "gptq"}, {"bits", 4}, {"group_size", -1}, {"desc_act", false}}
             .dump();
  EXPECT_EQ(bench::engine_weight_layout(awq.string(), weight_format::int4),
            planner::weight_layout(weight_format::int4, 64));
  EXPECT_EQ(bench::engine_weight_layout(gptq.string(), weight_format::int4),
            planner::weight_layout(weight_format::int4, -1));
}

// The table names the format and the layout the bytes were counted at; sweeps before --weights
// read as bf16.
TEST(SweepFloor, TableNamesTheWeightFormat) {
  json doc = json::parse(std::ifstream(source("docs/results/h100-sxm_sweep.json")));
  std::string table = bench::sweep_table(doc);
  EXPECT_NE(table.find("(bf16 weights, bf16 activations, random weights, greedy"),
            std::string::npos)
      << table.substr(0, 300);
  doc["config"]["weight_format"] = "int4";
  doc["config"]["weight_layout"] = "int4 (group 128)";
  table = bench::sweep_table(doc);
  EXPECT_NE(table.find("(int4 (group 128) weights, bf16 activations"), std::string::npos)
      << table.substr(0, 300);
  EXPECT_NE(table.find("packed bytes"), std::string::npos);
}

// Without --gpu the sweep takes the measured profile embedded for the device; the datasheet only
// where none exists, labelled so (never a bare 3.35 TB/s "floor").
TEST(SweepFloor, CeilingsFallBackToTheDatasheetOnlyWithoutAMeasuredProfile) {
  const bench::sweep_ceilings h = bench::resolve_sweep_ceilings(std::nullopt, k_h100);
  EXPECT_TRUE(h.measured);
  EXPECT_EQ(h.source, std::string("probe profile of ") + k_h100);
  EXPECT_DOUBLE_EQ(bandwidth_ceiling_of(h.profile, traffic_kind::read).bytes_per_second,
                   planner::measured_profile_for_device(k_h100).read_bytes_per_second);

  const bench::sweep_ceilings l = bench::resolve_sweep_ceilings(std::nullopt, "NVIDIA L40S");
  EXPECT_FALSE(l.measured);
  json cfg = json::object();
  bench::put_ceilings(cfg, l);
  EXPECT_EQ(cfg["floor_source"].get<std::string>().rfind(
                "datasheet bandwidth 0.86 TB/s (no measured read ceiling) (datasheet of ", 0),
            0u)
      << cfg["floor_source"];
  EXPECT_NE(cfg["floor_source"].get<std::string>().find("ridgeline probe"), std::string::npos);

  const bench::sweep_ceilings u = bench::resolve_sweep_ceilings(std::nullopt, "some GPU", 1e12);
  json ucfg = json::object();
  bench::put_ceilings(ucfg, u);
  EXPECT_EQ(ucfg["floor_source"].get<std::string>().rfind("theoretical bandwidth 1.00 TB/s", 0),
            0u)
      << ucfg["floor_source"];
}

// The committed decode sweep at context 512 as re-derived from its own bytes and medians: the
// issue's 88.6 / 89.1 / 88.8% at batch 1 / 64 / 128 (91.7 / 92.1 / 91.8% of the copy ceiling before,
// which the record keeps), the table naming the ceiling; re-deriving again changes nothing.
TEST(SweepFloor, RederiveTheCommittedDecodeSweep) {
  const auto path = source("docs/results/h100-sxm_sweep_decode512.json");
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  const json before = schema::read_json(path, schema::k_sweep_schema);
  const bench::sweep_ceilings c = bench::resolve_sweep_ceilings(std::nullopt, k_h100);
  const schema::sweep_document b = schema::parse_sweep(before, "committed");
  const std::map<std::int64_t, double> expected{{1, 88.65}, {64, 89.12}, {128, 88.81}};
  int rows = 0;
  for (const auto& r : b.rows) {
    if (!r.measured) continue;
    EXPECT_EQ(r.measured->floor_ceiling, "read");
    ASSERT_TRUE(expected.count(r.batch)) << r.batch;
    EXPECT_NEAR(r.measured->pct_of_floor, expected.at(r.batch), 0.01) << r.batch;
    ++rows;
  }
  EXPECT_EQ(rows, 3);
  EXPECT_EQ(b.config.floor_ceiling, "read");
  ASSERT_TRUE(b.config.floor_rederived);
  const std::string record = "; before: every byte / 3.03 TB/s (copy bandwidth of profile ";
  EXPECT_NE(b.config.floor_rederived->find(record), std::string::npos) << *b.config.floor_rederived;

  const json after = bench::rederive_sweep_floor(before, c, "again");
  json same = after;
  same["config"]["floor_rederived"] = before["config"]["floor_rederived"];
  EXPECT_EQ(same, before);  // the same ceilings give the same figures
  EXPECT_NE(after["config"]["floor_rederived"].get<std::string>().find(record), std::string::npos);

  // A document as the copy-ceiling sweep wrote it gets the read figures back.
  json old = before;
  old["config"]["floor_bytes_per_second"] = 3026449177767.361;
  old["config"]["floor_source"] = std::string("copy bandwidth of profile ") + k_h100;
  for (const char* k : {"floor_ceiling", "floor_rule", "floor_copy_bytes_per_second",
                        "floor_write_bytes_per_second", "peak_source", "floor_rederived"}) {
    old["config"].erase(k);
  }
  for (auto& r : old["rows"]) {
    if (r.contains("skipped")) continue;
    r.erase("floor_ceiling");
    r["pct_of_floor"] = 92.0;
  }
  const json redone = bench::rederive_sweep_floor(old, c, "test");
  EXPECT_EQ(redone["rows"], before["rows"]);
  EXPECT_NE(redone["config"]["floor_rederived"].get<std::string>().find(record), std::string::npos);

  const std::string table = bench::sweep_table(before);
  EXPECT_NE(table.find("measured read bandwidth 3.13 TB/s"), std::string::npos) << table;
  EXPECT_NE(table.find("measured bf16 GEMM peak 803.1 TFLOP/s"), std::string::npos) << table;

  // Ceilings of another GPU are refused.
  const bench::sweep_ceilings h200 = bench::resolve_sweep_ceilings(std::nullopt, "NVIDIA H200");
  ASSERT_TRUE(h200.measured);
  EXPECT_THROW(bench::rederive_sweep_floor(before, h200, "test"), std::invalid_argument);
}

// Every committed sweep names its ceiling and its % of floor is the matching-ceiling figure of
// its own bytes and medians against its GPU's committed profile (re-derived, docs/engine.md).
TEST(SweepFloor, CommittedSweepsUseTheMatchingCeiling) {
  int checked = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(source("docs/results"))) {
    if (e.path().extension() != ".json") continue;
    const json d = json::parse(std::ifstream(e.path()), nullptr, false);
    if (d.is_discarded() || !d.is_object() || d.value("schema", "") != schema::k_sweep_schema) {
      continue;
    }
    const schema::sweep_document s = schema::parse_sweep(d, e.path().string());
    const std::string gpu = s.env.gpu ? s.env.gpu->name : "";
    const bench::sweep_ceilings c = bench::resolve_sweep_ceilings(std::nullopt, gpu);
    ASSERT_TRUE(c.measured) << e.path();
    EXPECT_EQ(s.config.floor_ceiling, "read") << e.path();
    EXPECT_DOUBLE_EQ(s.config.floor_bytes_per_second, c.profile.read_bytes_per_second) << e.path();
    for (std::size_t i = 0; i < s.rows.size(); ++i) {
      if (!s.rows[i].measured) continue;
      json row = d["rows"][i];
      bench::put_floor(row, c);
      EXPECT_DOUBLE_EQ(s.rows[i].measured->pct_of_floor, row["pct_of_floor"].get<double>())
          << e.path() << " row " << i;
      EXPECT_EQ(s.rows[i].measured->floor_ceiling, row["floor_ceiling"].get<std::string>());
    }
    ++checked;
  }
  EXPECT_GE(checked, 49);  // schema_test counts the committed sweeps
}

// The CSV has as many fields in a skipped row as in its header.
TEST(SweepFloor, CsvRowsHaveTheHeadersFieldCount) {
  const json d = schema::read_json(source("docs/results/h100-sxm_sweep_decode512.json"),
                                   schema::k_sweep_schema);
  std::istringstream csv(bench::sweep_csv(d));
  std::string line;
  std::getline(csv, line);
  auto fields = [](const std::string& l) {
    std::size_t n = 1;
    bool quoted = false;
    for (char ch : l) {
      if (ch == '"') quoted = !quoted;
      if (ch == ',' && !quoted) ++n;
    }
    return n;
  };
  const std::size_t header = fields(line);
  EXPECT_NE(line.find("floor_ceiling"), std::string::npos);
  int skipped = 0;
  while (std::getline(csv, line)) {
    EXPECT_EQ(fields(line), header) << line;
    skipped += line.find("skipped") != std::string::npos || line.find("needs") != std::string::npos;
  }
  EXPECT_GE(skipped, 1);
}
