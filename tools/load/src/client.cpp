// The load client's event loop (client.hpp): connections, the schedule, reads and writes.
// One instance per worker thread; nothing here is shared between threads but the atomics of
// worker_counters and the stop flag.
#include "ridgeline/load/client.hpp"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <unordered_set>

#include "ridgeline/core/text.hpp"

namespace ridgeline::load {

double seconds_since(run_clock::time_point epoch) {
  return std::chrono::duration<double>(run_clock::now() - epoch).count();
}

std::int64_t reserve_descriptors(std::int64_t descriptors) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  const auto want = static_cast<rlim_t>(std::max<std::int64_t>(descriptors, 0));
  if (lim.rlim_cur < want && lim.rlim_cur != RLIM_INFINITY) {
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? want : std::min(want, lim.rlim_max);
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  const std::int64_t usable =
      lim.rlim_cur == RLIM_INFINITY ? descriptors : static_cast<std::int64_t>(lim.rlim_cur);
  // The highest descriptor we may need, opened once and closed: the table keeps its size.
  const std::int64_t top = std::min(descriptors, usable) - 1;
  if (top > 2) {
    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      if (fd < top && ::fcntl(fd, F_GETFD) >= 0 && ::fcntl(static_cast<int>(top), F_GETFD) < 0) {
        const int high = ::dup2(fd, static_cast<int>(top));
        if (high >= 0) ::close(high);
      }
      ::close(fd);
    }
  }
  return usable;
}

std::string request_bytes(const client_options& o, const http_job& job) {
  std::string r;
  r.reserve(job.body.size() + 512);
  r += "POST ";
  r += job.path;
  r += " HTTP/1.1\r\nHost: ";
  r += o.target.host_header();
  r += "\r\nUser-Agent: ridgeline-load\r\nContent-Type: application/json\r\nAccept: ";
  r += job.stream ? "text/event-stream" : "application/json";
  r += "\r\nX-Request-Id: ";
  r += std::to_string(job.id);
  r += "\r\n";
  if (!o.api_key.empty()) {
    r += "Authorization: Bearer ";
    r += o.api_key;
    r += "\r\n";
  }
  for (const auto& [k, v] : o.headers) {
    r += k;
    r += ": ";
    r += v;
    r += "\r\n";
  }
  r += "Content-Length: ";
  r += std::to_string(job.body.size());
  r += "\r\n\r\n";
  r += job.body;
  return r;
}

timeval timeval_of(double seconds) {
  if (!(seconds > 0)) return timeval{0, 0};
  timeval tv;
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  return tv;
}

namespace {

constexpr double k_tick_seconds = 0.010;  // how often the loop looks at the stop flag
constexpr std::size_t k_max_idle = 8192;  // kept-alive connections per worker
constexpr std::size_t k_reserve_chunks = 65536;

bool retryable(const request_record& r) {
  switch (r.error) {
    case error_kind::connect:
    case error_kind::timeout:
      return true;
    case error_kind::http_status:
      return r.status == 429 || r.status >= 500;
    default:
      return false;
  }
}

}  // namespace

struct connection;

struct exchange {
  enum class phase { waiting_connection, waiting_time, sent };
  client_worker::impl* owner = nullptr;
  http_job job;
  request_record record;
  std::unique_ptr<response_reader> reader;
  connection* conn = nullptr;
  event* timer = nullptr;
  phase at = phase::waiting_connection;
  std::string bytes;
  bool stale_retry_used = false;
  bool answered = false;  // a content chunk came (counters.awaiting_first no longer counts it)
};

struct connection {
  client_worker::impl* owner = nullptr;
  bufferevent* bev = nullptr;
  bool connected = false;
  bool reused = false;
  exchange* user = nullptr;
};

struct client_worker::impl {
  client_options options;
  run_clock::time_point epoch;
  event_base* base = nullptr;
  event* dispatch_timer = nullptr;
  event* tick_timer = nullptr;
  SSL_CTX* tls = nullptr;
  job_source* source = nullptr;
  std::vector<request_record> records;
  std::vector<connection*> idle;
  std::unordered_set<exchange*> live;
  std::unordered_set<connection*> connections;
  bool pumping = false;
  bool pump_again = false;
  worker_counters counters;
  std::atomic<bool> stop_requested{false};
  bool stopping = false;
  chunk_token_source token_source = chunk_token_source::chunks;

  double now() const { return seconds_since(epoch); }

  // A timer at `at` on the run's clock. libevent measures timeouts from its cached time (the
  // loop iteration's start), so the cache is refreshed first or the timer would fire early.
  void arm(event* e, double at) {
    event_base_update_cache_time(base);
    const timeval tv = timeval_of(at - now());
    evtimer_add(e, &tv);
  }

  // --- connections --------------------------------------------------------------------------
  void close(connection* c) {
    if (c == nullptr) return;
    if (c->bev != nullptr) bufferevent_free(c->bev);
    c->bev = nullptr;
    idle.erase(std::remove(idle.begin(), idle.end(), c), idle.end());
    connections.erase(c);
    delete c;
  }

  connection* open() {
    auto* c = new connection;
    c->owner = this;
    connections.insert(c);
    if (options.target.tls) {
      SSL* ssl = SSL_new(tls);
      SSL_set_tlsext_host_name(ssl, options.target.host.c_str());
      if (options.verify_tls) SSL_set1_host(ssl, options.target.host.c_str());
      c->bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                              BEV_OPT_CLOSE_ON_FREE);
      if (c->bev != nullptr) bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
      c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (c->bev == nullptr) throw std::runtime_error("load: cannot create a bufferevent");
    bufferevent_setcb(c->bev, &impl::on_read, nullptr, &impl::on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev,
                                   reinterpret_cast<const sockaddr*>(&options.address.address),
                                   static_cast<int>(options.address.length)) != 0) {
      // Failed at once (no file descriptors, unreachable network): reported when attached.
      c->connected = false;
      bufferevent_free(c->bev);
      c->bev = nullptr;
      return c;
    }
    const evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd >= 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return c;
  }

  connection* take_connection() {
    while (!idle.empty()) {
      connection* c = idle.back();
      idle.pop_back();
      if (c->bev != nullptr && c->connected) {
        c->reused = true;
        return c;
      }
      close(c);
    }
    return open();
  }

  void release(connection* c, bool reusable) {
    c->user = nullptr;
    if (reusable && !stopping && idle.size() < k_max_idle &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) == 0) {
      idle.push_back(c);
    } else {
      close(c);
    }
  }

  // --- exchanges ----------------------------------------------------------------------------
  void start(http_job&& job) {
    auto* x = new exchange;
    x->owner = this;
    x->job = std::move(job);
    request_record& r = x->record;
    r.id = x->job.id;
    r.session = x->job.session;
    r.turn = x->job.turn;
    r.scheduled = x->job.scheduled_seconds;
    r.requested_prompt_tokens = x->job.requested_prompt_tokens;
    r.expected_prompt_tokens = x->job.expected_prompt_tokens;
    r.requested_output_tokens = x->job.requested_output_tokens;
    const auto reserve = static_cast<std::size_t>(
        std::clamp<std::int64_t>(x->job.requested_output_tokens, 1, k_reserve_chunks));
    r.chunk_seconds.reserve(reserve);
    r.chunk_tokens.reserve(reserve);
    x->bytes = request_bytes(options, x->job);
    x->timer = evtimer_new(base, &impl::on_timer, x);
    live.insert(x);
    counters.in_flight.fetch_add(1, std::memory_order_relaxed);
    counters.awaiting_first.fetch_add(1, std::memory_order_relaxed);
    attach(x);
  }

  void attach(exchange* x) {
    x->at = exchange::phase::waiting_connection;
    connection* c = take_connection();
    c->user = x;
    x->conn = c;
    if (c->bev == nullptr) {
      fail_connect(x, std::string("cannot connect to ") + options.address.text + ": " +
                          evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
      return;
    }
    if (c->connected) {
      ready(x);
    } else if (options.timeout_seconds > 0) {
      // A connection that never completes (SYNs dropped) fails after --timeout, not after the
      // kernel's minutes of retries.
      arm(x->timer, now() + options.timeout_seconds);
    }
  }

  void ready(exchange* x) {
    evtimer_del(x->timer);  // the connect timeout, if one was armed
    const double t = now();
    if (t < x->job.scheduled_seconds) {
      x->at = exchange::phase::waiting_time;
      arm(x->timer, x->job.scheduled_seconds);
      return;
    }
    send(x);
  }

  void send(exchange* x) {
    request_record& r = x->record;
    ++r.attempts;
    r.chunk_seconds.clear();
    r.chunk_tokens.clear();
    r.output_text.clear();
    r.response_start = r.end = -1;
    r.status = 0;
    r.error = error_kind::none;
    r.error_detail.clear();
    r.usage_prompt_tokens = r.usage_output_tokens = r.usage_cached_tokens = -1;
    x->reader = std::make_unique<response_reader>(
        r, reader_options{x->job.stream, x->job.keep_text, options.counter});
    x->at = exchange::phase::sent;
    bufferevent* bev = x->conn->bev;
    std::string_view rest = x->bytes;
    if (!options.target.tls) {
      const evutil_socket_t fd = bufferevent_getfd(bev);
      r.sent = now();
      const ssize_t n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) rest.remove_prefix(static_cast<std::size_t>(n));
      // n < 0 (EAGAIN, or an error the read side reports): the bufferevent takes it all.
    } else {
      r.sent = now();
    }
    if (!rest.empty()) bufferevent_write(bev, rest.data(), rest.size());
    counters.sent.fetch_add(1, std::memory_order_relaxed);
    if (options.timeout_seconds > 0) arm(x->timer, r.sent + options.timeout_seconds);
  }

  // The exchange ended: retry, or record it and let the source release what follows.
  void end(exchange* x, bool reusable) {
    evtimer_del(x->timer);
    if (x->conn != nullptr) {
      release(x->conn, reusable && x->record.error == error_kind::none);
      x->conn = nullptr;
    }
    if (!stopping && retryable(x->record) && x->record.attempts <= options.retries) {
      attach(x);
      return;
    }
    if (x->reader) {
      const auto s = x->reader->token_source();
      if (static_cast<int>(s) > static_cast<int>(token_source)) token_source = s;
    }
    counters.chunks.fetch_add(static_cast<std::int64_t>(x->record.chunk_seconds.size()),
                              std::memory_order_relaxed);
    const double t = x->record.end >= 0 ? x->record.end : now();
    if (x->record.end < 0) x->record.end = t;
    if (x->record.sent >= 0) {
      counters.e2e_micros.fetch_add(static_cast<std::int64_t>((t - x->record.sent) * 1e6),
                                    std::memory_order_relaxed);
    }
    records.push_back(std::move(x->record));
    const bool x_answered = x->answered;
    const http_job job = std::move(x->job);
    live.erase(x);
    event_free(x->timer);
    delete x;
    counters.in_flight.fetch_sub(1, std::memory_order_relaxed);
    if (!x_answered) counters.awaiting_first.fetch_sub(1, std::memory_order_relaxed);
    counters.ended.fetch_add(1, std::memory_order_relaxed);
    if (!stopping) {
      source->on_done(job, records.back(), t);
      pump();
    }
  }

  void fail_connect(exchange* x, std::string detail) {
    x->record.error = error_kind::connect;
    x->record.error_detail = std::move(detail);
    x->record.end = now();
    ++x->record.attempts;
    end(x, false);
  }

  // --- callbacks ----------------------------------------------------------------------------
  static void on_read(bufferevent* bev, void* arg) {
    const double stamp = static_cast<connection*>(arg)->owner->now();  // before any parsing
    auto* c = static_cast<connection*>(arg);
    impl* self = c->owner;
    evbuffer* in = bufferevent_get_input(bev);
    exchange* x = c->user;
    if (x == nullptr || x->at != exchange::phase::sent) {
      // Bytes on an idle connection (or before the request left): nothing we asked for.
      if (x == nullptr) {
        self->close(c);
      } else {
        evbuffer_drain(in, evbuffer_get_length(in));
      }
      return;
    }
    response_reader::result res = response_reader::result::more;
    while (evbuffer_get_length(in) > 0 && res == response_reader::result::more) {
      evbuffer_iovec vec[16];
      const int n = evbuffer_peek(in, -1, nullptr, vec, 16);
      std::size_t used = 0;
      for (int i = 0; i < n && i < 16 && res == response_reader::result::more; ++i) {
        res = x->reader->feed(
            std::string_view(static_cast<const char*>(vec[i].iov_base), vec[i].iov_len), stamp);
        used += vec[i].iov_len;
      }
      evbuffer_drain(in, used);
    }
    if (!x->answered && !x->record.chunk_seconds.empty()) {
      x->answered = true;
      self->counters.awaiting_first.fetch_sub(1, std::memory_order_relaxed);
    }
    if (res == response_reader::result::more) return;
    if (evbuffer_get_length(in) > 0) evbuffer_drain(in, evbuffer_get_length(in));
    self->end(x, res == response_reader::result::complete && x->reader->reusable());
  }

  static void on_event(bufferevent* bev, short what, void* arg) {
    auto* c = static_cast<connection*>(arg);
    impl* self = c->owner;
    const double stamp = self->now();
    if ((what & BEV_EVENT_CONNECTED) != 0) {
      c->connected = true;
      if (c->user != nullptr && c->user->at == exchange::phase::waiting_connection) {
        self->ready(c->user);
      }
      return;
    }
    if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) == 0) return;
    exchange* x = c->user;
    std::string why;
    if ((what & BEV_EVENT_ERROR) != 0) {
      const int err = EVUTIL_SOCKET_ERROR();
      why = err != 0 ? evutil_socket_error_to_string(err) : "connection error";
      if (self->options.target.tls) {
        const unsigned long e = bufferevent_get_openssl_error(bev);
        if (e != 0) {
          char buf[256];
          ERR_error_string_n(e, buf, sizeof buf);
          why = std::string("TLS: ") + buf;
        }
      }
    }
    if (x == nullptr) {
      self->close(c);
      return;
    }
    if (x->at != exchange::phase::sent) {
      self->fail_connect(x, "cannot connect to " + self->options.address.text + ": " +
                                (why.empty() ? std::string("connection closed") : why));
      return;
    }
    // A kept-alive connection the server had closed before our request reached it: once, open
    // a fresh one and send again (the request never got a byte back, so nothing was measured).
    if (!x->reader->any_byte() && c->reused && !x->stale_retry_used) {
      x->stale_retry_used = true;
      --x->record.attempts;
      evtimer_del(x->timer);
      self->close(c);
      x->conn = nullptr;
      self->attach(x);
      return;
    }
    response_reader::result res;
    if ((what & BEV_EVENT_EOF) != 0) {
      // What is still buffered belongs to the response (libevent reports EOF after the data).
      evbuffer* in = bufferevent_get_input(bev);
      res = response_reader::result::more;
      if (evbuffer_get_length(in) > 0) {
        const std::size_t n = evbuffer_get_length(in);
        const char* p = reinterpret_cast<const char*>(evbuffer_pullup(in, -1));
        res = x->reader->feed(std::string_view(p, n), stamp);
        evbuffer_drain(in, n);
      }
      if (res == response_reader::result::more) res = x->reader->closed(stamp);
    } else {
      res = x->reader->closed(stamp);
      if (res == response_reader::result::failed && !why.empty()) {
        x->record.error_detail += " (" + why + ")";
      }
    }
    self->end(x, false);
  }

  static void on_timer(evutil_socket_t, short, void* arg) {
    auto* x = static_cast<exchange*>(arg);
    impl* self = x->owner;
    if (x->at == exchange::phase::waiting_connection) {
      self->fail_connect(x, "no connection to " + self->options.address.text + " within " +
                                format_seconds(self->options.timeout_seconds));
      return;
    }
    if (x->at == exchange::phase::waiting_time) {
      // Early (libevent's clock is the loop iteration's start): wait the rest.
      if (self->now() < x->job.scheduled_seconds) {
        self->arm(x->timer, x->job.scheduled_seconds);
        return;
      }
      self->send(x);
      return;
    }
    if (x->at == exchange::phase::sent) {
      x->record.error = error_kind::timeout;
      x->record.error_detail = "no complete response " +
                               format_seconds(self->options.timeout_seconds) +
                               " after the request was written";
      x->record.end = self->now();
      self->end(x, false);
    }
  }

  static void on_dispatch(evutil_socket_t, short, void* arg) { static_cast<impl*>(arg)->pump(); }

  static void on_tick(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<impl*>(arg);
    if (self->stop_requested.load(std::memory_order_relaxed)) self->cancel_all();
  }

  // --- the schedule -------------------------------------------------------------------------
  // Starts every job due within the connect lead and arms the timer for the next. Re-entered
  // when a start fails at once (connection refused) and its end releases more: the outer call
  // then runs again.
  void pump() {
    if (stopping) return;
    if (pumping) {
      pump_again = true;
      return;
    }
    pumping = true;
    double next = std::numeric_limits<double>::infinity();
    do {
      pump_again = false;
      std::vector<http_job> jobs;
      const double t = now();
      next = source->take_due(t, t + k_connect_lead_seconds, jobs);
      for (auto& j : jobs) {
        if (stopping) break;
        start(std::move(j));
      }
    } while (pump_again && !stopping);
    pumping = false;
    if (stopping) return;
    if (std::isfinite(next)) arm(dispatch_timer, next - k_connect_lead_seconds);
    if (live.empty() && source->exhausted()) event_base_loopbreak(base);
  }

  void cancel_all() {
    if (stopping) return;
    stopping = true;
    const double t = now();
    const std::vector<exchange*> all(live.begin(), live.end());
    for (exchange* x : all) {
      x->record.error = error_kind::cancelled;
      x->record.error_detail = x->at == exchange::phase::sent ? "in flight when the run stopped"
                                                              : "not sent: the run stopped";
      x->record.end = t;
      end(x, false);
    }
    event_base_loopbreak(base);
  }
};

client_worker::client_worker(const client_options& o, run_clock::time_point epoch)
    : m(std::make_unique<impl>()) {
  m->options = o;
  m->epoch = epoch;
  event_config* cfg = event_config_new();
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
  m->base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  if (m->base == nullptr) throw std::runtime_error("load: cannot create an event loop");
  if (o.target.tls) {
    m->tls = SSL_CTX_new(TLS_client_method());
    if (m->tls == nullptr) throw std::runtime_error("load: cannot create a TLS context");
    SSL_CTX_set_verify(m->tls, o.verify_tls ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    if (o.verify_tls) SSL_CTX_set_default_verify_paths(m->tls);
  }
  m->dispatch_timer = evtimer_new(m->base, &impl::on_dispatch, m.get());
  m->tick_timer = event_new(m->base, -1, EV_PERSIST, &impl::on_tick, m.get());
}

client_worker::~client_worker() {
  for (exchange* x : std::vector<exchange*>(m->live.begin(), m->live.end())) {
    event_free(x->timer);
    delete x;
  }
  for (connection* c : std::vector<connection*>(m->connections.begin(), m->connections.end())) {
    m->close(c);
  }
  event_free(m->dispatch_timer);
  event_free(m->tick_timer);
  if (m->tls != nullptr) SSL_CTX_free(m->tls);
  event_base_free(m->base);
}

std::vector<request_record> client_worker::run(job_source& source) {
  m->source = &source;
  m->records.clear();
  m->stopping = false;
  const timeval tick = timeval_of(k_tick_seconds);
  event_add(m->tick_timer, &tick);
  m->pump();
  if (!(m->live.empty() && source.exhausted()) && !m->stop_requested.load()) {
    event_base_dispatch(m->base);
  }
  if (m->stop_requested.load()) m->cancel_all();
  event_del(m->tick_timer);
  evtimer_del(m->dispatch_timer);
  // Kept-alive connections end with the run.
  for (connection* c : std::vector<connection*>(m->idle.begin(), m->idle.end())) m->close(c);
  return std::move(m->records);
}

void client_worker::stop() {
  m->stop_requested.store(true);
}

const worker_counters& client_worker::counters() const {
  return m->counters;
}

chunk_token_source client_worker::token_source() const {
  return m->token_source;
}

}  // namespace ridgeline::load
