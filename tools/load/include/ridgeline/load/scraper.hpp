// The server-side time series of a load run: a thread that GETs the server's /metrics every
// interval (Prometheus text, parsed by prometheus_text.hpp) and keeps ridgeline's, vLLM's and
// SGLang's serving series on the client's time axis (seconds since the level's start).
//   metrics_scraper s(parse_url("http://127.0.0.1:8000/metrics"), 1.0, level_epoch);
//   s.start();  ...run the level...  s.stop();  server_series v = s.series();
// A failed scrape is counted and its reason kept; it never stops the run.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ridgeline/load/url.hpp"

namespace ridgeline::load {

struct server_series {
  std::string url;
  double interval_seconds = 0;
  std::vector<double> t;  // when each successful scrape was sent, seconds since the level's start
  // One entry per scrape; nullopt where that scrape lacked the series.
  std::map<std::string, std::vector<std::optional<double>>> values;
  std::int64_t failures = 0;
  std::string last_error;
};

// One GET of `path` on the URL's host: the body of a 200 response; std::runtime_error with the
// reason otherwise (connect, timeout, status). https through OpenSSL, certificates checked unless
// verify_tls is false.
std::string http_get(const url& u, const std::string& path, double timeout_seconds,
                     bool verify_tls = true);

class metrics_scraper {
 public:
  metrics_scraper(url metrics_url, double interval_seconds,
                  std::chrono::steady_clock::time_point epoch, bool verify_tls = true);
  ~metrics_scraper();
  void start();
  void stop();  // waits for the scrape in progress
  server_series series() const;

 private:
  void loop();
  void scrape_once();
  url m_url;
  double m_interval;
  std::chrono::steady_clock::time_point m_epoch;
  bool m_verify;
  std::thread m_thread;
  mutable std::mutex m_mutex;
  std::condition_variable m_wake;
  bool m_stop = false;
  server_series m_series;
};

}  // namespace ridgeline::load
