// `ridgeline history`: the SQLite store (transactions, a writer killed midway, corrupt and locked
// files), change-point detection (step, slow drift, noise) and the Prometheus export text.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "ridgeline/regress/change_points.hpp"
#include "ridgeline/regress/history.hpp"
#include "ridgeline/regress/trend.hpp"
#include "ridgeline/core/schemas/history_trend.hpp"
#include "ridgeline/core/errors.hpp"

using namespace ridgeline::bench;
namespace fs = std::filesystem;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() /
           ("rl_history_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// A result with `count` benchmarks BM_<prefix>_<i>, each with `samples` repetitions around `base`.
result_set make_set(const std::string& prefix, int count, double base, std::size_t samples = 10) {
  result_set r;
  r.source = prefix + ".json";
  r.format = "google-benchmark";
  r.environment = {{"host", {{"hostname", "box"}}}};
  for (int i = 0; i < count; ++i) {
    std::vector<double> v;
    for (std::size_t k = 0; k < samples; ++k) v.push_back(base * (1 + 0.001 * double(k % 7)) + i);
    r.benchmarks["BM_" + prefix + "_" + std::to_string(i)] = make_series(std::move(v));
  }
  return r;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string io_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const ridgeline::io_error& e) {
    return e.what();
  }
  return "no io_error";
}

}  // namespace

TEST(History, AddAndReadBackInTimeOrder) {
  temp_dir d;
  const fs::path db = d.path / "h.db";
  {
    history h(db);
    EXPECT_EQ(h.run_count(), 0u);
    h.add(make_set("a", 2, 10), {"sha2", "main", "2026-11-21T11:00:00Z"});
    h.add(make_set("a", 2, 20), {"sha1", "main", "2026-11-21T12:00:00+02:00"});  // 10:00 UTC
    h.add(make_set("a", 2, 30), {"sha3", "dev", "2026-11-21T12:00:00Z"});
  }
  const history h(db, {true, 1000});
  EXPECT_EQ(h.run_count(), 3u);
  EXPECT_EQ(h.benchmarks(), (std::vector<std::string>{"BM_a_0", "BM_a_1"}));
  const auto all = h.series("BM_a_0");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].git_sha, "sha1");  // ordered by time (normalised to UTC), not by insertion
  EXPECT_EQ(all[0].time_utc, "2026-11-21T10:00:00Z");
  EXPECT_EQ(all[1].git_sha, "sha2");
  EXPECT_NEAR(all[0].median_seconds, make_set("a", 1, 20).benchmarks.begin()->second.stats.median,
              1e-12);
  EXPECT_EQ(all[0].count, 10u);
  EXPECT_EQ(h.series("BM_a_0", "main").size(), 2u);
  EXPECT_EQ(h.series("BM_a_0", "", 1).at(0).git_sha, "sha3");
  EXPECT_TRUE(h.series("BM_none").empty());
}

// `history show --json` is written by the ridgeline.history_trend/v1 writer: its reader takes it
// back, field for field, and the writer gives the same document again.
TEST(History, TrendChartIsTheTypedFormat) {
  temp_dir d;
  history h(d.path / "h.db");
  h.add(make_set("a", 1, 10), {"sha1", "main", "2026-11-21T10:00:00Z"});
  h.add(make_set("a", 1, 10), {"sha2", "main", "2026-11-21T11:00:00Z"});
  h.add(make_set("a", 1, 20), {"sha3", "main", "2026-11-21T12:00:00Z"});
  const trend t = history_trend(h, {});
  const auto doc = ridgeline::schema::parse_history_trend(t.chart, "trend");
  EXPECT_EQ(doc.history, (d.path / "h.db").string());
  ASSERT_EQ(doc.benchmarks.size(), 1u);
  const auto& b = doc.benchmarks[0];
  EXPECT_EQ(b.name, "BM_a_0");
  ASSERT_EQ(b.points.size(), 3u);
  EXPECT_EQ(b.x_time_utc.size(), 3u);
  EXPECT_EQ(b.points[2].git_sha, "sha3");
  EXPECT_EQ(b.points[2].count, 10);
  EXPECT_EQ(ridgeline::schema::to_json(doc), t.chart);
}

TEST(History, BadInputWritesNothing) {
  temp_dir d;
  history h(d.path / "h.db");
  EXPECT_THROW(h.add(make_set("a", 1, 1), {"s", "b", "yesterday"}), std::invalid_argument);
  result_set failed = make_set("a", 1, 1);
  failed.benchmarks.begin()->second.error = "no CUDA device";
  EXPECT_THROW(h.add(failed, {"s", "b", "2026-11-21T10:00:00Z"}), std::invalid_argument);
  EXPECT_EQ(h.run_count(), 0u);
}

TEST(History, WriterKilledMidTransactionLosesNothing) {
  temp_dir d;
  const fs::path db = d.path / "h.db";
  const result_set before = make_set("before", 3, 5);
  {
    history h(db);
    h.add(before, {"sha1", "main", "2026-11-21T10:00:00Z"});
  }
  const auto size_before = fs::file_size(db);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The writer: 2000 rows of 2000 samples (about 80 MB of JSON text), far beyond SQLite's page
    // cache, so pages reach the database file before COMMIT. Halfway it says so and waits.
    ::close(ready[0]);
    try {
      history h(db);
      h.add(make_set("big", 2000, 7, 2000), {"sha2", "main", "2026-11-21T11:00:00Z"},
            [&](std::size_t row) {
              if (row == 1000) {
                const char c = 'x';
                if (::write(ready[1], &c, 1) != 1) ::_exit(4);
                for (;;) ::pause();
              }
            });
    } catch (...) {
    }
    ::_exit(3);  // reaching here means the kill did not happen mid-write
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the writer died before it was halfway";
  ::close(ready[0]);
  // Midway indeed: a hot journal exists and the database file itself has been written to.
  EXPECT_TRUE(fs::exists(db.string() + "-journal"));
  EXPECT_GT(fs::file_size(db), size_before);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  // Reopening rolls the hot journal back; quick_check (in the constructor) passes; the earlier
  // run is complete and the killed one left no trace.
  const history h(db, {true, 1000});
  EXPECT_EQ(h.run_count(), 1u);
  std::vector<std::string> names;
  for (const auto& [name, s] : before.benchmarks) names.push_back(name);
  EXPECT_EQ(h.benchmarks(), names);
  for (const auto& [name, s] : before.benchmarks) {
    const auto pts = h.series(name);
    ASSERT_EQ(pts.size(), 1u);
    EXPECT_DOUBLE_EQ(pts[0].median_seconds, s.stats.median);
    EXPECT_EQ(pts[0].git_sha, "sha1");
  }
  EXPECT_FALSE(fs::exists(db.string() + "-journal"));
  // And it takes new writes.
  history w(db);
  w.add(make_set("after", 1, 1), {"sha3", "main", "2026-11-21T12:00:00Z"});
  EXPECT_EQ(w.run_count(), 2u);
}

TEST(History, CorruptFilesAreClearErrorsAndStayUntouched) {
  temp_dir d;
  // Not a database at all.
  const fs::path garbage = d.path / "garbage.db";
  std::ofstream(garbage) << std::string(8192, 'x');
  const std::string garbage_bytes = read_bytes(garbage);
  std::string m = io_message([&] { history h(garbage); });
  EXPECT_NE(m.find("not an SQLite database"), std::string::npos) << m;
  EXPECT_EQ(read_bytes(garbage), garbage_bytes);

  // A real history, truncated (e.g. a partial copy): pages its schema points at are missing.
  const fs::path truncated = d.path / "truncated.db";
  {
    history h(truncated);
    for (int i = 0; i < 5; ++i) {
      h.add(make_set("t" + std::to_string(i), 50, 1, 50),
            {"sha", "main", "2026-11-21T10:00:0" + std::to_string(i) + "Z"});
    }
  }
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  const std::string truncated_bytes = read_bytes(truncated);
  m = io_message([&] { history h(truncated); });
  EXPECT_NE(m.find("corrupt"), std::string::npos) << m;
  EXPECT_EQ(read_bytes(truncated), truncated_bytes);

  // An SQLite database of something else.
  const fs::path other = d.path / "other.db";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(other.c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1);", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  m = io_message([&] { history h(other); });
  EXPECT_NE(m.find("not a ridgeline history"), std::string::npos) << m;

  // Reading a history that does not exist does not create one.
  m = io_message([&] { history h(d.path / "none.db", {true, 100}); });
  EXPECT_NE(m.find("no such file"), std::string::npos) << m;
  EXPECT_FALSE(fs::exists(d.path / "none.db"));
}

TEST(History, LockedFileIsAClearErrorAndKeepsItsData) {
  temp_dir d;
  const fs::path db = d.path / "h.db";
  {
    history h(db);
    h.add(make_set("a", 2, 1), {"sha1", "main", "2026-11-21T10:00:00Z"});
  }
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE; DELETE FROM results;", nullptr, nullptr, nullptr),
            SQLITE_OK);  // another writer holds the write lock, with an uncommitted change
  history h(db, {false, 200});
  const std::string m = io_message([&] {
    h.add(make_set("b", 1, 1), {"sha2", "main", "2026-11-21T11:00:00Z"});
  });
  EXPECT_NE(m.find("locked by another process (waited 200 ms"), std::string::npos) << m;
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  EXPECT_EQ(h.run_count(), 1u);
  EXPECT_EQ(h.series("BM_a_0").size(), 1u);
  h.add(make_set("b", 1, 1), {"sha2", "main", "2026-11-21T11:00:00Z"});  // free again
  EXPECT_EQ(h.run_count(), 2u);
}

TEST(History, ParseIso8601) {
  EXPECT_EQ(parse_iso8601("1970-01-01T00:01:00Z"), 60.0);
  EXPECT_EQ(parse_iso8601("1970-01-01T02:00:00+02:00"), 0.0);
  EXPECT_EQ(parse_iso8601("1970-01-01T00:00:00.123-00:30"), 1800.0);
  EXPECT_FALSE(parse_iso8601("2026-13-01T00:00:00Z"));
  EXPECT_FALSE(parse_iso8601("yesterday"));
  EXPECT_FALSE(parse_iso8601("2026-11-21T10:00:00 PST"));
}

namespace {
// Portable pseudo-normal noise (Box-Muller over mt19937, whose output the standard fixes).
std::vector<double> noisy_level(std::size_t n, double level, double rel_sigma, unsigned seed) {
  std::mt19937 rng(seed);
  auto uniform = [&] { return (static_cast<double>(rng()) + 0.5) / 4294967296.0; };
  std::vector<double> v;
  for (std::size_t i = 0; i < n; ++i) {
    const double z = std::sqrt(-2 * std::log(uniform())) * std::cos(2 * M_PI * uniform());
    v.push_back(level * (1 + rel_sigma * z));
  }
  return v;
}
}  // namespace

TEST(ChangePoints, NoiseAloneRaisesNothing) {
  for (unsigned seed = 1; seed <= 20; ++seed) {
    const auto v = noisy_level(60, 1.0, 0.01, seed);  // 1 % run-to-run noise, threshold 5 %
    EXPECT_TRUE(detect_change_points(v).empty()) << "seed " << seed;
  }
}

TEST(ChangePoints, StepIsFoundWhereItHappens) {
  for (unsigned seed = 1; seed <= 10; ++seed) {
    auto v = noisy_level(40, 1.0, 0.01, seed);
    for (std::size_t i = 20; i < v.size(); ++i) v[i] *= 1.12;  // +12 % from run 20 on
    const auto cps = detect_change_points(v);
    ASSERT_EQ(cps.size(), 1u) << "seed " << seed;
    EXPECT_EQ(cps[0].start, 20u);
    EXPECT_LE(cps[0].detected, 21u);
    EXPECT_EQ(cps[0].kind, "step");
    EXPECT_NEAR(cps[0].relative_change, 0.12, 0.03);
  }
  // Downward steps too.
  std::vector<double> v(30, 1.0);
  for (std::size_t i = 15; i < v.size(); ++i) v[i] = 0.8;
  const auto cps = detect_change_points(v);
  ASSERT_EQ(cps.size(), 1u);
  EXPECT_EQ(cps[0].start, 15u);
  EXPECT_NEAR(cps[0].relative_change, -0.2, 1e-9);
}

TEST(ChangePoints, SlowDriftIsCaughtThoughNoNeighbourPairShowsIt) {
  for (unsigned seed = 1; seed <= 10; ++seed) {
    auto v = noisy_level(50, 1.0, 0.005, seed);
    for (std::size_t i = 10; i < v.size(); ++i) v[i] *= 1 + 0.01 * double(i - 9);  // +1 %/run
    // No two neighbouring runs differ by the 5 % threshold: a pairwise compare sees nothing.
    for (std::size_t i = 1; i < v.size(); ++i) ASSERT_LT(std::abs(v[i] / v[i - 1] - 1), 0.05);
    const auto cps = detect_change_points(v);
    ASSERT_FALSE(cps.empty()) << "seed " << seed;
    EXPECT_GE(cps[0].start, 8u);
    EXPECT_LE(cps[0].detected, 20u);  // caught within 10 runs, before the drift reaches ~11 %
    EXPECT_EQ(cps[0].kind, "drift");
  }
}

TEST(HistoryExport, PrometheusText) {
  latest_point p;
  p.benchmark = "BM_ci_known_cost";
  p.branch = "main";
  p.point.median_seconds = 0.0016;
  p.point.iqr_seconds = 0.00002;
  p.change_ratio = 0.125;
  p.change_point = true;
  p.time_unix_seconds = 1795255200;
  const std::string text = latest_points_text({p});
  for (const char* line : {
           "# TYPE ridgeline_benchmark_median_seconds gauge",
           "ridgeline_benchmark_median_seconds{benchmark=\"BM_ci_known_cost\",branch=\"main\"} "
           "0.0016",
           "ridgeline_benchmark_iqr_seconds{benchmark=\"BM_ci_known_cost\",branch=\"main\"} 2e-05",
           "ridgeline_benchmark_change_ratio{benchmark=\"BM_ci_known_cost\",branch=\"main\"} 0.125",
           "ridgeline_benchmark_change_point{benchmark=\"BM_ci_known_cost\",branch=\"main\"} 1",
           "ridgeline_benchmark_run_timestamp_seconds{benchmark=\"BM_ci_known_cost\",branch="
           "\"main\"} 1795255200",
       }) {
    EXPECT_NE(text.find(std::string(line) + "\n"), std::string::npos) << line << "\n" << text;
  }
}

TEST(HistoryExport, LatestPointsFlagARecentStep) {
  temp_dir d;
  history h(d.path / "h.db");
  for (int i = 0; i < 12; ++i) {
    char when[32];
    std::snprintf(when, sizeof when, "2026-11-21T10:%02d:00Z", i);
    h.add(make_set("x", 1, i < 10 ? 1.0 : 1.3), {"sha" + std::to_string(i), "main", when});
  }
  const auto pts = latest_points(h, "main", {});
  ASSERT_EQ(pts.size(), 1u);
  EXPECT_EQ(pts[0].point.git_sha, "sha11");
  EXPECT_NEAR(pts[0].change_ratio, 0.0, 1e-9);
  EXPECT_TRUE(pts[0].change_point);
  EXPECT_GT(pts[0].time_unix_seconds, 1.7e9);
}

TEST(HistoryExport, UnreachableGatewayIsAClearError) {
  latest_point p;
  p.benchmark = "BM_a";
  p.branch = "main";
  // Port 1 on loopback: nothing listens, the connection is refused at once.
  const std::string m = io_message([&] { push_latest_points({p}, "http://127.0.0.1:1", "t"); });
  EXPECT_NE(m.find("cannot push to pushgateway http://127.0.0.1:1"), std::string::npos) << m;
  EXPECT_THROW(push_latest_points({p}, "localhost:9091", "t"), std::invalid_argument);
  EXPECT_THROW(push_latest_points({p}, "http://host:port", "t"), std::invalid_argument);
}
