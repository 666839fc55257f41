// Host side of `ridgeline probe --only instruction-peaks --update PROFILE`: the new object goes in
// and no other byte of the file changes; what it refuses (not JSON, not a profile, not laid out as
// ridgeline writes profiles, another GPU's profile); the committed profiles can be updated; the
// tables; the command's option checks and its one-line errors that leave the file unchanged.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli.hpp"
#include "ridgeline/probe/probe.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/core/files.hpp"

using namespace ridgeline;

namespace {

const char* k_gpu = "NVIDIA H100 80GB HBM3";

// A complete profile (the reader is strict): the committed H100 profile, its rows and environment
// kept, its figures replaced and no instruction peaks.
gpu_profile sample_profile() {
  gpu_profile p = load_gpu_profile(std::filesystem::path(RIDGELINE_SOURCE_DIR) /
                                   "perfmodel/profiles/h100-sxm.json");
  p.name = k_gpu;
  p.key = "h100-sxm";
  p.source = "measured";
  p.sm_count = 132;
  p.read_bytes_per_second = 3.13e12;
  p.datasheet_bytes_per_second = 3.35e12;
  p.peaks.clear();
  p.peaks[dtype::fp32] = {49e12, 66.9e12};
  p.peaks[dtype::bf16] = {803.1e12, 989.4e12};
  p.config["gemm_size"] = 8192;
  p.config["max_bytes"] = 1 << 30;
  p.instruction_peaks.reset();
  return p;
}

instruction_peak_section sample_section(double scale) {
  instruction_peak_section s;
  s.peaks[instruction_peak_kind::fp32] = {
      "FFMA",  62e12 * scale,    61e12 * scale,        63e12 * scale,
      66.9e12, {{"grid", 1056}}, {{"repetitions", 10}}};
  s.peaks[instruction_peak_kind::bf16] = {
      "HGMMA",         900e12 * scale,          890e12 * scale,          905e12 * scale,
      989.4e12,        nlohmann::json::object(), nlohmann::json::object()};
  s.environment = {{"time_utc", "2026-11-30T10:00:00Z"}, {"ridgeline", {{"git_sha", "abc1234"}}}};
  s.config = {{"sustain_seconds", 1.0}};
  return s;
}

std::string canonical(const gpu_profile& p) {
  return to_json(p).dump(2) + "\n";
}

// `after` is `before` with one block of whole lines inserted: what precedes the top-level key
// `"<key>": ` in `after` starts `before`, and what follows that key's value ends it.
void expect_only_key_changed(const std::string& before, const std::string& after,
                             const std::string& key) {
  const std::string open = "\n  \"" + key + "\": {";
  const auto start = after.find(open);
  ASSERT_NE(start, std::string::npos) << after;
  const auto end = after.find("\n  }", start);  // the object's closing line (2-space indent)
  ASSERT_NE(end, std::string::npos);
  const std::string head = after.substr(0, start);
  const std::string tail = after.substr(end + 4);  // after "\n  }": ",\n  ..." or "\n}\n"
  // The key sorts before "peaks" and after "gpu": the comma that ends its value belongs to it.
  ASSERT_EQ(tail.substr(0, 1), ",");
  EXPECT_EQ(before.substr(0, head.size()), head);
  EXPECT_EQ(before.substr(before.size() - (tail.size() - 1)), tail.substr(1));
  EXPECT_EQ(head.size() + tail.size() - 1, before.size());
}

}  // namespace

TEST(InstructionPeakUpdate, AddsTheObjectAndKeepsEveryOtherByte) {
  const std::string before = canonical(sample_profile());
  const std::string after = bench::with_instruction_peaks(before, sample_section(1.0), k_gpu);
  expect_only_key_changed(before, after, "instruction_peaks");
  const gpu_profile q = gpu_profile_from_json(nlohmann::json::parse(after));
  ASSERT_TRUE(q.instruction_peaks.has_value());
  EXPECT_DOUBLE_EQ(q.instruction_peak_flops_per_second(dtype::bf16), 900e12);
  EXPECT_EQ(q.instruction_peaks->environment["ridgeline"]["git_sha"], "abc1234");
  // Everything the planner reads is as it was.
  EXPECT_DOUBLE_EQ(q.peak_flops_per_second(dtype::bf16), 803.1e12);
  EXPECT_EQ(q.rows, sample_profile().rows);
  // Updating again replaces the object, and still nothing else.
  const std::string again = bench::with_instruction_peaks(after, sample_section(0.9), k_gpu);
  expect_only_key_changed(before, again, "instruction_peaks");
  const gpu_profile r = gpu_profile_from_json(nlohmann::json::parse(again));
  EXPECT_DOUBLE_EQ(r.instruction_peak_flops_per_second(dtype::bf16), 810e12);
}

TEST(InstructionPeakUpdate, RefusesWhatItCannotUpdateExactly) {
  auto expect_refused = [](const std::string& text, const std::string& needle) {
    try {
      bench::with_instruction_peaks(text, sample_section(1.0), k_gpu);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const std::string good = canonical(sample_profile());
  expect_refused("{\"schema\": ", "not valid JSON");
  expect_refused("{}\n", "GPU profile: schema");
  // Other layouts would be rewritten as a whole: 4-space indent, compact, no final newline.
  const nlohmann::json j = nlohmann::json::parse(good);
  expect_refused(j.dump(4) + "\n", "not laid out as ridgeline writes profiles");
  expect_refused(j.dump() + "\n", "not laid out as ridgeline writes profiles");
  expect_refused(good.substr(0, good.size() - 1), "not laid out as ridgeline writes profiles");
  // Another GPU's profile.
  gpu_profile h200 = sample_profile();
  h200.name = "NVIDIA H200";
  try {
    bench::with_instruction_peaks(canonical(h200), sample_section(1.0), k_gpu);
    ADD_FAILURE() << "accepted another GPU's profile";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("a profile of the NVIDIA H200, but this device is the "
                                         "NVIDIA H100 80GB HBM3"),
              std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(bench::require_same_gpu(sample_profile(), k_gpu));
}

TEST(InstructionPeakUpdate, CommittedProfilesCanBeUpdated) {
  const std::filesystem::path dir =
      std::filesystem::path(RIDGELINE_SOURCE_DIR) / "perfmodel/profiles";
  int checked = 0;
  for (const char* f : {"h100-sxm.json", "h200.json"}) {
    // Both are committed: a missing one fails instead of shrinking what is checked.
    ASSERT_TRUE(std::filesystem::exists(dir / f)) << dir / f;
    const std::string text = read_text_file(dir / f);
    const gpu_profile p = bench::check_instruction_peak_update(text);
    const std::string after = bench::with_instruction_peaks(text, sample_section(1.0), p.name);
    if (p.instruction_peaks) {
      // Already has the object: the update replaces it; the rest stays byte for byte.
      nlohmann::json a = nlohmann::json::parse(after), b = nlohmann::json::parse(text);
      a.erase("instruction_peaks");
      b.erase("instruction_peaks");
      EXPECT_EQ(a, b) << f;
    } else {
      expect_only_key_changed(text, after, "instruction_peaks");
    }
    ++checked;
  }
  EXPECT_EQ(checked, 2);
}

TEST(InstructionPeakUpdate, TablesShowInstructionBesideGemmPeaks) {
  gpu_profile p = sample_profile();
  instruction_peak_section s = sample_section(1.0);
  s.skipped.push_back("fp8_e4m3: wgmma kernels are built for sm_90a only");
  const std::string t = bench::instruction_peak_table(s, &p);
  EXPECT_NE(t.find("abc1234"), std::string::npos) << t;
  EXPECT_NE(t.find("FFMA"), std::string::npos) << t;
  EXPECT_NE(t.find("92.7%"), std::string::npos) << t;  // 62.0 of 66.9
  EXPECT_NE(t.find("0.790"), std::string::npos) << t;  // SGEMM 49.0 / FFMA 62.0
  EXPECT_NE(t.find("skipped: fp8_e4m3"), std::string::npos) << t;
  EXPECT_EQ(bench::instruction_peak_table(s, nullptr).find("0.790"), std::string::npos);
  // The probe's table carries them when the profile does.
  EXPECT_EQ(bench::probe_table(p).find("Instruction peaks"), std::string::npos);
  p.instruction_peaks = s;
  EXPECT_NE(bench::probe_table(p).find("Instruction peaks"), std::string::npos);
  bench::instruction_peak_options o;
  EXPECT_NO_THROW(bench::validate_instruction_peak_options(o));
  o.kinds.clear();
  EXPECT_THROW(bench::validate_instruction_peak_options(o), std::invalid_argument);
  o = {};
  o.launch_seconds = 0;
  EXPECT_THROW(bench::validate_instruction_peak_options(o), std::invalid_argument);
  o = {};
  o.sustain_seconds = -1;
  EXPECT_THROW(bench::validate_instruction_peak_options(o), std::invalid_argument);
}

TEST(InstructionPeakUpdate, CommandRefusesInOneLineAndLeavesTheFile) {
  auto run = [](std::vector<std::string> args) {
    std::ostringstream out, err;
    const int code = cli::run(args, out, err);
    return std::pair{code, err.str()};
  };
  auto lines = [](const std::string& s) { return std::count(s.begin(), s.end(), '\n'); };
  const auto dir = std::filesystem::temp_directory_path() / "ridgeline_probe_update_test";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "profile.json").string();
  auto write = [&](const std::string& text) { std::ofstream(path, std::ios::binary) << text; };
  struct bad_case {
    std::vector<std::string> args;
    int code;
    std::string needle;
  };
  const bad_case cases[] = {
      {{"probe", "--only", "gemm"}, cli::bad_input, "instruction-peaks"},
      {{"probe", "--update", path}, cli::bad_input, "--update requires --only"},
      {{"probe", "--only", "instruction-peaks", "--dtypes", "bf16"}, cli::bad_input, "excludes"},
      {{"probe", "--only", "instruction-peaks", "-o", path}, cli::bad_input, "excludes"},
      {{"probe", "--only", "instruction-peaks", "--update", (dir / "missing.json").string()},
       cli::io_failure,
       "cannot read"},
  };
  for (const auto& c : cases) {
    const auto [code, err] = run(c.args);
    EXPECT_EQ(code, c.code) << err;
    EXPECT_NE(err.find(c.needle), std::string::npos) << err;
    EXPECT_EQ(lines(err), 1) << err;
  }
  // A file that is not an updatable profile: one line, exit 2, not touched (no GPU needed).
  const std::string compact = to_json(sample_profile()).dump();
  write(compact);
  auto [code, err] =
      run({"probe", "--only", "instruction-peaks", "--update", path, "--no-progress"});
  EXPECT_EQ(code, cli::bad_input) << err;
  EXPECT_NE(err.find("left unchanged"), std::string::npos) << err;
  EXPECT_EQ(lines(err), 1) << err;
  EXPECT_EQ(read_text_file(path), compact);
  // A good profile of another GPU: refused once the device is known (without one: exit 3).
  gpu_profile other = sample_profile();
  other.name = "Some Other GPU";
  write(canonical(other));
  std::tie(code, err) =
      run({"probe", "--only", "instruction-peaks", "--update", path, "--no-progress"});
  EXPECT_EQ(code, metrics::device_count() == 0 ? cli::no_device : cli::bad_input) << err;
  EXPECT_EQ(lines(err), 1) << err;
  EXPECT_EQ(read_text_file(path), canonical(other));
  std::filesystem::remove_all(dir);
}

// The table reads the rows and options it prints through the profile format's typed reader: one
// missing is an error naming the field, never a zero in the table.
TEST(ProbeTable, ReadsRowsThroughTheTypedReader) {
  gpu_profile p = sample_profile();
  const std::string t = bench::probe_table(p);
  EXPECT_NE(t.find("memcpy"), std::string::npos) << t;
  EXPECT_NE(t.find("Llama-2-7B block"), std::string::npos) << t;
  EXPECT_NE(t.find("8192^3"), std::string::npos) << t;
  std::size_t bandwidth = 0;
  while (p.rows.at(bandwidth)["kind"] != "bandwidth") ++bandwidth;
  p.rows[bandwidth]["measurement"].erase("throttled");
  try {
    bench::probe_table(p);
    ADD_FAILURE() << "printed a bandwidth row without measurement.throttled";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("rows[" + std::to_string(bandwidth) +
                                         "].measurement.throttled: missing"),
              std::string::npos)
        << e.what();
  }
  p = sample_profile();
  p.config.erase("max_bytes");
  EXPECT_THROW(bench::probe_table(p), std::invalid_argument);
}

// The update writes through the format's writer, so a profile with a key the format does not
// have would lose it: refused, as any other layout is.
TEST(InstructionPeakUpdate, RefusesKeysTheFormatDoesNotWrite) {
  nlohmann::json j = to_json(sample_profile());
  j["notes"] = "hand-written";
  try {
    bench::with_instruction_peaks(j.dump(2) + "\n", sample_section(1.0), k_gpu);
    ADD_FAILURE() << "accepted a key the writer would drop";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("not laid out as ridgeline writes profiles"),
              std::string::npos)
        << e.what();
  }
}
