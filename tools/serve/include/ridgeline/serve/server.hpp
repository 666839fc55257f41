// `ridgeline serve`: an OpenAI-compatible HTTP server over the engine's serving loop (the loop
// `ridgeline replay` runs), on this GPU's cuda executor or, without a GPU, the cpu executor on a
// tiny model. Two threads: the HTTP thread (libevent: one event loop, every connection
// non-blocking) parses, tokenizes and streams; the engine thread runs the serving loop and hands
// each sampled token back through a queue. Routes: POST /v1/completions, /v1/chat/completions
// (stream: true as server-sent events), GET /v1/models, /health, /metrics (Prometheus).
// docs/serving.md lists the parameters, errors and limits.
//   serve::server s(options, notes);     // builds the engine; binds
//   s.run();                              // until stop() (from a signal handler or a thread)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ridgeline/replay/replay.hpp"

namespace ridgeline::serve {

struct server_options {
  // model, checkpoint, KV pool, scheduler limits, executor choice; engine.top_logprobs is
  // --max-logprobs: the alternatives per token the executor computes and a request may ask for
  // (0: logprobs off, no cost)
  replay::replay_options engine;
  std::string address = "127.0.0.1:8000";  // host:port; port 0 picks a free one
  std::string served_model_name;           // the name /v1/models lists (default: the model's)
  std::string tokenizer;  // tokenizer.json; empty: the checkpoint's, else the byte-level one
  std::int64_t max_body_bytes = 4 << 20;
  std::int64_t max_header_bytes = 16 << 10;
  int read_timeout_seconds = 30;  // a request's headers and body must arrive within this
  std::int32_t max_waiting = 1024;  // requests queued for their first token before 429
  bool ignore_eos_default = false;
  bool handle_signals = false;  // SIGINT and SIGTERM stop run() (the command sets it)
  // When set, run() ends by writing the server's own timing of every request it answered
  // (ridgeline.serve_record/v1, docs/results-formats.md): its arrival, the engine's first and
  // last token, the first and last write to the socket, on the host's steady clock, keyed by the
  // client's X-Request-Id. Joined with a `ridgeline load` run on the same host it splits TTFT and
  // TPOT into the engine's share and the HTTP layer's (scripts/http_overhead.py).
  std::string record_path;
  // Tests: wraps the executor before the engine thread starts (fault injection).
  std::function<std::unique_ptr<executor>(std::unique_ptr<executor>)> wrap_executor;
};

class server {
 public:
  // Builds the executor and binds the address; throws std::invalid_argument for a bad option,
  // io_error when the address cannot be bound, no_device_error never (falls back to the cpu
  // executor, and `note` says so).
  server(const server_options& o, std::function<void(const std::string&)> note = {});
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // The port bound (the one picked when the address asked for port 0).
  int port() const;
  // Serves until stop(); then finishes: requests in flight are cancelled, their streams ended.
  void run();
  // Thread-safe (a test stops a server that runs on another thread); signals go through
  // handle_signals instead.
  void stop();

  struct impl;  // tools/serve/src/server.cpp

 private:
  std::unique_ptr<impl> m;
};

}  // namespace ridgeline::serve
