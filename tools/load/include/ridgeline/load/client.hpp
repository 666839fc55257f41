// The load client's core: one libevent event loop per worker thread, each request a bufferevent
// on a non-blocking socket (TLS through bufferevent_openssl for https URLs), kept-alive
// connections reused, no thread per request. A worker asks its job source for what is due,
// writes each request at its scheduled time and stamps, in the read callback before any parsing,
// the time every read arrived (response_reader turns those into the record).
//   client_worker w(options, epoch);
//   std::vector<request_record> records = w.run(source);   // on this thread, until the source
//                                                         // is exhausted and nothing is in flight
//   w.stop();                                              // from any thread: cancels the rest
// Timing: `sent` is stamped just before the request's first byte is handed to the kernel (TLS:
// to OpenSSL); connections are opened (or taken from the idle pool) up to k_connect_lead_seconds
// before the scheduled time, so connecting is not part of the lateness (sent - scheduled) unless
// the connection was slow to open.
#pragma once

#include <sys/time.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ridgeline/load/record.hpp"
#include "ridgeline/load/response_reader.hpp"
#include "ridgeline/load/token_codec.hpp"
#include "ridgeline/load/url.hpp"

namespace ridgeline::load {

using run_clock = std::chrono::steady_clock;
inline constexpr double k_connect_lead_seconds = 0.010;

// Seconds from `epoch` to now on the run's clock.
double seconds_since(run_clock::time_point epoch);

struct client_options {
  url target;
  resolved_address address;
  std::string api_key;                                       // Authorization: Bearer
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers, every request
  // Per attempt: the connection must open within it, and the response end within it after the
  // write (connect, timeout errors); 0: no limit.
  double timeout_seconds = 0;
  int retries = 0;  // more attempts after connect errors, timeouts, 429 and 5xx
  bool verify_tls = true;
  const token_codec* counter = nullptr;
};

// One request to send.
struct http_job {
  std::uint64_t index = 0;  // the run's own index of the request (sources use it)
  std::uint64_t id = 0;     // the workload's id (the record's, X-Request-Id)
  std::int64_t session = -1;
  std::int32_t turn = 0;
  double scheduled_seconds = 0;
  std::string path;  // "/v1/completions"
  std::string body;  // JSON
  bool stream = true;
  bool keep_text = false;
  std::int64_t requested_prompt_tokens = 0, expected_prompt_tokens = 0, requested_output_tokens = 0;
};

// What a worker sends and when; called on the worker's thread only.
class job_source {
 public:
  virtual ~job_source() = default;
  // Appends the jobs due by `horizon` (seconds on the run's clock) to `out`; returns when the
  // next job not taken is due (infinity when none is known yet).
  virtual double take_due(double now, double horizon, std::vector<http_job>& out) = 0;
  // A request ended (finished, failed or cancelled): sessions release their next turn, a closed
  // loop its next request.
  virtual void on_done(const http_job& job, const request_record& r, double now) = 0;
  // Nothing more will be released (the run ends once nothing is in flight).
  virtual bool exhausted() const = 0;
};

struct worker_counters {
  std::atomic<std::int64_t> in_flight{0};  // started (connecting, waiting or sent), not ended
  std::atomic<std::int64_t> awaiting_first{0};  // started, no content chunk yet, not ended
  std::atomic<std::int64_t> sent{0};
  std::atomic<std::int64_t> ended{0};
  std::atomic<std::int64_t> chunks{0};
  std::atomic<std::int64_t> e2e_micros{0};  // summed (end - sent) of the ended requests sent
};

class client_worker {
 public:
  client_worker(const client_options& o, run_clock::time_point epoch);
  ~client_worker();
  client_worker(const client_worker&) = delete;
  client_worker& operator=(const client_worker&) = delete;

  // Runs the event loop on the calling thread until the source is exhausted and nothing is in
  // flight, or stop() is called (then what is in flight ends as cancelled). One record per job
  // taken from the source, in the order they ended.
  std::vector<request_record> run(job_source& source);
  void stop();
  const worker_counters& counters() const;
  // The chunk-token source the responses used (the most informative one seen).
  chunk_token_source token_source() const;

  struct impl;

 private:
  std::unique_ptr<impl> m;
};

// Makes room for `descriptors` open files before a run: raises the soft RLIMIT_NOFILE towards the
// hard one, and grows the process's descriptor table to that size now. Linux grows the table by
// doubling as descriptors are opened, and in a multi-threaded process each growth waits for an
// RCU grace period: 5 to 25 ms stalls of every thread at 256, 512, 1024... open connections,
// measured here before this existed. Returns the descriptors now usable.
std::int64_t reserve_descriptors(std::int64_t descriptors);

// A libevent timeout of `seconds` (0 for anything not positive).
timeval timeval_of(double seconds);

// The HTTP/1.1 request bytes of a job (exposed for tests).
std::string request_bytes(const client_options& o, const http_job& job);

}  // namespace ridgeline::load
