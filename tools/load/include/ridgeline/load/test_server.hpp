// A fixed-schedule OpenAI-compatible server for testing and benchmarking the load client (and for
// users checking a load setup: `ridgeline load test-server`). Every request streams its tokens on a
// known schedule: the first chunk `first_token_seconds` after the request is admitted, then one
// chunk every `tokens_per_chunk * token_interval_seconds`, each chunk carrying `tokens_per_chunk`
// tokens (the last one what is left), so measured TTFT and ITL can be checked against it. At most
// `capacity` streams run at once (0: no limit); the others wait in FIFO order, so the server has a
// known maximum rate: capacity / (first_token + (chunks - 1) * chunk_interval) requests/s.
//   test_server s({.first_token_seconds = 0.05, .token_interval_seconds = 0.01});
//   s.url();   // "http://127.0.0.1:PORT"; POST /v1/completions, /v1/chat/completions,
//              // GET /metrics (ridgeline_ names), GET /health
// Prompt tokens (its usage.prompt_tokens) are the length of a token-id prompt, else the number of
// whitespace-separated words of the text (all messages' contents for chat). Each output token is
// the word " tok". Faults for the error tests are chosen per server, on every n-th request.
// The server runs its own event loop on its own thread; every method may be called from any
// thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ridgeline::load {

struct test_server_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: a free port
  double first_token_seconds = 0.05;
  double token_interval_seconds = 0.01;
  std::int32_t tokens_per_chunk = 1;
  std::int32_t default_output_tokens = 16;  // for a request without max_tokens
  std::int32_t capacity = 0;                // concurrent streams; 0: no limit
  bool chunked = true;  // false: no Transfer-Encoding, the stream ends when the server closes
  enum class fault {
    none,
    status_500,        // 500 with a JSON error body
    status_429,        // 429 with a JSON error body
    malformed,         // the second event is not JSON
    hang,              // headers, then nothing (the client's timeout)
    close_mid_stream,  // the connection closes after half the chunks
    error_event,       // an error object after the first chunk, then [DONE]
    refuse,            // the connection closes as soon as the request arrives
  };
  fault inject = fault::none;
  std::int32_t fault_every = 1;  // the fault hits requests 1, 1 + n, 1 + 2n, ... (1: all)
  bool record_sends = false;     // keep every chunk's write time (send_log)
  // TLS (https): a certificate and its private key, PEM text; both empty: plain HTTP.
  std::string tls_certificate_pem, tls_key_pem;
};
// "none", "500", "429", "malformed", "hang", "close", "error-event", "refuse".
test_server_options::fault parse_fault(const std::string& text);

struct test_server_stats {
  std::int64_t requests = 0, completed = 0, chunks = 0;
  std::int64_t running = 0, waiting = 0, max_running = 0, max_waiting = 0;
  std::int64_t connections = 0;  // open now
  std::int64_t accepted = 0;     // since the start
};

// What the server did with one request (record_sends): times in seconds of steady_clock's
// time_since_epoch (the same clock on every process of the host).
struct test_server_send_log {
  double received = 0, admitted = 0;
  std::vector<double> chunk_writes;  // when each content chunk was handed to the kernel
  std::vector<double> chunk_due;     // when the schedule said it should be
};

class test_server {
 public:
  explicit test_server(const test_server_options& o);
  ~test_server();
  test_server(const test_server&) = delete;
  test_server& operator=(const test_server&) = delete;

  std::uint16_t port() const;
  std::string url() const;  // http://host:port (https:// with TLS)
  test_server_stats stats() const;
  // Keyed by the request's X-Request-Id header (or "#n" for the n-th request without one).
  std::map<std::string, test_server_send_log> send_log() const;
  void stop();  // ends the loop and closes every connection (the destructor calls it)

  struct impl;

 private:
  std::unique_ptr<impl> m;
};

}  // namespace ridgeline::load
