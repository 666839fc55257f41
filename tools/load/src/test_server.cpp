// The fixed-schedule test server (test_server.hpp): libevent listener, one bufferevent per
// connection, a tiny HTTP/1.1 request reader, and one timer over a heap of streams ordered by
// their next chunk's due time, so thousands of streams cost one timer.
#include "ridgeline/load/test_server.hpp"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "ridgeline/core/text.hpp"
#include "ridgeline/load/client.hpp"

namespace ridgeline::load {
namespace {

using nlohmann::json;
using fault = test_server_options::fault;

double steady_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::int64_t words_of(const std::string& text) {
  std::int64_t n = 0;
  bool in_word = false;
  for (char c : text) {
    const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (!space && !in_word) ++n;
    in_word = !space;
  }
  return n;
}

constexpr std::size_t k_max_request_bytes = 64u << 20;

}  // namespace

test_server_options::fault parse_fault(const std::string& text) {
  if (text == "none") return fault::none;
  if (text == "500") return fault::status_500;
  if (text == "429") return fault::status_429;
  if (text == "malformed") return fault::malformed;
  if (text == "hang") return fault::hang;
  if (text == "close") return fault::close_mid_stream;
  if (text == "error-event") return fault::error_event;
  if (text == "refuse") return fault::refuse;
  throw std::invalid_argument("--fault '" + printable(text, 40) +
                              "' (none, 500, 429, malformed, hang, close, error-event, refuse)");
}

struct server_conn;

struct stream {
  std::uint64_t serial = 0;
  server_conn* conn = nullptr;
  std::string id;
  bool chat = false, streaming = true, include_usage = false, continuous = false;
  std::int64_t prompt_tokens = 0;
  std::int32_t total = 0, sent = 0, chunk = 0;
  double admitted = 0;
  fault inject = fault::none;
  bool running = false;
  test_server_send_log* log = nullptr;
};

struct server_conn {
  test_server::impl* owner = nullptr;
  bufferevent* bev = nullptr;
  std::string in;
  stream* active = nullptr;
  bool close_when_written = false;
};

struct test_server::impl {
  test_server_options o;
  event_base* base = nullptr;
  evconnlistener* listener = nullptr;
  event* timer = nullptr;
  event* tick = nullptr;
  std::thread thread;
  SSL_CTX* tls = nullptr;
  std::uint16_t port = 0;
  std::atomic<bool> stop_requested{false};
  bool stopped = false;

  std::uint64_t next_serial = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<stream>> streams;
  using entry = std::pair<double, std::uint64_t>;  // (due, serial)
  std::priority_queue<entry, std::vector<entry>, std::greater<>> heap;
  std::deque<std::uint64_t> waiting;
  std::vector<server_conn*> conns;
  std::int64_t request_count = 0;
  std::int64_t prompt_tokens_total = 0, generation_tokens_total = 0;

  std::atomic<std::int64_t> requests{0}, completed{0}, chunks{0}, running{0}, waiting_n{0},
      max_running{0}, max_waiting{0}, connections{0}, accepted{0};
  mutable std::mutex log_mutex;
  std::map<std::string, test_server_send_log> logs;

  double chunk_interval() const { return o.token_interval_seconds * o.tokens_per_chunk; }

  // --- writing ------------------------------------------------------------------------------
  void write_raw(server_conn* c, std::string_view bytes) {
    evbuffer* out = bufferevent_get_output(c->bev);
    if (tls == nullptr && evbuffer_get_length(out) == 0) {
      const ssize_t n = ::send(bufferevent_getfd(c->bev), bytes.data(), bytes.size(),
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    if (!bytes.empty()) bufferevent_write(c->bev, bytes.data(), bytes.size());
  }

  // One piece of a streamed body: an HTTP chunk, or raw bytes without chunked framing.
  void write_body(server_conn* c, const std::string& data) {
    if (!o.chunked) {
      write_raw(c, data);
      return;
    }
    char head[32];
    const int n = std::snprintf(head, sizeof head, "%zx\r\n", data.size());
    std::string framed;
    framed.reserve(data.size() + 40);
    framed.append(head, static_cast<std::size_t>(n));
    framed += data;
    framed += "\r\n";
    write_raw(c, framed);
  }

  void respond(server_conn* c, int status, const char* reason, const std::string& type,
               const std::string& body) {
    std::string r = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                    "\r\nContent-Type: " + type +
                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    write_raw(c, r);
  }

  void respond_error(server_conn* c, int status, const char* reason, const std::string& message) {
    const json e = {
        {"object", "error"}, {"message", message}, {"type", "test_server"}, {"code", status}};
    respond(c, status, reason, "application/json", e.dump());
  }

  // --- connections --------------------------------------------------------------------------
  void close(server_conn* c) {
    if (c->active != nullptr) end_stream(c->active, false);
    bufferevent_free(c->bev);
    conns.erase(std::remove(conns.begin(), conns.end(), c), conns.end());
    connections.fetch_sub(1);
    delete c;
  }

  // After the response: close (until-close framing) or read the next request.
  void response_done(server_conn* c, bool close_after) {
    c->active = nullptr;
    if (close_after) {
      evbuffer* out = bufferevent_get_output(c->bev);
      if (evbuffer_get_length(out) == 0) {
        close(c);
      } else {
        c->close_when_written = true;
        bufferevent_disable(c->bev, EV_READ);
      }
      return;
    }
    process(c);
  }

  static void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
    auto* self = static_cast<impl*>(arg);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto* c = new server_conn;
    c->owner = self;
    c->bev = self->tls != nullptr
                 ? bufferevent_openssl_socket_new(self->base, fd, SSL_new(self->tls),
                                                  BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)
                 : bufferevent_socket_new(self->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, &impl::on_read, &impl::on_write, &impl::on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    self->conns.push_back(c);
    self->connections.fetch_add(1);
    self->accepted.fetch_add(1);
  }

  static void on_read(bufferevent* bev, void* arg) {
    auto* c = static_cast<server_conn*>(arg);
    evbuffer* in = bufferevent_get_input(bev);
    const std::size_t n = evbuffer_get_length(in);
    c->in.append(reinterpret_cast<const char*>(evbuffer_pullup(in, -1)), n);
    evbuffer_drain(in, n);
    if (c->in.size() > k_max_request_bytes) {
      c->owner->close(c);
      return;
    }
    if (c->active == nullptr) c->owner->process(c);
  }

  static void on_write(bufferevent* bev, void* arg) {
    auto* c = static_cast<server_conn*>(arg);
    if (c->close_when_written && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
      c->owner->close(c);
    }
  }

  static void on_event(bufferevent*, short what, void* arg) {
    auto* c = static_cast<server_conn*>(arg);
    if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) != 0) c->owner->close(c);
  }

  // --- requests -----------------------------------------------------------------------------
  // Handles the complete requests in c->in, one at a time (a stream holds the connection).
  void process(server_conn* c) {
    while (c->active == nullptr) {
      const auto end = c->in.find("\r\n\r\n");
      if (end == std::string::npos) return;
      const std::string head = c->in.substr(0, end);
      std::size_t length = 0;
      std::string request_id;
      bool close_after = false;
      const auto line_end = head.find("\r\n");
      const std::string request_line = head.substr(0, line_end);
      std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
      while (pos < head.size()) {
        auto e = head.find("\r\n", pos);
        if (e == std::string::npos) e = head.size();
        const std::string line = head.substr(pos, e - pos);
        pos = e + 2;
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        const std::string key = lower(line.substr(0, colon));
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        if (key == "content-length") length = std::stoull(value);
        if (key == "x-request-id") request_id = value;
        if (key == "connection" && lower(value).find("close") != std::string::npos)
          close_after = true;
      }
      if (c->in.size() < end + 4 + length) return;
      const std::string body = c->in.substr(end + 4, length);
      c->in.erase(0, end + 4 + length);
      const auto sp1 = request_line.find(' ');
      const auto sp2 = request_line.find(' ', sp1 + 1);
      const std::string method = request_line.substr(0, sp1);
      const std::string path =
          sp1 == std::string::npos ? "" : request_line.substr(sp1 + 1, sp2 - sp1 - 1);
      if (!handle(c, method, path, body, request_id) || close_after) {
        if (c->active == nullptr) {
          response_done(c, true);
          return;
        }
      }
    }
  }

  // False when the connection is to close after this response.
  bool handle(server_conn* c, const std::string& method, const std::string& path,
              const std::string& body, std::string request_id) {
    if (method == "GET" && path == "/health") {
      respond(c, 200, "OK", "text/plain", "ok\n");
      return true;
    }
    if (method == "GET" && path == "/metrics") {
      respond(c, 200, "OK", "text/plain; version=0.0.4", metrics_text());
      return true;
    }
    const bool chat = path == "/v1/chat/completions";
    if (method != "POST" || !(chat || path == "/v1/completions")) {
      respond_error(c, 404, "Not Found", "no route " + printable(method + " " + path, 80));
      return true;
    }
    ++request_count;
    requests.fetch_add(1);
    if (request_id.empty()) request_id = "#" + std::to_string(request_count);
    fault f = fault::none;
    if (o.inject != fault::none && (request_count - 1) % std::max(1, o.fault_every) == 0) {
      f = o.inject;
    }
    if (f == fault::refuse) return false;
    if (f == fault::status_500) {
      respond_error(c, 500, "Internal Server Error", "injected failure");
      completed.fetch_add(1);
      return true;
    }
    if (f == fault::status_429) {
      respond_error(c, 429, "Too Many Requests", "injected rate limit");
      completed.fetch_add(1);
      return true;
    }
    const json req = json::parse(body, nullptr, false);
    if (req.is_discarded() || !req.is_object()) {
      respond_error(c, 400, "Bad Request", "body is not a JSON object");
      return true;
    }
    auto s = std::make_unique<stream>();
    s->serial = next_serial++;
    s->conn = c;
    s->id = request_id;
    s->chat = chat;
    s->inject = f;
    s->streaming = req.value("stream", false);
    if (const auto so = req.find("stream_options"); so != req.end() && so->is_object()) {
      s->include_usage = so->value("include_usage", false);
      s->continuous = so->value("continuous_usage_stats", false);
    }
    std::int64_t max_tokens = o.default_output_tokens;
    for (const char* key : {"max_tokens", "max_completion_tokens"}) {
      if (const auto it = req.find(key); it != req.end() && it->is_number_integer()) {
        max_tokens = it->get<std::int64_t>();
      }
    }
    s->total = static_cast<std::int32_t>(std::clamp<std::int64_t>(max_tokens, 1, 1 << 20));
    if (chat) {
      if (const auto m = req.find("messages"); m != req.end() && m->is_array()) {
        for (const auto& msg : *m) {
          if (msg.is_object() && msg.contains("content") && msg["content"].is_string()) {
            s->prompt_tokens += words_of(msg["content"].get<std::string>());
          }
        }
      }
    } else if (const auto p = req.find("prompt"); p != req.end()) {
      if (p->is_string()) {
        s->prompt_tokens = words_of(p->get<std::string>());
      } else if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {
        s->prompt_tokens = static_cast<std::int64_t>(p->size());
      } else if (p->is_array() && !p->empty() && (*p)[0].is_string()) {
        s->prompt_tokens = words_of((*p)[0].get<std::string>());
      }
    }
    prompt_tokens_total += s->prompt_tokens;
    if (o.record_sends) {
      std::lock_guard lock(log_mutex);
      auto& log = logs[s->id];
      log.received = steady_now();
      s->log = &log;
    }
    c->active = s.get();
    if (s->streaming) {
      std::string head =
          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n";
      head += o.chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "Connection: close\r\n\r\n";
      write_raw(c, head);
    }
    stream* raw = s.get();
    streams.emplace(raw->serial, std::move(s));
    if (o.capacity > 0 && running.load() >= o.capacity) {
      waiting.push_back(raw->serial);
      const auto w = static_cast<std::int64_t>(waiting.size());
      waiting_n.store(w);
      if (w > max_waiting.load()) max_waiting.store(w);
    } else {
      admit(raw);
    }
    return true;
  }

  void admit(stream* s) {
    s->running = true;
    const auto r = running.fetch_add(1) + 1;
    if (r > max_running.load()) max_running.store(r);
    s->admitted = steady_now();
    if (s->log != nullptr) {
      std::lock_guard lock(log_mutex);
      s->log->admitted = s->admitted;
    }
    if (s->streaming && s->chat) {
      // The role-only delta OpenAI and vLLM send first: no content, not a token.
      write_body(s->conn, "data: " + chunk_json(*s, "", true, nullptr).dump() + "\n\n");
    }
    if (s->inject == fault::hang) return;
    const double first = s->admitted + o.first_token_seconds;
    const double due = s->streaming ? first : first + chunk_interval() * (chunk_count(*s) - 1);
    schedule(due, s->serial);
  }

  std::int32_t chunk_count(const stream& s) const {
    return (s.total + o.tokens_per_chunk - 1) / o.tokens_per_chunk;
  }

  json chunk_json(const stream& s, const std::string& text, bool role, const char* finish) const {
    json choice = {{"index", 0}, {"finish_reason", finish ? json(finish) : json(nullptr)}};
    if (s.chat) {
      json delta = {{"content", text}};
      if (role) delta["role"] = "assistant";
      choice["delta"] = delta;
    } else {
      choice["text"] = text;
    }
    json j = {{"id", "cmpl-" + s.id},
              {"object", s.chat ? "chat.completion.chunk" : "text_completion"},
              {"created", 0},
              {"model", "test"},
              {"choices", json::array({choice})}};
    if (s.continuous) j["usage"] = usage_json(s);
    return j;
  }

  json usage_json(const stream& s) const {
    return {{"prompt_tokens", s.prompt_tokens},
            {"completion_tokens", s.sent},
            {"total_tokens", s.prompt_tokens + s.sent}};
  }

  void schedule(double due, std::uint64_t serial) {
    const bool earliest = heap.empty() || due < heap.top().first;
    heap.emplace(due, serial);
    if (earliest) rearm();
  }

  void rearm() {
    if (heap.empty()) return;
    event_base_update_cache_time(base);  // timeouts count from libevent's cached time
    const timeval tv = timeval_of(heap.top().first - steady_now());
    evtimer_add(timer, &tv);
  }

  static void on_timer(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<impl*>(arg);
    while (!self->heap.empty() && self->heap.top().first <= steady_now()) {
      const auto [due, serial] = self->heap.top();
      self->heap.pop();
      const auto it = self->streams.find(serial);
      if (it != self->streams.end()) self->fire(it->second.get(), due);
    }
    self->rearm();
  }

  // The stream's next chunk is due: write it (or the whole non-streamed response).
  void fire(stream* s, double due) {
    server_conn* c = s->conn;
    if (!s->streaming) {
      s->sent = s->total;
      std::string text;
      for (std::int32_t i = 0; i < s->total; ++i) text += " tok";
      json choice = {{"index", 0}, {"finish_reason", "length"}};
      if (s->chat) {
        choice["message"] = {{"role", "assistant"}, {"content", text}};
      } else {
        choice["text"] = text;
      }
      const json body = {{"id", "cmpl-" + s->id},
                         {"object", s->chat ? "chat.completion" : "text_completion"},
                         {"model", "test"},
                         {"choices", json::array({choice})},
                         {"usage", usage_json(*s)}};
      log_write(s, due);
      respond(c, 200, "OK", "application/json", body.dump());
      generation_tokens_total += s->total;
      end_stream(s, true);
      return;
    }
    const std::int32_t n = std::min(o.tokens_per_chunk, s->total - s->sent);
    const std::int32_t index = s->chunk++;
    if (s->inject == fault::close_mid_stream && index == chunk_count(*s) / 2) {
      close(c);
      return;
    }
    if (s->inject == fault::malformed && index == 1) {
      log_write(s, due);
      write_body(c, "data: {\"choices\": [{\"text\": \"tok\"\n\n");
    } else if (s->inject == fault::error_event && index == 1) {
      write_body(c,
                 "data: " +
                     json({{"error",
                            {{"message", "injected error"}, {"type", "internal"}, {"code", 500}}}})
                         .dump() +
                     "\n\ndata: [DONE]\n\n");
      finish_stream(s);
      return;
    } else {
      std::string text;
      for (std::int32_t i = 0; i < n; ++i) text += " tok";
      s->sent += n;
      generation_tokens_total += n;
      const bool last = s->sent >= s->total;
      log_write(s, due);
      write_body(c,
                 "data: " + chunk_json(*s, text, false, last ? "length" : nullptr).dump() + "\n\n");
      chunks.fetch_add(1, std::memory_order_relaxed);
      if (last) {
        std::string tail;
        if (s->include_usage) {
          const json u = {{"id", "cmpl-" + s->id},
                          {"object", s->chat ? "chat.completion.chunk" : "text_completion"},
                          {"created", 0},
                          {"model", "test"},
                          {"choices", json::array()},
                          {"usage", usage_json(*s)}};
          tail += "data: " + u.dump() + "\n\n";
        }
        tail += "data: [DONE]\n\n";
        write_body(c, tail);
        finish_stream(s);
        return;
      }
    }
    schedule(due + chunk_interval(), s->serial);
  }

  void log_write(stream* s, double due) {
    if (s->log == nullptr) return;
    const double t = steady_now();
    std::lock_guard lock(log_mutex);
    s->log->chunk_writes.push_back(t);
    s->log->chunk_due.push_back(due);
  }

  // A streamed response's end: the terminating chunk, or closing (until-close framing).
  void finish_stream(stream* s) {
    server_conn* c = s->conn;
    if (o.chunked) write_raw(c, "0\r\n\r\n");
    end_stream(s, true);
    response_done(c, !o.chunked);
  }

  // Forget the stream and admit the next waiting one.
  void end_stream(stream* s, bool done) {
    if (done) completed.fetch_add(1);
    if (s->conn != nullptr && s->conn->active == s) s->conn->active = nullptr;
    const bool was_running = s->running;
    if (!was_running) {
      waiting.erase(std::remove(waiting.begin(), waiting.end(), s->serial), waiting.end());
      waiting_n.store(static_cast<std::int64_t>(waiting.size()));
    }
    streams.erase(s->serial);  // frees s
    if (was_running) {
      running.fetch_sub(1);
      while (!waiting.empty() && (o.capacity <= 0 || running.load() < o.capacity)) {
        const std::uint64_t next = waiting.front();
        waiting.pop_front();
        waiting_n.store(static_cast<std::int64_t>(waiting.size()));
        const auto it = streams.find(next);
        if (it != streams.end()) admit(it->second.get());
      }
    }
  }

  std::string metrics_text() const {
    std::string t;
    auto gauge = [&t](const char* name, const char* help, double v) {
      t += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" + name +
           " " + format("%.17g", v) + "\n";
    };
    auto counter = [&t](const char* name, const char* help, double v) {
      t += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name +
           " " + format("%.17g", v) + "\n";
    };
    gauge("ridgeline_requests_running", "Requests streaming now.",
          static_cast<double>(running.load()));
    gauge("ridgeline_requests_waiting", "Requests waiting for a stream slot.",
          static_cast<double>(waiting_n.load()));
    gauge("ridgeline_kv_cache_usage_ratio",
          "Running streams / capacity (the test server's stand-in).",
          o.capacity > 0 ? static_cast<double>(running.load()) / o.capacity : 0.0);
    counter("ridgeline_prefix_cache_queries_tokens_total", "Prompt tokens received.",
            static_cast<double>(prompt_tokens_total));
    counter("ridgeline_prefix_cache_hits_tokens_total", "Always 0: the test server has no cache.",
            0);
    counter("ridgeline_preemptions_total", "Always 0.", 0);
    counter("ridgeline_generation_tokens_total", "Output tokens sent.",
            static_cast<double>(generation_tokens_total));
    return t;
  }

  static void on_tick(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<impl*>(arg);
    if (self->stop_requested.load()) event_base_loopbreak(self->base);
  }
};

test_server::test_server(const test_server_options& o) : m(std::make_unique<impl>()) {
  if (!(o.first_token_seconds >= 0) || !(o.token_interval_seconds >= 0)) {
    throw std::invalid_argument(
        "test server: first-token delay and token interval must not be negative");
  }
  if (o.tokens_per_chunk < 1)
    throw std::invalid_argument("test server: tokens per chunk must be >= 1");
  if (o.capacity < 0) throw std::invalid_argument("test server: capacity must not be negative");
  m->o = o;
  // Connections accepted later must not grow the descriptor table mid-run (client.hpp says why).
  reserve_descriptors(16384);
  if (o.tls_certificate_pem.empty() != o.tls_key_pem.empty()) {
    throw std::invalid_argument("test server: TLS needs both a certificate and its key");
  }
  if (!o.tls_certificate_pem.empty()) {
    m->tls = SSL_CTX_new(TLS_server_method());
    BIO* cb = BIO_new_mem_buf(o.tls_certificate_pem.data(),
                              static_cast<int>(o.tls_certificate_pem.size()));
    BIO* kb = BIO_new_mem_buf(o.tls_key_pem.data(), static_cast<int>(o.tls_key_pem.size()));
    X509* cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
    EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
    const bool ok = cert != nullptr && key != nullptr &&
                    SSL_CTX_use_certificate(m->tls, cert) == 1 &&
                    SSL_CTX_use_PrivateKey(m->tls, key) == 1;
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    if (!ok) {
      SSL_CTX_free(m->tls);
      throw std::invalid_argument("test server: unusable TLS certificate or key");
    }
  }
  event_config* cfg = event_config_new();
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
  m->base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  auto undo = [this] {  // a constructor that throws has no destructor to free these
    event_base_free(m->base);
    if (m->tls != nullptr) SSL_CTX_free(m->tls);
  };
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (o.host.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(o.port);
    if (inet_pton(AF_INET6, o.host.c_str(), &a->sin6_addr) != 1) {
      undo();
      throw std::invalid_argument("test server: bad address '" + o.host + "'");
    }
    len = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(o.port);
    if (inet_pton(AF_INET, o.host.c_str(), &a->sin_addr) != 1) {
      undo();
      throw std::invalid_argument("test server: bad address '" + o.host + "' (an IP address)");
    }
    len = sizeof(sockaddr_in);
  }
  m->listener = evconnlistener_new_bind(m->base, &impl::on_accept, m.get(),
                                        LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 4096,
                                        reinterpret_cast<sockaddr*>(&ss), static_cast<int>(len));
  if (m->listener == nullptr) {
    const std::string why = evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
    undo();
    throw std::runtime_error("test server: cannot listen on " + o.host + ":" +
                             std::to_string(o.port) + ": " + why);
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  getsockname(evconnlistener_get_fd(m->listener), reinterpret_cast<sockaddr*>(&bound), &blen);
  m->port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  m->timer = evtimer_new(m->base, &impl::on_timer, m.get());
  m->tick = event_new(m->base, -1, EV_PERSIST, &impl::on_tick, m.get());
  const timeval tick{0, 10000};
  event_add(m->tick, &tick);
  m->thread = std::thread([this] { event_base_dispatch(m->base); });
}

test_server::~test_server() {
  stop();
}

void test_server::stop() {
  if (m->stopped) return;
  m->stopped = true;
  m->stop_requested.store(true);
  if (m->thread.joinable()) m->thread.join();
  for (server_conn* c : std::vector<server_conn*>(m->conns)) {
    c->active = nullptr;
    bufferevent_free(c->bev);
    delete c;
  }
  m->conns.clear();
  m->streams.clear();
  evconnlistener_free(m->listener);
  event_free(m->timer);
  event_free(m->tick);
  event_base_free(m->base);
  if (m->tls != nullptr) SSL_CTX_free(m->tls);
}

std::uint16_t test_server::port() const {
  return m->port;
}

std::string test_server::url() const {
  const bool v6 = m->o.host.find(':') != std::string::npos;
  std::string u = m->tls != nullptr ? "https://" : "http://";
  if (v6) {
    u += '[';
    u += m->o.host;
    u += ']';
  } else {
    u += m->o.host;
  }
  u += ':';
  u += std::to_string(m->port);
  return u;
}

test_server_stats test_server::stats() const {
  test_server_stats s;
  s.requests = m->requests.load();
  s.completed = m->completed.load();
  s.chunks = m->chunks.load();
  s.running = m->running.load();
  s.waiting = m->waiting_n.load();
  s.max_running = m->max_running.load();
  s.max_waiting = m->max_waiting.load();
  s.connections = m->connections.load();
  s.accepted = m->accepted.load();
  return s;
}

std::map<std::string, test_server_send_log> test_server::send_log() const {
  std::lock_guard lock(m->log_mutex);
  return m->logs;
}

}  // namespace ridgeline::load
