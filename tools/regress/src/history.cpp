// The SQLite results history and its Prometheus export (see history.hpp).
#include "ridgeline/regress/history.hpp"

#include <prometheus/gateway.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ridgeline/telemetry/environment.hpp"
#include "ridgeline/core/errors.hpp"

namespace ridgeline::bench {
namespace fs = std::filesystem;

namespace {

struct statement_deleter {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using statement = std::unique_ptr<sqlite3_stmt, statement_deleter>;

// One line for the user: what went wrong with which file, in words, not SQLite's result codes.
[[noreturn]] void fail(const fs::path& path, sqlite3* db, int rc, const std::string& doing,
                       int busy_timeout_ms) {
  const std::string detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string msg = "history " + path.string() + ": ";
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      msg += "locked by another process (waited " + std::to_string(busy_timeout_ms) + " ms to " +
             doing + "); try again later or raise --busy-timeout";
      break;
    case SQLITE_NOTADB:
      msg += "not an SQLite database (corrupt, or another kind of file); nothing was written to it";
      break;
    case SQLITE_CORRUPT:
      msg += "the database is corrupt (" + detail + "); nothing was written to it";
      break;
    case SQLITE_CANTOPEN:
      msg += "cannot open (" + detail + ")";
      break;
    case SQLITE_READONLY:
      msg += "cannot write: read-only (" + detail + ")";
      break;
    case SQLITE_FULL:
      msg += "cannot write: disk full; the history is unchanged";
      break;
    default:
      msg += "cannot " + doing + ": " + detail;
      break;
  }
  throw io_error(msg);
}

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* p = sqlite3_column_text(s, i);
  return p != nullptr ? reinterpret_cast<const char*>(p) : std::string();
}

std::string format_utc(double unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::optional<double> parse_iso8601(const std::string& text) {
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return std::nullopt;
  }
  std::string rest = text.substr(static_cast<std::size_t>(consumed));
  if (!rest.empty() && rest[0] == '.') {  // fractional seconds: ignored
    std::size_t i = 1;
    while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) ++i;
    rest = rest.substr(i);
  }
  double offset = 0;
  if (rest == "Z" || rest.empty()) {
    offset = 0;
  } else if ((rest[0] == '+' || rest[0] == '-') && rest.size() == 6 && rest[3] == ':') {
    int hh = 0, mm = 0;
    if (std::sscanf(rest.c_str() + 1, "%2d:%2d", &hh, &mm) != 2) return std::nullopt;
    offset = (rest[0] == '+' ? 1 : -1) * (hh * 3600.0 + mm * 60.0);
  } else {
    return std::nullopt;
  }
  if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<double>(timegm(&tm)) - offset;
}

history::history(const fs::path& path, const history_options& o)
    : m_path(path), m_busy_timeout_ms(o.busy_timeout_ms) {
  std::error_code ec;
  if (o.read_only && !fs::exists(path, ec)) {
    throw io_error("history " + path.string() +
                   ": no such file (add a result first: ridgeline history add FILE)");
  }
  if (fs::is_directory(path, ec)) throw io_error("history " + path.string() + ": is a directory");
  // Readers open read-write when they may (no CREATE), so that a hot journal left by a killed
  // writer is rolled back; a read-only connection would refuse the file instead.
  const int flags = !o.read_only ? (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
                    : ::access(path.c_str(), W_OK) == 0 ? SQLITE_OPEN_READWRITE
                                                        : SQLITE_OPEN_READONLY;
  const int rc = sqlite3_open_v2(path.c_str(), &m_db, flags, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_close(m_db);
    m_db = nullptr;
    fail(path, nullptr, rc, "open", m_busy_timeout_ms);
  }
  try {
    sqlite3_extended_result_codes(m_db, 1);
    sqlite3_busy_timeout(m_db, m_busy_timeout_ms);
    // The whole file is checked before anything is read or written (quick_check is O(size)).
    {
      sqlite3_stmt* raw = nullptr;
      int r = sqlite3_prepare_v2(m_db, "PRAGMA quick_check", -1, &raw, nullptr);
      statement s(raw);
      if (r != SQLITE_OK) fail(m_path, m_db, r, "check the file", m_busy_timeout_ms);
      std::string first;
      while ((r = sqlite3_step(s.get())) == SQLITE_ROW) {
        if (first.empty()) first = column_text(s.get(), 0);
      }
      if (r != SQLITE_DONE) fail(m_path, m_db, r, "check the file", m_busy_timeout_ms);
      if (first != "ok") {
        throw io_error("history " + m_path.string() + ": the database is corrupt (quick_check: " +
                       first + "); nothing was written to it");
      }
    }
    auto count_tables = [&](const char* sql) {
      sqlite3_stmt* raw = nullptr;
      int r = sqlite3_prepare_v2(m_db, sql, -1, &raw, nullptr);
      statement s(raw);
      if (r != SQLITE_OK || (r = sqlite3_step(s.get())) != SQLITE_ROW) {
        fail(m_path, m_db, r, "read the schema", m_busy_timeout_ms);
      }
      return sqlite3_column_int64(s.get(), 0);
    };
    const auto tables = count_tables("SELECT count(*) FROM sqlite_master WHERE type = 'table'");
    const auto ours = count_tables(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'ridgeline_meta'");
    if (ours == 1) {
      sqlite3_stmt* raw = nullptr;
      int r = sqlite3_prepare_v2(m_db, "SELECT value FROM ridgeline_meta WHERE key = 'schema'", -1,
                                 &raw, nullptr);
      statement s(raw);
      if (r != SQLITE_OK) fail(m_path, m_db, r, "read the schema", m_busy_timeout_ms);
      r = sqlite3_step(s.get());
      const std::string schema = r == SQLITE_ROW ? column_text(s.get(), 0) : std::string();
      if (schema != k_history_schema) {
        throw io_error("history " + m_path.string() + ": schema '" + schema +
                       "', this ridgeline reads " + k_history_schema);
      }
    } else if (tables > 0) {
      throw io_error(
          "history " + m_path.string() +
          ": an SQLite database, but not a ridgeline history; nothing was written to it");
    } else if (o.read_only) {
      throw io_error("history " + m_path.string() + ": empty (add a result first)");
    } else {
      exec("BEGIN IMMEDIATE");
      try {
        exec(
            "CREATE TABLE ridgeline_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE runs ("
            "  id INTEGER PRIMARY KEY AUTOINCREMENT, git_sha TEXT NOT NULL, branch TEXT NOT NULL,"
            "  time_utc TEXT NOT NULL, added_utc TEXT NOT NULL, source TEXT NOT NULL,"
            "  format TEXT NOT NULL, environment TEXT NOT NULL);"
            "CREATE TABLE results ("
            "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
            "  benchmark TEXT NOT NULL, median_seconds REAL NOT NULL, count INTEGER NOT NULL,"
            "  iqr_seconds REAL NOT NULL, noise REAL NOT NULL, samples TEXT NOT NULL,"
            "  PRIMARY KEY (run_id, benchmark));"
            "CREATE INDEX results_by_benchmark ON results (benchmark, run_id);"
            "INSERT INTO ridgeline_meta VALUES ('schema', 'ridgeline.history/v1');");
        exec("COMMIT");
      } catch (...) {
        sqlite3_exec(m_db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
      }
    }
    if (!o.read_only) exec("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;");
  } catch (...) {
    sqlite3_close(m_db);
    m_db = nullptr;
    throw;
  }
}

history::~history() {
  if (m_db != nullptr) sqlite3_close(m_db);
}

history::history(history&& other) noexcept
    : m_path(std::move(other.m_path)),
      m_db(std::exchange(other.m_db, nullptr)),
      m_busy_timeout_ms(other.m_busy_timeout_ms) {}

history& history::operator=(history&& other) noexcept {
  if (this != &other) {
    if (m_db != nullptr) sqlite3_close(m_db);
    m_path = std::move(other.m_path);
    m_db = std::exchange(other.m_db, nullptr);
    m_busy_timeout_ms = other.m_busy_timeout_ms;
  }
  return *this;
}

void history::exec(const char* sql) const {
  const int rc = sqlite3_exec(m_db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    const std::string s(sql);
    fail(m_path, m_db, rc, s.rfind("BEGIN", 0) == 0 ? "start a write" : "write", m_busy_timeout_ms);
  }
}

std::int64_t history::add(const result_set& r, const run_info& info,
                          const std::function<void(std::size_t)>& after_row) {
  std::size_t usable = 0;
  for (const auto& [name, s] : r.benchmarks) usable += s.error.empty() && s.stats.count > 0;
  if (usable == 0) throw std::invalid_argument(r.source + ": no benchmark to add (all failed)");
  const auto when = parse_iso8601(info.time_utc);
  if (!when) {
    throw std::invalid_argument("time '" + info.time_utc +
                                "' is not ISO 8601 (e.g. 2026-11-21T10:00:00Z)");
  }
  auto prepare = [&](const char* sql) {
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v2(m_db, sql, -1, &raw, nullptr);
    statement s(raw);
    if (rc != SQLITE_OK) fail(m_path, m_db, rc, "prepare a write", m_busy_timeout_ms);
    return s;
  };
  auto text = [](sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  };
  exec("BEGIN IMMEDIATE");
  try {
    auto run = prepare(
        "INSERT INTO runs (git_sha, branch, time_utc, added_utc, source, format, environment) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)");
    text(run.get(), 1, info.git_sha);
    text(run.get(), 2, info.branch);
    text(run.get(), 3, format_utc(*when));
    text(run.get(), 4, metrics::utc_now_iso8601());
    text(run.get(), 5, r.source);
    text(run.get(), 6, r.format);
    text(run.get(), 7, r.environment.dump());
    int rc = sqlite3_step(run.get());
    if (rc != SQLITE_DONE) fail(m_path, m_db, rc, "write the run", m_busy_timeout_ms);
    const std::int64_t id = sqlite3_last_insert_rowid(m_db);
    auto row = prepare(
        "INSERT INTO results (run_id, benchmark, median_seconds, count, iqr_seconds, noise, "
        "samples) VALUES (?, ?, ?, ?, ?, ?, ?)");
    std::size_t i = 0;
    for (const auto& [name, s] : r.benchmarks) {
      if (!s.error.empty() || s.stats.count == 0) continue;
      sqlite3_reset(row.get());
      sqlite3_bind_int64(row.get(), 1, id);
      text(row.get(), 2, name);
      sqlite3_bind_double(row.get(), 3, s.stats.median);
      sqlite3_bind_int64(row.get(), 4, static_cast<sqlite3_int64>(s.stats.count));
      sqlite3_bind_double(row.get(), 5, s.iqr_seconds);
      sqlite3_bind_double(row.get(), 6, s.stats.noise);
      text(row.get(), 7, nlohmann::json(s.seconds).dump());
      rc = sqlite3_step(row.get());
      if (rc != SQLITE_DONE) fail(m_path, m_db, rc, "write a result", m_busy_timeout_ms);
      if (after_row) after_row(i);
      ++i;
    }
    exec("COMMIT");
    return id;
  } catch (...) {
    sqlite3_exec(m_db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::vector<std::string> history::benchmarks() const {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(m_db, "SELECT DISTINCT benchmark FROM results ORDER BY benchmark", -1,
                              &raw, nullptr);
  statement s(raw);
  if (rc != SQLITE_OK) fail(m_path, m_db, rc, "read", m_busy_timeout_ms);
  std::vector<std::string> out;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) out.push_back(column_text(s.get(), 0));
  if (rc != SQLITE_DONE) fail(m_path, m_db, rc, "read", m_busy_timeout_ms);
  return out;
}

std::size_t history::run_count() const {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(m_db, "SELECT count(*) FROM runs", -1, &raw, nullptr);
  statement s(raw);
  if (rc != SQLITE_OK || (rc = sqlite3_step(s.get())) != SQLITE_ROW) {
    fail(m_path, m_db, rc, "read", m_busy_timeout_ms);
  }
  return static_cast<std::size_t>(sqlite3_column_int64(s.get(), 0));
}

std::vector<history_point> history::series(const std::string& benchmark, const std::string& branch,
                                           std::size_t last) const {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(
      m_db,
      "SELECT runs.id, runs.git_sha, runs.branch, runs.time_utc, results.median_seconds, "
      "results.iqr_seconds, results.count FROM results JOIN runs ON runs.id = results.run_id "
      "WHERE results.benchmark = ?1 AND (?2 = '' OR runs.branch = ?2) "
      "ORDER BY runs.time_utc, runs.id",
      -1, &raw, nullptr);
  statement s(raw);
  if (rc != SQLITE_OK) fail(m_path, m_db, rc, "read", m_busy_timeout_ms);
  sqlite3_bind_text(s.get(), 1, benchmark.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(s.get(), 2, branch.c_str(), -1, SQLITE_TRANSIENT);
  std::vector<history_point> out;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
    history_point p;
    p.run_id = sqlite3_column_int64(s.get(), 0);
    p.git_sha = column_text(s.get(), 1);
    p.branch = column_text(s.get(), 2);
    p.time_utc = column_text(s.get(), 3);
    p.median_seconds = sqlite3_column_double(s.get(), 4);
    p.iqr_seconds = sqlite3_column_double(s.get(), 5);
    p.count = static_cast<std::size_t>(sqlite3_column_int64(s.get(), 6));
    out.push_back(std::move(p));
  }
  if (rc != SQLITE_DONE) fail(m_path, m_db, rc, "read", m_busy_timeout_ms);
  if (last > 0 && out.size() > last) out.erase(out.begin(), out.end() - static_cast<long>(last));
  return out;
}

std::vector<latest_point> latest_points(const history& h, const std::string& branch,
                                        const change_point_options& o) {
  std::vector<latest_point> out;
  for (const auto& name : h.benchmarks()) {
    const auto points = h.series(name, branch);
    if (points.empty()) continue;
    latest_point lp;
    lp.benchmark = name;
    lp.point = points.back();
    lp.branch = branch.empty() ? lp.point.branch : branch;
    if (points.size() > 1 && points[points.size() - 2].median_seconds > 0) {
      lp.change_ratio = lp.point.median_seconds / points[points.size() - 2].median_seconds - 1.0;
    }
    std::vector<double> medians;
    for (const auto& p : points) medians.push_back(p.median_seconds);
    const auto cps = detect_change_points(medians, o);
    // Recent: detected, and no full new reference window has followed it yet.
    lp.change_point =
        !cps.empty() && cps.back().detected + o.reference_points >= medians.size() - 1;
    lp.time_unix_seconds = parse_iso8601(lp.point.time_utc).value_or(0);
    out.push_back(std::move(lp));
  }
  return out;
}

namespace {

std::shared_ptr<prometheus::Registry> latest_registry(const std::vector<latest_point>& points) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& median = prometheus::BuildGauge()
                     .Name("ridgeline_benchmark_median_seconds")
                     .Help("Median time of the newest run of each benchmark in the history")
                     .Register(*registry);
  auto& iqr = prometheus::BuildGauge()
                  .Name("ridgeline_benchmark_iqr_seconds")
                  .Help("Interquartile range of the newest run's repetitions")
                  .Register(*registry);
  auto& change = prometheus::BuildGauge()
                     .Name("ridgeline_benchmark_change_ratio")
                     .Help("median / previous run's median - 1")
                     .Register(*registry);
  auto& change_point = prometheus::BuildGauge()
                           .Name("ridgeline_benchmark_change_point")
                           .Help("1 when change-point detection (CUSUM) flags the newest runs")
                           .Register(*registry);
  auto& timestamp = prometheus::BuildGauge()
                        .Name("ridgeline_benchmark_run_timestamp_seconds")
                        .Help("Time of the newest run (Unix seconds)")
                        .Register(*registry);
  for (const auto& p : points) {
    const prometheus::Labels labels{{"benchmark", p.benchmark}, {"branch", p.branch}};
    median.Add(labels).Set(p.point.median_seconds);
    iqr.Add(labels).Set(p.point.iqr_seconds);
    change.Add(labels).Set(p.change_ratio);
    change_point.Add(labels).Set(p.change_point ? 1.0 : 0.0);
    timestamp.Add(labels).Set(p.time_unix_seconds);
  }
  return registry;
}

}  // namespace

std::string latest_points_text(const std::vector<latest_point>& points) {
  const auto registry = latest_registry(points);
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry->Collect());
  return out.str();
}

void push_latest_points(const std::vector<latest_point>& points, const std::string& url,
                        const std::string& job) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos ||
      (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)) {
    throw std::invalid_argument("pushgateway URL '" + url +
                                "' must start with http:// or https://");
  }
  std::string rest = url.substr(scheme_end + 3);
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty() || rest.find('/') != std::string::npos) {
    throw std::invalid_argument("pushgateway URL '" + url + "' must be scheme://host[:port]");
  }
  std::string host = rest, port = "9091";
  if (const auto colon = rest.rfind(':'); colon != std::string::npos && rest.back() != ']') {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos) {
      throw std::invalid_argument("pushgateway URL '" + url + "': bad port '" + port + "'");
    }
  }
  const auto registry = latest_registry(points);
  prometheus::Gateway gateway(url.substr(0, scheme_end + 3) + host, port, job);
  gateway.RegisterCollectable(registry);
  const int status = gateway.Push();
  if (status < 0) {
    throw io_error("cannot push to pushgateway " + url + ": connection failed (curl error " +
                   std::to_string(-status) + ")");
  }
  if (status >= 400) {
    throw io_error("pushgateway " + url + " refused the push: HTTP " + std::to_string(status));
  }
}

}  // namespace ridgeline::bench
