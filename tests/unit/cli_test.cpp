// The `ridgeline` command's parsing and error mapping: one line, the right exit code, no crash.
#include <gtest/gtest.h>

#include <sstream>

#include "cli.hpp"
#include "ridgeline/metrics/device.hpp"

using namespace ridgeline;

namespace {
struct result {
  int code;
  std::string out, err;
};
result run(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int code = cli::run(args, out, err);
  return {code, out.str(), err.str()};
}
int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }
}  // namespace

TEST(Cli, HelpAndVersion) {
  auto r = run({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("probe"), std::string::npos);
  r = run({"probe", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Examples"), std::string::npos);
  EXPECT_EQ(run({"--version"}).code, 0);
}

TEST(Cli, UnknownSubcommandOrFlag) {
  auto r = run({"frobnicate"});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_EQ(lines(r.err), 1);
  r = run({"probe", "--bogus"});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_EQ(lines(r.err), 1);
  EXPECT_EQ(run({}).code, cli::bad_input);
}

TEST(Cli, UnknownDtype) {
  auto r = run({"probe", "--dtypes", "bf16,fp4", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("unknown dtype 'fp4'"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
}

TEST(Cli, ImpossibleSizes) {
  auto r = run({"probe", "--max-bytes", "3GiB", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("power of two"), std::string::npos) << r.err;
  r = run({"probe", "--max-bytes", "lots", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  r = run({"probe", "--gemm-size", "100000000", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("absurd"), std::string::npos) << r.err;
}

TEST(Cli, UnwritableOutput) {
  auto r = run({"probe", "-o", "/nonexistent-dir/profile.json"});
  EXPECT_EQ(r.code, cli::io_failure);
  EXPECT_NE(r.err.find("cannot write /nonexistent-dir/profile.json"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
}

TEST(Cli, NoGpuIsAClearError) {
  if (metrics::device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  auto r = run({"probe", "-o", "", "--no-progress"});
  EXPECT_EQ(r.code, cli::no_device);
  EXPECT_NE(r.err.find("needs a CUDA GPU"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
}

TEST(Cli, ParseBytes) {
  EXPECT_EQ(cli::parse_bytes("4GiB"), 4ULL << 30);
  EXPECT_EQ(cli::parse_bytes("256KiB"), 256ULL << 10);
  EXPECT_EQ(cli::parse_bytes("1e9"), 1000000000ULL);
  EXPECT_EQ(cli::parse_bytes("2GB"), 2000000000ULL);
  EXPECT_THROW(cli::parse_bytes("-1GiB"), std::invalid_argument);
  EXPECT_THROW(cli::parse_bytes("4 parsecs"), std::invalid_argument);
  EXPECT_THROW(cli::parse_bytes(""), std::invalid_argument);
}
