// `ridgeline serve`'s HTTP side (see server.hpp): libevent's evhttp on one thread, the engine on
// another (engine_worker.hpp). A request is parsed and validated (openai.hpp), tokenized, checked
// against the context and the queue, then submitted; its tokens come back through the worker's
// outbox, woken by an event the worker activates, and go out as server-sent events (or one JSON
// body). A client that disconnects cancels its request: its KV blocks are freed at once.
// Latency, per hop (docs/serving.md "Where the HTTP layer's time goes"): sockets have TCP_NODELAY;
// after each wake-up the requests still waiting for their first token are answered first; and a
// request's streamed chunks are written to its socket at once (write_now), not on the event
// loop's next turn after every other request's chunks of the same step were built.
#include "ridgeline/serve/server.hpp"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "engine_worker.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/serve/openai.hpp"
#include "ridgeline/telemetry/environment.hpp"
#include "ridgeline/telemetry/live_metrics.hpp"

namespace ridgeline::serve {
namespace {

using json = nlohmann::json;

std::int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// libevent's threading must be on before any event base exists (the worker activates an event
// from its own thread).
void use_threads_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (evthread_use_pthreads() != 0) throw std::runtime_error("libevent: no pthreads support");
  });
}

struct base_deleter {
  void operator()(event_base* b) const noexcept { event_base_free(b); }
};
struct http_deleter {
  void operator()(evhttp* h) const noexcept { evhttp_free(h); }
};
struct event_deleter {
  void operator()(event* e) const noexcept { event_free(e); }
};
struct evbuffer_deleter {
  void operator()(evbuffer* b) const noexcept { evbuffer_free(b); }
};

// Small writes leave at once: a streamed chunk must not wait (Nagle) for the client's ACK of the
// previous segment, which a delayed ACK holds back for up to 40 ms (the headers are written at
// the request, the first token's chunk a TTFT later).
void set_no_delay(evhttp_connection* conn) {
  bufferevent* bev = conn != nullptr ? evhttp_connection_get_bufferevent(conn) : nullptr;
  const evutil_socket_t fd = bev != nullptr ? bufferevent_getfd(bev) : -1;
  if (fd < 0) return;
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Writes what the connection's output buffer holds to its socket now. libevent would write it
// when epoll next reports the socket writable, that is after every other callback of this loop
// turn: after the chunks of every other request of the same step were built. Whatever the socket
// does not take stays in the buffer, and libevent writes it when the socket drains, as before (a
// slow reader backs up there); an error is left to libevent's own write, which fails the
// connection as it always did. The bufferevent keeps its output frozen at the front outside its
// own write callback; the drain of what was sent is the one place that lifts it.
void write_now(evhttp_connection* conn) {
  bufferevent* bev = conn != nullptr ? evhttp_connection_get_bufferevent(conn) : nullptr;
  const evutil_socket_t fd = bev != nullptr ? bufferevent_getfd(bev) : -1;
  if (fd < 0) return;
  evbuffer* out = bufferevent_get_output(bev);
  if (evbuffer_get_length(out) == 0) return;
  std::array<evbuffer_iovec, 16> parts{};
  const int n =
      std::min(evbuffer_peek(out, -1, nullptr, parts.data(), static_cast<int>(parts.size())),
               static_cast<int>(parts.size()));
  if (n <= 0) return;
  std::array<iovec, 16> io{};
  for (int i = 0; i < n; ++i) io[i] = {parts[i].iov_base, parts[i].iov_len};
  msghdr m{};
  m.msg_iov = io.data();
  m.msg_iovlen = static_cast<std::size_t>(n);
  const ssize_t sent = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (sent <= 0) return;
  evbuffer_unfreeze(out, 1);
  evbuffer_drain(out, static_cast<std::size_t>(sent));
  evbuffer_freeze(out, 1);
}

// libevent writes sockets with writev, which raises SIGPIPE when the client has gone, and the
// default action ends the process. The loop's thread blocks it while it serves: a SIGPIPE raised
// by its own write stays pending for that thread (the write fails with EPIPE, and libevent fails
// the connection), and is taken before the thread's mask is restored. Nothing process-wide
// changes.
class sigpipe_blocked {
 public:
  sigpipe_blocked() {
    sigemptyset(&m_pipe);
    sigaddset(&m_pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &m_pipe, &m_old);
  }
  ~sigpipe_blocked() {
    if (sigismember(&m_old, SIGPIPE) == 1) return;  // it was blocked already: left as it was
    const timespec now{0, 0};
    while (sigtimedwait(&m_pipe, nullptr, &now) == SIGPIPE) {
    }
    pthread_sigmask(SIG_SETMASK, &m_old, nullptr);
  }
  sigpipe_blocked(const sigpipe_blocked&) = delete;
  sigpipe_blocked& operator=(const sigpipe_blocked&) = delete;

 private:
  sigset_t m_pipe{}, m_old{};
};

tokenizer load_tokenizer(const server_options& o, const model_preset& m) {
  std::filesystem::path file = o.tokenizer;
  if (file.empty() && !o.engine.checkpoint.empty()) {
    std::filesystem::path dir = o.engine.checkpoint;
    if (!std::filesystem::is_directory(dir)) dir = dir.parent_path();
    if (std::filesystem::exists(dir / "tokenizer.json")) file = dir / "tokenizer.json";
  }
  if (file.empty()) return tokenizer::byte_level(m.vocab);
  return tokenizer::from_file(file);
}

}  // namespace

// One request between its arrival and its last byte.
struct request_state {
  std::uint64_t id = 0;
  endpoint kind = endpoint::completions;
  evhttp_request* req = nullptr;  // null once the client is gone
  evhttp_connection* conn = nullptr;
  bool stream = false, include_usage = false, continuous_usage = false;
  bool first_chunk = true;
  bool first_token_seen = false;
  bool stopped_by_text = false;  // a stop string ended it (the engine was told to cancel)
  bool last_was_stop_token = false;
  std::int32_t max_tokens = 0;
  std::int32_t tokens = 0;
  double last_token_seconds = 0;
  std::int64_t prompt_tokens = 0;
  std::unordered_set<token_id> stop_ids;
  std::string text;  // non-streaming: the whole output
  std::unique_ptr<text_stream> out;
  // Alternatives per token asked (-1: no logprobs) and the tokens' log-probabilities not sent
  // yet (streaming: since the last chunk; otherwise all of them).
  std::int32_t logprobs = -1;
  std::vector<token_logprobs> unsent_logprobs;
  std::size_t last_event = 0;  // on_events: the index of its last event in the batch at hand
  std::int64_t created = 0;
  std::string response_id;
  // --record: the client's X-Request-Id and the server's stamps (steady_seconds)
  std::string client_id;
  double arrival_seconds = 0, first_token_seconds = -1, first_write_seconds = -1,
         last_write_seconds = -1;
};

// One answered request in --record's columns.
struct record_columns {
  std::vector<std::string> client_id, outcome;
  std::vector<std::int64_t> prompt_tokens, output_tokens, cached_tokens;
  std::vector<double> arrival, first_token, last_token, first_write, last_write;
};

struct server::impl {
  server_options opt;
  std::function<void(const std::string&)> note;
  std::unique_ptr<event_base, base_deleter> base;
  std::unique_ptr<evhttp, http_deleter> http;
  std::unique_ptr<event, event_deleter> wake_event;
  std::unique_ptr<event, event_deleter> probe_event;  // every 100 ms: clients that went away
  std::unique_ptr<event, event_deleter> stop_event;  // activated by stop(): survives a stop()
                                                     // that comes before run() dispatches
  metrics::live_metrics live;
  std::unique_ptr<tokenizer> tok;
  chat_format chat = chat_format::plain;
  std::unique_ptr<engine_worker> worker;
  std::string model_name;
  std::int32_t max_context = 0;
  api_limits limits;
  int bound_port = 0;
  std::uint64_t next_id = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<request_state>> live_requests;
  std::unordered_map<evhttp_connection*, std::uint64_t> by_connection;
  std::int32_t awaiting_first = 0;  // submitted, no first token yet (the queue the limit is on)
  bool failure_logged = false;      // the engine's failure, said once on stderr
  std::vector<engine_event> events;
  std::unique_ptr<evbuffer, evbuffer_deleter> chunk_buffer{evbuffer_new()};  // emptied by each send
  std::int64_t created = unix_seconds();
  std::unique_ptr<record_columns> record;  // --record
  std::optional<int> record_device;
  std::string record_executor;

  void handle(evhttp_request* req);
  void on_events();
  void on_close(evhttp_connection* conn);
  void probe_clients();
  void reply_json(evhttp_request* req, int status, const std::string& body,
                  const char* extra_header = nullptr, const char* extra_value = nullptr);
  void reply_error(evhttp_request* req, const api_error& e);
  void start_generation(evhttp_request* req, endpoint kind);
  void send_event(request_state& s, const json& chunk);
  void send_text(request_state& s, std::string_view text);
  void on_token(request_state& s, const engine_event& e);
  // The stream's last bytes: written out now, then the chunked body's end (libevent's write of
  // which completes the request and readies the connection for its next one).
  void end_stream(request_state& s);
  // A chunk or response with the log-probabilities not sent yet (when the request asked).
  json with_logprobs(request_state& s, json chunk);
  void finish(request_state& s, const engine_event& e);
  void forget(request_state& s);
  void write_record() const;
};

namespace {

void on_request(evhttp_request* req, void* arg) { static_cast<server::impl*>(arg)->handle(req); }

void on_wake(evutil_socket_t, short, void* arg) { static_cast<server::impl*>(arg)->on_events(); }

void on_probe(evutil_socket_t, short, void* arg) {
  static_cast<server::impl*>(arg)->probe_clients();
}

void on_connection_close(evhttp_connection* conn, void* arg) {
  static_cast<server::impl*>(arg)->on_close(conn);
}

std::string body_of(evhttp_request* req) {
  evbuffer* in = evhttp_request_get_input_buffer(req);
  const std::size_t n = evbuffer_get_length(in);
  std::string s(n, '\0');
  if (n > 0) evbuffer_copyout(in, s.data(), n);
  return s;
}

}  // namespace

void server::impl::reply_json(evhttp_request* req, int status, const std::string& body,
                              const char* extra_header, const char* extra_value) {
  evkeyvalq* h = evhttp_request_get_output_headers(req);
  evhttp_add_header(h, "Content-Type", "application/json");
  if (extra_header != nullptr) evhttp_add_header(h, extra_header, extra_value);
  evbuffer* b = evbuffer_new();
  evbuffer_add(b, body.data(), body.size());
  evhttp_send_reply(req, status, nullptr, b);
  evbuffer_free(b);
}

void server::impl::reply_error(evhttp_request* req, const api_error& e) {
  if (e.status == 429 || e.status == 503) {
    reply_json(req, e.status, error_body(e), "Retry-After", "1");
  } else {
    reply_json(req, e.status, error_body(e));
  }
}

void server::impl::handle(evhttp_request* req) {
  set_no_delay(evhttp_request_get_connection(req));
  const char* uri = evhttp_request_get_uri(req);
  std::string path = uri != nullptr ? uri : "";
  if (const auto q = path.find('?'); q != std::string::npos) path.resize(q);
  const evhttp_cmd_type cmd = evhttp_request_get_command(req);
  auto method_not_allowed = [&](const char* allowed) {
    api_error e;
    e.status = 405;
    e.message = "method not allowed on " + path + " (use " + allowed + ")";
    reply_json(req, 405, error_body(e), "Allow", allowed);
  };
  if (path == "/v1/completions" || path == "/v1/chat/completions") {
    if (cmd != EVHTTP_REQ_POST) return method_not_allowed("POST");
    start_generation(req, path == "/v1/completions" ? endpoint::completions : endpoint::chat);
    return;
  }
  if (path == "/v1/models") {
    if (cmd != EVHTTP_REQ_GET) return method_not_allowed("GET");
    json m = {{"id", model_name}, {"object", "model"}, {"created", created},
              {"owned_by", "ridgeline"}, {"max_model_len", max_context}};
    reply_json(req, 200, json{{"object", "list"}, {"data", json::array({m})}}.dump());
    return;
  }
  if (path == "/health") {
    if (cmd != EVHTTP_REQ_GET) return method_not_allowed("GET");
    const std::string f = worker->failure();
    if (!f.empty()) {
      api_error e;
      e.status = 503;
      e.type = "server_error";
      e.message = "the engine failed: " + f;
      return reply_error(req, e);
    }
    reply_json(req, 200, R"({"status":"ok"})");
    return;
  }
  if (path == "/metrics") {
    if (cmd != EVHTTP_REQ_GET) return method_not_allowed("GET");
    const std::string text = live.registry().exposition();
    evkeyvalq* h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evbuffer* b = evbuffer_new();
    evbuffer_add(b, text.data(), text.size());
    evhttp_send_reply(req, 200, nullptr, b);
    evbuffer_free(b);
    return;
  }
  api_error e;
  e.status = 404;
  e.message = "no route " + path + " (routes: POST /v1/completions, POST /v1/chat/completions, "
              "GET /v1/models, /health, /metrics)";
  reply_error(req, e);
}

void server::impl::start_generation(evhttp_request* req, endpoint kind) {
  auto parsed = parse_api_request(kind, body_of(req), limits);
  if (auto* e = std::get_if<api_error>(&parsed)) return reply_error(req, *e);
  api_request& r = std::get<api_request>(parsed);
  if (!r.model.empty() && r.model != model_name) {
    api_error e;
    e.status = 404;
    e.code = "model_not_found";
    e.param = "model";
    e.message = "model '" + r.model + "' is not served here (this server serves '" + model_name + "')";
    return reply_error(req, e);
  }
  if (const std::string f = worker->failure(); !f.empty()) {
    api_error e;
    e.status = 503;
    e.type = "server_error";
    e.message = "the engine failed: " + f;
    return reply_error(req, e);
  }
  std::vector<token_id> prompt;
  try {
    if (kind == endpoint::chat) {
      prompt = encode_chat(*tok, chat, r.messages, true);
    } else if (r.prompt_is_ids) {
      prompt = std::move(r.prompt_ids);
    } else {
      prompt = tok->encode(r.prompt, true);
    }
  } catch (const std::invalid_argument& ex) {
    return reply_error(req, api_error{400, ex.what(), "invalid_request_error", "", ""});
  }
  const std::int32_t vocab = worker->model().vocab;
  for (token_id t : prompt) {
    if (t < 0 || t >= vocab) {
      return reply_error(req, api_error{400,
                                        "prompt token id " + std::to_string(t) +
                                            " is outside the vocabulary of " + std::to_string(vocab),
                                        "invalid_request_error", "prompt", ""});
    }
  }
  if (prompt.empty()) {
    return reply_error(req, api_error{400, "the prompt is empty", "invalid_request_error", "prompt", ""});
  }
  const std::int64_t room = max_context - std::ssize(prompt);
  if (room < 1 || (r.max_tokens > 0 && r.max_tokens > room)) {
    api_error e;
    e.code = "context_length_exceeded";
    e.param = r.max_tokens > 0 ? "max_tokens" : "prompt";
    e.message = "this model's maximum context length is " + std::to_string(max_context) +
                " tokens; the prompt has " + std::to_string(prompt.size()) + " tokens" +
                (r.max_tokens > 0 ? " and max_tokens asks for " + std::to_string(r.max_tokens)
                                  : std::string());
    return reply_error(req, e);
  }
  if (awaiting_first >= opt.max_waiting) {
    api_error e;
    e.status = 429;
    e.type = "rate_limit_error";
    e.message = "the server's queue is full (" + std::to_string(awaiting_first) +
                " requests wait for their first token; --max-waiting); retry later";
    return reply_error(req, e);
  }

  auto s = std::make_unique<request_state>();
  s->id = next_id++;
  s->kind = kind;
  s->req = req;
  s->conn = evhttp_request_get_connection(req);
  s->stream = r.stream;
  s->include_usage = r.include_usage;
  s->continuous_usage = r.continuous_usage;
  s->max_tokens = r.max_tokens > 0 ? r.max_tokens
                                   : static_cast<std::int32_t>(kind == endpoint::completions
                                                                   ? std::min<std::int64_t>(16, room)
                                                                   : room);
  s->prompt_tokens = std::ssize(prompt);
  s->created = unix_seconds();
  s->response_id = response_id(kind, s->id);
  s->out = std::make_unique<text_stream>(*tok, r.stop);
  s->logprobs = r.logprobs;

  serving_request q;
  q.id = s->id;
  q.arrival_seconds = steady_seconds();
  s->arrival_seconds = q.arrival_seconds;
  if (record) {
    const char* rid = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
    if (rid != nullptr) s->client_id = rid;
  }
  q.prompt = std::move(prompt);
  q.max_tokens = s->max_tokens;
  if (!(r.ignore_eos || opt.ignore_eos_default)) {
    for (token_id t : tok->eos_ids()) q.stop_tokens.push_back(t);
  }
  for (token_id t : r.stop_token_ids) q.stop_tokens.push_back(t);
  s->stop_ids.insert(q.stop_tokens.begin(), q.stop_tokens.end());
  q.sampling.temperature = r.temperature;
  q.sampling.top_k = r.top_k;
  q.sampling.top_p = r.top_p;
  q.sampling.repetition_penalty = r.repetition_penalty;
  q.sampling.seed = r.seed ? *r.seed : s->id * 0x9E3779B97F4A7C15ULL;

  if (s->stream) {
    evkeyvalq* h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_send_reply_start(req, 200, "OK");
  }
  if (s->conn != nullptr) {
    by_connection[s->conn] = s->id;
    evhttp_connection_set_closecb(s->conn, on_connection_close, this);
    // The read timeout guards the request's arrival (slow clients); waiting in the queue and
    // generating may take longer, so until the answer ends the connection has a day.
    evhttp_connection_set_timeout(s->conn, 86400);
  }
  ++awaiting_first;
  worker->submit(std::move(q), s->logprobs);
  live_requests.emplace(s->id, std::move(s));
}

json server::impl::with_logprobs(request_state& s, json chunk) {
  if (s.logprobs < 0 || s.unsent_logprobs.empty()) return chunk;
  set_logprobs(chunk, logprobs_json(s.kind, *tok, s.unsent_logprobs));
  s.unsent_logprobs.clear();
  return chunk;
}

void server::impl::send_event(request_state& s, const json& chunk) {
  if (s.req == nullptr) return;
  send_text(s, "data: " + chunk.dump() + "\n\n");
}

void server::impl::send_text(request_state& s, std::string_view text) {
  if (s.req == nullptr) return;
  evbuffer_add(chunk_buffer.get(), text.data(), text.size());
  evhttp_send_reply_chunk(s.req, chunk_buffer.get());  // moves the bytes out
}

void server::impl::end_stream(request_state& s) {
  write_now(s.conn);
  evhttp_send_reply_end(s.req);
}

namespace {

// --record: a chunk with content was just handed to libevent (its bytes go out in this loop turn).
void stamp_write(request_state& s) {
  s.last_write_seconds = steady_seconds();
  if (s.first_write_seconds < 0) s.first_write_seconds = s.last_write_seconds;
}

}  // namespace

void server::impl::forget(request_state& s) {
  if (s.conn != nullptr) {
    const auto it = by_connection.find(s.conn);
    if (it != by_connection.end() && it->second == s.id) {
      by_connection.erase(it);
      // The connection may carry the next request: this one no longer cares about its close,
      // and the next request's arrival is timed again.
      if (s.req != nullptr) {
        evhttp_connection_set_closecb(s.conn, nullptr, nullptr);
        evhttp_connection_set_timeout(s.conn, opt.read_timeout_seconds);
      }
    }
  }
  if (!s.first_token_seen) --awaiting_first;
}

void server::impl::finish(request_state& s, const engine_event& e) {
  const request_record& r = e.record.record;
  std::string tail = s.out->finish();
  if (record) {
    if (s.stream && !tail.empty() && s.req != nullptr) stamp_write(s);  // the last chunk's text
    if (!s.stream && s.req != nullptr) {  // one body: its write is the first and last
      s.first_write_seconds = s.last_write_seconds = steady_seconds();
    }
    record_columns& c = *record;
    c.client_id.push_back(s.client_id);
    c.outcome.emplace_back(s.req == nullptr ? "disconnected" : name(r.outcome));
    c.prompt_tokens.push_back(s.prompt_tokens);
    c.output_tokens.push_back(s.tokens);
    c.cached_tokens.push_back(r.cached_tokens);
    c.arrival.push_back(s.arrival_seconds);
    c.first_token.push_back(s.first_token_seconds);
    c.last_token.push_back(s.tokens > 0 ? s.last_token_seconds : -1.0);
    c.first_write.push_back(s.first_write_seconds);
    c.last_write.push_back(s.last_write_seconds);
  }
  forget(s);  // before the last write: sending the end may free a Connection: close connection
  if (s.req != nullptr) {
    if (r.outcome == request_outcome::rejected && s.tokens == 0) {
      api_error err;
      err.message = r.reject_reason.empty() ? "the request was rejected" : r.reject_reason;
      err.code = r.reject_kind;
      if (s.stream) {
        send_event(s, json::parse(error_body(err)));
        end_stream(s);
      } else {
        reply_error(s.req, err);
      }
    } else if (r.outcome == request_outcome::cancelled && !s.stopped_by_text) {
      // Not asked by the client (it would be gone): the server is stopping or the engine failed.
      api_error err;
      err.status = 503;
      err.type = "server_error";
      const std::string f = worker->failure();
      err.message = f.empty() ? "the server is shutting down" : "the engine failed: " + f;
      if (s.stream) {
        send_event(s, json::parse(error_body(err)));
        end_stream(s);
      } else {
        reply_error(s.req, err);
      }
    } else {
      const std::string reason =
          s.stopped_by_text || s.last_was_stop_token ? "stop" : "length";
      usage_counts u{s.prompt_tokens, s.tokens, r.cached_tokens};
      if (s.stream) {
        send_event(s, with_logprobs(
                          s, s.continuous_usage
                                 ? stream_chunk(s.kind, s.response_id, model_name, s.created,
                                                tail, s.first_chunk, reason, u)
                                 : stream_chunk(s.kind, s.response_id, model_name, s.created,
                                                tail, s.first_chunk, reason)));
        if (s.include_usage) {
          send_event(s, usage_chunk(s.kind, s.response_id, model_name, s.created, u));
        }
        send_text(s, "data: [DONE]\n\n");
        end_stream(s);
      } else {
        s.text += tail;
        reply_json(s.req, 200,
                   with_logprobs(s, full_response(s.kind, s.response_id, model_name, s.created,
                                                  s.text, reason, u))
                       .dump());
      }
    }
  }
}

void server::impl::on_events() {
  worker->take(events);
  if (!failure_logged) {
    if (const std::string f = worker->failure(); !f.empty()) {
      failure_logged = true;
      if (note) note("serve: the engine failed, every request now gets 503: " + f);
    }
  }
  // A step's tokens come in its plan's order: running requests' decodes, then the prefills of
  // those just admitted. Requests still waiting for their first token go first (each one's events
  // stay in order): their chunk is a TTFT, and the others' chunks would otherwise be built and
  // written ahead of it.
  std::stable_partition(events.begin(), events.end(), [this](const engine_event& e) {
    const auto it = live_requests.find(e.id);
    return it != live_requests.end() && !it->second->first_token_seen;
  });
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto it = live_requests.find(events[i].id);
    if (it != live_requests.end()) it->second->last_event = i;
  }
  for (std::size_t i = 0; i < events.size(); ++i) {
    const engine_event& e = events[i];
    const auto it = live_requests.find(e.id);
    if (it == live_requests.end()) continue;
    request_state& s = *it->second;
    if (e.left) {
      finish(s, e);
      live_requests.erase(it);
      continue;
    }
    on_token(s, e);
    // The request's chunks of this wake-up go out together, as soon as its last one is built.
    if (s.stream && s.req != nullptr && s.last_event == i) write_now(s.conn);
  }
  events.clear();
}

void server::impl::on_token(request_state& s, const engine_event& e) {
  if (s.stopped_by_text) return;  // tokens of a step already in flight when it stopped
  if (!s.first_token_seen) {
    s.first_token_seen = true;
    s.first_token_seconds = e.seconds;
    --awaiting_first;
  }
  if (s.tokens > 0) live.observe_itl(e.seconds - s.last_token_seconds);
  s.last_token_seconds = e.seconds;
  ++s.tokens;
  s.last_was_stop_token = s.stop_ids.contains(e.token);
  if (s.logprobs >= 0) {
    s.unsent_logprobs.push_back({e.token, e.logprob, e.top, s.out->decoded_characters()});
  }
  std::string piece = s.last_was_stop_token ? std::string() : s.out->push(e.token);
  if (s.out->stopped()) {
    s.stopped_by_text = true;
    worker->cancel(s.id);
  }
  if (s.stream) {
    // With continuous usage every token is a chunk (its count exact even when it completes no
    // text); without, a token that completes no text sends nothing.
    if (s.continuous_usage) {
      send_event(s, with_logprobs(s, stream_chunk(s.kind, s.response_id, model_name, s.created,
                                                  piece, s.first_chunk, "",
                                                  {s.prompt_tokens, s.tokens, 0})));
      s.first_chunk = false;
      if (record) stamp_write(s);
    } else if (!piece.empty() || s.first_chunk) {
      send_event(s, with_logprobs(s, stream_chunk(s.kind, s.response_id, model_name, s.created,
                                                  piece, s.first_chunk, "")));
      s.first_chunk = false;
      if (record && !piece.empty()) stamp_write(s);
    }
  } else {
    s.text += piece;
  }
}

void server::impl::probe_clients() {
  // evhttp reads nothing while an answer is pending, so a client that closes while its request
  // waits or generates (no bytes written to it yet, or none for a while) goes unnoticed until
  // the next write. A peek at each live request's socket finds the end of stream at once; the
  // connection is then failed the way evhttp fails it on an error (the close callback cancels).
  std::vector<evhttp_connection*> gone;
  for (const auto& [conn, id] : by_connection) {
    bufferevent* bev = evhttp_connection_get_bufferevent(conn);
    const evutil_socket_t fd = bev != nullptr ? bufferevent_getfd(bev) : -1;
    if (fd < 0) continue;
    char byte = 0;
    const ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      gone.push_back(conn);
    }
  }
  for (evhttp_connection* conn : gone) evhttp_connection_free(conn);
}

void server::impl::on_close(evhttp_connection* conn) {
  const auto it = by_connection.find(conn);
  if (it == by_connection.end()) return;
  const auto r = live_requests.find(it->second);
  by_connection.erase(it);
  if (r == live_requests.end()) return;
  // The client is gone; the engine frees its blocks now. A connection that failed on its own
  // (an error or end of stream while writing) has detached the request we still answer from it
  // and left it to us to free; one freed by us (probe_clients) frees its requests itself.
  evhttp_request* req = r->second->req;
  if (req != nullptr && evhttp_request_get_connection(req) == nullptr) evhttp_request_free(req);
  r->second->req = nullptr;
  r->second->conn = nullptr;
  worker->cancel(r->second->id);
}

server::server(const server_options& o, std::function<void(const std::string&)> note)
    : m(std::make_unique<impl>()) {
  use_threads_once();
  m->opt = o;
  m->note = std::move(note);
  if (o.max_body_bytes < 1024) throw std::invalid_argument("--max-body-bytes must be at least 1024");
  if (o.max_header_bytes < 1024) {
    throw std::invalid_argument("--max-header-bytes must be at least 1024");
  }
  if (o.max_waiting < 1) throw std::invalid_argument("--max-waiting must be at least 1");
  if (o.read_timeout_seconds < 1) throw std::invalid_argument("--read-timeout must be at least 1 s");
  if (!o.record_path.empty()) {
    check_writable(o.record_path);  // before the engine is built: a bad path fails at once
    m->record = std::make_unique<record_columns>();
  }
  const auto colon = o.address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    throw std::invalid_argument("--address '" + o.address + "' is not host:port");
  }
  const std::string host = o.address.substr(0, colon);
  int port = -1;
  try {
    std::size_t used = 0;
    port = std::stoi(o.address.substr(colon + 1), &used);
    if (used != o.address.size() - colon - 1) port = -1;
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) {
    throw std::invalid_argument("--address '" + o.address + "': the port must be 0 to 65535");
  }

  replay::replay_options eo = o.engine;
  // Without a GPU: the smallest model whose vocabulary holds the byte-level tokenizer's 258 ids.
  eo.cpu_model = "tiny-gpu";
  const replay::replay_setup setup = replay::configure_engine(eo);
  replay::replay_executor ex = replay::make_executor(setup, [this](const std::string& l) {
    if (m->note) m->note("serve: " + l);
  });
  const kv::kv_setup ks = replay::setup_for(setup, ex);
  const kv_cache_config kvc = replay::kv_config_for(setup, ks, ex);
  scheduler_config sc = ks.scheduler;
  sc.record_itl = false;  // a server runs for days: no per-gap history (the metrics keep it)
  const model_preset& model = *ex.model;
  m->max_context = static_cast<std::int32_t>(sc.max_model_len);
  m->model_name = o.served_model_name.empty() ? model.name : o.served_model_name;
  m->tok = std::make_unique<tokenizer>(load_tokenizer(o, model));
  m->chat = chat_format_for(*m->tok, model.name);
  m->limits.max_logprobs = o.engine.top_logprobs;
  m->live.set_ceilings("bf16", ks.gpu.profile.peak_flops_per_second(dtype::bf16),
                       ks.gpu.profile.dram_bytes_per_second());
  if (m->note) {
    if (o.engine.weights && ex.weight_format != planner::name(*o.engine.weights)) {
      m->note("serve: the " + ex.executor_name + " executor runs " + ex.weight_format +
              " weights; --weights " + std::string(planner::name(*o.engine.weights)) +
              " applies to the cuda executor");
    }
    m->note("serve: " + model.name + " on " + ex.device + " (" + ex.executor_name + " executor, " +
            ex.weight_format + " weights), " + std::to_string(ex.kv_blocks) + " KV blocks of " +
            std::to_string(o.engine.serving.block_tokens) + " tokens, context " +
            std::to_string(m->max_context));
  }

  // One descriptor per connection: a server is allowed as many as the hard limit lets it have.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  m->base.reset(event_base_new());
  if (!m->base) throw std::runtime_error("libevent: event_base_new failed");
  m->wake_event.reset(event_new(m->base.get(), -1, 0, on_wake, m.get()));
  m->probe_event.reset(event_new(m->base.get(), -1, EV_PERSIST, on_probe, m.get()));
  const timeval every{0, 100000};
  event_add(m->probe_event.get(), &every);
  m->stop_event.reset(event_new(
      m->base.get(), -1, 0,
      [](evutil_socket_t, short, void* base) { event_base_loopbreak(static_cast<event_base*>(base)); },
      m->base.get()));
  if (o.wrap_executor) ex.exec = o.wrap_executor(std::move(ex.exec));
  m->record_device = ex.executor_name == "cuda" ? std::optional<int>(0) : std::nullopt;
  m->record_executor = ex.executor_name;
  m->worker = std::make_unique<engine_worker>(
      std::move(ex), kvc, sc, o.engine.overlap, &m->live,
      [e = m->wake_event.get()] { event_active(e, 0, 0); }, m->record != nullptr);
  m->http.reset(evhttp_new(m->base.get()));
  if (!m->http) throw std::runtime_error("libevent: evhttp_new failed");
  evhttp_set_max_body_size(m->http.get(), static_cast<ev_ssize_t>(o.max_body_bytes));
  evhttp_set_max_headers_size(m->http.get(), static_cast<ev_ssize_t>(o.max_header_bytes));
  evhttp_set_timeout(m->http.get(), o.read_timeout_seconds);
  evhttp_set_allowed_methods(m->http.get(), EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                                EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                                EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
  evhttp_set_gencb(m->http.get(), on_request, m.get());
  evhttp_bound_socket* sock =
      evhttp_bind_socket_with_handle(m->http.get(), host.c_str(), static_cast<ev_uint16_t>(port));
  if (sock == nullptr) {
    throw io_error("cannot listen on " + o.address + " (in use, or not an address of this host)");
  }
  sockaddr_storage ss{};
  ev_socklen_t len = sizeof(ss);
  if (getsockname(evhttp_bound_socket_get_fd(sock), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET) {
      m->bound_port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      m->bound_port = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    }
  }
}

server::~server() {
  if (m) {
    m->worker.reset();  // joins the engine thread before the event base goes
    m->live_requests.clear();
  }
}

int server::port() const { return m->bound_port; }

void server::run() {
  const sigpipe_blocked no_sigpipe;
  std::unique_ptr<event, event_deleter> sigint, sigterm;
  if (m->opt.handle_signals) {
    auto on_signal = [](evutil_socket_t, short, void* base) {
      event_base_loopbreak(static_cast<event_base*>(base));
    };
    sigint.reset(evsignal_new(m->base.get(), SIGINT, on_signal, m->base.get()));
    sigterm.reset(evsignal_new(m->base.get(), SIGTERM, on_signal, m->base.get()));
    event_add(sigint.get(), nullptr);
    event_add(sigterm.get(), nullptr);
  }
  event_base_dispatch(m->base.get());
  // Stopping: the engine cancels what is live; each client gets its last event (a 503 error),
  // and the loop runs a moment longer to write them out.
  m->worker->stop();
  m->on_events();
  timeval flush{0, 200000};
  event_base_loopexit(m->base.get(), &flush);
  event_base_dispatch(m->base.get());
  if (m->record) m->write_record();
}

void server::impl::write_record() const {
  const record_columns& c = *record;
  json doc;
  doc["schema"] = "ridgeline.serve_record/v1";
  doc["environment"] = metrics::environment_block(record_device);
  doc["config"] = {{"model", model_name},
                   {"executor", record_executor},
                   {"clock", "steady_seconds: CLOCK_MONOTONIC seconds, the host's steady clock"}};
  doc["requests"] = {{"client_id", c.client_id},          {"outcome", c.outcome},
                     {"prompt_tokens", c.prompt_tokens},  {"output_tokens", c.output_tokens},
                     {"cached_tokens", c.cached_tokens},  {"arrival_seconds", c.arrival},
                     {"first_token_seconds", c.first_token}, {"last_token_seconds", c.last_token},
                     {"first_write_seconds", c.first_write}, {"last_write_seconds", c.last_write}};
  // The engine's steps on the same clock, as replay records them (the engine thread has stopped).
  json steps = {{"start_seconds", json::array()}, {"end_seconds", json::array()},
                {"gpu_seconds", json::array()},   {"gap_seconds", json::array()},
                {"sequences", json::array()},     {"prefill_tokens", json::array()},
                {"decode_tokens", json::array()}, {"running", json::array()},
                {"waiting", json::array()},       {"graph", json::array()}};
  for (const step_record& r : worker->step_log()) {
    steps["start_seconds"].push_back(r.start_seconds);
    steps["end_seconds"].push_back(r.end_seconds);
    steps["gpu_seconds"].push_back(r.gpu_seconds);
    steps["gap_seconds"].push_back(r.gap_seconds);
    steps["sequences"].push_back(r.sequences);
    steps["prefill_tokens"].push_back(r.prefill_tokens);
    steps["decode_tokens"].push_back(r.decode_tokens);
    steps["running"].push_back(r.running);
    steps["waiting"].push_back(r.waiting);
    steps["graph"].push_back(r.graph ? 1 : 0);
  }
  doc["steps"] = std::move(steps);
  write_atomically(opt.record_path, doc.dump());
  if (note) {
    note("serve: wrote " + std::to_string(c.client_id.size()) + " request records to " +
         opt.record_path);
  }
}

void server::stop() { event_active(m->stop_event.get(), 0, 0); }

}  // namespace ridgeline::serve
