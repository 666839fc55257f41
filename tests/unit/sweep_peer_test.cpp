// `ridgeline sweep --peer`: the peer document is read through core's typed reader
// (schema::read_peer) and looked up per (batch, context, phase) by bench::peer_step_seconds.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli.hpp"
#include "ridgeline/core/schemas/accuracy.hpp"
#include "ridgeline/sweep/sweep.hpp"

using namespace ridgeline;

namespace {
schema::peer_document two_rows() {
  schema::peer_document p;
  schema::peer_row timed;
  timed.batch = 8;
  timed.context = 512;
  timed.phase = "decode";
  timed.step_seconds = schema::peer_step_seconds{0.004, 0.0039, 0.0042, 0.0038, 0.0045, 10};
  schema::peer_row skipped = timed;
  skipped.batch = 64;
  skipped.skipped = "out of memory";
  skipped.step_seconds.reset();
  p.rows = {timed, skipped};
  return p;
}
}  // namespace

TEST(SweepPeer, StepSecondsAtAPoint) {
  const auto p = two_rows();
  EXPECT_EQ(bench::peer_step_seconds(p, 8, 512, "decode"), 0.004);
  EXPECT_FALSE(bench::peer_step_seconds(p, 8, 512, "prefill"));  // other phase
  EXPECT_FALSE(bench::peer_step_seconds(p, 8, 1024, "decode"));   // other context
  EXPECT_FALSE(bench::peer_step_seconds(p, 64, 512, "decode"));   // skipped by the peer
}

TEST(SweepPeer, CommittedPeerResults) {
  const auto path =
      std::filesystem::path(RIDGELINE_SOURCE_DIR) / "docs/results/h100-sxm_peer.json";
  ASSERT_TRUE(std::filesystem::exists(path)) << "the committed peer results are gone: " << path;
  const schema::peer_document p = schema::read_peer(path);
  ASSERT_FALSE(p.rows.empty());
  const auto& r = p.rows.front();
  ASSERT_TRUE(r.step_seconds);
  EXPECT_EQ(bench::peer_step_seconds(p, int(r.batch), int(r.context), r.phase),
            r.step_seconds->median);
}

TEST(SweepPeer, CliRefusesANonPeerFileInOneLine) {
  const auto path = std::filesystem::temp_directory_path() / "ridgeline_sweep_peer_test.json";
  std::ofstream(path) << R"({"schema": "ridgeline.sweep/v1"})";
  std::ostringstream out, err;
  const int code = cli::run({"--no-progress", "sweep", "--peer", path.string(), "-o", ""}, out, err);
  std::filesystem::remove(path);
  EXPECT_EQ(code, cli::bad_input);
  const std::string e = err.str();
  EXPECT_NE(e.find("schema: expected \"ridgeline.peer/v1\""), std::string::npos) << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1);
}
