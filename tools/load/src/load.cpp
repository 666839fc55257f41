// `ridgeline load`'s logic (load.hpp): configuration, one level through the workers, the shapes,
// and the --find-max search.
#include "ridgeline/load/load.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/load/scraper.hpp"
#include "ridgeline/load/sources.hpp"
#include "ridgeline/telemetry/environment.hpp"

namespace ridgeline::load {
namespace {

constexpr double k_start_lead_seconds = 0.05;  // workers start this long before the level's 0
constexpr double k_monitor_seconds = 0.1;
constexpr double k_connect_check_seconds = 3.0;

std::pair<std::string, std::string> header_of(const std::string& text) {
  const auto colon = text.find(':');
  if (colon == std::string::npos || colon == 0) {
    throw std::invalid_argument("--header '" + printable(text, 80) + "': expected KEY:VALUE");
  }
  std::string key = text.substr(0, colon);
  std::string value = text.substr(colon + 1);
  while (!value.empty() && value.front() == ' ') value.erase(0, 1);
  while (!key.empty() && key.back() == ' ') key.pop_back();
  if (key.find_first_of(" \t\r\n") != std::string::npos ||
      value.find_first_of("\r\n") != std::string::npos) {
    throw std::invalid_argument("--header '" + printable(text, 80) +
                                "': no spaces in the name, no line breaks");
  }
  return {key, value};
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string level_spec::label() const {
  if (shape == "rate") return "rate " + format("%g", rate_per_second) + "/s";
  if (shape == "concurrency") return "concurrency " + std::to_string(concurrency);
  return "trace";
}

load_setup configure(const load_options& o) {
  load_setup s;
  s.options = o;
  if (o.url.empty())
    throw std::invalid_argument("--url is required (http://HOST:PORT of the server)");
  s.target = parse_url(o.url);
  if (o.model.empty())
    throw std::invalid_argument("--model is required: the model name the server serves");
  s.endpoint = parse_endpoint(o.endpoint);
  s.rule = parse_itl_rule(o.itl_rule);
  if (o.trace.empty() == o.generator.empty()) {
    throw std::invalid_argument("give exactly one of --trace FILE and --generator SPEC");
  }
  if (!(o.rate_scale > 0) || !std::isfinite(o.rate_scale))
    throw std::invalid_argument("--rate-scale must be positive");
  if (!(o.start_seconds >= 0)) throw std::invalid_argument("--start must not be negative");
  if (!(o.duration_seconds >= 0)) throw std::invalid_argument("--duration must not be negative");
  if (o.requests < 0) throw std::invalid_argument("--requests must not be negative");
  const int shapes =
      (o.rates.empty() ? 0 : 1) + (o.concurrencies.empty() ? 0 : 1) + (o.find_max ? 1 : 0);
  if (shapes > 1)
    throw std::invalid_argument("give at most one of --rate, --concurrency and --find-max");
  for (double r : o.rates) {
    if (!(r > 0) || !std::isfinite(r))
      throw std::invalid_argument("--rate values must be positive, got " + format("%g", r));
  }
  for (auto c : o.concurrencies) {
    if (c < 1 || c > 1'000'000)
      throw std::invalid_argument("--concurrency values must be in [1, 1000000], got " +
                                  std::to_string(c));
  }
  if (o.rate_scale != 1.0 && (!o.rates.empty() || !o.concurrencies.empty() || o.find_max)) {
    throw std::invalid_argument(
        "--rate-scale scales the workload's own arrivals; --rate, --concurrency and --find-max "
        "replace them");
  }
  if (!o.slo.empty()) s.slo = parse_slo(o.slo);
  if (o.find_max) {
    if (!s.slo)
      throw std::invalid_argument("--find-max needs --slo (e.g. ttft_p99=2s,tpot_p99=50ms)");
    if (!(o.find_max_start > 0)) throw std::invalid_argument("--find-max-start must be positive");
    if (!(o.find_max_precision > 0 && o.find_max_precision < 1)) {
      throw std::invalid_argument("--find-max-precision must be in (0, 1)");
    }
    if (o.find_max_levels < 2) throw std::invalid_argument("--find-max-levels must be at least 2");
  }
  if (o.workers < 1 || o.workers > 256)
    throw std::invalid_argument("--workers must be in [1, 256]");
  if (!(o.timeout_seconds >= 0)) throw std::invalid_argument("--timeout must not be negative");
  if (o.retries < 0 || o.retries > 100)
    throw std::invalid_argument("--retries must be in [0, 100]");
  if (o.vocab < 0) throw std::invalid_argument("--vocab must not be negative");
  if (!(o.scrape_interval > 0)) throw std::invalid_argument("--scrape-interval must be positive");
  for (const auto& h : o.headers) s.headers.push_back(header_of(h));
  if (o.api_key.find_first_of("\r\n") != std::string::npos)
    throw std::invalid_argument("--api-key holds a line break");

  if (!o.tokenizer.empty()) s.codec = load_tokenizer(o.tokenizer, o.model);
  if (s.endpoint == api_endpoint::completions && !s.codec && o.vocab == 0) {
    // Token ids need no tokenizer; they must be below the server's vocabulary (32000 by default).
  }
  const workload all = o.trace.empty() ? generate_workload(parse_generator_spec(o.generator))
                                       : load_trace(o.trace, o.mooncake_block);
  s.requests = window_of(all, o.start_seconds, o.duration_seconds, o.requests);
  if (s.requests.requests.empty()) {
    throw std::invalid_argument("the window (--start " + format("%g", o.start_seconds) +
                                ", --duration " + format("%g", o.duration_seconds) +
                                ") holds no request of " + all.source);
  }
  for (std::size_t i = 0; i < s.requests.requests.size(); ++i) {
    if (!s.requests.requests[i].follow_up) s.firsts.push_back(i);
  }
  std::stable_sort(s.firsts.begin(), s.firsts.end(), [&s](std::size_t a, std::size_t b) {
    return s.requests.requests[a].arrival_seconds < s.requests.requests[b].arrival_seconds;
  });
  s.address = resolve(s.target);
  try {
    ::close(connect_blocking(s.address, k_connect_check_seconds));
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument("--url " + o.url + " is not reachable: " + e.what());
  }
  if (o.scrape)
    s.metrics = parse_url(o.metrics_url.empty() ? s.target.origin() + "/metrics" : o.metrics_url);
  return s;
}

// Saturation over a series of (seconds, requests waiting for their first token): docs/load.md.
bool saturated(const std::vector<std::pair<double, std::int64_t>>& v, double offered_rate,
               double mean_e2e_seconds) {
  if (v.size() < 10) return false;
  const double t0 = v.front().first, t1 = v.back().first;
  const double elapsed = t1 - t0;
  if (elapsed < std::max(3.0, 2.0 * mean_e2e_seconds)) return false;
  const double from = t1 - elapsed / 2;
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  std::int64_t first = -1;
  for (const auto& [t, k] : v) {
    if (t < from) continue;
    if (first < 0) first = k;
    const double x = t - from, y = static_cast<double>(k);
    n += 1;
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const double den = n * sxx - sx * sx;
  if (n < 5 || den <= 0) return false;
  const double slope = (n * sxy - sx * sy) / den;
  const std::int64_t last = v.back().second;
  return slope > 0.1 * offered_rate && last >= 8 &&
         static_cast<double>(last) >= 1.5 * static_cast<double>(std::max<std::int64_t>(first, 1));
}

level_data run_level(const load_setup& s, const level_spec& spec, const load_hooks& hooks) {
  const load_options& o = s.options;
  const workload& w = s.requests;
  level_data l;
  l.label = spec.label();
  l.shape = spec.shape;
  l.rule = s.rule;
  l.rate_scale = o.rate_scale;
  if (spec.shape == "rate") l.rate_per_second = spec.rate_per_second;
  if (spec.shape == "concurrency") l.concurrency = spec.concurrency;

  // When each first turn leaves, on the level's clock.
  const std::size_t n_first = s.firsts.size();
  std::vector<double> leave(n_first, 0.0);
  double offered = 0;
  if (spec.shape == "trace") {
    for (std::size_t k = 0; k < n_first; ++k)
      leave[k] = w.requests[s.firsts[k]].arrival_seconds / o.rate_scale;
    const double span = leave.back() - leave.front();
    offered = span > 0 ? static_cast<double>(n_first) / span : 0;
  } else if (spec.shape == "rate") {
    // The same unit-rate gaps for every rate (common random numbers): levels differ by rate only.
    std::mt19937_64 rng(o.seed);
    std::exponential_distribution<double> gap(1.0);
    double t = 0;
    for (std::size_t k = 0; k < n_first; ++k) {
      leave[k] = t / spec.rate_per_second;
      t += gap(rng);
    }
    offered = spec.rate_per_second;
  }

  // Workers: first turns dealt round-robin; a closed loop's concurrency split among them.
  std::int32_t n_workers = o.workers;
  if (spec.shape == "concurrency")
    n_workers = static_cast<std::int32_t>(std::min<std::int64_t>(n_workers, spec.concurrency));
  n_workers = static_cast<std::int32_t>(
      std::min<std::size_t>(static_cast<std::size_t>(n_workers), n_first));
  const auto epoch = run_clock::now() + std::chrono::duration_cast<run_clock::duration>(
                                            std::chrono::duration<double>(k_start_lead_seconds));
  l.epoch_steady_seconds = std::chrono::duration<double>(epoch.time_since_epoch()).count();
  l.epoch_unix_seconds = unix_now() + k_start_lead_seconds;

  client_options co;
  co.target = s.target;
  co.address = s.address;
  co.api_key = o.api_key;
  co.headers = s.headers;
  co.timeout_seconds = o.timeout_seconds;
  co.retries = o.retries;
  co.verify_tls = o.verify_tls;
  co.counter = s.codec.get();
  prompt_options po;
  po.endpoint = s.endpoint;
  po.model = o.model;
  po.stream = o.stream;
  po.continuous_usage = o.continuous_usage;
  po.ignore_eos = o.ignore_eos;
  po.temperature = o.temperature;
  po.vocab = o.vocab;
  po.codec = s.codec.get();

  // Every request of the level may be in flight at once (open loop), each on its own connection.
  reserve_descriptors(static_cast<std::int64_t>(w.requests.size()) + 256);

  std::vector<std::unique_ptr<prompt_builder>> builders;
  std::vector<std::unique_ptr<workload_source>> sources;
  std::vector<std::unique_ptr<client_worker>> workers;
  for (std::int32_t k = 0; k < n_workers; ++k) {
    source_plan p;
    p.requests = &w;
    for (std::size_t i = static_cast<std::size_t>(k); i < n_first;
         i += static_cast<std::size_t>(n_workers)) {
      p.firsts.push_back(s.firsts[i]);
      p.leave_seconds.push_back(leave[i]);
    }
    if (spec.shape == "concurrency") {
      p.concurrency = spec.concurrency / n_workers + (k < spec.concurrency % n_workers ? 1 : 0);
    }
    builders.push_back(std::make_unique<prompt_builder>(po));
    sources.push_back(std::make_unique<workload_source>(std::move(p), *builders.back()));
    workers.push_back(std::make_unique<client_worker>(co, epoch));
  }
  std::optional<metrics_scraper> scraper;
  if (s.metrics) {
    scraper.emplace(*s.metrics, o.scrape_interval, epoch, o.verify_tls);
    scraper->start();
  }
  if (hooks.note)
    hooks.note("load: " + l.label + ": " + std::to_string(w.requests.size()) + " requests, " +
               std::to_string(n_workers) + (n_workers == 1 ? " worker" : " workers"));

  std::vector<std::vector<request_record>> results(static_cast<std::size_t>(n_workers));
  std::vector<std::string> failures(static_cast<std::size_t>(n_workers));
  std::atomic<int> running{n_workers};
  std::vector<std::thread> threads;
  for (std::int32_t k = 0; k < n_workers; ++k) {
    threads.emplace_back([&, k] {
      const auto i = static_cast<std::size_t>(k);
      try {
        results[i] = workers[i]->run(*sources[i]);
      } catch (const std::exception& e) {
        failures[i] = e.what();
      }
      running.fetch_sub(1);
    });
  }
  // Watch the run: progress, and (find-max) saturation: the requests still waiting for their
  // first token (the server's queue as the client sees it). In flight is no signal: it ramps up
  // for as long as the longest answer takes, which on a trace with long outputs looks like growth.
  std::vector<std::pair<double, std::int64_t>> waiting;
  const double total = static_cast<double>(w.requests.size());
  while (running.load() > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(k_monitor_seconds));
    std::int64_t now_waiting = 0, ended = 0, e2e_micros = 0;
    for (const auto& wk : workers) {
      now_waiting += wk->counters().awaiting_first.load();
      ended += wk->counters().ended.load();
      e2e_micros += wk->counters().e2e_micros.load();
    }
    const double t = seconds_since(epoch);
    if (t >= 0) waiting.emplace_back(t, now_waiting);
    if (hooks.progress) hooks.progress(l.label, std::min(1.0, static_cast<double>(ended) / total));
    if (hooks.interrupted && l.stopped.empty() && hooks.interrupted()) {
      l.stopped = "interrupted after " + format("%.1f", t) + " s";
      for (auto& wk : workers) wk->stop();
    }
    if (spec.stop_when_saturated && !l.saturated && spec.shape != "concurrency" && ended > 0) {
      const double mean_e2e = static_cast<double>(e2e_micros) * 1e-6 / static_cast<double>(ended);
      if (saturated(waiting, offered, mean_e2e)) {
        l.saturated = true;
        l.stopped = "saturated: " + std::to_string(now_waiting) +
                    " requests waiting for their first token after " +
                    format("%.1f", t) + " s and growing at the offered " + format("%g", offered) +
                    " req/s";
        for (auto& wk : workers) wk->stop();
      }
    }
  }
  for (auto& th : threads) th.join();
  if (scraper) {
    scraper->stop();
    l.server = scraper->series();
  }
  for (const auto& f : failures) {
    if (!f.empty()) throw std::runtime_error("load: a worker failed: " + f);
  }
  chunk_token_source src = chunk_token_source::chunks;
  for (const auto& wk : workers) {
    if (static_cast<int>(wk->token_source()) > static_cast<int>(src)) src = wk->token_source();
  }
  l.chunk_token_source = name(src);

  // One record per request of the window, in the window's order; those never sent are cancelled.
  std::unordered_map<std::uint64_t, std::size_t> position;
  for (std::size_t i = 0; i < w.requests.size(); ++i) position.emplace(w.requests[i].id, i);
  std::vector<std::optional<request_record>> ordered(w.requests.size());
  for (auto& rs : results) {
    for (auto& r : rs) {
      const auto it = position.find(r.id);
      if (it != position.end() && !ordered[it->second]) {
        ordered[it->second] = std::move(r);
      }
    }
  }
  l.records.reserve(w.requests.size());
  for (std::size_t i = 0; i < w.requests.size(); ++i) {
    if (ordered[i]) {
      l.records.push_back(std::move(*ordered[i]));
      continue;
    }
    const workload_request& q = w.requests[i];
    request_record r;
    r.id = q.id;
    r.session = q.session;
    r.turn = q.turn;
    r.requested_prompt_tokens = q.prompt_tokens;
    r.requested_output_tokens = q.output_tokens;
    r.error = error_kind::cancelled;
    r.error_detail = q.follow_up
                         ? "not sent: an earlier turn of its session failed or the run stopped"
                         : "not sent: the run stopped";
    l.records.push_back(std::move(r));
  }
  return l;
}

load_run run(const load_setup& s, const load_hooks& hooks) {
  const load_options& o = s.options;
  load_run r;
  r.url = s.target.text;
  r.endpoint = name(s.endpoint);
  r.model = o.model;
  r.workload = o.trace.empty() ? "generator:" + o.generator : o.trace;
  r.workload_requests = static_cast<std::int64_t>(s.requests.requests.size());
  r.workload_prompt_tokens = s.requests.total_prompt_tokens();
  r.workload_output_tokens = s.requests.total_output_tokens();
  r.mooncake_block_tokens = o.mooncake_block;
  r.window = schema::serving_window{o.start_seconds, o.duration_seconds, o.requests, o.rate_scale,
                                    static_cast<std::int64_t>(o.seed)};
  r.stream = o.stream;
  r.prompts = s.codec                            ? "text (tokenizer " + s.codec->source() + ")"
              : s.endpoint == api_endpoint::chat ? "words (approximate token counts)"
                                                 : "token ids";
  r.prompts += o.temperature >= 0 ? format("; temperature %g", o.temperature)
                                  : std::string("; temperature: the server's default");
  r.slo = s.slo;
  r.workers = o.workers;
  r.environment = metrics::environment_block(std::nullopt);
  if (!o.find_max) {
    std::vector<level_spec> specs;
    for (double rate : o.rates) specs.push_back({"rate", rate, 0, false});
    for (auto c : o.concurrencies) specs.push_back({"concurrency", 0, c, false});
    if (specs.empty()) specs.push_back({"trace", 0, 0, false});
    for (const auto& spec : specs) {
      r.levels.push_back(run_level(s, spec, hooks));
      if (hooks.interrupted && hooks.interrupted()) break;
    }
    return r;
  }
  // --find-max: double while the SLO holds, halve while it does not, then bisect between the
  // highest rate that met it and the lowest that did not.
  find_max_outcome f;
  f.precision = o.find_max_precision;
  double rate = o.find_max_start;
  std::optional<double> lo, hi;
  for (std::int32_t level = 0; level < o.find_max_levels; ++level) {
    level_data l = run_level(s, {"rate", rate, 0, true}, hooks);
    const level_summary sum = summarize(l, s.slo);
    const bool met = !l.saturated && sum.slo && sum.slo->met;
    if (hooks.note) {
      hooks.note("load: " + l.label + ": SLO " + (met ? "met" : "missed") +
                 (l.saturated ? " (saturated, stopped early)" : ""));
    }
    const bool interrupted = l.stopped.rfind("interrupted", 0) == 0;
    // A server that fails most requests (5xx, or an error inside the stream) is broken, not
    // slow: a lower rate would "miss" on its errors too, so the search stops with no answer.
    std::int64_t sent = 0, server_failed = 0;
    std::string example;
    for (const auto& q : l.records) {
      if (q.sent < 0) continue;
      ++sent;
      if (q.status >= 500 || q.error == error_kind::stream_error) {
        ++server_failed;
        if (example.empty()) example = q.error_detail;
      }
    }
    r.levels.push_back(std::move(l));
    if (interrupted) {
      f.note = "interrupted";
      break;
    }
    if (sent > 0 && 2 * server_failed > sent) {
      f.note = "the server failed " + std::to_string(server_failed) + " of " +
               std::to_string(sent) + " requests at " + format("%g", rate) +
               " req/s (e.g. " + example + "): search stopped, no answer";
      lo.reset();
      hi.reset();
      break;
    }
    if (met) {
      lo = std::max(lo.value_or(0.0), rate);
    } else {
      hi = std::min(hi.value_or(std::numeric_limits<double>::infinity()), rate);
    }
    if (lo && hi && (*hi - *lo) / *lo <= o.find_max_precision) break;
    if (!lo && rate < o.find_max_start / 64) {
      f.note = "no rate down to " + format("%g", rate) + " req/s met the SLO";
      break;
    }
    rate = lo && hi ? (*lo + *hi) / 2 : lo ? rate * 2 : rate / 2;
  }
  f.max_rate_per_second = lo;
  f.lowest_failing_rate = hi;
  if (lo && hi && (*hi - *lo) / *lo > o.find_max_precision && f.note.empty()) {
    f.note = "stopped after " + std::to_string(o.find_max_levels) +
             " levels before reaching the precision";
  }
  if (lo && !hi && f.note.empty()) f.note = "every rate tried met the SLO; the maximum is higher";
  r.find_max = f;
  return r;
}

}  // namespace ridgeline::load
