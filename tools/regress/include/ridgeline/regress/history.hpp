// The results history behind `ridgeline history`: an SQLite file (one per project, path
// configurable) holding every added result with git sha, branch, time and environment, one row per
// benchmark with its median, IQR and per-repetition samples.
//
// Every write is one transaction (BEGIN IMMEDIATE ... COMMIT, rollback journal, synchronous=FULL),
// so a writer killed midway leaves the file as it was before that write. Opening checks the file
// (PRAGMA quick_check and the schema); a corrupt file, a file that is not a ridgeline history, or
// a file locked for longer than the busy timeout is an io_error with one clear line, and nothing
// is written to it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/regress/change_points.hpp"
#include "ridgeline/regress/results.hpp"

struct sqlite3;

namespace ridgeline::bench {

inline constexpr const char* k_history_schema = "ridgeline.history/v1";

struct history_options {
  bool read_only = false;  // read-only: the file must exist
  int busy_timeout_ms = 5000;
};

struct run_info {
  std::string git_sha;
  std::string branch;
  std::string time_utc;  // ISO 8601, e.g. 2026-11-21T10:00:00Z
};

struct history_point {
  std::int64_t run_id = 0;
  std::string git_sha;
  std::string branch;
  std::string time_utc;
  double median_seconds = 0;
  double iqr_seconds = 0;
  std::size_t count = 0;
};

class history {
 public:
  // Opens (read-write: creates) the history at `path` and checks it; see the file comment.
  history(const std::filesystem::path& path, const history_options& o = {});
  ~history();
  history(history&&) noexcept;
  history& operator=(history&&) noexcept;
  history(const history&) = delete;
  history& operator=(const history&) = delete;

  // Adds one result as one run, in one transaction; returns the run id. `after_row` (tests) is
  // called inside the transaction after each benchmark row is written.
  std::int64_t add(const result_set& r, const run_info& info,
                   const std::function<void(std::size_t)>& after_row = {});

  std::vector<std::string> benchmarks() const;  // in name order
  std::size_t run_count() const;
  // Points of one benchmark, oldest first (by time, then run id); branch empty: every branch;
  // last > 0: only the newest `last`.
  std::vector<history_point> series(const std::string& benchmark, const std::string& branch = {},
                                    std::size_t last = 0) const;

  const std::filesystem::path& path() const { return m_path; }

 private:
  void exec(const char* sql) const;
  std::filesystem::path m_path;
  sqlite3* m_db = nullptr;
  int m_busy_timeout_ms = 0;
};

// The newest point of each benchmark for the Prometheus export, with its change against the point
// before and whether change-point detection flags the newest run.
struct latest_point {
  std::string benchmark;
  std::string branch;
  history_point point;
  double change_ratio = 0;  // median / previous median - 1 (0 without a previous point)
  bool change_point = false;
  double time_unix_seconds = 0;
};
std::vector<latest_point> latest_points(const history& h, const std::string& branch,
                                        const change_point_options& o);

// Prometheus text exposition of the latest points (what push_latest_points sends):
// ridgeline_benchmark_median_seconds, _iqr_seconds, ridgeline_benchmark_change_ratio,
// ridgeline_benchmark_change_point, ridgeline_benchmark_run_timestamp_seconds, labelled
// {benchmark, branch}.
std::string latest_points_text(const std::vector<latest_point>& points);
// Pushes them to a Prometheus pushgateway (PUT, replacing the job's group); `url` is
// http://host:port. Throws io_error when the gateway cannot be reached or answers with an error.
void push_latest_points(const std::vector<latest_point>& points, const std::string& url,
                        const std::string& job);

// "2026-11-21T10:00:00Z" or "...+02:00" -> seconds since the epoch; std::nullopt when malformed.
std::optional<double> parse_iso8601(const std::string& text);

}  // namespace ridgeline::bench
